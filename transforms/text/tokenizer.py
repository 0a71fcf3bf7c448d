"""The tokenizer chunking counts with: the model's own, without truncation.

Chunking must count tokens exactly as the model will when it embeds a chunk,
so it uses the model's tokenizer (read from the model's files, see
:mod:`transforms.model_files`), with truncation and padding off so that every
token of a long document is counted. It never needs the model's vectors.

:class:`ChunkingTokenizer` is immutable and thread-safe; a worker process
loads one per model source (``ChunkDocuments`` shares it between threads with
``apache_beam.utils.shared``).

Cost: loading parses the tokenizer's JSON (about 0.1 s for a 30,000-token
vocabulary); tokenizing goes through :class:`~transforms.text.tokenizing.ExactTokenizer`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transforms.model_files import ModelFiles, tokenizer_fingerprint
from transforms.text.tokenizing import ExactTokenizer, TokenizedText, Tokens

__all__ = ["ChunkingTokenizer"]


class ChunkingTokenizer:
    """A model's tokenizer for counting and cutting windows, with its fingerprint.

    Create it with :meth:`load`, or from a ``tokenizers.Tokenizer`` set up as
    the model sets up its own (truncation at the model's ``max_length``).

    Attributes:
      fingerprint: Identifies the model's tokenizer (its settings included);
        part of every chunk id, and what an embedder checks before it takes a
        chunk's token ids.
      max_length: Tokens the model reads of a text at most (``None``: all).
    """

    def __init__(self, model_tokenizer: Any, *, max_length: int | None) -> None:
        self.fingerprint = tokenizer_fingerprint(model_tokenizer)
        self.max_length = max_length
        counting = model_tokenizer.from_str(model_tokenizer.to_str())
        counting.no_truncation()
        counting.no_padding()
        self._exact = ExactTokenizer(counting)

    @classmethod
    def load(cls, source: str, *, cache_dir: str | None = None) -> ChunkingTokenizer:
        """Loads the tokenizer of the model at ``source`` (id, folder or URL).

        Raises:
          ModelLoadError: the model's files cannot be found or read.
        """
        files = ModelFiles.locate(source, cache_dir=cache_dir)
        return cls(files.load_tokenizer(), max_length=files.max_length)

    def tokenize(self, text: str) -> tuple[Tokens, TokenizedText | None]:
        """The text's ids and offsets (every token), and, where that is exact,
        its tokens to answer for its stretches without tokenizing them."""
        return self._exact.tokenize_text(text)

    def token_ids(self, text: str) -> np.ndarray:
        """The text's ids (every token), as ``int32``."""
        return self._exact.tokenize_text(text)[0].ids

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``, as the model counts them before truncating."""
        return len(self._exact.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> Any:
        """``tokenizers.Encoding`` of the text (ids, offsets), without special tokens."""
        return self._exact.encode(text, add_special_tokens=False)
