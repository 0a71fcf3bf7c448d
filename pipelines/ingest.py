"""Ingest documents into Milvus: read, chunk, embed, upsert.

Run it::

    python -m pipelines.ingest --config configs/local.yaml
    python -m pipelines.ingest --config configs/local.yaml --input 'docs/**/*.md' \\
        --direct_num_workers 2 --direct_running_mode multi_processing

Before the pipeline starts, the launcher checks the inputs, the model and
the collection (created, dropped or checked as ``write.mode`` says). While it
runs, where the runner reports metrics while running, it prints a progress
line every few seconds. At the end it flushes the collection once, checks the
row count against what was written, and prints one JSON line (also written to
``--report_path``): ``documents_read``, ``chunks``, ``written``,
``dead_lettered``, ``seconds`` and more. Every record read is either written or
dead-lettered; dead letters are written as JSONL to ``--dead_letter_path``.

The collection records the run (:func:`~transforms.milvus.collection.mark_run`):
incomplete from before the first row is written, complete once the run ended.
A collection the run made and left empty is dropped; an embedded Lite store
is closed before the report, which counts the time. A run that read records
and wrote none, or dead-lettered more than ``--max_dead_letters``, fails with
status 3 after its report (:mod:`pipelines.outcome`); Ctrl-C stops it with one
line and status 130 (:mod:`pipelines.interrupt`). ``--dry_run`` prints what a
run would do and writes nothing (:mod:`pipelines.dry_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipelines import engines
from pipelines.cli import Command, run_main
from pipelines.interrupt import keyboard_interrupt_reaches_caller, stop_on_interrupt
from pipelines.lite_server import needs_server, serve_lite
from pipelines.options import (
    IngestOptions,
    IngestSettings,
    MilvusOptions,
    beam_argv,
    ingest_settings,
)
from pipelines.outcome import OK, check_outcome
from pipelines.progress import Progress
from transforms import metrics
from transforms.config import ConfigError, EmptyMatchTreatment, MilvusTarget, WriteMode
from transforms.embedding import EmbedChunks, EmbedOutput, ModelDescription, describe_model
from transforms.io import ReadDocuments, match_files
from transforms.milvus import WriteToMilvus, finish_collection, prepare_collection
from transforms.milvus.client import close_embedded, connect
from transforms.milvus.collection import (
    CollectionState,
    RunRecord,
    drop_if_empty,
    drop_manifest,
    manifest_target,
    mark_run,
)
from transforms.milvus.sync import (
    BUCKETS,
    CompleteSync,
    PlanSync,
    count_scope,
    ensure_manifest,
    manifest_ranges,
    read_timestamp,
    sync_salt,
)
from transforms.progress import ReportProgress
from transforms.text import ChunkDocuments
from transforms.types import DeadLetter

__all__ = ["build_pipeline", "counts", "run"]

_LOGGER = logging.getLogger(__name__)

_REPORTED = (metrics.DOCUMENTS_READ, metrics.CHUNKS, metrics.WRITTEN, metrics.DEAD_LETTERED)


def _count_by_stage(letter: DeadLetter) -> DeadLetter:
    metrics.counter(f"dead_letters_{letter.stage}").inc()
    return letter


def _syncing(settings: IngestSettings) -> bool:
    return settings.write.mode is WriteMode.SYNC


def build_pipeline(
    pipeline: beam.Pipeline,
    settings: IngestSettings,
    model: ModelDescription,
    target: MilvusTarget | None = None,
    progress_address: str | None = None,
    manifest_ranges: Sequence[tuple[int, int]] | None = None,
    manifest_read_at: int | None = None,
    new_collection: bool = False,
) -> None:
    """Adds the ingestion steps to ``pipeline``.

    The collection must be ready (see ``prepare_collection``); ``model`` is
    what :func:`~transforms.embedding.describe_model` read of
    ``settings.model``; ``target`` overrides ``settings.target``, e.g. with a
    served local store; ``progress_address`` is where workers send their
    counts while the run goes on (see :mod:`pipelines.progress`).

    In ``sync`` mode (:mod:`transforms.milvus.sync`) the manifest must be
    ready too (``ensure_manifest``), and ``manifest_ranges`` are the bucket
    ranges its entries are read by (one range that splits itself if None;
    none for a scope with no entry, whose documents are all added),
    ``manifest_read_at`` the server timestamp its reads wait for
    (``read_timestamp``; None: ``Strong`` reads);
    ``new_collection`` says the run made the collection, which then holds no
    row to delete.
    """
    target = target or settings.target
    read = pipeline | "ReadDocuments" >> ReadDocuments(settings.source)
    documents = read.documents
    scope = settings.scope or ""  # ingest_settings names it in sync mode
    if _syncing(settings):
        plan = documents | "PlanSync" >> PlanSync(
            target,
            manifest_target(target),
            scope=scope,
            salt=sync_salt(
                model_fingerprint=model.fingerprint,
                chunking=settings.chunking,
                write=settings.write,
            ),
            ranges=[(0, BUCKETS)] if manifest_ranges is None else manifest_ranges,
            read_at=manifest_read_at,
            config=settings.write,
            allow_empty_scope=settings.allow_empty_scope,
        )
        documents = plan.documents
    chunked = documents | "ChunkDocuments" >> ChunkDocuments(settings.model, settings.chunking)
    written = (
        chunked.chunks
        # Batches stay batches from the model to the sink: one element per
        # inference batch, the vectors as one array (see transforms.batch).
        | "EmbedChunks" >> EmbedChunks(settings.model, output=EmbedOutput.BATCHES)
        | "WriteToMilvus"
        >> WriteToMilvus(
            target,
            dim=model.dim,
            fingerprint=model.fingerprint,
            config=settings.write,
            flush=False,  # finish_collection flushes once, then checks the count
            with_document_ids=_syncing(settings),
        )
    )
    if _syncing(settings):
        expected = chunked.chunks | "ExpectedIds" >> beam.Map(lambda c: (c.document_id, c.id))
        _ = {
            "hashes": plan.hashes,
            "expected": expected,
            "written": written[metrics.WRITTEN],
        } | "CompleteSync" >> CompleteSync(
            target,
            manifest_target(target),
            scope=scope,
            config=settings.write,
            new_collection=new_collection,
        )
    dead_letters = [read.dead_letters, chunked.dead_letters, written.dead_letters]
    if _syncing(settings):
        dead_letters.append(plan.dead_letters)
    _ = (
        tuple(dead_letters)
        | "CollectDeadLetters" >> beam.Flatten()
        | "CountDeadLetters" >> beam.Map(_count_by_stage)
        | "DeadLettersToJson" >> beam.Map(DeadLetter.to_json)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(settings.dead_letter_path, file_name_suffix=".jsonl")
    )
    if progress_address:
        # Set up where documents are chunked, embedded and written: one call per document.
        _ = read.documents | "ReportProgress" >> ReportProgress(progress_address, settings.run_id)


def _check_inputs(settings: IngestSettings) -> None:
    """Fails on the launcher, before any worker starts, if an input matches nothing."""
    if settings.source.empty_match is EmptyMatchTreatment.ALLOW:
        return
    source = settings.source
    for pattern in source.patterns:
        if not match_files(
            pattern,
            include=source.include,
            exclude=source.exclude,
            storage_options=dict(source.storage_options),
        ):
            raise ConfigError(
                f"input {pattern!r} matches no file: fix the path or glob (--input), or set "
                "source.empty_match: allow."
            )


def counters(result: PipelineResult) -> dict[str, int]:
    """Every counter of the framework's namespace, summed over workers."""
    found: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        found[name] = found.get(name, 0) + int(value or 0)
    return found


def counts(result: PipelineResult) -> dict[str, int]:
    """The run's main counts, summed over workers."""
    found = counters(result)
    return {name: found.get(name, 0) for name in _REPORTED}


@contextlib.contextmanager
def _run_target(settings: IngestSettings, options: PipelineOptions) -> Iterator[MilvusTarget]:
    """The target workers write to: a served local store when they need one."""
    if needs_server(settings.target, options):
        with serve_lite(settings.target) as served:
            yield served
    else:
        yield settings.target


def _write_report(report: dict[str, Any], path: str | None) -> None:
    line = json.dumps(report, sort_keys=False)
    if path:
        with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as f:
            f.write(line + "\n")
    print(line, flush=True)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class _RunState:
    """Where a run is, for the line Ctrl-C prints (see :func:`_interrupted_line`)."""

    settings: IngestSettings
    target: MilvusTarget | None = None
    state: CollectionState | None = None
    ended: bool = False


def _interrupted_line(run_state: _RunState) -> str:
    """The one line a run stopped by Ctrl-C ends with: what was written, how to finish.

    Asks Milvus for the collection's row count (its statistics: one call); a
    store that does not answer within the interrupt's wait leaves the count out.
    Asked once the run's processes ended: a local store that was served to
    workers is opened here.
    """
    settings = run_state.settings
    rerun = "run the same command again to finish: rows are upserted by their ids, so "
    rerun += "nothing is written twice"
    if run_state.ended:
        return "interrupted (Ctrl-C) while closing the store: the run had completed"
    if run_state.target is None or run_state.state is None:
        return "interrupted (Ctrl-C) before anything was written: nothing to finish"
    target = settings.target
    client = connect(target)
    try:
        rows = int(client.get_collection_stats(target.collection).get("row_count", 0))
    finally:
        client.close()
    return (
        f"interrupted (Ctrl-C): {settings.target.describe()} holds about {rows} rows "
        f"({run_state.state.rows_before} before this run {settings.run_id}) and is marked "
        f"incomplete; {rerun}"
    )


def _finish(
    report: dict[str, Any],
    settings: IngestSettings,
    target: MilvusTarget,
    state: CollectionState,
    record: RunRecord,
) -> tuple[Exception | None, bool]:
    """Ends the run on the collection: dropped if new and empty, else marked completed.

    Returns:
      The run's failure (it wrote nothing, or dead-lettered too much), raised
      by the caller once the report is written, or None if it succeeded; and
      whether the collection was dropped.
    """
    failure = check_outcome(report, settings.max_dead_letters, settings.dead_letter_path)
    dropped = report.get("rows_after", 0) == 0 and drop_if_empty(target, state)
    if not dropped:
        counts = {name: int(report.get(name, 0)) for name in _REPORTED}
        mark_run(
            target,
            dataclasses.replace(
                record,
                completed=True,
                finished=_now(),
                counts=counts,
                outcome=failure.outcome if failure is not None else OK,
            ),
            settings.write,
        )
    return failure, dropped


def run(
    argv: Sequence[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
    *,
    exit_on_interrupt: bool = False,
) -> PipelineResult | None:
    """Runs an ingestion and prints its report as one JSON line.

    A run stopped before it completes (Ctrl-C, a crash) leaves the collection
    marked incomplete until a run completes.

    Args:
      argv: Command-line flags: this pipeline's (see ``IngestOptions``) and
        Beam's, which pass through untouched.
      test_pipeline: A pipeline to build on instead of a new one (tests).
      exit_on_interrupt: Ctrl-C ends the process within seconds, with one
        line and status 130, worker processes included (see
        :mod:`pipelines.interrupt`): what the command line wants, not a
        program or notebook that calls this function, so off by default
        (Ctrl-C then raises ``KeyboardInterrupt`` as usual).

    Returns:
      The finished pipeline's result; None for ``--dry_run``.

    Raises:
      ConfigError, CollectionMismatchError, MilvusConnectionError,
      MilvusAuthError, ModelLoadError: before the pipeline starts.
      RowCountMismatchError: after the run, if rows went missing.
      RunFailedError: after the run and its report, if it read records and
        wrote none, or dead-lettered more than ``--max_dead_letters``.
    """
    options = PipelineOptions(beam_argv(argv))
    settings = ingest_settings(options)
    flags = options.view_as(IngestOptions)
    run_state = _RunState(settings)
    interrupts = (
        stop_on_interrupt(lambda: _interrupted_line(run_state))
        if exit_on_interrupt
        else keyboard_interrupt_reaches_caller()
    )
    with interrupts:
        _check_inputs(settings)
        started = time.monotonic()
        # Read from the model's files once; fails here, not on workers, if they are missing.
        model = describe_model(settings.model)
        if flags.dry_run:
            from pipelines.dry_run import dry_run  # reads and tokenizes: only when asked

            # A sync's plan runs a pipeline: with Beam's options, without the flag
            # that Beam's TestOptions reads as its own --dry_run (which takes a value).
            planning = PipelineOptions([f for f in beam_argv(argv) if f != "--dry_run"])
            dry_run(settings, dim=model.dim, fingerprint=dict(model.fingerprint), options=planning)
            return None
        result, report, failure = _run(settings, options, model, run_state, started, test_pipeline)
    if report is not None:
        _write_report(report, flags.report_path)
    if failure is not None:
        raise failure
    return result


def _run(
    settings: IngestSettings,
    options: PipelineOptions,
    model: ModelDescription,
    run_state: _RunState,
    started: float,
    test_pipeline: beam.Pipeline | None,
) -> tuple[PipelineResult, dict[str, Any] | None, Exception | None]:
    """The run proper: the pipeline, then the collection's end; the report and any failure."""
    flags = options.view_as(IngestOptions)
    with (
        _run_target(settings, options) as target,
        Progress(flags.progress_interval_s, settings.run_id, host=flags.progress_host) as live,
    ):
        # The runner is made first: one that refuses to run (a Beam version it
        # does not support) must do so before any collection is made or dropped.
        pipeline = (
            test_pipeline
            if test_pipeline is not None
            else beam.Pipeline(runner=engines.make_runner(options), options=options)
        )
        state = prepare_collection(
            target, dim=model.dim, fingerprint=model.fingerprint, config=settings.write
        )
        if state.alias_of is not None:
            # The run writes the collection the alias names now, even if the alias
            # moves meanwhile; a sync's manifest is that collection's.
            target = dataclasses.replace(target, collection=state.alias_of)
        record = RunRecord(run_id=settings.run_id, started=_now())
        template = options.view_as(GoogleCloudOptions).template_location
        if not template:  # a job template runs later, elsewhere: it writes nothing now
            # Incomplete from before the first row is written until the run completes.
            mark_run(target, record, settings.write)
            run_state.target, run_state.state = target, state
        ranges, read_at = None, None
        if _syncing(settings) and not template:
            assert settings.scope is not None
            manifest = manifest_target(target)
            if state.created:
                # A manifest left by a collection dropped by hand describes rows gone with it.
                drop_manifest(target)
            ensure_manifest(manifest)
            read_at = read_timestamp(manifest)  # before counting: the reads see what it counts
            entries = count_scope(manifest, settings.scope)
            ranges = manifest_ranges(entries) if entries else []
        build_pipeline(
            pipeline,
            settings,
            model,
            target,
            progress_address=live.address,
            manifest_ranges=ranges,
            manifest_read_at=read_at,
            new_collection=state.created,
        )
        result = pipeline.run()
        if template:
            # The runner wrote a job template (Dataflow's --template_location):
            # nothing ran, so there is nothing to wait for, count or flush.
            _write_report(
                {
                    "template_location": template,
                    "collection": target.collection,
                    "uri": settings.target.uri,
                    "created": state.created,
                    "runner": engines.runner_name(options, pipeline.runner),
                    "engine": engines.engine_of(pipeline.runner, result),
                    "model": dict(model.fingerprint),
                },
                flags.report_path,
            )
            return result, None, None
        live.wait(result, poll=lambda: counters(result))
        found = counters(result)
        live.finish(found)
        report: dict[str, Any] = {name: found.get(name, 0) for name in _REPORTED}
        report["collection"] = settings.target.collection
        report["uri"] = settings.target.uri
        if state.alias_of is not None:
            report["alias_of"] = state.alias_of
        report["created"] = state.created
        report.update(
            finish_collection(
                target,
                state,
                rows_upserted=found.get(metrics.ROWS_UPSERTED, 0),
                rows_deleted=found.get(metrics.CHUNKS_DELETED, 0),
                config=settings.write,
            )
        )
        if _syncing(settings):
            report["sync"] = _sync_report(settings, found)
        report["dead_letters_by_stage"] = {
            name.removeprefix("dead_letters_"): n
            for name, n in sorted(found.items())
            if name.startswith("dead_letters_") and not name.startswith("dead_letters_write_")
        }
        failure, dropped = _finish(report, settings, target, state, record)
        run_state.ended = True
        closing = time.monotonic()
    # The store is closed before the report, which counts the time: a served
    # store's server stopped as the block above ended, an embedded one is
    # closed here (Milvus Lite builds its indexes on close).
    close_embedded(settings.target)
    closed = time.monotonic()
    report["seconds"] = round(closed - started, 3)  # flush and close included
    report["close_seconds"] = round(closed - closing, 3)
    report["dropped"] = dropped  # a collection this run made and left empty
    report["documents_per_s"] = round(report[metrics.DOCUMENTS_READ] / report["seconds"], 1)
    report["runner"] = engines.runner_name(options, pipeline.runner)  # as named, or chosen
    report["engine"] = engines.engine_of(pipeline.runner, result)  # what ran the steps
    report["model"] = dict(model.fingerprint)
    report["model_loads"] = found.get(metrics.MODEL_LOADS, 0)  # worker processes that loaded it
    report["dead_letters_by_stage"] = report.pop("dead_letters_by_stage")  # in its old place
    report["dead_letters_by_reason"] = {
        name.removeprefix("dead_letters_write_"): n
        for name, n in sorted(found.items())
        if name.startswith("dead_letters_write_")
    }
    report["write"] = {
        name: found.get(name, 0)
        for name in (metrics.ROWS_UPSERTED, metrics.BATCHES_WRITTEN, metrics.BYTES_WRITTEN)
    } | {name: n for name, n in sorted(found.items()) if name.startswith(metrics.WRITE_RETRIES)}
    report["run_id"] = settings.run_id  # <dead_letter_path>/<collection>/<run id>/
    report["dead_letter_path"] = settings.dead_letter_path
    return result, report, failure


def _sync_report(settings: IngestSettings, found: dict[str, int]) -> dict[str, Any]:
    """What a sync did: documents by fate, rows upserted and deleted."""
    return {
        "scope": settings.scope,
        "documents_added": found.get(metrics.DOCUMENTS_ADDED, 0),
        "documents_updated": found.get(metrics.DOCUMENTS_UPDATED, 0),
        "documents_unchanged": found.get(metrics.DOCUMENTS_UNCHANGED, 0),
        "documents_deleted": found.get(metrics.DOCUMENTS_DELETED, 0),
        "documents_incomplete": found.get(metrics.DOCUMENTS_INCOMPLETE, 0),
        "chunks_upserted": found.get(metrics.ROWS_UPSERTED, 0),
        "chunks_deleted": found.get(metrics.CHUNKS_DELETED, 0),
        "deletes_refused": found.get(metrics.SYNC_DELETES_REFUSED, 0),
        "manifest_entries_read": found.get(metrics.MANIFEST_ENTRIES_READ, 0),
    }


def main() -> None:
    """``python -m pipelines.ingest`` and ``milvus-ingest``: flags checked, then :func:`run`."""
    run_main(
        functools.partial(run, exit_on_interrupt=True),
        Command("pipelines.ingest", __doc__, (MilvusOptions, IngestOptions)),
    )


if __name__ == "__main__":
    main()
