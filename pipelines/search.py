"""Search a collection: encode queries with the ingestion model, find the top hits.

Run it::

    python -m pipelines.search --config configs/local.yaml \\
        --query "how do I catch an exception" --top_k 3

Queries given as flags (or the config's) are answered at once, without Beam
(:mod:`pipelines.instant`): the model and one Milvus client. A query file
(``--queries_file``), a runner (``--runner``) or any other Beam flag runs a
Beam pipeline instead, which writes its results as JSONL under ``--output``
(``<collection>/<run id>/results-*.jsonl``: no search overwrites another's)
and prints them once the run is over. Either way the collection must have
been filled by the same model (its fingerprint), and each hit is printed with
its score named for the collection's metric (see :mod:`pipelines.hits`): a
table on a terminal, JSON lines otherwise or with ``--output_format jsonl``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipelines import hits, instant
from pipelines.settings import SearchSettings

if TYPE_CHECKING:
    import apache_beam as beam
    from apache_beam.runners.runner import PipelineResult

    from transforms.milvus.searcher import CollectionInfo

# Beam is imported where a pipeline is built, not with this module: instant
# search (pipelines.instant) never needs it, and importing it takes 2 s.

__all__ = ["answers", "build_pipeline", "read_results", "run"]

_LOGGER = logging.getLogger(__name__)


def build_pipeline(
    pipeline: beam.Pipeline, settings: SearchSettings, output_fields: Sequence[str] | None = None
) -> None:
    """Adds the search steps to ``pipeline``.

    Args:
      pipeline: The pipeline.
      settings: The search.
      output_fields: Fields each hit carries (default: ``HIT_FIELDS``).
    """
    import apache_beam as beam

    from transforms import EncodeQueries, SearchMilvus
    from transforms.milvus.searcher import HIT_FIELDS
    from transforms.types import SearchResult

    fields = HIT_FIELDS if output_fields is None else tuple(output_fields)
    _ = (
        pipeline
        | "Queries" >> beam.Create(settings.queries)
        | "EncodeQueries" >> EncodeQueries(settings.model)
        | "SearchMilvus"
        >> SearchMilvus(
            settings.target,
            top_k=settings.top_k,
            filter_expression=settings.filter_expression,
            search_params=settings.search_params,
            output_fields=fields,
        )
        | "ResultsToJson" >> beam.Map(SearchResult.to_json)
        | "WriteResults" >> beam.io.WriteToText(settings.output, file_name_suffix=".jsonl")
    )


def read_results(output: str) -> list[dict]:
    """Reads back the results a run wrote under the ``output`` prefix."""
    import fsspec

    results = []
    for opened in fsspec.open_files(f"{output}*.jsonl", "rt", encoding="utf-8"):
        with opened as f:
            results += [json.loads(line) for line in f if line.strip()]
    return results


def _check_collection(settings: SearchSettings) -> CollectionInfo:
    """On the launcher, before the pipeline: the collection exists, was filled by
    this model, accepts the filter; how to search it. Loads it for the workers."""
    from transforms.embedding.model import describe_model
    from transforms.milvus.client import connect
    from transforms.milvus.searcher import open_for_search

    fingerprint = describe_model(settings.model).fingerprint
    client = connect(settings.target)
    try:
        info = open_for_search(client, settings.target, fingerprint)
        instant.searcher_for(client, settings, info).check_filter()
    finally:
        client.close()
    return info


def _beam_answers(
    argv: Sequence[str] | None, test_pipeline: beam.Pipeline | None
) -> tuple[PipelineResult, CollectionInfo, list[dict]]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines import engines
    from pipelines.options import beam_argv, search_settings

    options = PipelineOptions(beam_argv(argv))
    settings = search_settings(options)
    info = _check_collection(settings)
    pipeline = (
        test_pipeline
        if test_pipeline is not None
        else beam.Pipeline(runner=engines.make_runner(options), options=options)
    )
    build_pipeline(pipeline, settings, info.hit_fields)
    result = pipeline.run()
    result.wait_until_finish()
    order = {query: i for i, query in enumerate(settings.queries)}
    found = sorted(read_results(settings.output), key=lambda r: order.get(r["query"], 0))
    return result, info, found


def _answers(
    argv: Sequence[str] | None, test_pipeline: beam.Pipeline | None
) -> tuple[PipelineResult | None, CollectionInfo, list[dict], str]:
    """The run's result (``None`` for an instant search), the collection, the
    hits of each query, and how to print them."""
    argv = list(argv or [])
    flags = instant.parse(argv) if test_pipeline is None else None
    if flags is not None:
        from pipelines.settings import read_search_settings

        settings = read_search_settings(flags, flags)
        info, found = instant.search(settings)
        if flags.output:
            instant.write_results(settings.output, found)
        return None, info, found, flags.output_format
    result, info, found = _beam_answers(argv, test_pipeline)
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import SearchOptions

    output_format = PipelineOptions(argv).view_as(SearchOptions).output_format or "auto"
    return result, info, found, output_format


def answers(
    argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None
) -> tuple[PipelineResult | None, list[dict]]:
    """Runs a search; returns the pipeline's result and each query's hits, in query order.

    Each query's hits are ``SearchResult`` as JSON: ``query``, and ``hits``
    with ``id``, ``distance`` (Milvus's score: a similarity for COSINE and IP)
    and ``fields`` (``document_id``, ``chunk_index``, ``text``, ``metadata``).

    Args:
      argv: Command-line flags: this pipeline's (see ``SearchOptions``) and
        Beam's, which pass through untouched. Without a query file or any of
        Beam's flags, the search is instant (no pipeline: the result is
        ``None``).
      test_pipeline: A pipeline to build on instead of a new one (tests).
    """
    result, _, found, _ = _answers(argv, test_pipeline)
    return result, found


def run(
    argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None
) -> PipelineResult | None:
    """Runs a search and prints each query's hits (``--output_format``)."""
    result, info, found, output_format = _answers(argv, test_pipeline)
    hits.write_hits(found, info.metric, output_format, sys.stdout)
    return result


def main() -> None:
    """``python -m pipelines.search`` and ``milvus-search``: instant when it can be
    (:func:`pipelines.instant.parse`), else flags checked and :func:`run` on Beam."""
    flags = instant.parse(sys.argv[1:])
    if flags is not None:
        instant.main(flags)
        return
    from pipelines.cli import Command, run_main
    from pipelines.options import MilvusOptions, SearchOptions

    run_main(run, Command("pipelines.search", __doc__, (MilvusOptions, SearchOptions)))


if __name__ == "__main__":
    main()
