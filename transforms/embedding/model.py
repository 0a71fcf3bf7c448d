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

import collections
import hashlib
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

from transforms import metrics
from transforms.pooling import drop_token, flatten_ids, mean_pool
from transforms.tokenizing import ExactTokenizer, TokenizedText, plain_text

__all__ = [
    "ModelLoadError",
    "QueryEncoder",
    "StaticEmbedder",
    "acquire_embedder",
    "count_model_loads",
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


class _WindowTokenizer:
    """The window tokenizer: chunking's, remembering the windows it counted.

    Chunking tokenizes a document (for its offsets), then counts the tokens
    of each window it considers by encoding the window's text (see
    ``transforms.chunking``). Two things make that cheaper, and both give
    exactly what the tokenizer gives:

    * A window cut between words of the document it was cut from is answered
      from the document's own tokens (see
      :class:`~transforms.tokenizing.TokenizedText`), without tokenizing it.
    * Each window's ids (``int32``, about 1 KB) are remembered in a bounded
      first-in-first-out table, and :meth:`StaticEmbedder.embed` takes a
      text's ids from there instead of tokenizing it again: embedding a chunk
      right after chunking tokenizes nothing. A text not found (another
      process chunked it, or it was pushed out) is tokenized as usual.

    Everything else is the ``tokenizers.Tokenizer`` it wraps.
    """

    def __init__(
        self, tokenizer: ExactTokenizer, *, max_tokens: int | None, max_chars: int | None
    ) -> None:
        self._tokenizer = tokenizer
        self._max_tokens = max_tokens
        self._max_chars = max_chars
        self._remembered: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._last = threading.local()  # the last document each thread tokenized

    def encode(
        self,
        sequence: Any,
        pair: Any = None,
        is_pretokenized: bool = False,
        add_special_tokens: bool = True,
    ) -> Any:
        plain = plain_text(sequence, pair, is_pretokenized, add_special_tokens)
        if plain is None:
            return self._tokenizer.encode(sequence, pair, is_pretokenized, add_special_tokens)
        document: TokenizedText | None = getattr(self._last, "document", None)
        if document is not None and len(sequence) <= len(document.text):
            ids = document.stretch_ids(sequence)
            if ids is not None:
                self._remember(sequence, ids)
                return _Window(sequence, ids, self._tokenizer)
        encoding, tokenized = self._tokenizer.tokenize_text(sequence)
        if tokenized is not None:
            self._last.document = tokenized
        if self._fits(sequence, len(encoding)):
            self._remember(sequence, encoding.ids)
        return encoding

    def _fits(self, text: str, tokens: int) -> bool:
        """Whether the model reads the whole text, so that its ids are the model's too."""
        return (self._max_chars is None or len(text) <= self._max_chars) and (
            self._max_tokens is None or tokens <= self._max_tokens
        )

    def _remember(self, text: str, ids: np.ndarray) -> None:
        if not self._fits(text, len(ids)):
            return
        with self._lock:
            self._remembered[text] = ids
            if len(self._remembered) > _REMEMBERED_TEXTS:
                del self._remembered[next(iter(self._remembered))]

    def recall(self, text: str) -> np.ndarray | None:
        """The ids of ``text`` if it was encoded lately."""
        with self._lock:
            return self._remembered.get(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class _Window:
    """What encoding a window gives when its ids came from its document:
    ``ids`` at once; anything else (offsets, tokens) by tokenizing it."""

    __slots__ = ("_encoding", "_ids", "_text", "_tokenizer")

    def __init__(self, text: str, ids: np.ndarray, tokenizer: ExactTokenizer) -> None:
        self._text = text
        self._ids = ids
        self._tokenizer = tokenizer
        self._encoding: Any = None

    @property
    def ids(self) -> list[int]:
        ids: list[int] = self._ids.tolist()
        return ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getattr__(self, name: str) -> Any:
        if self._encoding is None:
            self._encoding = self._tokenizer.encode(self._text, add_special_tokens=False)
        return getattr(self._encoding, name)


# Texts remembered per process: more than the texts chunked between a chunk's
# cut and its embedding (RunInference batches of up to a few hundred chunks,
# a few counts per chunk), at about 1 KB each.
_REMEMBERED_TEXTS = 8192


class StaticEmbedder:
    """A loaded Model2Vec model, ready to embed batches and cut windows.

    Thread-safe: every method only reads the model. Create it with
    :meth:`load`, or in Beam workers with :func:`acquire_embedder`.
    """

    def __init__(self, model: Any, source: str) -> None:
        from tokenizers import Tokenizer

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
        # Chunking counts every token, so it gets its own tokenizer without
        # truncation; the model's own one keeps the truncation encode uses.
        window_tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        window_tokenizer.no_truncation()
        window_tokenizer.no_padding()
        self.window_tokenizer = _WindowTokenizer(
            ExactTokenizer(window_tokenizer), max_tokens=self.max_length, max_chars=self._max_chars
        )
        # The model's own tokenizer, with the truncation encode uses; its
        # settings are copied once and never changed.
        self._tokenizer = ExactTokenizer(model.tokenizer)
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
        # The hash of the float32 table, a block of rows at a time.
        digest = hashlib.sha256()
        for start in range(0, len(self._table), 4096):
            digest.update(np.ascontiguousarray(self._table[start : start + 4096], np.float32).data)
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

        Cost: tokenizing is most of it. Texts that :attr:`window_tokenizer`
        encoded lately (the windows chunking just cut) are not tokenized
        again; the others are tokenized in one call (see
        :mod:`transforms.tokenizing`), which the tokenizer spreads over the
        machine's cores. Pooling is one gather and one sum per text (see
        :mod:`transforms.pooling`); no thread pool of our own.

        Args:
          texts: The texts; empty ones get a zero vector.

        Returns:
          An array of shape ``(len(texts), dim)``.
        """
        token_ids = self._token_ids(texts)
        flat, lengths = flatten_ids(token_ids)
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

    def _token_ids(self, texts: Sequence[str]) -> list[np.ndarray | list[int]]:
        """Each text's ids as the model's tokenizer gives them (truncated as encode does)."""
        limit = self._max_chars
        if limit is not None:
            texts = [t if len(t) <= limit else t[:limit] for t in texts]
        recall = self.window_tokenizer.recall
        token_ids: list[np.ndarray | list[int]] = []
        missing: list[int] = []
        for i, text in enumerate(texts):
            ids = recall(text)
            if ids is None:
                missing.append(i)
                token_ids.append([])
            else:
                token_ids.append(ids)
        if missing:
            # Truncated at max_length, as encode does.
            found = self._tokenizer.token_ids([texts[i] for i in missing])
            for i, text_ids in zip(missing, found, strict=True):
                token_ids[i] = text_ids
        return token_ids


# One model per source per process, shared by threads and by steps. A Shared
# handle keeps one object, so each source gets a handle of its own.
_HANDLES: dict[str, shared.Shared] = {}
_HANDLES_LOCK = threading.Lock()


def acquire_embedder(source: str) -> StaticEmbedder:
    """Returns this process's model for ``source``, loading it on first use.

    The model lives as long as some caller (a DoFn, say) holds it. A load in
    a worker adds one to the ``model_loads`` counter.
    """
    with _HANDLES_LOCK:
        handle = _HANDLES.setdefault(source, shared.Shared())
    return handle.acquire(lambda: _load_counted(source))


# Loads not yet added to the model_loads counter, by source. A worker loads
# the model in a DoFn's setup(), where Beam counts no metric; the first batch
# embedded in the process with that source adds them (see count_model_loads).
# Kept by source because a long-lived worker (Dask, a portable worker pool)
# runs job after job: a load that no batch of its own job counted must not be
# counted by a later job of another model. The launcher's own load (to check
# the model before the run) is counted by no pipeline.
_uncounted_loads: collections.Counter[str] = collections.Counter()
_uncounted_lock = threading.Lock()


def _load_counted(source: str) -> StaticEmbedder:
    embedder = StaticEmbedder.load(source)
    with _uncounted_lock:
        _uncounted_loads[source] += 1
    return embedder


def count_model_loads(source: str) -> None:
    """Adds this process's loads of ``source`` to the ``model_loads`` counter, once.

    Call it where Beam counts metrics (while processing a bundle).
    """
    if not _uncounted_loads.get(source):
        return
    with _uncounted_lock:
        loads = _uncounted_loads.pop(source, 0)
    if loads:
        metrics.counter(metrics.MODEL_LOADS).inc(loads)


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
