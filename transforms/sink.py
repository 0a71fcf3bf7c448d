"""WriteToMilvus: upserts embedded chunks, and dead-letters what it cannot write.

Cost model: one client per worker (made in ``setup``), rows buffered per
bundle and sent as one upsert when the buffer reaches ``max_batch_rows`` rows
or ``max_batch_bytes`` estimated bytes, or the bundle ends. Upserts with
deterministic ids make bundle retries and re-runs idempotent. A chunk id is
emitted on the main output only after the batch that holds it was written.

Failures by class: a server that is unavailable, times out or limits the rate
is retried with exponential backoff and jitter, then the bundle fails (and the
runner retries it); a batch the server refuses for its data is split until the
bad rows are isolated, and those go to the dead-letter output with the
server's message; a missing collection or refused credentials stop the run.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.config import MilvusTarget, WriteConfig
from transforms.milvus import (
    DATA,
    TRANSIENT,
    Row,
    build_row,
    connect,
    ensure_collection,
    error_kind,
)
from transforms.model import acquire_embedder
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


class _WriteToMilvusFn(beam.DoFn):
    def __init__(self, target: MilvusTarget, config: WriteConfig, dim: int) -> None:
        self._target = target
        self._config = config
        self._dim = dim
        self._client: Any = None
        self._buffer: dict[str, _Pending] = {}
        self._buffer_bytes = 0
        self._written = metrics.counter(metrics.WRITTEN)
        self._batches = metrics.counter(metrics.BATCHES_WRITTEN)
        self._retries = metrics.counter(metrics.WRITE_RETRIES)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)
        self._latency_ms = metrics.distribution("write_latency_ms")

    def setup(self) -> None:
        self._client = connect(self._target)

    def start_bundle(self) -> None:
        self._buffer = {}
        self._buffer_bytes = 0

    def process(
        self,
        chunk: Chunk,
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue | pvalue.TaggedOutput]:
        built = build_row(chunk, self._dim, self._config)
        if isinstance(built, str):
            self._dead_lettered.inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTERS, DeadLetter.of("write", chunk.id, built, chunk.text)
            )
            return
        row, size = built
        elements = [(timestamp, (window,))]
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

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _flush(self) -> Iterator[Any]:
        pending = list(self._buffer.values())
        self._buffer = {}
        self._buffer_bytes = 0
        if not pending:
            return
        failed = dict(self._write_isolating([p.row for p in pending]))
        for p in pending:
            row_id = p.row["id"]
            reason = failed.get(row_id)
            if reason is None:
                self._written.inc(len(p.elements))
            else:
                self._dead_lettered.inc(len(p.elements))
            for timestamp, windows in p.elements:
                if reason is None:
                    yield WindowedValue(row_id, timestamp, windows)
                else:
                    letter = DeadLetter.of("write", row_id, reason, p.row["text"])
                    yield pvalue.TaggedOutput(
                        DEAD_LETTERS, WindowedValue(letter, timestamp, windows)
                    )

    def _write_isolating(self, rows: list[Row]) -> list[tuple[str, str]]:
        """Writes rows; returns ``(id, reason)`` of each row the server refused."""
        try:
            self._upsert_with_retries(rows)
            return []
        except Exception as e:
            if error_kind(e) != DATA:
                raise
            if len(rows) == 1:
                return [(rows[0]["id"], f"Milvus refused the row: {getattr(e, 'message', e)}")]
            middle = len(rows) // 2
            return self._write_isolating(rows[:middle]) + self._write_isolating(rows[middle:])

    def _upsert_with_retries(self, rows: list[Row]) -> None:
        backoff = self._config.initial_backoff_s
        for attempt in range(1, self._config.max_attempts + 1):
            started = time.monotonic()
            try:
                self._client.upsert(self._target.collection, rows, timeout=self._target.timeout_s)
            except Exception as e:
                if error_kind(e) != TRANSIENT or attempt == self._config.max_attempts:
                    raise
                self._retries.inc()
                delay = random.uniform(0, min(backoff, self._config.max_backoff_s))
                _LOGGER.warning(
                    "Upsert of %d rows to %s failed (attempt %d of %d), retrying in %.1fs: %s",
                    len(rows),
                    self._target.collection,
                    attempt,
                    self._config.max_attempts,
                    delay,
                    e,
                )
                time.sleep(delay)
                backoff *= 2
                continue
            self._latency_ms.update(int((time.monotonic() - started) * 1000))
            self._batches.inc()
            return

    def display_data(self) -> dict[str, Any]:
        return {
            "uri": self._target.uri,
            "collection": self._target.collection,
            "max_batch_rows": self._config.max_batch_rows,
            "max_batch_bytes": self._config.max_batch_bytes,
        }


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
        _LOGGER.info("Flushed %s after %d rows", self._target.collection, rows_written)
        yield rows_written


class WriteToMilvus(beam.PTransform):
    """Upserts embedded chunks into a Milvus collection.

    When the transform is applied (on the launcher, before the pipeline
    runs), the collection and its index are created if missing, or checked
    against the model if present: a collection of another dimension or model
    stops the run before it starts. When every write is done, the collection
    is flushed once.

    Args:
      target: The collection to write to.
      model: Source of the model that made the vectors; gives the dimension
        and the fingerprint stored on the collection.
      config: Batching, retries and field sizes.

    Returns:
      The outputs ``written`` (ids of the rows written, after the write) and
      ``dead_letters`` (a ``DoOutputsTuple``).
    """

    def __init__(
        self, target: MilvusTarget, *, model: str, config: WriteConfig = WriteConfig()
    ) -> None:
        super().__init__()
        self._target = target
        self._model = model
        self._config = config

    def expand(self, chunks: beam.PCollection[Chunk]) -> pvalue.DoOutputsTuple:
        embedder = acquire_embedder(self._model)
        ensure_collection(
            self._target, dim=embedder.dim, fingerprint=embedder.fingerprint(), config=self._config
        )
        results = chunks | "Upsert" >> beam.ParDo(
            _WriteToMilvusFn(self._target, self._config, embedder.dim)
        ).with_outputs(DEAD_LETTERS, main=WRITTEN)
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
