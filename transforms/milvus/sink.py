"""WriteToMilvus: upserts embedded chunks, and dead-letters what it cannot write.

Use it to write vectors of a known dimension into a collection that is ready:
the sink needs ``dim`` (and shows a ``fingerprint``), never the model that
made the vectors, and applying it creates, drops and checks nothing. Prepare
the collection first, once, on the launcher
(:func:`~transforms.milvus.collection.prepare_collection`); each worker checks
once, in ``setup``, that it exists.

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

Where the time goes: pymilvus turns each row dict into its request in Python,
about 60 µs of CPU a row of 1 KB text and 256 floats; its VARCHAR check
would add two thirds as much again by walking each text by character, which
the sink's rows avoid with :class:`~transforms.milvus.client.CheckedStr` (its
own rows only: nothing in pymilvus is changed). The server's answer takes
about as long again, which the writer thread overlaps.

Failures by class: a server that is unavailable, times out or limits the rate
is retried under :class:`~transforms.milvus.retry.RetryPolicy` (exponential
backoff with jitter, bounded in attempts and time, a new client each time),
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
import json
import logging
import numbers
import time
from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.batch import ChunkBatch
from transforms.config import MilvusTarget, WriteConfig
from transforms.milvus.client import DATA, CheckedStr, checked_strings_help, connect, error_kind
from transforms.milvus.collection import CollectionMismatchError
from transforms.milvus.retry import RetryPolicy
from transforms.milvus.rows import VARCHAR_FIELDS, Row, RowError, build_row, build_rows
from transforms.types import DEAD_LETTERS, Chunk, DeadLetter

__all__ = ["WRITTEN", "WriteToMilvus"]

_LOGGER = logging.getLogger(__name__)

WRITTEN = "written"


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


class _WriteToMilvusFn(beam.DoFn):
    """Buffers rows per bundle and upserts them on one writer thread.

    Owns one client per DoFn instance (made in ``setup``, closed in
    ``teardown``) and never creates, drops or releases the collection.
    """

    def __init__(
        self, target: MilvusTarget, config: WriteConfig, dim: int, with_document_ids: bool = False
    ) -> None:
        self._target = target
        self._config = config
        self._dim = dim
        self._with_document_ids = with_document_ids
        self._retries = RetryPolicy.from_config(config)
        self._checked_strings = False
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
        self._checked_strings = checked_strings_help()
        self._client = connect(self._target)
        self._require_collection()
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

    def _require_collection(self) -> None:
        """Fails the worker at once, with the fix, if the collection is missing.

        One ``has_collection`` call per DoFn instance: writing into a missing
        collection would fail each bundle anyway, with a less helpful error.
        """
        exists = self._retries.call(
            f"Looking up {self._target.describe()}",
            lambda: self._client.has_collection(self._target.collection),
        )
        if not exists:
            raise CollectionMismatchError(
                f"{self._target.describe()} does not exist: prepare it before the run with "
                "prepare_collection(target, dim=..., fingerprint=..., config=...); "
                "WriteToMilvus never creates it."
            )

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
            written = (str(p.row["document_id"]), row_id) if self._with_document_ids else row_id
            for timestamp, windows in p.elements:
                if reason is None:
                    yield WindowedValue(written, timestamp, windows)
                else:
                    letter = DeadLetter.of("write", row_id, reason, p.row["text"])
                    yield pvalue.TaggedOutput(
                        DEAD_LETTERS, WindowedValue(letter, timestamp, windows)
                    )

    def _write(self, rows: list[Row]) -> _WriteOutcome:
        """Writes rows (on the writer thread); reports what happened."""
        outcome = _WriteOutcome()
        if self._checked_strings:
            rows = _with_checked_strings(rows)
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
                return [(str(rows[0]["id"]), f"Milvus refused the row: {getattr(e, 'message', e)}")]
            middle = len(rows) // 2
            return self._write_isolating(rows[:middle], outcome) + self._write_isolating(
                rows[middle:], outcome
            )

    def _upsert_with_retries(self, rows: list[Row], outcome: _WriteOutcome) -> None:
        """Upserts rows under the retry policy, counting retries by reason.

        After a transient error the client is dropped and the next attempt
        connects anew: a restarted server does not answer the old channel.
        """

        def upsert() -> float:
            if self._client is None:
                self._client = connect(self._target)
            started = time.monotonic()
            self._client.upsert(self._target.collection, rows, timeout=self._target.timeout_s)
            return time.monotonic() - started

        def on_retry(error: BaseException, reason: str, delay: float) -> None:
            outcome.retries[reason] += 1
            self._reconnect()

        seconds = self._retries.call(
            f"Upsert of {len(rows)} rows into {self._target.describe()}", upsert, on_retry=on_retry
        )
        outcome.latencies_ms.append(int(seconds * 1000))
        outcome.batches += 1
        outcome.rows += len(rows)
        outcome.bytes += sum(_row_bytes(r) for r in rows)

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


def _with_checked_strings(rows: list[Row]) -> list[Row]:
    """Copies of rows whose VARCHAR values pymilvus checks in one step each.

    The rows' strings were checked by :mod:`~transforms.milvus.rows`; see
    :class:`~transforms.milvus.client.CheckedStr` for why this saves about
    40% of the client's CPU per upsert of 1 KB texts. Costs about 1.5 µs a
    row; the rows handed in stay as they are.
    """
    return [{**row, **{name: CheckedStr(row[name]) for name in VARCHAR_FIELDS}} for row in rows]


def _row_bytes(row: Row) -> int:
    return int(row["vector"].nbytes) + len(row["text"]) + len(row["document_id"])


class _FlushCollectionFn(beam.DoFn):
    """Flushes the collection once, after every write of the run.

    Its input is the count of rows written, one element: the step runs after
    the last write, once, on one worker.
    """

    def __init__(self, target: MilvusTarget, config: WriteConfig) -> None:
        self._target = target
        self._retries = RetryPolicy.from_config(config)

    def process(self, rows_written: int) -> Iterator[int]:
        def flush() -> None:
            client = connect(self._target)
            try:
                client.flush(self._target.collection)
            finally:
                client.close()

        self._retries.call(f"Flush of {self._target.describe()}", flush)
        _LOGGER.info("Flushed %s after %d rows", self._target.describe(), rows_written)
        yield rows_written


class WriteToMilvus(beam.PTransform):
    """Upserts embedded chunks into a Milvus collection that is ready.

    Takes single embedded ``Chunk`` s, :class:`~transforms.batch.ChunkBatch` es
    (``EmbedChunks(model, output=EmbedOutput.BATCHES)``, the faster), or both;
    any ``float32`` vectors of dimension ``dim`` will do, whatever made them.

    Applying the transform touches no collection: prepare it once before the
    run, on the launcher, with the same ``dim`` and ``fingerprint``::

        prepare_collection(target, dim=dim, fingerprint=fingerprint, config=config)
        written = chunks | WriteToMilvus(target, dim=dim, fingerprint=fingerprint, config=config)

    Each worker checks once, in ``setup``, that the collection exists, and
    fails with that advice if it does not. A pipeline that is built but never
    run (a template, a test, a dry run) leaves Milvus as it was.

    Args:
      target: The collection to write to.
      dim: Length of every vector; rows with other vectors are dead-lettered
        before any request.
      fingerprint: What made the vectors, as given to
        :func:`~transforms.milvus.collection.prepare_collection` (e.g.
        ``StaticEmbedder.fingerprint()``), or ``None`` for vectors with no
        fingerprint. Required, so that "none" is said, not forgotten; the
        sink only shows it in ``display_data``.
      config: Batching, retries, field sizes.
      flush: Add a last step that flushes the collection once after every
        write (seals the segments, so that a count right after the run is
        exact). ``False`` leaves it to the launcher, as ``pipelines.ingest``
        does with :func:`~transforms.milvus.collection.finish_collection`.
      with_document_ids: Emit ``(document id, row id)`` on ``written``
        instead of the row id alone (what a sync groups by document).

    Returns:
      The outputs ``written`` (ids of the rows written, after the write) and
      ``dead_letters`` (a ``DoOutputsTuple``).

    Raises:
      ValueError: ``dim`` is not a positive integer.
    """

    def __init__(
        self,
        target: MilvusTarget,
        *,
        dim: int,
        fingerprint: Mapping[str, Any] | None,
        config: WriteConfig = WriteConfig(),
        flush: bool = True,
        with_document_ids: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
            raise ValueError(
                f"dim={dim!r}: must be a positive integer, the length of the vectors to write."
            )
        self._target: MilvusTarget = target
        self._dim: int = int(dim)
        self._fingerprint: dict[str, Any] | None = (
            None if fingerprint is None else dict(fingerprint)
        )
        self._config: WriteConfig = config
        self._flush: bool = flush
        self._with_document_ids: bool = with_document_ids

    def expand(self, chunks: beam.PCollection[Chunk | ChunkBatch]) -> pvalue.DoOutputsTuple:
        results = chunks | "Upsert" >> beam.ParDo(
            _WriteToMilvusFn(self._target, self._config, self._dim, self._with_document_ids)
        ).with_outputs(DEAD_LETTERS, main=WRITTEN)
        if self._flush:
            _ = (
                results[WRITTEN]
                | "CountWritten" >> beam.combiners.Count.Globally()
                | "Flush" >> beam.ParDo(_FlushCollectionFn(self._target, self._config))
            )
        return results

    def display_data(self) -> dict[str, Any]:
        fingerprint = "none"
        if self._fingerprint is not None:
            fingerprint = json.dumps(self._fingerprint, sort_keys=True, default=str)
        return {
            "uri": self._target.uri,
            "collection": self._target.collection,
            "dim": self._dim,
            "fingerprint": fingerprint,
            "flush": self._flush,
        }
