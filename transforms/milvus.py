"""The collection contract: schema, set-up, checks, row building, error classes.

Everything here is plain Python that the sink and search DoFns and the
launcher share. Collection set-up runs once, on the launcher, before any worker
starts; a collection that does not fit the run (another dimension, another
model) stops the run there, with a message that says what differs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from transforms.config import MilvusTarget, WriteConfig
from transforms.types import Chunk

__all__ = [
    "CollectionMismatchError",
    "MilvusConnectionError",
    "Row",
    "build_row",
    "connect",
    "ensure_collection",
    "error_kind",
    "require_collection",
]

_LOGGER = logging.getLogger(__name__)

FIELD_ID = "id"
FIELD_VECTOR = "vector"
FIELD_TEXT = "text"
FIELD_DOCUMENT_ID = "document_id"
FIELD_CHUNK_INDEX = "chunk_index"
FIELD_METADATA = "metadata"
ID_MAX_LENGTH = 64
DOCUMENT_ID_MAX_LENGTH = 1024
FINGERPRINT_PROPERTY = "milvus_ingest.model"

# Per-row bytes on the wire beyond vector and text: keys, lengths, framing.
_ROW_OVERHEAD_BYTES = 64

Row = dict[str, Any]


class CollectionMismatchError(ValueError):
    """An existing collection does not fit this run."""


class MilvusConnectionError(ConnectionError):
    """Milvus cannot be reached or refused the credentials."""


def connect(target: MilvusTarget) -> Any:
    """Opens a ``MilvusClient`` for the target; the token never leaves here.

    Raises:
      MilvusConnectionError: naming the URI (never the token).
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        return MilvusClient(**target.client_kwargs())
    except MilvusException as e:
        raise MilvusConnectionError(
            f"cannot connect to Milvus at {target.uri!r}: {e.message}"
        ) from e


def require_collection(target: MilvusTarget) -> None:
    """Checks that the collection to search exists, and loads it for search.

    Loading happens once, on the launcher; workers only search.

    Raises:
      CollectionMismatchError: the collection is missing.
      MilvusConnectionError: Milvus cannot be reached.
    """
    client = connect(target)
    try:
        if not client.has_collection(target.collection):
            raise CollectionMismatchError(
                f"collection {target.collection!r} does not exist at {target.uri}: ingest into it "
                "first (python -m pipelines.ingest), or name another one with --collection."
            )
        client.load_collection(target.collection)
    finally:
        client.close()


def _schema(client: Any, dim: int, config: WriteConfig) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(FIELD_ID, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
    schema.add_field(FIELD_VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(FIELD_TEXT, DataType.VARCHAR, max_length=config.text_max_length)
    schema.add_field(FIELD_DOCUMENT_ID, DataType.VARCHAR, max_length=DOCUMENT_ID_MAX_LENGTH)
    schema.add_field(FIELD_CHUNK_INDEX, DataType.INT64)
    schema.add_field(FIELD_METADATA, DataType.JSON)
    return schema


def ensure_collection(
    target: MilvusTarget,
    *,
    dim: int,
    fingerprint: Mapping[str, Any],
    config: WriteConfig = WriteConfig(),
) -> bool:
    """Creates the collection and its index if missing, else checks it fits.

    Args:
      target: Where to write.
      dim: The model's vector dimension.
      fingerprint: What identifies the model (see ``StaticEmbedder.fingerprint``);
        stored on a new collection, compared with an existing one's.
      config: Field sizes and the index to create.

    Returns:
      True if the collection was created.

    Raises:
      CollectionMismatchError: the existing collection has another vector
        dimension, lacks a field, or was filled by another model.
      MilvusConnectionError: Milvus cannot be reached.
    """
    client = connect(target)
    try:
        if client.has_collection(target.collection):
            _check_collection(
                client.describe_collection(target.collection), target, dim, fingerprint
            )
            return False
        index_params = client.prepare_index_params()
        index_params.add_index(
            FIELD_VECTOR,
            index_type=config.index.index_type,
            metric_type=config.index.metric_type,
            params=dict(config.index.params),
        )
        client.create_collection(
            target.collection,
            schema=_schema(client, dim, config),
            index_params=index_params,
            properties={FINGERPRINT_PROPERTY: json.dumps(dict(fingerprint), sort_keys=True)},
        )
        _LOGGER.info("Created collection %s (dim %d) at %s", target.collection, dim, target.uri)
        return True
    finally:
        client.close()


def _check_collection(
    description: Mapping[str, Any],
    target: MilvusTarget,
    dim: int,
    fingerprint: Mapping[str, Any],
) -> None:
    fields = {f["name"]: f for f in description.get("fields", [])}
    missing = [
        name
        for name in (
            FIELD_ID,
            FIELD_VECTOR,
            FIELD_TEXT,
            FIELD_DOCUMENT_ID,
            FIELD_CHUNK_INDEX,
            FIELD_METADATA,
        )
        if name not in fields
    ]
    if missing:
        raise CollectionMismatchError(
            f"collection {target.collection!r} at {target.uri} has no field(s) {missing}: it was "
            "not made by this framework. Write to a new collection (--collection NAME)."
        )
    existing_dim = int(fields[FIELD_VECTOR].get("params", {}).get("dim", -1))
    if existing_dim != dim:
        raise CollectionMismatchError(
            f"collection {target.collection!r} holds {existing_dim}-dimensional vectors, but the "
            f"model makes {dim}-dimensional ones. Use the model that filled it, or write to a new "
            "collection (--collection NAME)."
        )
    stored = description.get("properties", {}).get(FINGERPRINT_PROPERTY)
    if not stored:
        return
    stored_fp = json.loads(stored)
    differs = [
        key
        for key in ("dim", "normalize", "vectors_sha256", "tokenizer_sha256")
        if stored_fp.get(key) != fingerprint.get(key)
    ]
    if differs:
        raise CollectionMismatchError(
            f"collection {target.collection!r} was filled by model {stored_fp.get('model')!r}, "
            f"and this run's model {fingerprint.get('model')!r} differs in {differs}: vectors of "
            "two models in one collection cannot be compared. Use the same model, or write to a "
            "new collection (--collection NAME)."
        )


def build_row(chunk: Chunk, dim: int, config: WriteConfig) -> tuple[Row, int] | str:
    """Returns the row for a chunk and its estimated size in bytes, or why not.

    The checks are the ones Milvus would make, made before the request so
    that one bad row does not cost a round trip.
    """
    vector = chunk.embedding
    if vector is None:
        return "chunk has no embedding"
    if vector.shape != (dim,):
        return f"vector has shape {vector.shape}, the collection wants ({dim},)"
    if not np.isfinite(vector).all():
        return "vector has NaN or infinite values"
    text_bytes = len(chunk.text.encode("utf-8"))
    if text_bytes > config.text_max_length:
        return f"text is {text_bytes} bytes, over the text field's {config.text_max_length}"
    document_id_bytes = len(chunk.document_id.encode("utf-8"))
    if document_id_bytes > DOCUMENT_ID_MAX_LENGTH:
        return f"document id is {document_id_bytes} bytes, over {DOCUMENT_ID_MAX_LENGTH}"
    try:
        metadata_bytes = len(json.dumps(chunk.metadata, ensure_ascii=False))
    except (TypeError, ValueError) as e:
        return f"metadata is not JSON: {e}"
    row = {
        FIELD_ID: chunk.id,
        FIELD_VECTOR: np.asarray(vector, dtype=np.float32),
        FIELD_TEXT: chunk.text,
        FIELD_DOCUMENT_ID: chunk.document_id,
        FIELD_CHUNK_INDEX: chunk.index,
        FIELD_METADATA: dict(chunk.metadata),
    }
    size = 4 * dim + text_bytes + document_id_bytes + metadata_bytes + _ROW_OVERHEAD_BYTES
    return row, size


# Error classes for writes.
TRANSIENT = "transient"
"""Unavailable, timed out or rate-limited: retry the same request later."""
FATAL = "fatal"
"""The collection is gone or the credentials are refused: stop the run."""
DATA = "data"
"""The server refused the rows themselves: isolate and dead-letter them."""

_RATE_LIMIT_CODE = 8
_COLLECTION_NOT_FOUND_CODE = 100
_FATAL_MESSAGES = (
    "collection not found",
    "can't find collection",
    "permission",
    "auth",
    "credential",
)
_TRANSIENT_MESSAGES = (
    "rate limit",
    "deadline",
    "unavailable",
    "timeout",
    "timed out",
    "connection",
)


def error_kind(error: BaseException) -> str | None:
    """Classifies an error of a write; ``None`` means not Milvus's (a bug)."""
    import grpc
    from pymilvus.exceptions import MilvusException, MilvusUnavailableException

    if isinstance(error, (MilvusUnavailableException, TimeoutError, ConnectionError)):
        return TRANSIENT
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return FATAL
        if code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
        ):
            return TRANSIENT
        return None
    if isinstance(error, MilvusException):
        message = str(error.message).lower()
        if error.code == _COLLECTION_NOT_FOUND_CODE or any(m in message for m in _FATAL_MESSAGES):
            return FATAL
        if (
            error.retriable
            or error.code == _RATE_LIMIT_CODE
            or any(m in message for m in _TRANSIENT_MESSAGES)
        ):
            return TRANSIENT
        return DATA
    return None
