"""Cutting text: exact tokenizing, token windows, :func:`chunk_document` → :class:`ChunkDocuments`.

Depends only on the shared modules; the embedding layer builds on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from transforms.lazy import lazy_exports

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


__getattr__ = lazy_exports(globals(), _EXPORTS)


__all__ = ["ChunkDocuments", "ChunkingTokenizer", "chunk_document", "token_windows"]
