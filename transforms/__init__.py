"""Beam transforms that fill Milvus with Model2Vec embeddings, and search it.

Read documents, cut them into token windows, embed them and upsert them::

    model = describe_model(MODEL)  # dimension and fingerprint, from the model's files
    prepare_collection(target, dim=model.dim, fingerprint=model.fingerprint)  # once, first
    read = p | ReadDocuments(SourceConfig(patterns=("docs/**/*.md",)))
    chunks = read.documents | ChunkDocuments(MODEL)
    written = (
        chunks.chunks
        | EmbedChunks(MODEL)
        | WriteToMilvus(target, dim=model.dim, fingerprint=model.fingerprint)
    )

and find the rows nearest to queries::

    hits = queries | EncodeQueries(MODEL) | SearchMilvus(target, top_k=5)

Every step that can meet bad input has a ``dead_letters`` output.

The sub-packages are layers, each importing only the ones below it:
:mod:`transforms.io` (reading), :mod:`transforms.text` (chunking),
:mod:`transforms.embedding` (Model2Vec, on top of ``text``) and
:mod:`transforms.milvus` (the collection, the sink, search), over the shared
``types``, ``config``, ``metrics`` and ``batch`` modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transforms.batch import ChunkBatch
from transforms.config import (
    ChunkingConfig,
    ConfigError,
    DecodeErrors,
    DuplicateIds,
    EmptyMatchTreatment,
    IndexConfig,
    MilvusTarget,
    SourceConfig,
    SourceFormat,
    TextOverflow,
    WriteConfig,
    WriteMode,
)
from transforms.lazy import lazy_exports
from transforms.milvus import (
    CollectionMismatchError,
    MilvusAuthError,
    MilvusConnectionError,
    RowCountMismatchError,
    finish_collection,
    prepare_collection,
)
from transforms.milvus import count_rows as count_rows
from transforms.milvus.collection import ensure_collection as ensure_collection
from transforms.model_files import ModelLoadError
from transforms.types import (
    Chunk,
    DeadLetter,
    Document,
    EncodedQuery,
    SearchHit,
    SearchResult,
)
from transforms.types import chunk_id as chunk_id

if TYPE_CHECKING:
    from transforms.embedding import (
        EmbedChunks,
        EmbedOutput,
        EncodeQueries,
        Model2VecModelHandler,
        QueryEncoder,
        StaticEmbedder,
        describe_model,
    )
    from transforms.io import ReadDocuments
    from transforms.io import match_files as match_files
    from transforms.milvus import SearchMilvus, WriteToMilvus
    from transforms.text import ChunkDocuments, ChunkingTokenizer, chunk_document
    from transforms.text import token_windows as token_windows

# Imported on first use, not with the package: these import Beam (2 s), which
# code that only reads the config, encodes a query or calls Milvus (the
# instant search) does without.
_EXPORTS = {
    **dict.fromkeys(
        (
            "EmbedChunks",
            "EmbedOutput",
            "EncodeQueries",
            "Model2VecModelHandler",
            "QueryEncoder",
            "StaticEmbedder",
            "describe_model",
        ),
        "transforms.embedding",
    ),
    # match_files: importable from here as before the sub-packages, not part of the API above.
    **dict.fromkeys(("ReadDocuments", "match_files"), "transforms.io"),
    **dict.fromkeys(("SearchMilvus", "WriteToMilvus"), "transforms.milvus"),
    **dict.fromkeys(
        ("ChunkDocuments", "ChunkingTokenizer", "chunk_document", "token_windows"),
        "transforms.text",
    ),
}


__getattr__ = lazy_exports(globals(), _EXPORTS)


__all__ = [
    "Chunk",
    "ChunkBatch",
    "ChunkDocuments",
    "ChunkingConfig",
    "ChunkingTokenizer",
    "CollectionMismatchError",
    "ConfigError",
    "DeadLetter",
    "DecodeErrors",
    "Document",
    "DuplicateIds",
    "EmbedChunks",
    "EmbedOutput",
    "EmptyMatchTreatment",
    "EncodeQueries",
    "EncodedQuery",
    "IndexConfig",
    "MilvusAuthError",
    "MilvusConnectionError",
    "MilvusTarget",
    "Model2VecModelHandler",
    "ModelLoadError",
    "QueryEncoder",
    "ReadDocuments",
    "RowCountMismatchError",
    "SearchHit",
    "SearchMilvus",
    "SearchResult",
    "SourceConfig",
    "SourceFormat",
    "StaticEmbedder",
    "TextOverflow",
    "WriteConfig",
    "WriteMode",
    "WriteToMilvus",
    "chunk_document",
    "describe_model",
    "finish_collection",
    "prepare_collection",
]
