"""Cutting text: exact tokenizing, token windows, :func:`chunk_document` → :class:`ChunkDocuments`.

Depends only on the shared modules; the embedding layer builds on it.
"""

from transforms.text.chunking import ChunkDocuments, chunk_document, token_windows
from transforms.text.tokenizer import ChunkingTokenizer

__all__ = ["ChunkDocuments", "ChunkingTokenizer", "chunk_document", "token_windows"]
