"""One Beam metrics namespace for the whole framework, and its counter names.

Counters are what the ingest pipeline reports at the end of a run; every
runner aggregates them across workers, so the totals are exact on a laptop
and on a cluster alike. Those a run's progress shows
(:data:`PROGRESS_COUNTERS`) also add to this process's running totals, which
:mod:`transforms.progress` sends to the launcher while the run goes on.
"""

from __future__ import annotations

from apache_beam.metrics.metric import Metrics
from apache_beam.metrics.metricbase import MetricName

from transforms import progress

__all__ = [
    "BATCHES_WRITTEN",
    "BYTES_WRITTEN",
    "CHUNKS",
    "CHUNKS_DELETED",
    "DEAD_LETTERED",
    "DOCUMENTS_ADDED",
    "DOCUMENTS_DELETED",
    "DOCUMENTS_INCOMPLETE",
    "DOCUMENTS_READ",
    "DOCUMENTS_UNCHANGED",
    "DOCUMENTS_UPDATED",
    "DUPLICATE_IDS",
    "INPUT_BYTES",
    "INPUT_BYTES_READ",
    "INPUT_FILES_UNSIZED",
    "MANIFEST_ENTRIES_READ",
    "MODEL_LOADS",
    "NAMESPACE",
    "PROGRESS_COUNTERS",
    "ROWS_UPSERTED",
    "SPLIT_RANGES",
    "SYNC_DELETES_REFUSED",
    "WRITE_LATENCY_MS",
    "WRITE_RETRIES",
    "WRITTEN",
    "counter",
    "distribution",
]

NAMESPACE = "milvus_ingest"

DOCUMENTS_READ = "documents_read"
DUPLICATE_IDS = "duplicate_ids"
"""Records dropped or dead-lettered because another record of the run had their id."""
SPLIT_RANGES = "split_ranges"
"""Byte ranges of split files that were read."""
CHUNKS = "chunks"
WRITTEN = "written"
DEAD_LETTERED = "dead_lettered"
BATCHES_WRITTEN = "batches_written"
ROWS_UPSERTED = "rows_upserted"
BYTES_WRITTEN = "bytes_written"
WRITE_RETRIES = "write_retries"
WRITE_LATENCY_MS = "write_latency_ms"
MODEL_LOADS = "model_loads"
"""Model loads, summed over worker processes: one per process that embedded."""
INPUT_BYTES = "input_bytes"
"""Bytes of the files to read, as their listing gave them (compressed, for a compressed file)."""
INPUT_FILES_UNSIZED = "input_files_unsized"
"""Files to read whose listing gave no size: while there are any, the input's size is unknown."""
INPUT_BYTES_READ = "input_bytes_read"
"""Bytes of the files (or byte ranges) read to the end."""
# Sync runs (write.mode: sync, transforms.milvus.sync).
DOCUMENTS_ADDED = "documents_added"
"""Documents with no manifest entry in the scope: written."""
DOCUMENTS_UPDATED = "documents_updated"
"""Documents whose content hash differs from their entry's (or whose entry is pending): written."""
DOCUMENTS_UNCHANGED = "documents_unchanged"
"""Documents whose content hash equals their entry's: skipped before chunking."""
DOCUMENTS_DELETED = "documents_deleted"
"""Documents of the scope's manifest that the run did not read: their rows deleted."""
DOCUMENTS_INCOMPLETE = "documents_incomplete"
"""Written documents with a chunk not written (dead-lettered): left pending for the next sync."""
CHUNKS_DELETED = "chunks_deleted"
"""Rows deleted: of documents gone, and of written documents beyond what they have now."""
MANIFEST_ENTRIES_READ = "manifest_entries_read"
SYNC_DELETES_REFUSED = "sync_deletes_refused"
"""Deletions held back: the run read no document and the scope was not allowed to empty."""

PROGRESS_COUNTERS = frozenset(
    {
        DOCUMENTS_READ,
        CHUNKS,
        WRITTEN,
        DEAD_LETTERED,
        ROWS_UPSERTED,
        INPUT_BYTES,
        INPUT_FILES_UNSIZED,
        INPUT_BYTES_READ,
    }
)
"""The counters a run's live progress is made of."""


class _ProgressCounter(Metrics.DelegatingCounter):
    """A Beam counter that also adds to this process's running totals (see
    :func:`transforms.progress.count`): one lock and one dict update more per
    increment."""

    def __init__(self, metric_name: MetricName) -> None:
        super().__init__(metric_name)
        # Beam's counter is the instance attribute ``inc``; the method below wraps it.
        self._update = self.__dict__.pop("inc")

    def inc(self, n: int = 1) -> None:
        self._update(n)
        progress.count(str(self.metric_name.name), n)


def counter(name: str) -> Metrics.DelegatingCounter:
    """A counter in the framework's namespace."""
    if name in PROGRESS_COUNTERS:
        return _ProgressCounter(MetricName(NAMESPACE, name))
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str) -> Metrics.DelegatingDistribution:
    """A distribution in the framework's namespace."""
    return Metrics.distribution(NAMESPACE, name)
