"""The demo: Python's own documentation topics into Milvus Lite, then questions.

Run it with ``make demo``, or::

    python -m pipelines.demo --config configs/local.yaml

It writes the topics that ship with CPython (``pydoc_data.topics``) as a JSONL
corpus, ingests it with the config's model into the config's Milvus Lite
store, and answers the config's sample questions with their top hits. Nothing
is downloaded. The corpus goes beside the config's ``source.patterns``; with
``configs/local.yaml``, it, the store and the dead letters are in the
repository's ``work/``, which git ignores, from whatever folder the demo runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import ingest, search
from pipelines.cli import Command, run_main
from pipelines.options import (
    IngestOptions,
    MilvusOptions,
    SearchOptions,
    beam_argv,
    config_path,
    ingest_settings,
)

__all__ = ["run", "write_corpus"]

CORPUS_FILE = "python_topics.jsonl"
DEFAULT_CONFIG = "configs/local.yaml"


def write_corpus(folder: str) -> str:
    """Writes CPython's documentation topics as JSONL; returns the file's path."""
    from pydoc_data.topics import topics

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, CORPUS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        for name in sorted(topics):
            record = {"id": name, "title": name, "text": topics[name]}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _corpus_folder(argv: Sequence[str]) -> str:
    settings = ingest_settings(PipelineOptions(beam_argv(argv)))
    return os.path.dirname(settings.source.patterns[0]) or "."


def run(argv: Sequence[str] | None = None) -> None:
    """Writes the corpus, ingests it, and prints the answers to the sample questions.

    Args:
      argv: The flags of both pipelines (ingest's and search's) and Beam's;
        without ``--config``, :data:`DEFAULT_CONFIG`.
    """
    argv = list(argv or [])
    if not config_path(argv):
        argv = ["--config", DEFAULT_CONFIG, *argv]
    corpus = write_corpus(_corpus_folder(argv))
    print(f"Corpus: {corpus}", flush=True)
    # None after --dry_run: nothing was written, so there is nothing to search.
    if ingest.run(argv, exit_on_interrupt=True) is None:
        return
    print("\nAnswers (top hits per question):", flush=True)
    _, found = search.answers(argv)
    for answer in found:
        print(f"\n  Q: {answer['query']}")
        for rank, hit in enumerate(answer["hits"], start=1):
            fields = hit["fields"]
            snippet = " ".join(fields.get("text", "").split())[:80]
            print(f"    {rank}. [{fields.get('document_id')}] {hit['distance']:.3f}  {snippet}...")
    sys.stdout.flush()


def main() -> None:
    """``python -m pipelines.demo`` and ``milvus-ingest-demo``: flags checked, then :func:`run`."""
    run_main(
        run,
        Command(
            "pipelines.demo",
            __doc__,
            (MilvusOptions, IngestOptions, SearchOptions),
            defaults={"config": DEFAULT_CONFIG},
        ),
    )


if __name__ == "__main__":
    main()
