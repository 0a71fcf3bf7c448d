"""One Beam metrics namespace for the whole framework, and its counter names.

Counters are what the ingest pipeline reports at the end of a run; every
runner aggregates them across workers, so the totals are exact on a laptop
and on a cluster alike.
"""

from __future__ import annotations

from apache_beam.metrics.metric import Metrics

__all__ = [
    "BATCHES_WRITTEN",
    "BYTES_WRITTEN",
    "CHUNKS",
    "DEAD_LETTERED",
    "DOCUMENTS_READ",
    "DUPLICATE_IDS",
    "MODEL_LOADS",
    "NAMESPACE",
    "ROWS_UPSERTED",
    "SPLIT_RANGES",
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


def counter(name: str) -> Metrics.DelegatingCounter:
    """A counter in the framework's namespace."""
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str) -> Metrics.DelegatingDistribution:
    """A distribution in the framework's namespace."""
    return Metrics.distribution(NAMESPACE, name)
