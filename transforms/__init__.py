"""Beam transforms that fill Milvus with Model2Vec embeddings, and search it.

Read documents, cut them into token windows, embed them and upsert them::

    read = p | ReadDocuments(SourceConfig(patterns=("docs/**/*.md",)))
    chunks = read.documents | ChunkDocuments(MODEL)
    written = chunks.chunks | EmbedChunks(MODEL) | WriteToMilvus(target, model=MODEL)

and find the rows nearest to queries::

    hits = queries | EncodeQueries(MODEL) | SearchMilvus(target, top_k=5)

Every step that can meet bad input has a ``dead_letters`` output.
"""

from transforms.batch import ChunkBatch
from transforms.chunking import ChunkDocuments, token_windows
from transforms.client import MilvusAuthError, MilvusConnectionError
from transforms.collection import (
    CollectionMismatchError,
    RowCountMismatchError,
    count_rows,
    ensure_collection,
    finish_collection,
    prepare_collection,
)
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
from transforms.embed import EmbedChunks, EmbedOutput, EncodeQueries, Model2VecModelHandler
from transforms.model import ModelLoadError, QueryEncoder, StaticEmbedder
from transforms.search import SearchMilvus
from transforms.sink import WriteToMilvus
from transforms.sources import ReadDocuments, match_files
from transforms.types import (
    Chunk,
    DeadLetter,
    Document,
    EncodedQuery,
    SearchHit,
    SearchResult,
    chunk_id,
)

__all__ = [
    "Chunk",
    "ChunkBatch",
    "ChunkDocuments",
    "ChunkingConfig",
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
    "chunk_id",
    "count_rows",
    "ensure_collection",
    "finish_collection",
    "match_files",
    "prepare_collection",
    "token_windows",
]
