"""ChunkDocuments: token windows with overlap, cut with the model's own tokenizer.

Counting tokens with the tokenizer that will embed the text means no chunk is
silently truncated by the model, and a window boundary always falls between
two tokens, never inside a word piece. Chunk ids are deterministic (see
:func:`transforms.types.chunk_id`), so a re-run rewrites the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from transforms import metrics
from transforms.config import ChunkingConfig
from transforms.model import StaticEmbedder, acquire_embedder
from transforms.types import Chunk, DeadLetter, Document, chunk_id

__all__ = ["CHUNKS", "ChunkDocuments", "token_windows"]

CHUNKS = "chunks"
DEAD_LETTERS = "dead_letters"


def token_windows(
    offsets: list[tuple[int, int]], max_tokens: int, overlap_tokens: int
) -> list[tuple[int, int]]:
    """Returns the character spans of token windows over a tokenized text.

    Args:
      offsets: ``(start, end)`` character offsets of each token, in order.
      max_tokens: Tokens per window.
      overlap_tokens: Tokens shared by consecutive windows.

    Returns:
      ``(start, end)`` character spans; the last window ends at the last token.
    """
    step = max_tokens - overlap_tokens
    spans = []
    for first in range(0, len(offsets), step):
        last = min(first + max_tokens, len(offsets)) - 1
        spans.append((offsets[first][0], offsets[last][1]))
        if last == len(offsets) - 1:
            break
    return spans


class _ChunkDocumentsFn(beam.DoFn):
    def __init__(self, model_source: str, config: ChunkingConfig) -> None:
        self._model_source = model_source
        self._config = config
        self._embedder: StaticEmbedder | None = None
        self._settings = ""
        self._chunks = metrics.counter(metrics.CHUNKS)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)

    def setup(self) -> None:
        self._embedder = acquire_embedder(self._model_source)
        self._settings = self._config.fingerprint(self._embedder.tokenizer_fingerprint)

    def process(self, document: Document) -> Iterator[Chunk | pvalue.TaggedOutput]:
        assert self._embedder is not None, "setup() was not called"
        encoding = self._embedder.window_tokenizer.encode(document.text, add_special_tokens=False)
        spans = token_windows(
            encoding.offsets, self._config.max_tokens, self._config.overlap_tokens
        )
        if not spans:
            self._dead_lettered.inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter.of(
                    "chunk", document.source or document.id, "document has no tokens", document.text
                ),
            )
            return
        for index, (start, end) in enumerate(spans):
            self._chunks.inc()
            yield Chunk(
                id=chunk_id(document.id, index, self._settings),
                document_id=document.id,
                index=index,
                text=document.text[start:end],
                start=start,
                end=end,
                metadata=document.metadata,
            )


class ChunkDocuments(beam.PTransform):
    """Cuts documents into overlapping token windows.

    Args:
      model: Source of the Model2Vec model whose tokenizer counts tokens:
        Hugging Face id, local folder or fsspec URL.
      config: Window and overlap sizes.

    Returns:
      The outputs ``chunks`` and ``dead_letters`` (a ``DoOutputsTuple``).
    """

    def __init__(self, model: str, config: ChunkingConfig = ChunkingConfig()) -> None:
        super().__init__()
        self._model = model
        self._config = config

    def expand(self, documents: beam.PCollection[Document]) -> pvalue.DoOutputsTuple:
        return documents | "Chunk" >> beam.ParDo(
            _ChunkDocumentsFn(self._model, self._config)
        ).with_outputs(DEAD_LETTERS, main=CHUNKS)

    def display_data(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "max_tokens": self._config.max_tokens,
            "overlap_tokens": self._config.overlap_tokens,
        }
