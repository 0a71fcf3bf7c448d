"""WriteToMilvus: upserts embedded chunks, and dead-letters what it cannot write.

Cost model: one client per worker (made in ``setup``); rows buffered per
bundle and sent as one upsert when the buffer reaches ``max_batch_rows`` rows
or ``max_batch_bytes`` estimated bytes (vector, text and metadata sizes), or
the bundle ends. Elements are single embedded chunks or whole
:class:`~transforms.batch.ChunkBatch` es (``EmbedChunks(...,
output=EmbedOutput.BATCHES)``), whose vectors are checked in one numpy call.
Each upsert runs on one writer thread of the DoFn while the bundle goes on
(the next rows are read, chunked and embedded meanwhile); at most one upsert
is in flight, so the buffer and the request in flight bound the memory, and
the bundle ends only when every upsert has returned. Upserts with
deterministic ids make bundle retries and re-runs idempotent. A chunk id is
emitted on the main output only after the batch that holds it was written.

Where the time goes: pymilvus turns each row dict into its request in Python
(tens of microseconds a row, most of it checking the text); the server's
answer takes about as long again, which the writer thread overlaps.

Failures by class: a server that is unavailable, times out or limits the rate
is retried with exponential backoff and jitter, bounded in attempts and time,
then the bundle fails (and the runner retries it); a batch the server refuses
for its data is split until the bad rows are isolated, and those go to the
dead-letter output with the server's message; a missing collection or refused
credentials stop the run. Rows that cannot fit the schema (wrong dimension,
NaN, text over the field's length, metadata that is not JSON) are
dead-lettered before any request.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.batch import ChunkBatch
from transforms.client import DATA, TRANSIENT, connect, error_kind, skip_client_string_checks
from transforms.collection import prepare_collection
from transforms.config import MilvusTarget, WriteConfig
from transforms.model import acquire_embedder
from transforms.rows import Row, RowError, build_row, build_rows
from transforms.types import Chunk, DeadLetter

__all__ = ["DEAD_LETTERS", "WRITTEN", "WriteToMilvus"]

_LOGGER = logging.getLogger(__name__)

WRITTEN = "written"
DEAD_LETTERS = "dead_letters"


class _Pending:
    """A row waiting in the buffer, with the element(s) it stands for.

    A chunk id seen again within a batch replaces the earlier row (Milvus
    refuses a batch with a primary key twice); the row then stands for both
    elements, which are both emitted once it is written.
    """

    __slots__ = ("elements", "row", "size")

    def __init__(self, row: Row, size: int, elements: list[tuple[Any, Any]]) -> None:
        self.row = row
        self.size = size
        self.elements = elements


@dataclasses.dataclass
class _WriteOutcome:
    """What one write did, reported by the writer thread to the bundle's thread
    (Beam metrics are only counted on the bundle's thread)."""

    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    """Row id to the server's reason, for the rows it refused."""
    retries: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    batches: int = 0
    rows: int = 0
    bytes: int = 0
    latencies_ms: list[int] = dataclasses.field(default_factory=list)


_InFlight = tuple[list[_Pending], "concurrent.futures.Future[_WriteOutcome]"]
"""The rows handed to the writer thread, and the write's outcome to come."""


def _retry_reason(error: BaseException) -> str:
    message = str(getattr(error, "message", error)).lower()
    if "rate" in message or "limit" in message:
        return "rate_limited"
    if isinstance(error, TimeoutError) or "deadline" in message or "timeout" in message:
        return "timeout"
    return "unavailable"


class _WriteToMilvusFn(beam.DoFn):
    def __init__(self, target: MilvusTarget, config: WriteConfig, dim: int) -> None:
        self._target = target
        self._config = config
        self._dim = dim
        self._client: Any = None
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None
        self._buffer: dict[str, _Pending] = {}
        self._buffer_bytes = 0
        self._written = metrics.counter(metrics.WRITTEN)
        self._rows_upserted = metrics.counter(metrics.ROWS_UPSERTED)
        self._bytes = metrics.counter(metrics.BYTES_WRITTEN)
        self._batches = metrics.counter(metrics.BATCHES_WRITTEN)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)
        self._latency_ms = metrics.distribution(metrics.WRITE_LATENCY_MS)

    def setup(self) -> None:
        skip_client_string_checks()  # build_rows checks every text's length
        self._client = connect(self._target)
        self._writer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="milvus-upsert"
        )

    def start_bundle(self) -> None:
        self._buffer = {}
        self._buffer_bytes = 0
        self._in_flight = None

    def process(
        self,
        element: Chunk | ChunkBatch,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue | pvalue.TaggedOutput]:
        windows = (window,)
        if isinstance(element, ChunkBatch):
            built = build_rows(element, self._dim, self._config)
            chunks: tuple[Chunk, ...] = element.chunks
        else:
            try:
                built = [build_row(element, self._dim, self._config)]
            except RowError as e:
                built = [e]
            chunks = (element,)
        for chunk, result in zip(chunks, built, strict=True):
            if isinstance(result, RowError):
                self._dead_letter_count(result.kind, 1)
                yield pvalue.TaggedOutput(
                    DEAD_LETTERS,
                    WindowedValue(
                        DeadLetter.of("write", chunk.id, str(result), chunk.text),
                        timestamp,
                        windows,
                    ),
                )
                continue
            row, size = result
            elements = [(timestamp, windows)]
            replaced = self._buffer.pop(chunk.id, None)
            if replaced is not None:
                self._buffer_bytes -= replaced.size
                elements = replaced.elements + elements
            self._buffer[chunk.id] = _Pending(row, size, elements)
            self._buffer_bytes += size
            if (
                len(self._buffer) >= self._config.max_batch_rows
                or self._buffer_bytes >= self._config.max_batch_bytes
            ):
                yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._flush()
        yield from self._await_in_flight()

    def teardown(self) -> None:
        if self._writer is not None:
            # After a failed bundle an upsert may still run: let it end first.
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _dead_letter_count(self, kind: str, n: int) -> None:
        self._dead_lettered.inc(n)
        metrics.counter(f"dead_letters_write_{kind}").inc(n)

    def _flush(self) -> Iterator[Any]:
        """Hands the buffer to the writer thread, after the write before it returned."""
        pending = list(self._buffer.values())
        self._buffer = {}
        self._buffer_bytes = 0
        if not pending:
            return
        yield from self._await_in_flight()
        if self._writer is None:  # setup() was not called: write on this thread
            future: concurrent.futures.Future[_WriteOutcome] = concurrent.futures.Future()
            future.set_result(self._write([p.row for p in pending]))
        else:
            future = self._writer.submit(self._write, [p.row for p in pending])
        self._in_flight = (pending, future)

    def _await_in_flight(self) -> Iterator[Any]:
        """Waits for the write in flight; counts it and emits its ids and dead letters."""
        if self._in_flight is None:
            return
        pending, future = self._in_flight
        self._in_flight = None
        outcome = future.result()  # a write that failed for good fails the bundle here
        for retried, n in outcome.retries.items():
            metrics.counter(f"{metrics.WRITE_RETRIES}_{retried}").inc(n)
        for latency in outcome.latencies_ms:
            self._latency_ms.update(latency)
        self._batches.inc(outcome.batches)
        self._rows_upserted.inc(outcome.rows)
        self._bytes.inc(outcome.bytes)
        refused = outcome.refused
        for p in pending:
            row_id = p.row["id"]
            reason = refused.get(row_id)
            if reason is None:
                self._written.inc(len(p.elements))
            else:
                self._dead_letter_count("refused_by_server", len(p.elements))
            for timestamp, windows in p.elements:
                if reason is None:
                    yield WindowedValue(row_id, timestamp, windows)
                else:
                    letter = DeadLetter.of("write", row_id, reason, p.row["text"])
                    yield pvalue.TaggedOutput(
                        DEAD_LETTERS, WindowedValue(letter, timestamp, windows)
                    )

    def _write(self, rows: list[Row]) -> _WriteOutcome:
        """Writes rows (on the writer thread); reports what happened."""
        outcome = _WriteOutcome()
        outcome.refused = dict(self._write_isolating(rows, outcome))
        return outcome

    def _write_isolating(self, rows: list[Row], outcome: _WriteOutcome) -> list[tuple[str, str]]:
        """Writes rows; returns ``(id, reason)`` of each row the server refused."""
        try:
            self._upsert_with_retries(rows, outcome)
            return []
        except Exception as e:
            if error_kind(e) != DATA:
                raise
            if len(rows) == 1:
                return [(rows[0]["id"], f"Milvus refused the row: {getattr(e, 'message', e)}")]
            middle = len(rows) // 2
            return self._write_isolating(rows[:middle], outcome) + self._write_isolating(
                rows[middle:], outcome
            )

    def _upsert_with_retries(self, rows: list[Row], outcome: _WriteOutcome) -> None:
        backoff = self._config.initial_backoff_s
        deadline = time.monotonic() + self._config.retry_deadline_s
        for attempt in range(1, self._config.max_attempts + 1):
            started = time.monotonic()
            try:
                if self._client is None:
                    self._client = connect(self._target)
                self._client.upsert(self._target.collection, rows, timeout=self._target.timeout_s)
            except Exception as e:
                delay = random.uniform(backoff / 2, min(backoff, self._config.max_backoff_s))
                if (
                    error_kind(e) != TRANSIENT
                    or attempt == self._config.max_attempts
                    or time.monotonic() + delay > deadline
                ):
                    raise
                reason = _retry_reason(e)
                outcome.retries[reason] += 1
                _LOGGER.warning(
                    "Upsert of %d rows into %s failed (%s, attempt %d of %d), retry in %.1fs: %s",
                    len(rows), self._target.describe(), reason, attempt,
                    self._config.max_attempts, delay, e,
                )  # fmt: skip
                self._reconnect()
                time.sleep(delay)
                backoff *= 2
                continue
            outcome.latencies_ms.append(int((time.monotonic() - started) * 1000))
            outcome.batches += 1
            outcome.rows += len(rows)
            outcome.bytes += sum(_row_bytes(r) for r in rows)
            return

    def _reconnect(self) -> None:
        """Drops the client after a transient error; the next attempt makes a new one."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as e:  # a dead server may refuse even the goodbye
                _LOGGER.debug("Closing the client failed: %s", e)

    def display_data(self) -> dict[str, Any]:
        return {
            "uri": self._target.uri,
            "collection": self._target.collection,
            "max_batch_rows": self._config.max_batch_rows,
            "max_batch_bytes": self._config.max_batch_bytes,
        }


def _row_bytes(row: Row) -> int:
    return int(row["vector"].nbytes) + len(row["text"]) + len(row["document_id"])


class _FlushCollectionFn(beam.DoFn):
    """Flushes the collection once, after every write of the run."""

    def __init__(self, target: MilvusTarget) -> None:
        self._target = target

    def process(self, rows_written: int) -> Iterator[int]:
        client = connect(self._target)
        try:
            client.flush(self._target.collection)
        finally:
            client.close()
        _LOGGER.info("Flushed %s after %d rows", self._target.describe(), rows_written)
        yield rows_written


class WriteToMilvus(beam.PTransform):
    """Upserts embedded chunks into a Milvus collection.

    Takes single embedded ``Chunk`` s, :class:`~transforms.batch.ChunkBatch` es
    (``EmbedChunks(model, output=EmbedOutput.BATCHES)``, the faster), or both.

    With ``manage_collection`` (the default), applying the transform (on the
    launcher, before the pipeline runs) prepares the collection as
    ``config.mode`` says — create it when missing, or check that it fits the
    model — and the collection is flushed once after every write. Pipelines
    that do both themselves, as ``pipelines.ingest`` does to check row counts
    around the run, turn it off.

    Args:
      target: The collection to write to.
      model: Source of the model that made the vectors; gives the dimension
        and the fingerprint stored on the collection.
      config: Batching, retries, field sizes and the write mode.
      manage_collection: Prepare the collection when applied, flush at the end.

    Returns:
      The outputs ``written`` (ids of the rows written, after the write) and
      ``dead_letters`` (a ``DoOutputsTuple``).
    """

    def __init__(
        self,
        target: MilvusTarget,
        *,
        model: str,
        config: WriteConfig = WriteConfig(),
        manage_collection: bool = True,
    ) -> None:
        super().__init__()
        self._target = target
        self._model = model
        self._config = config
        self._manage_collection = manage_collection

    def expand(self, chunks: beam.PCollection[Chunk | ChunkBatch]) -> pvalue.DoOutputsTuple:
        embedder = acquire_embedder(self._model)
        if self._manage_collection:
            prepare_collection(
                self._target,
                dim=embedder.dim,
                fingerprint=embedder.fingerprint(),
                config=self._config,
            )
        results = chunks | "Upsert" >> beam.ParDo(
            _WriteToMilvusFn(self._target, self._config, embedder.dim)
        ).with_outputs(DEAD_LETTERS, main=WRITTEN)
        if self._manage_collection:
            _ = (
                results[WRITTEN]
                | "CountWritten" >> beam.combiners.Count.Globally()
                | "Flush" >> beam.ParDo(_FlushCollectionFn(self._target))
            )
        return results

    def display_data(self) -> dict[str, Any]:
        return {
            "uri": self._target.uri,
            "collection": self._target.collection,
            "model": self._model,
        }
