"""Model2Vec models for workers: where they come from, how they load, how they embed.

A model source is a Hugging Face id (``minishlab/potion-base-8M``), a local
folder, or an fsspec URL of a folder (``gs://bucket/models/potion``), which is
copied once to a local cache on each machine (see
:mod:`transforms.model_files`). Within a worker process, RunInference loads the
model once and shares it between threads (``apache_beam.utils.shared``).

:class:`StaticEmbedder` computes the same vectors as ``StaticModel.encode``
(float32, whatever the stored dtype), with none of the things that hurt in a
worker: no thread pool of its own, no progress bar, no forced download and no
change to the shared tokenizer's state on each call.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transforms.embedding.pooling import drop_token, flatten_ids, mean_pool
from transforms.model_files import (
    ModelFiles,
    ModelLoadError,
    resolve_model_source,
    tokenizer_fingerprint,
    vectors_fingerprint,
)
from transforms.text.tokenizing import ExactTokenizer
from transforms.types import TokenIds

__all__ = [
    "ModelDescription",
    "ModelLoadError",
    "QueryEncoder",
    "StaticEmbedder",
    "describe_model",
]

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What the launcher needs to know of a model, read from its files.

    Attributes:
      source: The model source, as given.
      dim: Vector dimension.
      max_length: Tokens the model reads of a text at most (``None``: all).
      fingerprint: What identifies the vectors the model makes; stored on the
        collection (see ``prepare_collection``).
    """

    source: str
    dim: int
    max_length: int | None
    fingerprint: Mapping[str, Any]


def describe_model(source: str, *, cache_dir: str | None = None) -> ModelDescription:
    """Reads a model's dimension, ``max_length`` and fingerprint from its files.

    Cheaper than loading it (no ``StaticModel`` is built): what a launcher
    calls once to prepare the collection and hand the sink its dimension.
    The fingerprint equals :meth:`StaticEmbedder.fingerprint` of the loaded
    model.

    Raises:
      ModelLoadError: the model's files cannot be found or read.
    """
    files = ModelFiles.locate(source, cache_dir=cache_dir)
    fingerprint = files.fingerprint()
    return ModelDescription(
        source=source,
        dim=int(fingerprint["dim"]),
        max_length=files.max_length,
        fingerprint=fingerprint,
    )


class StaticEmbedder:
    """A loaded Model2Vec model, ready to embed batches and cut windows.

    Thread-safe: every method only reads the model. Create it with
    :meth:`load`, or in Beam workers with :func:`acquire_embedder`.
    """

    def __init__(self, model: Any, source: str) -> None:
        self.source = source
        self._model = model
        # The table stays in its stored dtype (int8 rows are a quarter of the
        # memory to gather); pooling sums in float32, as encode does.
        self._table = np.ascontiguousarray(model.embedding)
        if self._table.dtype not in (np.int8, np.float16, np.float32):
            self._table = self._table.astype(np.float32)
        self._weights = None if model.weights is None else np.asarray(model.weights, np.float32)
        self._mapping = (
            None if model.token_mapping is None else np.asarray(model.token_mapping, np.int64)
        )
        self._unk_id: int | None = model.unk_token_id
        self._max_chars = (
            None if model.max_length is None else model.max_length * model.median_token_length
        )
        self.normalize = bool(model.normalize)
        self.max_length: int | None = model.max_length
        # The model's own tokenizer, with the truncation encode uses; its
        # settings are copied once and never changed.
        self._tokenizer = ExactTokenizer(model.tokenizer)
        self.tokenizer_fingerprint = tokenizer_fingerprint(model.tokenizer)
        self._uncounted_loads = 0
        self._loads_lock = threading.Lock()

    @classmethod
    def load(cls, source: str, *, cache_dir: str | None = None) -> StaticEmbedder:
        """Loads a model from a Hugging Face id, a local folder or an fsspec URL.

        Raises:
          ModelLoadError: with the source in the message.
        """
        from model2vec import StaticModel

        started = time.monotonic()
        path = resolve_model_source(source, cache_dir)
        try:
            # force_download=False: a worker uses the local cache when it has one.
            model = StaticModel.from_pretrained(path, force_download=False)
        except Exception as e:  # model2vec and huggingface_hub raise many types
            raise ModelLoadError(f"could not load the Model2Vec model {source!r}: {e}") from e
        embedder = cls(model, source)
        embedder._uncounted_loads = 1
        _LOGGER.info(
            "Loaded Model2Vec model %s (dim %d, normalize=%s) in %.2fs in process %d",
            source,
            embedder.dim,
            embedder.normalize,
            time.monotonic() - started,
            os.getpid(),
        )
        return embedder

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the vectors this model makes, for the collection.

        Equal to what :func:`describe_model` reads from the model's files.
        """
        return {
            "model": self.source,
            "dim": self.dim,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "vectors_sha256": vectors_fingerprint(self._table, self._weights),
            "tokenizer_sha256": self.tokenizer_fingerprint,
        }

    def take_uncounted_load(self) -> int:
        """1 the first time it is asked after :meth:`load` made this model, then 0.

        A worker loads the model in a DoFn's ``setup()``, where Beam counts no
        metric; the first batch it embeds counts the load (the
        ``model_loads`` counter). Kept on the model itself, so a long-lived
        worker that runs job after job counts each job's own loads.
        """
        if not self._uncounted_loads:
            return 0
        with self._loads_lock:
            loads, self._uncounted_loads = self._uncounted_loads, 0
        return loads

    def embed(
        self, texts: Sequence[str], token_ids: Sequence[TokenIds | None] | None = None
    ) -> np.ndarray:
        """Embeds texts as ``StaticModel.encode`` would, as a float32 array.

        Cost: tokenizing is most of it. A text whose ``token_ids`` are given
        (chunking counted them, see ``transforms.text.chunk_document``) is
        not tokenized again when they are this model's tokenizer's and the
        text is short enough that ``encode`` would not cut it; the others are
        tokenized in one call (see :mod:`transforms.text.tokenizing`). Pooling
        is one gather and one sum per text (see
        :mod:`transforms.embedding.pooling`); no thread pool of our own.

        Args:
          texts: The texts; empty ones get a zero vector.
          token_ids: For each text, its ids if known, else ``None``.

        Returns:
          An array of shape ``(len(texts), dim)``.
        """
        ids = self._token_ids(texts, token_ids)
        flat, lengths = flatten_ids(ids)
        if self._unk_id is not None:
            # model2vec drops the unknown token (it matters for word-level vocabularies).
            flat, lengths = drop_token(flat, lengths, self._unk_id)
        return mean_pool(
            flat,
            lengths,
            self._table,
            weights=self._weights,
            mapping=self._mapping,
            normalize=self.normalize,
        )

    def _known_ids(self, text: str, known: TokenIds | None) -> np.ndarray | None:
        """``known``'s ids if they are what this model's ``encode`` reads of ``text``."""
        if known is None or known.tokenizer != self.tokenizer_fingerprint:
            return None
        if self._max_chars is not None and len(text) > self._max_chars:
            return None  # encode cuts the text first, then tokenizes
        if self.max_length is not None and len(known.ids) > self.max_length:
            return None  # encode truncates
        return known.ids

    def _token_ids(
        self, texts: Sequence[str], known: Sequence[TokenIds | None] | None
    ) -> list[np.ndarray | list[int]]:
        """Each text's ids as the model's tokenizer gives them (truncated as encode does)."""
        token_ids: list[np.ndarray | list[int]] = []
        missing: list[int] = []
        for i, text in enumerate(texts):
            ids = None if known is None else self._known_ids(text, known[i])
            if ids is None:
                missing.append(i)
                token_ids.append([])
            else:
                token_ids.append(ids)
        if missing:
            # Cut to max_length * median token length characters, then
            # truncated at max_length tokens, as encode does.
            limit = self._max_chars
            found = self._tokenizer.token_ids(
                [texts[i] if limit is None else texts[i][:limit] for i in missing]
            )
            for i, text_ids in zip(missing, found, strict=True):
                token_ids[i] = text_ids
        return token_ids


class QueryEncoder:
    """Plain-Python encoder with the API of pymilvus' ``Model2VecEmbeddingFunction``.

    Use it where there is no pipeline: a web service that encodes one query at
    a time, a notebook. Unlike pymilvus' class it loads lazily (on first use,
    not when constructed), takes fsspec URLs, and never downloads when the
    source is local. Vectors are the ones :class:`EmbedChunks` writes.

    Args:
      model_source: Hugging Face id, local folder or fsspec URL.
    """

    def __init__(self, model_source: str = "minishlab/potion-base-8M") -> None:
        self.model_source = model_source
        self._embedder: StaticEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def embedder(self) -> StaticEmbedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = StaticEmbedder.load(self.model_source)
        return self._embedder

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return list(self.embedder.embed(list(queries)))

    def encode_documents(self, documents: Sequence[str]) -> list[np.ndarray]:
        return list(self.embedder.embed(list(documents)))

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode_documents(texts)

    def __repr__(self) -> str:
        return f"QueryEncoder({self.model_source!r})"
