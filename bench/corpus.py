"""A deterministic benchmark corpus built from text that ships with Python.

The paragraphs and sentences of CPython's documentation topics
(``pydoc_data.topics``) are strung together into documents of mixed lengths:
most are short (one chunk), some are a few thousand characters, a few are long
(tens of chunks). Document ``i`` depends only on ``(seed, i)``, so a corpus of
100,000 documents starts with the same 20,000 as the default one, and the file
is written as a stream in constant memory.

Run it on its own to look at a corpus::

    python -m bench.corpus --docs 1000 --out /tmp/corpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "CorpusStats",
    "documents",
    "paragraphs",
    "read_corpus",
    "sentences",
    "write_corpus",
    "write_ingest_config",
]

# (share of documents, shortest, longest) in characters. The mix gives about
# 1,700 characters a document on average, the way a help-center or wiki dump
# looks: many short pages, a tail of long ones.
_LENGTH_MIX = ((0.60, 100, 800), (0.32, 800, 2_600), (0.08, 2_600, 13_000))


def write_ingest_config(
    path: str,
    *,
    corpus: str,
    model: str,
    uri: str,
    collection: str,
    mode: str,
    dead_letter_path: str,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
) -> str:
    """Writes the config of ``pipelines.ingest`` over a generated corpus (a JSONL
    export with ``id``, ``title`` and ``text``) at ``path``; returns ``path``."""
    import yaml

    config = {
        "pipeline": {"runner": "DirectRunner"},
        "source": {
            "patterns": [corpus],
            "format": "jsonl",
            "id_field": "id",
            # The generated ids are unique, and no peer looks for duplicates: documents
            # stream, with no shuffle by id.
            "duplicate_ids": "assume_unique",
            "text_field": "text",
            "metadata_fields": ["title"],
        },
        "model": model,
        "chunking": {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens},
        "milvus": {"uri": uri, "collection": collection, "token_env": None},
        "write": {"mode": mode},
        "dead_letter_path": dead_letter_path,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    return path


def paragraphs() -> list[tuple[str, str]]:
    """``(topic, paragraph)`` pairs of CPython's documentation topics, in a fixed order."""
    from pydoc_data.topics import topics

    found: list[tuple[str, str]] = []
    for name in sorted(topics):
        for paragraph in re.split(r"\n\s*\n", topics[name]):
            paragraph = paragraph.strip()
            if len(paragraph) >= 40:
                found.append((name, paragraph))
    return found


def sentences(pool: list[tuple[str, str]]) -> list[str]:
    """The sentences of the prose paragraphs (not code, not tables) of the pool."""
    found: list[str] = []
    for _, paragraph in pool:
        if paragraph.startswith((" ", ">>>", "+", "|")):
            continue
        text = " ".join(paragraph.split())
        found.extend(s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) >= 20)
    return found


def _target_length(rng: random.Random) -> int:
    draw = rng.random()
    for share, low, high in _LENGTH_MIX:
        if draw < share:
            return rng.randint(low, high)
        draw -= share
    return _LENGTH_MIX[-1][2]


def documents(n: int, *, seed: int = 0) -> Iterator[dict[str, str]]:
    """Yields ``n`` JSON-ready records ``{"id", "title", "text"}``.

    A document is a run of paragraphs up to its drawn length: a third of them
    verbatim from the topics (code, grammar, lists), the others prose of two
    to six sentences drawn from anywhere in the topics, so that no two
    documents share a chunk; half the documents start with a Markdown title.
    """
    pool = paragraphs()
    prose = sentences(pool)
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        target = _target_length(rng)
        title = pool[rng.randrange(len(pool))][0]
        parts: list[str] = [f"# {title}"] if rng.random() < 0.5 else []
        size = 0
        while size < target:
            if rng.random() < 1 / 3:
                text = pool[rng.randrange(len(pool))][1]
            else:
                text = " ".join(rng.choice(prose) for _ in range(rng.randint(2, 6)))
            parts.append(text)
            size += len(text) + 2
        yield {"id": f"doc-{i:07d}", "title": title, "text": "\n\n".join(parts)}


@dataclass(frozen=True)
class CorpusStats:
    """What a corpus file holds."""

    path: str
    documents: int
    characters: int
    bytes: int


def write_corpus(path: str, n: int, *, seed: int = 0) -> CorpusStats:
    """Writes ``n`` documents as JSONL to ``path`` (reused when it is already there).

    A finished file is marked by a sidecar ``path + ".stats.json"``, so an
    interrupted write is never mistaken for a corpus.
    """
    marker = path + ".stats.json"
    if os.path.exists(marker) and os.path.exists(path):
        with open(marker, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("documents") == n and saved.get("seed") == seed:
            return CorpusStats(path, n, saved["characters"], os.path.getsize(path))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    characters = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in documents(n, seed=seed):
            characters += len(record["text"])
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(marker, "w", encoding="utf-8") as f:
        json.dump({"documents": n, "seed": seed, "characters": characters}, f)
    return CorpusStats(path, n, characters, os.path.getsize(path))


def read_corpus(path: str) -> Iterator[dict[str, str]]:
    """The records of a corpus file, one at a time."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    stats = write_corpus(args.out, args.docs, seed=args.seed)
    json.dump(stats.__dict__, sys.stdout)
    print()


if __name__ == "__main__":
    main()
