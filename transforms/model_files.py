"""A Model2Vec model's files: where they are, and what they say without building the model.

Use it where a model's facts are needed but its vectors are not: the launcher
needs the dimension and the fingerprint to prepare the collection, chunking
needs only the tokenizer, and neither should pay for a whole ``StaticModel``.
The embedding layer (:mod:`transforms.embedding`) loads the model itself with
model2vec and checks that it agrees with what is read here.

A model source is a Hugging Face id (``minishlab/potion-base-8M``), a local
folder, or an fsspec URL of a folder (``gs://bucket/models/potion``), which is
copied once to a local cache on each machine. :func:`local_model_path` tells a
path from an id by its shape, so that a mistyped folder fails as "no such model
folder", never as a download from the hub.

Cost: locating a local folder is a ``stat``; a Hugging Face id is looked up
in the local hub cache first and downloaded only when missing. Reading the
config is a small JSON file; the tokenizer is parsed from its JSON (a few
hundred KB, about 0.1 s); the fingerprint reads the vector table once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "ModelFiles",
    "ModelLoadError",
    "local_model_path",
    "resolve_model_source",
    "tokenizer_fingerprint",
    "vectors_fingerprint",
]

_LOGGER = logging.getLogger(__name__)

_CACHE_ENV = "MILVUS_INGEST_MODEL_CACHE"
_DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "milvus-ingest", "models")

DEFAULT_MAX_LENGTH = 512
"""model2vec's ``max_length`` for a model whose config names none."""
_DEFAULT_NORMALIZE = False

# model2vec's folder layouts, in the order it tries them: (config, vectors, tokenizer).
_LAYOUTS = (
    ("config.json", "model.safetensors", "tokenizer.json"),
    ("config_sentence_transformers.json", "model.safetensors", "tokenizer.json"),
    (
        "config_sentence_transformers.json",
        "0_StaticEmbedding/model.safetensors",
        "0_StaticEmbedding/tokenizer.json",
    ),
)
_HUB_FILES = sorted({name for layout in _LAYOUTS for name in layout} | {"README.md"})


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message names the source."""


def _is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


# A Hugging Face repository id, as huggingface_hub validates it: ``name`` or
# ``owner/name``, each part letters, digits, ``-``, ``_`` and ``.``, neither
# starting nor ending with ``-`` or ``.``, the name at most 96 characters.
_HF_PART = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
_HF_ID = re.compile(rf"^(?:{_HF_PART}/)?{_HF_PART}$")
_HF_NAME_MAX = 96


def _is_hf_id(source: str) -> bool:
    """Whether ``source`` has the shape of a Hugging Face id (``name`` or ``owner/name``)."""
    return (
        bool(_HF_ID.match(source))
        and len(source.rsplit("/", 1)[-1]) <= _HF_NAME_MAX
        and "--" not in source
        and ".." not in source
    )


def local_model_path(source: str, base: str | None = None) -> str | None:
    """The local path a model source names, absolute; None for a Hugging Face id or a URL.

    Decides, without reading the folder, whether ``source`` is a path, so that
    a mistyped folder fails as one ("no such model folder") instead of being
    looked up on the Hugging Face hub. A source is a path when it:

    * is a ``file://`` URL, starts with ``/``, ``~`` or ``.`` (``./m``,
      ``../m``), or is absolute on this system;
    * has a shape no Hugging Face id has: more than one ``/``, a backslash, or
      a character an id cannot hold (a space, ``:``...);
    * has an id's shape (``name`` or ``owner/name``) but exists under
      ``base``, or its ``owner`` is a folder there: ``models/minilm-typo``
      where ``models/`` is a folder is a mistyped path, not a model of the
      hub's user ``models``.

    Anything else shaped ``name`` or ``owner/name`` is a Hugging Face id, and
    any other ``scheme://`` is an fsspec URL. Costs a ``stat`` or two.

    Args:
      source: The model as the user gave it.
      base: The folder a relative path is relative to: the config file's
        folder for a config's value, the current folder (the default) for a
        flag's.

    Returns:
      The absolute path (``..`` resolved as written, symbolic links kept), or
      None.
    """
    if _is_url(source):
        return None
    base = base or os.getcwd()
    path = os.path.expanduser(source.removeprefix("file://"))
    anchored = os.path.normpath(os.path.join(base, path))
    if source.startswith(("file://", "/", "~", ".")) or os.path.isabs(path):
        return anchored
    if not _is_hf_id(source):
        return anchored
    owner = source.split("/", 1)[0] if "/" in source else None
    if os.path.exists(anchored) or (owner and os.path.isdir(os.path.join(base, owner))):
        return anchored
    return None


def resolve_model_source(source: str, cache_dir: str | None = None) -> str:
    """Returns a local folder, or a Hugging Face id, to load ``source`` from.

    A local folder (see :func:`local_model_path`; relative to the current
    folder) is used as it is, as an absolute path; an fsspec URL is copied to
    ``cache_dir`` (default ``$MILVUS_INGEST_MODEL_CACHE`` or
    ``~/.cache/milvus-ingest/models``) once per machine; anything else is taken
    as a Hugging Face id.

    Raises:
      ModelLoadError: the source is a path and no folder is there (the
        message is ``no such model folder: <absolute path>``), or the URL
        cannot be copied.
    """
    if not source:
        raise ModelLoadError("model source is empty: give a Hugging Face id, a folder or a URL.")
    if _is_url(source):
        return _stage_remote_folder(source, cache_dir or os.environ.get(_CACHE_ENV, _DEFAULT_CACHE))
    path = local_model_path(source)
    if path is None:
        return source
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise ModelLoadError(
            f"model source {path} is a file: give the folder that holds the Model2Vec model "
            "(config.json, model.safetensors, tokenizer.json)."
        )
    raise ModelLoadError(f"no such model folder: {path}")


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


def _hub_folder(repo_id: str) -> str:
    """The local folder of a Hugging Face model: the hub cache's copy, else a download.

    Downloads what model2vec downloads (its layouts' files), and only when the
    cache lacks them, as ``StaticModel.from_pretrained(force_download=False)``.
    """
    import huggingface_hub

    try:
        return str(
            huggingface_hub.snapshot_download(
                repo_id, repo_type="model", allow_patterns=_HUB_FILES, local_files_only=True
            )
        )
    except Exception:  # not in the cache (huggingface_hub raises several types)
        pass
    try:
        return str(
            huggingface_hub.snapshot_download(repo_id, repo_type="model", allow_patterns=_HUB_FILES)
        )
    except Exception as e:
        raise ModelLoadError(
            f"could not download the Model2Vec model {repo_id!r} from the Hugging Face hub: {e}. "
            "Check the id and your connection, or give a local folder."
        ) from e


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identifies a ``tokenizers.Tokenizer`` as model2vec sets it up (16 hex characters)."""
    return hashlib.sha256(tokenizer.to_str().encode("utf-8")).hexdigest()[:16]


def vectors_fingerprint(table: np.ndarray, weights: np.ndarray | None) -> str:
    """Identifies a model's vectors: SHA-256 of the table as ``float32`` (and its weights).

    The table is hashed a block of rows at a time, so a quantised table is
    never copied whole.
    """
    digest = hashlib.sha256()
    for start in range(0, len(table), 4096):
        digest.update(np.ascontiguousarray(table[start : start + 4096], np.float32).data)
    if weights is not None:
        digest.update(np.asarray(weights, np.float32).tobytes())
    return digest.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """Where a model's files are, and what they say.

    Attributes:
      source: The source as given (id, folder or URL).
      folder: The local folder holding the files.
      config_path: The model's config (``max_length``, ``normalize``).
      vectors_path: The safetensors file with the vector table.
      tokenizer_path: The tokenizer's JSON.
    """

    source: str
    folder: str
    config_path: str
    vectors_path: str
    tokenizer_path: str

    @classmethod
    def locate(cls, source: str, *, cache_dir: str | None = None) -> ModelFiles:
        """Finds the files of ``source``: a folder, a staged URL or the hub's copy.

        Raises:
          ModelLoadError: the source cannot be found, or holds no Model2Vec model.
        """
        resolved = resolve_model_source(source, cache_dir)
        folder = resolved if os.path.isdir(resolved) else _hub_folder(resolved)
        for config, vectors, tokenizer in _LAYOUTS:
            paths = [os.path.join(folder, name) for name in (config, vectors, tokenizer)]
            if all(os.path.isfile(p) for p in paths):
                return cls(source, folder, *paths)
        raise ModelLoadError(
            f"model source {source!r} ({folder}) holds no Model2Vec model: expected "
            "config.json, model.safetensors and tokenizer.json."
        )

    def config(self) -> Mapping[str, Any]:
        """The model's config file, parsed."""
        try:
            with open(self.config_path, encoding="utf-8") as f:
                config: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read {self.config_path}: {e}") from e
        return config

    @property
    def max_length(self) -> int | None:
        """Tokens the model reads of a text at most, as model2vec takes it from the config."""
        value = self.config().get("max_length", DEFAULT_MAX_LENGTH)
        return None if value is None else int(value)

    @property
    def normalize(self) -> bool:
        """Whether the model normalises its vectors, as model2vec takes it from the config."""
        return bool(self.config().get("normalize", _DEFAULT_NORMALIZE))

    def load_tokenizer(self) -> Any:
        """The tokenizer, set up as ``StaticModel`` sets up its own.

        Padding off (its pad token kept), truncation at :attr:`max_length`:
        what ``StaticModel.from_pretrained`` does, so that
        :func:`tokenizer_fingerprint` of both is the same.
        """
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(self.tokenizer_path)
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise ModelLoadError(f"cannot read the tokenizer {self.tokenizer_path}: {e}") from e
        padding = tokenizer.padding
        if padding is not None:
            tokenizer.enable_padding(
                pad_id=padding["pad_id"],
                pad_token=padding["pad_token"],
                pad_type_id=padding["pad_type_id"],
                length=0,
            )
        max_length = self.max_length
        if max_length is None:
            tokenizer.no_truncation()
        else:
            tokenizer.enable_truncation(max_length)
        return tokenizer

    def vectors(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The vector table in its stored dtype, and the per-token weights if any."""
        from safetensors import safe_open

        with safe_open(self.vectors_path, framework="numpy") as tensors:
            names = set(tensors.keys())
            name = "embeddings" if "embeddings" in names else "embedding.weight"
            table = tensors.get_tensor(name)
            weights = tensors.get_tensor("weights") if "weights" in names else None
        return table, weights

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the vectors this model makes, as stored on a collection.

        Equal to ``StaticEmbedder.fingerprint()`` of the loaded model (a test
        holds both to it), without building the model.
        """
        table, weights = self.vectors()
        return {
            "model": self.source,
            "dim": int(table.shape[1]),
            "normalize": self.normalize,
            "max_length": self.max_length,
            "vectors_sha256": vectors_fingerprint(table, weights),
            "tokenizer_sha256": tokenizer_fingerprint(self.load_tokenizer()),
        }
