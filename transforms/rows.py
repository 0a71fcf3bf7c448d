"""Rows for the collection: built from chunks, checked against the schema, sized.

The checks are the ones Milvus would make, made before the request, so that
one bad row costs no round trip and gets a reason a person can act on.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

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
    "Row",
    "RowError",
    "build_row",
]

FIELD_ID = "id"
FIELD_VECTOR = "vector"
FIELD_TEXT = "text"
FIELD_DOCUMENT_ID = "document_id"
FIELD_CHUNK_INDEX = "chunk_index"
FIELD_METADATA = "metadata"
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


def build_row(chunk: Chunk, dim: int, config: WriteConfig) -> tuple[Row, int]:
    """Returns the row for a chunk and its estimated size in bytes.

    Raises:
      RowError: the chunk does not fit the schema; the message says why.
    """
    vector = chunk.embedding
    if vector is None:
        raise RowError("no_embedding", "chunk has no embedding")
    if vector.shape != (dim,):
        raise RowError(
            "wrong_dimension", f"vector has shape {vector.shape}, the collection wants ({dim},)"
        )
    if not np.isfinite(vector).all():
        raise RowError("not_finite", "vector has NaN or infinite values")
    text = chunk.text
    text_bytes = len(text.encode("utf-8"))
    if text_bytes > config.text_max_length:
        if config.text_overflow is not TextOverflow.TRUNCATE:
            raise RowError(
                "text_too_long",
                f"text is {text_bytes} bytes, over the text field's {config.text_max_length} "
                "(set write.text_overflow: truncate to store a prefix)",
            )
        text = _utf8_prefix(text, config.text_max_length)
        text_bytes = len(text.encode("utf-8"))
    document_id_bytes = len(chunk.document_id.encode("utf-8"))
    if document_id_bytes > DOCUMENT_ID_MAX_LENGTH:
        raise RowError(
            "document_id_too_long",
            f"document id is {document_id_bytes} bytes, over {DOCUMENT_ID_MAX_LENGTH}",
        )
    try:
        metadata_bytes = len(json.dumps(chunk.metadata, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise RowError("metadata_not_json", f"metadata is not JSON: {e}") from None
    if metadata_bytes > METADATA_MAX_BYTES:
        raise RowError(
            "metadata_too_large",
            f"metadata is {metadata_bytes} bytes of JSON, over Milvus's {METADATA_MAX_BYTES}",
        )
    row = {
        FIELD_ID: chunk.id,
        FIELD_VECTOR: np.asarray(vector, dtype=np.float32),
        FIELD_TEXT: text,
        FIELD_DOCUMENT_ID: chunk.document_id,
        FIELD_CHUNK_INDEX: chunk.index,
        FIELD_METADATA: dict(chunk.metadata),
    }
    size = 4 * dim + text_bytes + document_id_bytes + metadata_bytes + _ROW_OVERHEAD_BYTES
    return row, size
