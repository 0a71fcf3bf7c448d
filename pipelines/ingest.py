"""Ingest documents into Milvus: read, chunk, embed, upsert.

Run it::

    python -m pipelines.ingest --config configs/local.yaml
    python -m pipelines.ingest --config configs/local.yaml --input 'docs/**/*.md' \\
        --runner DirectRunner --direct_num_workers 2

At the end it prints one JSON line with the run's counts: ``documents_read``,
``chunks``, ``written``, ``dead_lettered`` and ``seconds``. Every record read
is either written or dead-lettered; dead letters are written as JSONL to
``--dead_letter_path``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipelines.cli import run_main
from pipelines.options import IngestSettings, beam_argv, ingest_settings
from transforms import (
    ChunkDocuments,
    EmbedChunks,
    ReadDocuments,
    WriteToMilvus,
    match_files,
    metrics,
)
from transforms.config import ConfigError, EmptyMatchTreatment
from transforms.types import DeadLetter

__all__ = ["build_pipeline", "run"]

_LOGGER = logging.getLogger(__name__)

_REPORTED = (metrics.DOCUMENTS_READ, metrics.CHUNKS, metrics.WRITTEN, metrics.DEAD_LETTERED)


def build_pipeline(pipeline: beam.Pipeline, settings: IngestSettings) -> None:
    """Adds the ingestion steps to ``pipeline``."""
    read = pipeline | "ReadDocuments" >> ReadDocuments(settings.source)
    chunked = read.documents | "ChunkDocuments" >> ChunkDocuments(settings.model, settings.chunking)
    written = (
        chunked.chunks
        | "EmbedChunks" >> EmbedChunks(settings.model)
        | "WriteToMilvus"
        >> WriteToMilvus(settings.target, model=settings.model, config=settings.write)
    )
    _ = (
        (read.dead_letters, chunked.dead_letters, written.dead_letters)
        | "CollectDeadLetters" >> beam.Flatten()
        | "DeadLettersToJson" >> beam.Map(DeadLetter.to_json)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(settings.dead_letter_path, file_name_suffix=".jsonl")
    )


def _check_inputs(settings: IngestSettings) -> None:
    """Fails on the launcher, before any worker starts, if an input matches nothing."""
    if settings.source.empty_match is EmptyMatchTreatment.ALLOW:
        return
    for pattern in settings.source.patterns:
        if not match_files(pattern):
            raise ConfigError(
                f"input {pattern!r} matches no file: fix the path or glob (--input), or set "
                "source.empty_match: allow."
            )


def counts(result: PipelineResult) -> dict[str, int]:
    """The run's counters, summed over workers."""
    found = {name: 0 for name in _REPORTED}
    query = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    for counter in query["counters"]:
        name = counter.key.metric.name
        if name in found:
            value = counter.committed if counter.committed is not None else counter.attempted
            found[name] += int(value or 0)
    return found


def run(
    argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None
) -> PipelineResult:
    """Runs an ingestion and prints its counts as one JSON line.

    Args:
      argv: Command-line flags: this pipeline's (see ``IngestOptions``) and
        Beam's, which pass through untouched.
      test_pipeline: A pipeline to build on instead of a new one (tests).

    Returns:
      The finished pipeline's result.
    """
    options = PipelineOptions(beam_argv(argv))
    settings = ingest_settings(options)
    _check_inputs(settings)
    started = time.monotonic()
    pipeline = test_pipeline if test_pipeline is not None else beam.Pipeline(options=options)
    build_pipeline(pipeline, settings)
    result = pipeline.run()
    result.wait_until_finish()
    report: dict[str, Any] = dict(counts(result))
    report["seconds"] = round(time.monotonic() - started, 3)
    report["collection"] = settings.target.collection
    report["dead_letter_path"] = settings.dead_letter_path
    print(json.dumps(report), flush=True)
    return result


def main() -> None:
    run_main(run)


if __name__ == "__main__":
    main()
