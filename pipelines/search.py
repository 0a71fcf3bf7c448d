"""Search a collection: encode queries with the ingestion model, find the top hits.

Run it::

    python -m pipelines.search --config configs/local.yaml \\
        --query "how do I catch an exception" --top_k 3

Results are written as JSONL under ``--output``, in a folder of this search's
own (``<collection>/<run id>/results-*.jsonl``: no search overwrites another's,
and none reads back another's files), and, once the run is over, read back
and printed, one JSON line per query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipelines import engines
from pipelines.cli import Command, run_main
from pipelines.options import (
    MilvusOptions,
    SearchOptions,
    SearchSettings,
    beam_argv,
    search_settings,
)
from transforms import EncodeQueries, SearchMilvus
from transforms.milvus.collection import require_collection
from transforms.types import SearchResult

__all__ = ["answers", "build_pipeline", "read_results", "run"]

_LOGGER = logging.getLogger(__name__)


def build_pipeline(pipeline: beam.Pipeline, settings: SearchSettings) -> None:
    """Adds the search steps to ``pipeline``."""
    _ = (
        pipeline
        | "Queries" >> beam.Create(settings.queries)
        | "EncodeQueries" >> EncodeQueries(settings.model)
        | "SearchMilvus"
        >> SearchMilvus(
            settings.target, top_k=settings.top_k, filter_expression=settings.filter_expression
        )
        | "ResultsToJson" >> beam.Map(SearchResult.to_json)
        | "WriteResults" >> beam.io.WriteToText(settings.output, file_name_suffix=".jsonl")
    )


def read_results(output: str) -> list[dict]:
    """Reads back the results a run wrote under the ``output`` prefix."""
    results = []
    for opened in fsspec.open_files(f"{output}*.jsonl", "rt", encoding="utf-8"):
        with opened as f:
            results += [json.loads(line) for line in f if line.strip()]
    return results


def answers(
    argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None
) -> tuple[PipelineResult, list[dict]]:
    """Runs a search; returns the result and each query's hits, in query order.

    Args:
      argv: Command-line flags: this pipeline's (see ``SearchOptions``) and
        Beam's, which pass through untouched.
      test_pipeline: A pipeline to build on instead of a new one (tests).
    """
    options = PipelineOptions(beam_argv(argv))
    settings = search_settings(options)
    require_collection(settings.target)
    pipeline = (
        test_pipeline
        if test_pipeline is not None
        else beam.Pipeline(runner=engines.make_runner(options), options=options)
    )
    build_pipeline(pipeline, settings)
    result = pipeline.run()
    result.wait_until_finish()
    order = {query: i for i, query in enumerate(settings.queries)}
    found = sorted(read_results(settings.output), key=lambda r: order.get(r["query"], 0))
    return result, found


def run(
    argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None
) -> PipelineResult:
    """Runs a search and prints each query's hits as one JSON line."""
    result, found = answers(argv, test_pipeline)
    for hits in found:
        print(json.dumps(hits, ensure_ascii=False), flush=True)
    return result


def main() -> None:
    """``python -m pipelines.search`` and ``milvus-search``: flags checked, then :func:`run`."""
    run_main(run, Command("pipelines.search", __doc__, (MilvusOptions, SearchOptions)))


if __name__ == "__main__":
    main()
