"""Model2Vec embeddings: loading, pooling, the handler → EmbedChunks and EncodeQueries.

Depends on the shared modules and on :mod:`transforms.text` (the exact tokenizer).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


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
