"""Beam transforms that fill Milvus with Model2Vec embeddings, and search it.

Read documents, cut them into token windows, embed them and upsert them::

    read = p | ReadDocuments(SourceConfig(patterns=("docs/**/*.md",)))
    chunks = read.documents | ChunkDocuments(MODEL)
    written = chunks.chunks | EmbedChunks(MODEL) | WriteToMilvus(target, model=MODEL)

and find the rows nearest to queries::

    hits = queries | EncodeQueries(MODEL) | SearchMilvus(target, top_k=5)

Every step that can meet bad input has a ``dead_letters`` output.
"""

from transforms.chunking import ChunkDocuments, token_windows
from transforms.config import (
    ChunkingConfig,
    ConfigError,
    EmptyMatchTreatment,
    IndexConfig,
    MilvusTarget,
    SourceConfig,
    SourceFormat,
    WriteConfig,
)
from transforms.embed import EmbedChunks, EncodeQueries, Model2VecModelHandler
from transforms.milvus import CollectionMismatchError, MilvusConnectionError, ensure_collection
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
    "ChunkDocuments",
    "ChunkingConfig",
    "CollectionMismatchError",
    "ConfigError",
    "DeadLetter",
    "Document",
    "EmbedChunks",
    "EmptyMatchTreatment",
    "EncodeQueries",
    "EncodedQuery",
    "IndexConfig",
    "MilvusConnectionError",
    "MilvusTarget",
    "Model2VecModelHandler",
    "ModelLoadError",
    "QueryEncoder",
    "ReadDocuments",
    "SearchHit",
    "SearchMilvus",
    "SearchResult",
    "SourceConfig",
    "SourceFormat",
    "StaticEmbedder",
    "WriteConfig",
    "WriteToMilvus",
    "chunk_id",
    "ensure_collection",
    "match_files",
    "token_windows",
]
