"""The records that flow between the transforms, and how their ids are made.

Every record is a frozen dataclass: transforms return new records
(``dataclasses.replace``) instead of changing the ones they receive, which is
what Beam expects of elements that a runner may fuse, cache or retry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DEAD_LETTERS",
    "Chunk",
    "DeadLetter",
    "Document",
    "EncodedQuery",
    "SearchHit",
    "SearchResult",
    "TokenIds",
    "chunk_id",
]

DEAD_LETTERS = "dead_letters"
"""The output tag of every step's dead letters (records it could not handle)."""

# Enough of a bad record to find it again; the whole record may be megabytes.
_DEAD_LETTER_PREVIEW_CHARS = 500


@dataclasses.dataclass(frozen=True)
class Document:
    """One document read from a source file.

    Attributes:
      id: Stable id: from the record's id field, else derived from the file
        path (and line, for line-oriented formats).
      text: The text to chunk and embed.
      metadata: Fields kept from the source record; JSON-serialisable.
      source: Where the document came from, as ``path`` or ``path:line``.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class TokenIds:
    """A text's token ids, and the tokenizer that made them.

    Chunking counts each window's tokens; the ids it counted travel with the
    chunk, so that embedding it with the same model's tokenizer (same
    fingerprint) does not tokenize it again. Any other embedder ignores them.

    Attributes:
      tokenizer: Fingerprint of the tokenizer (its settings included).
      ids: The ids, as ``int32``, without special tokens.
    """

    tokenizer: str
    ids: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """A window of a document's text, and its embedding once it has one.

    Attributes:
      id: Deterministic primary key, see :func:`chunk_id`.
      document_id: Id of the document the chunk was cut from.
      index: Position of the chunk in its document, from 0.
      text: The chunk's text.
      start: Offset of the first character of ``text`` in the document.
      end: Offset one past the last character of ``text`` in the document.
      metadata: The document's metadata.
      embedding: ``float32`` vector, or ``None`` before embedding.
      token_ids: The ids chunking counted the text with, if any: a cache for
        the embedder, not part of the chunk's value (equality ignores it).
    """

    id: str
    document_id: str
    index: int
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    embedding: np.ndarray | None = None
    token_ids: TokenIds | None = None

    def _value(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.document_id,
            self.index,
            self.text,
            self.start,
            self.end,
            self.metadata,
        )

    def __eq__(self, other: object) -> bool:
        # numpy arrays do not compare to a single bool; compare them as lists.
        if not isinstance(other, Chunk):
            return NotImplemented
        if self._value() != other._value():
            return False
        if self.embedding is None or other.embedding is None:
            return self.embedding is other.embedding
        return bool(np.array_equal(self.embedding, other.embedding))

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A record that could not be read, chunked, embedded or written.

    Attributes:
      stage: The step that gave up on the record: ``read``, ``chunk`` or
        ``write``.
      source: Where the record is: ``path``, ``path:line`` or a chunk id.
      reason: Why, in words a person can act on.
      record: The start of the offending record, for finding it again.
    """

    stage: str
    source: str
    reason: str
    record: str = ""

    @classmethod
    def of(cls, stage: str, source: str, reason: str, record: Any = "") -> DeadLetter:
        """Builds a dead letter whose record preview is bounded in size."""
        preview = record if isinstance(record, str) else repr(record)
        return cls(stage, source, reason, preview[:_DEAD_LETTER_PREVIEW_CHARS])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)


@dataclasses.dataclass(frozen=True, eq=False)
class EncodedQuery:
    """A query text and its ``float32`` embedding."""

    text: str
    embedding: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncodedQuery):
            return NotImplemented
        return self.text == other.text and bool(np.array_equal(self.embedding, other.embedding))

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class SearchHit:
    """One row that matched a query, with the fields that were asked for."""

    id: str
    distance: float
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The top hits for one query, best first."""

    query: str
    hits: tuple[SearchHit, ...]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, default=str)


def chunk_id(document_id: str, index: int, settings_fingerprint: str) -> str:
    """Returns the primary key of a document's ``index``-th chunk.

    The key depends on the document id, the chunk's position and the chunking
    settings (tokenizer and window sizes), not on the text: a re-run, or a
    runner retrying a bundle, writes the same keys, so upserts replace rows
    instead of adding them, and an edited document updates its rows in place.

    Args:
      document_id: The document's stable id.
      index: Position of the chunk in the document.
      settings_fingerprint: Identifies the chunking settings; see
        ``ChunkingConfig`` and the tokenizer fingerprint.

    Returns:
      32 lowercase hex characters (128 bits of SHA-256).
    """
    key = "\x1f".join((settings_fingerprint, document_id, str(index)))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
