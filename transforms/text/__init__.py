"""Cutting text: exact tokenizing, token windows, :func:`chunk_document` → :class:`ChunkDocuments`.

Depends only on the shared modules; the embedding layer builds on it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transforms.text.chunking import ChunkDocuments, chunk_document, token_windows
    from transforms.text.tokenizer import ChunkingTokenizer

# Imported on first use, not with the package: the Beam transforms import Beam
# (2 s), which code that only tokenizes (the instant search's encoder) does without.
_EXPORTS = {
    "ChunkDocuments": "transforms.text.chunking",
    "chunk_document": "transforms.text.chunking",
    "token_windows": "transforms.text.chunking",
    "ChunkingTokenizer": "transforms.text.tokenizer",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = ["ChunkDocuments", "ChunkingTokenizer", "chunk_document", "token_windows"]
