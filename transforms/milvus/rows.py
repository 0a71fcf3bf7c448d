"""Rows for the collection: built from chunks, checked against the schema, sized.

The checks are the ones Milvus would make, made before the request, so that
one bad row costs no round trip and gets a reason a person can act on.

:func:`build_row` makes one row from one embedded chunk; :func:`build_rows`
makes the rows of a :class:`~transforms.batch.ChunkBatch`, checking all its
vectors in one numpy call, sizing ASCII text without encoding it, and
serialising each distinct metadata mapping once (the chunks of a document
share theirs): a few microseconds a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from transforms.batch import ChunkBatch
from transforms.config import TextOverflow, WriteConfig
from transforms.types import Chunk

__all__ = [
    "DOCUMENT_ID_MAX_LENGTH",
    "FIELD_CHUNK_INDEX",
    "FIELD_DOCUMENT_ID",
    "FIELD_ID",
    "FIELD_METADATA",
    "FIELD_TEXT",
    "FIELD_VECTOR",
    "ID_MAX_LENGTH",
    "METADATA_MAX_BYTES",
    "VARCHAR_FIELDS",
    "Row",
    "RowError",
    "build_row",
    "build_rows",
]

FIELD_ID = "id"
FIELD_VECTOR = "vector"
FIELD_TEXT = "text"
FIELD_DOCUMENT_ID = "document_id"
FIELD_CHUNK_INDEX = "chunk_index"
FIELD_METADATA = "metadata"
VARCHAR_FIELDS = (FIELD_ID, FIELD_TEXT, FIELD_DOCUMENT_ID)
"""The fields whose values are strings that :func:`build_row` checked in UTF-8 bytes."""
ID_MAX_LENGTH = 64
DOCUMENT_ID_MAX_LENGTH = 1024
# Milvus refuses JSON values over 64 KiB (proxy.maxJSONSize... in 2.3 a field limit).
METADATA_MAX_BYTES = 65536

# Per-row bytes on the wire beyond vector and text: keys, lengths, framing.
_ROW_OVERHEAD_BYTES = 64

Row = dict[str, Any]


class RowError(ValueError):
    """A chunk cannot become a row; ``kind`` names the reason for metrics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _utf8_prefix(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` in UTF-8."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _utf8_length(text: str) -> int:
    # CPython knows whether a string is ASCII without looking at it.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _check_vector(vector: np.ndarray | None, dim: int) -> None:
    if vector is None:
        raise RowError("no_embedding", "chunk has no embedding")
    if vector.shape != (dim,):
        raise RowError(
            "wrong_dimension", f"vector has shape {vector.shape}, the collection wants ({dim},)"
        )
    if not np.isfinite(vector).all():
        raise RowError("not_finite", "vector has NaN or infinite values")


def _metadata_bytes(metadata: Mapping[str, Any]) -> int:
    try:
        size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise RowError("metadata_not_json", f"metadata is not JSON: {e}") from None
    if size > METADATA_MAX_BYTES:
        raise RowError(
            "metadata_too_large",
            f"metadata is {size} bytes of JSON, over Milvus's {METADATA_MAX_BYTES}",
        )
    return size


def _row(
    chunk: Chunk,
    vector: np.ndarray,
    dim: int,
    config: WriteConfig,
    metadata_bytes: Callable[[Mapping[str, Any]], int] = _metadata_bytes,
) -> tuple[Row, int]:
    """The row of a chunk whose vector was checked already."""
    text = chunk.text
    text_bytes = _utf8_length(text)
    if text_bytes > config.text_max_length:
        if config.text_overflow is not TextOverflow.TRUNCATE:
            raise RowError(
                "text_too_long",
                f"text is {text_bytes} bytes, over the text field's {config.text_max_length} "
                "(set write.text_overflow: truncate to store a prefix)",
            )
        text = _utf8_prefix(text, config.text_max_length)
        text_bytes = len(text.encode("utf-8"))
    document_id_bytes = _utf8_length(chunk.document_id)
    if document_id_bytes > DOCUMENT_ID_MAX_LENGTH:
        raise RowError(
            "document_id_too_long",
            f"document id is {document_id_bytes} bytes, over {DOCUMENT_ID_MAX_LENGTH}",
        )
    metadata_size = metadata_bytes(chunk.metadata)
    row = {
        FIELD_ID: chunk.id,
        FIELD_VECTOR: vector,
        FIELD_TEXT: text,
        FIELD_DOCUMENT_ID: chunk.document_id,
        FIELD_CHUNK_INDEX: chunk.index,
        FIELD_METADATA: dict(chunk.metadata),
    }
    size = 4 * dim + text_bytes + document_id_bytes + metadata_size + _ROW_OVERHEAD_BYTES
    return row, size


def build_row(chunk: Chunk, dim: int, config: WriteConfig) -> tuple[Row, int]:
    """Returns the row for a chunk and its estimated size in bytes.

    Raises:
      RowError: the chunk does not fit the schema; the message says why.
    """
    _check_vector(chunk.embedding, dim)
    vector = np.asarray(chunk.embedding, dtype=np.float32)
    return _row(chunk, vector, dim, config)


def build_rows(
    batch: ChunkBatch, dim: int, config: WriteConfig
) -> list[tuple[Row, int] | RowError]:
    """The row and size of each chunk of a batch, or why it cannot be one.

    Returns:
      One entry per chunk, in order: ``(row, size)`` as :func:`build_row`
      returns, or the :class:`RowError` it would raise.
    """
    vectors = batch.embeddings
    if vectors.shape[1:] != (dim,):
        error = RowError(
            "wrong_dimension",
            f"vector has shape {vectors.shape[1:]}, the collection wants ({dim},)",
        )
        return [error] * len(batch)
    if vectors.dtype != np.float32:
        vectors = vectors.astype(np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    # The chunks of a document share its metadata: size each mapping once.
    # Keyed by id(), which is safe while the batch holds the mappings.
    sizes: dict[int, int | RowError] = {}

    def metadata_bytes(metadata: Mapping[str, Any]) -> int:
        size = sizes.get(id(metadata))
        if size is None:
            try:
                size = _metadata_bytes(metadata)
            except RowError as e:
                size = e
            sizes[id(metadata)] = size
        if isinstance(size, RowError):
            raise size
        return size

    results: list[tuple[Row, int] | RowError] = []
    for i, chunk in enumerate(batch.chunks):
        if not finite[i]:
            results.append(RowError("not_finite", "vector has NaN or infinite values"))
            continue
        try:
            results.append(_row(chunk, vectors[i], dim, config, metadata_bytes))
        except RowError as e:
            results.append(e)
    return results
