"""Model2Vec embeddings: loading, pooling, the handler → EmbedChunks and EncodeQueries.

Depends on the shared modules and on :mod:`transforms.text` (the exact tokenizer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transforms.lazy import lazy_exports

if TYPE_CHECKING:
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

# Imported on first use, not with the package: the Beam transforms import Beam
# (2 s), which the plain-Python QueryEncoder (instant search) does without.
_EXPORTS = {
    **dict.fromkeys(
        ("EmbedChunks", "EmbedOutput", "EncodeQueries", "Model2VecModelHandler"),
        "transforms.embedding.embed",
    ),
    **dict.fromkeys(
        ("ModelDescription", "QueryEncoder", "StaticEmbedder", "describe_model"),
        "transforms.embedding.model",
    ),
}


__getattr__ = lazy_exports(globals(), _EXPORTS)


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
