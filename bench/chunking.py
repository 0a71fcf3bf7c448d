"""What every contender writes: the corpus's documents, cut as ``ChunkDocuments`` cuts them.

The documents are what ``ReadDocuments`` makes of the corpus's JSONL records
(``source.metadata_fields: [title]``); the chunks come from
:func:`transforms.text.chunk_document`, the function ``ChunkDocuments`` runs,
so every contender embeds and writes the very chunks, ids included, that our
pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bench.corpus import read_corpus

__all__ = ["chunker", "document", "documents"]


def document(record: dict[str, Any], path: str = "") -> Any:
    """The ``Document`` that ``ReadDocuments`` makes of a corpus record."""
    from transforms.types import Document

    return Document(
        id=record["id"], text=record["text"], metadata={"title": record["title"]}, source=path
    )


def documents(path: str, *, part: int = 0, parts: int = 1) -> Iterator[Any]:
    """The corpus's documents (every ``parts``-th one from ``part``)."""
    for line, record in enumerate(read_corpus(path)):
        if line % parts == part:
            yield document(record, path)


def chunker(model: str, max_tokens: int, overlap_tokens: int) -> Callable[[Any], list[Any]]:
    """Cuts a document into the chunks ``ChunkDocuments`` emits for these settings.

    Loads the model's tokenizer once (about 0.1 s); the returned function is
    pure and cheap to share.
    """
    from transforms.config import ChunkingConfig
    from transforms.text import ChunkingTokenizer, chunk_document

    tokenizer = ChunkingTokenizer.load(model)
    config = ChunkingConfig(max_tokens, overlap_tokens)

    def cut(document: Any) -> list[Any]:
        return chunk_document(document, tokenizer, config)

    return cut
