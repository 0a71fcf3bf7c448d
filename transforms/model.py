"""Model2Vec models for workers: where they come from, how they load, how they embed.

A model source is a Hugging Face id (``minishlab/potion-base-8M``), a local
folder, or an fsspec URL of a folder (``gs://bucket/models/potion``), which is
copied once to a local cache on each machine. Within a process the model is
loaded once and shared by every thread and every step that asks for the same
source (chunking needs its tokenizer, embedding its vectors).

:class:`StaticEmbedder` computes the same vectors as ``StaticModel.encode``
(float32, whatever the stored dtype), with none of the things that hurt in a
worker: no thread pool of its own, no progress bar, no forced download and no
change to the shared tokenizer's state on each call.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from apache_beam.utils import shared

__all__ = [
    "ModelLoadError",
    "QueryEncoder",
    "StaticEmbedder",
    "acquire_embedder",
    "resolve_model_source",
]

_LOGGER = logging.getLogger(__name__)

_CACHE_ENV = "MILVUS_INGEST_MODEL_CACHE"
_DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "milvus-ingest", "models")


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message names the source."""


def _is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~", "file://")) or os.sep in source.replace("/", "", 1)


def resolve_model_source(source: str, cache_dir: str | None = None) -> str:
    """Returns a local folder, or a Hugging Face id, to load ``source`` from.

    A local folder is used as it is; an fsspec URL is copied to
    ``cache_dir`` (default ``$MILVUS_INGEST_MODEL_CACHE`` or
    ``~/.cache/milvus-ingest/models``) once per machine; anything else is taken
    as a Hugging Face id.

    Raises:
      ModelLoadError: the folder does not exist, or the URL cannot be copied.
    """
    if not source:
        raise ModelLoadError("model source is empty: give a Hugging Face id, a folder or a URL.")
    if _is_url(source):
        return _stage_remote_folder(source, cache_dir or os.environ.get(_CACHE_ENV, _DEFAULT_CACHE))
    path = os.path.expanduser(source.removeprefix("file://"))
    if os.path.isdir(path):
        return path
    if os.path.exists(path) or _looks_like_path(source):
        raise ModelLoadError(
            f"model source {source!r} is not a folder with a Model2Vec model "
            "(config.json, model.safetensors, tokenizer.json); check the path."
        )
    return source


def _stage_remote_folder(url: str, cache_dir: str) -> str:
    """Copies a remote model folder to a local cache; safe across processes."""
    import fsspec

    target = os.path.join(cache_dir, hashlib.sha256(url.encode()).hexdigest()[:24])
    if os.path.isdir(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    try:
        fs, root = fsspec.core.url_to_fs(url)
        files = [f for f in fs.find(root) if not f.endswith("/")]
        if not files:
            raise FileNotFoundError(f"no files under {url}")
        staging = tempfile.mkdtemp(dir=cache_dir, prefix=".staging-")
        for remote in files:
            local = os.path.join(staging, os.path.relpath(remote, root.rstrip("/")))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            fs.get_file(remote, local)
    except Exception as e:  # fsspec backends raise their own error types
        raise ModelLoadError(f"could not copy the model from {url!r}: {e}") from e
    try:
        os.rename(staging, target)
    except OSError:
        # Another process finished first; its copy is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    _LOGGER.info("Staged model %s to %s", url, target)
    return target


class StaticEmbedder:
    """A loaded Model2Vec model, ready to embed batches and cut windows.

    Thread-safe: every method only reads the model. Create it with
    :meth:`load`, or in Beam workers with :func:`acquire_embedder`.
    """

    def __init__(self, model: Any, source: str) -> None:
        from tokenizers import Tokenizer

        self.source = source
        self._model = model
        # Stored dtypes (int8, float16) are widened once, so that pooling is
        # one float32 pass and its output matches StaticModel.encode.
        self._table = np.ascontiguousarray(model.embedding, dtype=np.float32)
        self._weights = None if model.weights is None else np.asarray(model.weights, np.float32)
        self._mapping = model.token_mapping
        self._max_chars = (
            None if model.max_length is None else model.max_length * model.median_token_length
        )
        self.normalize = bool(model.normalize)
        self.max_length: int | None = model.max_length
        # Chunking counts every token, so it gets its own tokenizer without
        # truncation; the model's own one keeps the truncation encode uses.
        self.window_tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        self.window_tokenizer.no_truncation()
        self.window_tokenizer.no_padding()
        self.tokenizer_fingerprint = hashlib.sha256(
            model.tokenizer.to_str().encode("utf-8")
        ).hexdigest()[:16]

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
        """What identifies the vectors this model makes, for the collection."""
        digest = hashlib.sha256(self._table.tobytes())
        if self._weights is not None:
            digest.update(self._weights.tobytes())
        return {
            "model": self.source,
            "dim": self.dim,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "vectors_sha256": digest.hexdigest()[:16],
            "tokenizer_sha256": self.tokenizer_fingerprint,
        }

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds texts as ``StaticModel.encode`` would, as a float32 array.

        Args:
          texts: The texts; empty ones get a zero vector.

        Returns:
          An array of shape ``(len(texts), dim)``.
        """
        if self._max_chars is not None:
            limit = self._max_chars
            texts = [t[:limit] for t in texts]
        token_ids = self._model.tokenize(texts)
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        out = np.zeros((len(token_ids), self.dim), dtype=np.float32)
        has_tokens = lengths > 0
        if has_tokens.any():
            flat = np.fromiter(
                itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum())
            )
            rows = self._table[flat if self._mapping is None else self._mapping[flat]]
            if self._weights is not None:
                rows *= self._weights[flat, None]
            starts = (np.cumsum(lengths) - lengths)[has_tokens]
            out[has_tokens] = np.add.reduceat(rows, starts, axis=0) / lengths[has_tokens, None]
        if self.normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out


# One model per source per process, shared by threads and by steps. A Shared
# handle keeps one object, so each source gets a handle of its own.
_HANDLES: dict[str, shared.Shared] = {}
_HANDLES_LOCK = threading.Lock()


def acquire_embedder(source: str) -> StaticEmbedder:
    """Returns this process's model for ``source``, loading it on first use.

    The model lives as long as some caller (a DoFn, say) holds it.
    """
    with _HANDLES_LOCK:
        handle = _HANDLES.setdefault(source, shared.Shared())
    return handle.acquire(lambda: StaticEmbedder.load(source))


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


def fingerprint_json(fingerprint: dict[str, Any]) -> str:
    """The fingerprint as stored on a collection: compact, sorted JSON."""
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
