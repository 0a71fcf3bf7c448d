"""Model2Vec embeddings: loading, pooling, the handler → EmbedChunks and EncodeQueries.

Depends on the shared modules and on :mod:`transforms.text` (the exact tokenizer).
"""

from transforms.embedding.embed import (
    EmbedChunks,
    EmbedOutput,
    EncodeQueries,
    Model2VecModelHandler,
)
from transforms.embedding.model import (
    ModelDescription,
    QueryEncoder,
    StaticEmbedder,
    describe_model,
)

__all__ = [
    "EmbedChunks",
    "EmbedOutput",
    "EncodeQueries",
    "Model2VecModelHandler",
    "ModelDescription",
    "QueryEncoder",
    "StaticEmbedder",
    "describe_model",
]
