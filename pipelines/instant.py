"""Instant search: queries answered by the encoder and one Milvus client, without Beam.

``milvus-search --query ...`` (and ``python -m pipelines.search``) comes here
when the command line names no query file, no runner and no other Beam flag:
a pipeline for a handful of queries would cost seconds of Beam (2 s only to
import it) for milliseconds of work. It loads the model once
(:class:`~transforms.embedding.model.QueryEncoder`, the vectors ingestion
wrote), checks that the collection was filled by that model, sends one search
for all the queries and prints the hits (:mod:`pipelines.hits`). It writes no
file unless ``--output`` is given. Nothing on this path imports Beam.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pipelines import hits
from pipelines.console import USER_ERRORS, configure_logging
from pipelines.settings import (
    SearchSettings,
    add_log_level_flag,
    add_milvus_flags,
    add_search_flags,
    read_search_settings,
)
from transforms.embedding.model import QueryEncoder
from transforms.milvus.client import connect
from transforms.milvus.searcher import (
    CollectionInfo,
    Searcher,
    open_for_search,
    require_exists,
)

__all__ = ["main", "parse", "search", "searcher_for", "write_results"]

_LOGGER = logging.getLogger(__name__)


class _NotInstant(Exception):
    """The command line is not one this path answers: Beam's path takes it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotInstant(message)


def parse(argv: Sequence[str]) -> argparse.Namespace | None:
    """The flags, if the instant path answers this command line; else ``None``.

    ``None`` when it names a query file (``--queries_file``), a runner or any
    other flag that is not the search's own (Beam's flags, ``--help``), or a
    value the flags refuse: the Beam path runs it, or reports the mistake as
    every command does. The config's ``pipeline:`` section (Beam's flags) is
    not read here.
    """
    parser = _Parser(add_help=False, allow_abbrev=False)
    add_milvus_flags(parser)
    add_search_flags(parser)
    add_log_level_flag(parser)
    try:
        flags, unknown = parser.parse_known_args(list(argv))
    except _NotInstant:
        return None
    if unknown or flags.queries_file:
        return None
    return flags


def searcher_for(client: Any, settings: SearchSettings, info: CollectionInfo) -> Searcher:
    """The :class:`Searcher` a search's settings ask for (top k, filter, search params)."""
    return Searcher(
        client,
        settings.target,
        info,
        top_k=settings.top_k,
        filter_expression=settings.filter_expression,
        search_params=settings.search_params,
    )


def search(settings: SearchSettings) -> tuple[CollectionInfo, list[dict[str, Any]]]:
    """Encodes the queries and searches: each query's hits (``SearchResult`` as JSON).

    Raises:
      ModelLoadError: the model cannot be loaded.
      CollectionMismatchError: the collection does not exist, or was filled
        by another model (``ModelMismatchError``).
      ConfigError: Milvus refused the filter.
    """
    client = connect(settings.target)
    try:
        require_exists(client, settings.target)  # before the model: a typo costs no load
        encoder = QueryEncoder(settings.model)
        info = open_for_search(client, settings.target, encoder.embedder.fingerprint())
        searcher = searcher_for(client, settings, info)
        vectors = encoder.encode_queries(settings.queries)
        found = searcher.search(settings.queries, vectors)
    finally:
        client.close()
    return info, [json.loads(result.to_json()) for result in found]


def write_results(output: str, found: Sequence[dict[str, Any]]) -> str:
    """Writes the hits as ``<output>.jsonl`` (one ``SearchResult`` a line); returns its path."""
    path = f"{output}.jsonl"
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in found)
    if "://" in path:
        import fsspec

        with fsspec.open(path, "w", encoding="utf-8", auto_mkdir=True) as f:
            f.write(lines)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(lines)
    return path


def main(flags: argparse.Namespace) -> None:
    """Runs an instant search and prints its hits; a user's mistake ends the
    process with one line on stderr and status 1."""
    configure_logging(flags.log_level)
    try:
        settings = read_search_settings(flags, flags)
        info, found = search(settings)
        if flags.output:
            _LOGGER.info("Wrote the hits to %s", write_results(settings.output, found))
    except USER_ERRORS as e:
        _LOGGER.debug("The search stopped", exc_info=True)
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    hits.write_hits(found, info.metric, flags.output_format, sys.stdout)
