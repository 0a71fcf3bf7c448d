"""A run's settings, from its YAML config and the flags over it: all but Beam's.

What both command lines read before anything runs: the config file (its
relative paths made absolute from its folder, see :mod:`pipelines.options`),
the collection, the model, and the search's settings, and the flags that
define them. Nothing here imports Beam (2 s), so that a search for one query
(:mod:`pipelines.instant`) can read its settings without it; the
``PipelineOptions`` classes of :mod:`pipelines.options` add these same flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import secrets
from collections.abc import Mapping
from typing import Any

import yaml

from transforms.config import ConfigError, MilvusTarget, SearchConfig, as_patterns
from transforms.model_files import local_model_path, resolve_model_source

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SEARCH_OUTPUT",
    "LOG_LEVELS",
    "OUTPUT_FORMATS",
    "SearchSettings",
    "add_log_level_flag",
    "add_milvus_flags",
    "add_search_flags",
    "new_run_id",
    "read_search_settings",
    "run_output",
]

DEFAULT_MODEL = "minishlab/potion-base-8M"
OUTPUT_FOLDER = "work"
"""Where outputs go by default, relative to the current folder (git ignores it)."""
DEFAULT_DEAD_LETTER_PATH = f"{OUTPUT_FOLDER}/dead_letters"
DEFAULT_SEARCH_OUTPUT = f"{OUTPUT_FOLDER}/search"
DEAD_LETTER_FILES = "dead_letters"
"""Name of a run's dead-letter files, in its folder: ``dead_letters-00000-of-00001.jsonl``."""
SEARCH_RESULT_FILES = "results"
"""Name of a search's result files, in its folder: ``results-00000-of-00001.jsonl``."""
OUTPUT_FORMATS = ("auto", "table", "jsonl")
"""How a search prints its hits: ``auto`` is ``table`` on a terminal, else ``jsonl``."""


def add_milvus_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags both pipelines take: the config, the collection and the model."""
    parser.add_argument(
        "--config", metavar="FILE", help="YAML file describing the run, as in configs/"
    )
    parser.add_argument(
        "--milvus_uri",
        metavar="URI",
        help="Milvus server (http://host:19530), Zilliz Cloud (https://...) or a local *.db "
        "file for Milvus Lite (default: milvus.uri of the config)",
    )
    parser.add_argument(
        "--collection",
        metavar="NAME",
        help="collection to write to or search (default: milvus.collection of the config)",
    )
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="Model2Vec model: Hugging Face id, folder or fsspec URL (default: model of the "
        f"config, else {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--milvus_token_file",
        metavar="FILE",
        help="file holding the Milvus token (default: the environment variable named by "
        "milvus.token_env, MILVUS_TOKEN)",
    )


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of ``python -m pipelines.search``."""
    parser.add_argument(
        "--query",
        metavar="TEXT",
        action="append",
        help="a query; repeat the flag for several (default: search.queries of the config)",
    )
    parser.add_argument(
        "--queries_file",
        metavar="FILE",
        help="text file with one query per line, instead of the config's (default: none)",
    )
    parser.add_argument(
        "--top_k",
        metavar="K",
        type=int,
        help="hits per query (default: search.top_k of the config, else 5)",
    )
    parser.add_argument(
        "--filter",
        metavar="EXPRESSION",
        dest="filter_expression",
        help="Milvus expression the hits must match, on document_id, chunk_index and "
        'metadata paths, e.g. \'metadata["lang"] == "en"\' (default: search.filter of the '
        "config, else none)",
    )
    parser.add_argument(
        "--search_params",
        metavar="JSON",
        help="search parameters of the collection's index, a JSON object: '{\"ef\": 256}' for "
        "HNSW, '{}' for the server's own (default: search.params of the config, else chosen "
        "for the index: none for FLAT, ef of at least 1024 for HNSW)",
    )
    parser.add_argument(
        "--output_format",
        metavar="FORMAT",
        type=str.lower,
        choices=OUTPUT_FORMATS,
        default="auto",
        help="how the hits are printed: table (for people), jsonl (one JSON line per query, "
        "for programs), or auto: a table on a terminal, else jsonl (default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        metavar="FOLDER",
        help="folder of the results: a search writes <collection>/<run id>/"
        f"{SEARCH_RESULT_FILES}*.jsonl in it; one without --queries_file or --runner writes "
        f"only when this flag is given (default: search.output of the config, else "
        f"{DEFAULT_SEARCH_OUTPUT})",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level_flag(parser: argparse.ArgumentParser) -> None:
    """Adds ``--log_level``, the flag every command line of this project takes."""
    parser.add_argument(
        "--log_level",
        metavar="LEVEL",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="level of this project's log lines on stderr: DEBUG (with errors' tracebacks), "
        "INFO, WARNING or ERROR; other libraries log from WARNING (from INFO under DEBUG) "
        "(default: %(default)s)",
    )


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a search run needs, validated.

    Attributes:
      output: Prefix of this search's result files,
        ``<search output>/<collection>/<run id>/results``.
      search_params: The index's search parameters (``search.params``,
        ``--search_params``); ``None`` for the defaults of the collection's
        index (see ``SearchMilvus``).
      run_id: This search's id (see :func:`new_run_id`).
    """

    queries: tuple[str, ...]
    model: str
    target: MilvusTarget
    top_k: int
    filter_expression: str
    search_params: dict[str, Any] | None
    output: str
    run_id: str


_SECTIONS = (
    "pipeline",
    "source",
    "model",
    "chunking",
    "milvus",
    "write",
    "search",
    "dead_letter_path",
)


def _load_yaml(path: str | None) -> dict[str, Any]:
    """The config file at ``path`` (or {}), its relative paths made absolute from its folder.

    Raises:
      ConfigError: the file cannot be read, or is not a config.
    """
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"--config {path!r} cannot be read: {e.strerror}.") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {path!r} is not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"--config {path!r} must be a mapping of sections ({', '.join(_SECTIONS)})."
        )
    unknown = sorted(set(loaded) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"--config {path!r} has unknown section(s) {unknown}; known: {', '.join(_SECTIONS)}."
        )
    return _with_absolute_paths(loaded, os.path.dirname(os.path.abspath(path)))


# Keys of milvus.client_options that name files (TLS certificates and keys).
_CLIENT_FILE_OPTIONS = ("server_pem_path", "client_pem_path", "client_key_path", "ca_pem_path")


def _local(path: str, base: str) -> str:
    """A local path made absolute from ``base``; URLs and absolute paths as they are.

    ``..`` is resolved as written, not through symbolic links, as a shell's
    ``cd`` does: ``configs/../work`` is ``work`` beside the ``configs`` the
    user named, even where ``configs`` is a link.
    """
    if "://" in path:
        return path
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _anchored(path: str) -> str:
    """A relative local path given as a flag, made absolute from the current folder.

    Absolute, it means the same on workers that run from another folder
    (Dask, portable and Flink workers); URLs and absolute paths are left as
    they are.
    """
    return _local(path, os.getcwd())


def _local_uri(uri: str, base: str) -> str:
    """A Milvus Lite file made absolute from ``base``; a server's URI as it is."""
    return uri if "://" in uri or uri.startswith("unix:") else _local(uri, base)


def _with_absolute_paths(config: dict[str, Any], base: str) -> dict[str, Any]:
    """The config with the relative paths it holds made absolute from ``base``.

    Values of the wrong type are left as they are, for the settings to refuse
    with a message that names them. A ``model`` is a path only if it looks
    like one (see :func:`~transforms.model_files.local_model_path`): a
    Hugging Face id stays an id.
    """
    config = dict(config)
    source = config.get("source")
    if isinstance(source, dict) and "patterns" in source:
        patterns = source["patterns"]
        listed = [patterns] if isinstance(patterns, str) else patterns
        if isinstance(listed, (list, tuple)) and all(isinstance(p, str) for p in listed):
            config["source"] = {
                **source,
                "patterns": [_local(p, base) for p in as_patterns(patterns)],
            }
    model = config.get("model")
    if isinstance(model, str) and model:
        config["model"] = local_model_path(model, base) or model
    milvus = config.get("milvus")
    if isinstance(milvus, dict):
        milvus = dict(milvus)
        if isinstance(milvus.get("uri"), str) and milvus["uri"]:
            milvus["uri"] = _local_uri(milvus["uri"], base)
        if isinstance(milvus.get("token_file"), str) and milvus["token_file"]:
            milvus["token_file"] = _local(milvus["token_file"], base)
        options = milvus.get("client_options")
        if isinstance(options, dict):
            milvus["client_options"] = {
                key: _local(value, base)
                if key in _CLIENT_FILE_OPTIONS and isinstance(value, str) and value
                else value
                for key, value in options.items()
            }
        config["milvus"] = milvus
    if isinstance(config.get("dead_letter_path"), str) and config["dead_letter_path"]:
        config["dead_letter_path"] = _local(config["dead_letter_path"], base)
    search = config.get("search")
    if isinstance(search, dict) and isinstance(search.get("output"), str) and search["output"]:
        config["search"] = {**search, "output": _local(search["output"], base)}
    return config


def _section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {value!r}.")
    return dict(value)


def _build(kind: type, section: str, values: Mapping[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{section}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}."
        )
    try:
        return kind(**values)
    except TypeError as e:
        raise ConfigError(f"{section}: {e}") from e


def _target(config: Mapping[str, Any], options: Any) -> MilvusTarget:
    """The config's ``milvus:`` section, the flags winning over it."""
    milvus = _section(config, "milvus")
    if options.milvus_uri:
        milvus["uri"] = _local_uri(options.milvus_uri, os.getcwd())
    if options.collection:
        milvus["collection"] = options.collection
    if options.milvus_token_file:
        milvus["token_file"] = _anchored(options.milvus_token_file)
    if "uri" not in milvus or "collection" not in milvus:
        raise ConfigError(
            "milvus.uri and milvus.collection are required: set them in the config's milvus: "
            "section or pass --milvus_uri and --collection."
        )
    return _build(MilvusTarget, "milvus", milvus)


def _model(config: Mapping[str, Any], options: Any) -> str:
    """The model: a Hugging Face id, a URL, or an existing folder's absolute path.

    A flag's path is relative to the current folder; the config's is already
    absolute (see :func:`_load_yaml`).

    Raises:
      ConfigError: the config's model is not a string.
      ModelLoadError: the model is a path (see
        :func:`~transforms.model_files.local_model_path`) and no folder is
        there: ``no such model folder: <absolute path>``, before anything
        runs, never a download error.
    """
    if options.model:
        model: object = options.model
        path = local_model_path(options.model)  # from the current folder
    else:
        model = config.get("model") or DEFAULT_MODEL
        # A path of the config's was found and made absolute from its folder
        # (_load_yaml); anything else is an id or a URL, whatever is here.
        path = model if isinstance(model, str) and os.path.isabs(model) else None
    if not isinstance(model, str):
        raise ConfigError(f"model={model!r}: give a Hugging Face id, a folder or a URL.")
    return model if path is None else resolve_model_source(path)


def new_run_id() -> str:
    """A new run's id: its UTC start time and a random suffix, ``20250131T142501Z-3fa9c1``.

    Sorts by start time; the suffix (24 random bits) keeps runs started in
    the same second, on one machine or several, apart.
    """
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{started}-{secrets.token_hex(3)}"


def run_output(folder: str, collection: str, run_id: str, name: str) -> str:
    """The prefix of one run's files: ``<folder>/<collection>/<run id>/<name>``.

    Args:
      folder: An absolute local folder or a URL (``gs://bucket/dead_letters``).
      collection: The run's collection: runs into different collections
        keep their outputs apart.
      run_id: The run's id (:func:`new_run_id`).
      name: The files' name, before Beam's ``-00000-of-00001.jsonl``.
    """
    return "/".join((folder.rstrip("/"), collection, run_id, name))


def _json_object(value: str, name: str) -> dict[str, Any]:
    """A flag's JSON object, e.g. ``--search_params '{"ef": 256}'``.

    Raises:
      ConfigError: the value is not JSON, or not an object.
    """
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{name} {value!r} is not JSON ({e.msg}): give e.g. '{{\"ef\": 256}}'."
        ) from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"{name} {value!r} must be a JSON object, e.g. '{{\"ef\": 256}}'.")
    return loaded


def read_search_settings(flags: Any, common: Any, *, run_id: str | None = None) -> SearchSettings:
    """Reads the YAML config and the queries, and applies the overrides.

    Args:
      flags: The search's flags (``SearchOptions``), as attributes: a view of
        Beam's options or an ``argparse.Namespace``.
      common: The config, collection and model flags (``MilvusOptions``).
      run_id: The search's id; a new one (:func:`new_run_id`) when None.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
      ModelLoadError: the model is a path where no folder is.
    """
    config = _load_yaml(common.config)
    search = _section(config, "search")
    queries = list(flags.query or [])
    if flags.queries_file:
        try:
            with open(flags.queries_file, encoding="utf-8") as f:
                queries += [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise ConfigError(
                f"--queries_file {flags.queries_file!r} cannot be read: {e.strerror}."
            ) from e
    queries += [
        str(q) for q in search.get("queries", []) if not (flags.query or flags.queries_file)
    ]
    if not queries:
        raise ConfigError("no query: pass --query TEXT (repeatable) or --queries_file FILE.")
    top_k = flags.top_k if flags.top_k is not None else search.get("top_k", 5)
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k={top_k!r}: must be a whole number of at least 1.")
    params = search.get("params")
    if getattr(flags, "search_params", None) is not None:
        params = _json_object(flags.search_params, "--search_params")
    searched = _build(
        SearchConfig,
        "search",
        {
            "top_k": top_k,
            "filter": flags.filter_expression or search.get("filter", ""),
            "params": params,
        },
    )
    model = _model(config, common)
    target = _target(config, common)
    run_id = run_id or new_run_id()
    output = _anchored(flags.output or str(search.get("output") or DEFAULT_SEARCH_OUTPUT))
    return SearchSettings(
        queries=tuple(queries),
        model=model,
        target=target,
        top_k=searched.top_k,
        filter_expression=searched.filter,
        search_params=searched.search_params,
        output=run_output(output, target.collection, run_id, SEARCH_RESULT_FILES),
        run_id=run_id,
    )
