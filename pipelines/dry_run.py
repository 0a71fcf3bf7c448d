"""``python -m pipelines.ingest --dry_run``: what a run would do, writing nothing.

Prints, on stdout:

* the files the inputs match, with their sizes (the first
  :data:`LISTED_FILES`, then how many more);
* an estimate of the documents and chunks: a sample of the files is read and
  chunked as the run would (whole files, or the first
  :data:`SAMPLE_BYTES` of a large JSONL/CSV/TSV file), and the counts per
  byte of the sample are scaled to the bytes of every file. When the sample
  is every byte, the counts are exact and said so; records the sample would
  dead-letter are counted too;
* what would happen to the collection: ``create``, ``append``, ``overwrite``,
  ``sync`` or ``refused``, and why (see
  :func:`~transforms.milvus.collection.plan_collection`);
* for a sync (``write.mode: sync``), exactly what it would do: documents
  added, updated, unchanged and deleted, rows upserted and (about) deleted.
  That takes reading every document and the scope's manifest, so it runs as
  a pipeline on the run's runner (:func:`plan_sync`): the read and the
  comparison of a sync, and the chunking of what changed, without embedding
  or writing.

No collection, Lite store, dead-letter file or report is made; no worker
starts, but for a sync's plan. A plan whose collection is refused ends as the
run would: one line on stderr, status 1.

Cost: listing the inputs, reading and tokenizing up to
:data:`SAMPLE_BYTES` (a few seconds with the demo model), and a few calls to
Milvus.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import engines
from pipelines.options import IngestSettings
from transforms import metrics
from transforms.config import WriteMode
from transforms.io import ReadDocuments
from transforms.io.formats import ReadTask, format_of, is_splittable, read_task
from transforms.io.sources import match_files_with_sizes
from transforms.milvus.collection import (
    CollectionMismatchError,
    CollectionPlan,
    manifest_target,
    physical_target,
    plan_collection,
)
from transforms.milvus.sync import (
    PlanSync,
    count_scope,
    manifest_ranges,
    read_timestamp,
    sync_salt,
)
from transforms.text import ChunkDocuments
from transforms.text.chunking import chunk_document
from transforms.text.tokenizer import ChunkingTokenizer
from transforms.types import DeadLetter

__all__ = [
    "LISTED_FILES",
    "SAMPLE_BYTES",
    "IngestPlan",
    "format_plan",
    "plan_ingest",
    "plan_sync",
]

_LOGGER = logging.getLogger(__name__)

SAMPLE_BYTES = 4 * 1024 * 1024
"""Bytes of input read to estimate the documents and chunks."""
SAMPLE_FILES = 200
"""Files read at most for the estimate, spread over the list."""
LISTED_FILES = 20
"""Files listed by name; the rest are counted."""


@dataclasses.dataclass(frozen=True)
class IngestPlan:
    """What an ingestion run would do.

    Attributes:
      files: Every file matched, with its size in bytes (None if unknown).
      sampled_files: Files read for the estimate.
      sampled_bytes: Bytes read for the estimate.
      sample: Documents, chunks and dead letters in the sample.
      exact: The sample is every byte of every file: the counts are exact.
      collection: What would happen to the collection.
      sync: For a sync, its counts (:func:`plan_sync`); None otherwise.
    """

    files: tuple[tuple[str, int | None], ...]
    sampled_files: int
    sampled_bytes: int
    sample: dict[str, int]
    exact: bool
    collection: CollectionPlan
    sync: Mapping[str, int] | None = None

    @property
    def total_bytes(self) -> int:
        """Bytes of every file whose size is known."""
        return sum(size or 0 for _, size in self.files)

    def estimate(self, name: str) -> int:
        """``documents``, ``chunks`` or ``dead_letters`` in every file, scaled from the sample."""
        if self.exact or not self.sampled_bytes:
            return self.sample[name]
        return round(self.sample[name] * self.total_bytes / self.sampled_bytes)


def _matched(settings: IngestSettings) -> list[tuple[str, int | None]]:
    source = settings.source
    found: dict[str, int | None] = {}
    for pattern in source.patterns:
        for path, size in match_files_with_sizes(
            pattern,
            include=source.include,
            exclude=source.exclude,
            storage_options=dict(source.storage_options),
        ):
            found.setdefault(path, size)
    return sorted(found.items())


def _spread(files: Sequence[tuple[str, int | None]], n: int) -> list[tuple[str, int | None]]:
    """At most ``n`` files, evenly spread over the list (the first included)."""
    if len(files) <= n:
        return list(files)
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def plan_ingest(settings: IngestSettings, *, dim: int, fingerprint: dict | None) -> IngestPlan:
    """Lists, samples and plans; writes nothing.

    Raises:
      ModelLoadError: the model's tokenizer cannot be loaded.
      MilvusConnectionError, MilvusAuthError: Milvus cannot be used.
    """
    files = _matched(settings)
    tokenizer = ChunkingTokenizer.load(settings.model)
    sample = {"documents": 0, "chunks": 0, "dead_letters": 0}
    budget = SAMPLE_BYTES
    sampled_files = sampled_bytes = 0
    exact = True
    for path, size in _spread(files, SAMPLE_FILES):
        if budget <= 0:
            exact = False
            break
        fmt = format_of(path, settings.source.format)
        whole = size is None or size <= budget or not is_splittable(path, fmt)
        task = ReadTask(path, fmt, size=size) if whole else ReadTask(path, fmt, end=budget)
        read = size if whole else budget
        sampled_files += 1
        sampled_bytes += read or 0
        budget -= read or 0
        exact = exact and whole
        for item in read_task(task, settings.source):
            if isinstance(item, DeadLetter):
                sample["dead_letters"] += 1
                continue
            sample["documents"] += 1
            sample["chunks"] += len(chunk_document(item[1], tokenizer, settings.chunking))
    exact = exact and sampled_files == len(files)
    return IngestPlan(
        files=tuple(files),
        sampled_files=sampled_files,
        sampled_bytes=sampled_bytes,
        sample=sample,
        exact=exact,
        collection=plan_collection(
            settings.target, dim=dim, fingerprint=fingerprint, config=settings.write
        ),
    )


_SYNC_COUNTS = (
    metrics.DOCUMENTS_ADDED,
    metrics.DOCUMENTS_UPDATED,
    metrics.DOCUMENTS_UNCHANGED,
    metrics.DOCUMENTS_DELETED,
    "chunks_upserted",
    metrics.CHUNKS_DELETED,
)


class _CountDeletedFn(beam.DoFn):
    """Rows a sync would delete of one document: all it has if gone, else those past its new end."""

    def __init__(self) -> None:
        self._documents_deleted = metrics.counter(metrics.DOCUMENTS_DELETED)
        self._chunks_deleted = metrics.counter(metrics.CHUNKS_DELETED)

    def process(self, grouped: tuple[str, Mapping[str, Iterable[int]]]) -> None:
        _, sides = grouped
        gone = list(sides["gone"])
        if gone:
            self._documents_deleted.inc()
            self._chunks_deleted.inc(sum(gone))
        else:
            self._chunks_deleted.inc(max(0, sum(sides["stored"]) - sum(sides["new"])))


def plan_sync(
    settings: IngestSettings, options: PipelineOptions, fingerprint: Mapping[str, Any] | None
) -> dict[str, int]:
    """What a sync would do, counted by a pipeline that writes nothing.

    Reads every document and the scope's manifest entries as the sync would,
    compares them, and chunks the documents that changed to count their rows;
    the rows deleted are counted from the entries' row counts (an entry left
    pending by a crash counts none: the sync may delete more).

    Returns:
      ``documents_added``, ``documents_updated``, ``documents_unchanged``,
      ``documents_deleted``, ``chunks_upserted`` and ``chunks_deleted``.
    """
    store_exists = settings.target.is_remote or os.path.exists(settings.target.uri)
    # Through an alias, the sync would write the collection it names, and that one's manifest.
    target = physical_target(settings.target) if store_exists else settings.target
    manifest = manifest_target(target)
    read_at = read_timestamp(manifest) if store_exists else None
    entries = count_scope(manifest, settings.scope or "") if store_exists else 0
    pipeline = beam.Pipeline(runner=engines.make_runner(options), options=options)
    documents = pipeline | "ReadDocuments" >> ReadDocuments(settings.source)
    plan = documents.documents | "PlanSync" >> PlanSync(
        target,
        manifest,
        scope=settings.scope or "",
        salt=sync_salt(
            model_fingerprint=fingerprint, chunking=settings.chunking, write=settings.write
        ),
        ranges=manifest_ranges(entries) if entries else [],
        read_at=read_at,
        dry_run=True,
    )
    changed = plan["changed"]
    chunks = (
        changed
        | "Documents" >> beam.Map(lambda planned: planned[0])
        | "ChunkDocuments" >> ChunkDocuments(settings.model, settings.chunking)
    ).chunks
    _ = (
        {
            "new": chunks | "RowsPerDocument" >> beam.Map(lambda c: (c.document_id, 1)),
            "stored": changed | "RowsStored" >> beam.Map(lambda p: (p[0].id, p[2])),
            "gone": plan["gone"],
        }
        | "ByDocumentId" >> beam.CoGroupByKey()
        | "CountDeleted" >> beam.ParDo(_CountDeletedFn())
    )
    result = pipeline.run()
    result.wait_until_finish()
    found = {name: 0 for name in _SYNC_COUNTS}
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(metrics.NAMESPACE))
    for counter in query["counters"]:
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        if name == metrics.CHUNKS:
            name = "chunks_upserted"
        if name in found:
            found[name] += int(value or 0)
    return found


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def format_plan(plan: IngestPlan, settings: IngestSettings) -> str:
    """The plan, for people: files, estimate, collection."""
    count = len(plan.files)
    lines = [f"dry run: nothing is written ({settings.target.describe()}, write.mode "
             f"{settings.write.mode.value})"]  # fmt: skip
    lines.append(f"files: {count} matched, {_size(plan.total_bytes)}")
    lines += [f"  {_size(size):>12}  {path}" for path, size in plan.files[:LISTED_FILES]]
    if count > LISTED_FILES:
        lines.append(f"  ... and {count - LISTED_FILES} more")
    if plan.exact:
        how = "exact: every file was read and chunked"
    else:
        how = (
            f"estimated from {plan.sampled_files} of {count} files "
            f"({_size(plan.sampled_bytes)} of {_size(plan.total_bytes)} read and chunked, "
            "scaled by bytes)"
        )
    lines.append(
        f"documents: {'' if plan.exact else '~'}{plan.estimate('documents')}, "
        f"chunks: {'' if plan.exact else '~'}{plan.estimate('chunks')}, "
        f"dead letters: {'' if plan.exact else '~'}{plan.estimate('dead_letters')} ({how})"
    )
    lines.append(f"collection: {plan.collection.action}: {plan.collection.detail}")
    if plan.sync is not None:
        counts = plan.sync
        lines.append(
            f"sync of scope {settings.scope!r}: documents {counts['documents_added']} added, "
            f"{counts['documents_updated']} updated, {counts['documents_unchanged']} unchanged, "
            f"{counts['documents_deleted']} deleted; rows {counts['chunks_upserted']} upserted, "
            f"about {counts['chunks_deleted']} deleted"
        )
    run = plan.collection.last_run
    if run is not None:
        state = "completed" if run.completed else "INCOMPLETE (interrupted or failed)"
        lines.append(f"last run: {run.run_id}, started {run.started}, {state}")
    return "\n".join(lines)


def dry_run(
    settings: IngestSettings,
    *,
    dim: int,
    fingerprint: dict | None,
    options: PipelineOptions | None = None,
) -> IngestPlan:
    """Prints the plan on stdout; a sync's counts too, from a pipeline run with ``options``.

    Raises:
      CollectionMismatchError: the collection would be refused (after the
        plan is printed), as the run would be.
    """
    plan = plan_ingest(settings, dim=dim, fingerprint=fingerprint)
    if settings.write.mode is WriteMode.SYNC and plan.collection.action != "refused":
        counts = plan_sync(settings, options or PipelineOptions([]), fingerprint)
        plan = dataclasses.replace(plan, sync=counts)
    print(format_plan(plan, settings), flush=True)
    if plan.collection.action == "refused":
        raise CollectionMismatchError(
            f"--dry_run: the run would be refused: {plan.collection.detail}"
        )
    return plan
