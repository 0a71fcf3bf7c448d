"""Command-line options and YAML configs for the pipelines.

A run is described by a YAML file (``--config configs/local.yaml``) and a few
flags that override it (``--input``, ``--milvus_uri``, ``--collection``,
``--model``). The YAML's ``pipeline:`` section holds Beam options
(``runner: DirectRunner``); flags on the command line win over it, and every
flag this module does not know passes through to Beam untouched (the entry
points in ``pipelines.cli`` refuse flags that neither knows).

Each flag's help is one line that ends with its default, as ``--help`` shows
it; a default that comes from the config says so.

Paths: a relative path in a config file (``source.patterns``, ``model``,
``milvus.uri`` of a Lite store, ``milvus.token_file``, the TLS files of
``milvus.client_options``, ``dead_letter_path``, ``search.output``) is relative
to the config file's folder, so that ``--config configs/local.yaml`` means the
same from any folder; a relative path given as a flag is relative to the
current folder. Both are made absolute on the launcher, so that workers
started elsewhere find them. (The ``pipeline:`` section is Beam's flags,
passed to Beam as they are.)

Outputs never overwrite another run's: each run has a run id (its UTC start
time and a random suffix, :func:`new_run_id`), and writes its dead letters
under ``<dead_letter_path>/<collection>/<run id>/`` and its search results
under ``<search output>/<collection>/<run id>/``; by default both are in
``work/``, which git ignores.

Secrets are never options: the Milvus token comes from the environment
variable named by ``milvus.token_env`` (default ``MILVUS_TOKEN``) or from
``--milvus_token_file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms.config import (
    ChunkingConfig,
    ConfigError,
    IndexConfig,
    MilvusTarget,
    SourceConfig,
    SourceFormat,
    WriteConfig,
    as_patterns,
)
from transforms.model_files import local_model_path, resolve_model_source

__all__ = [
    "LOG_LEVELS",
    "PROJECT_OPTIONS",
    "IngestOptions",
    "IngestSettings",
    "LoggingOptions",
    "MilvusOptions",
    "SearchOptions",
    "SearchSettings",
    "beam_argv",
    "config_path",
    "ingest_settings",
    "new_run_id",
    "pipeline_section",
    "run_output",
    "search_settings",
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
_BEAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


class MilvusOptions(PipelineOptions):
    """Flags both pipelines take: the config, the collection and the model."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
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


class IngestOptions(PipelineOptions):
    """Flags of ``python -m pipelines.ingest``."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input",
            metavar="PATTERNS",
            help="files to read: path, folder or glob; several separated by commas, e.g. "
            "'notes/*.md,data.jsonl' (default: source.patterns of the config)",
        )
        formats = [f.value for f in SourceFormat]
        parser.add_argument(
            "--format",
            metavar="FORMAT",
            type=str.lower,
            choices=formats,
            help="how to read every file: auto (by extension: .jsonl, .ndjson, .json, .csv, "
            ".tsv, .parquet; any other file, .md or .txt, is one document of text), "
            f"{', '.join(formats[1:-1])} or {formats[-1]} (default: source.format of the "
            "config, else auto)",
        )
        parser.add_argument(
            "--text_field",
            metavar="NAMES",
            help="field of JSONL/JSON/CSV/TSV/Parquet records that holds the text, or several "
            "separated by commas, joined; a text file (.md, .txt) is one document whatever this "
            "says (default: source.text_field of the config, else text)",
        )
        parser.add_argument(
            "--id_field",
            metavar="NAME",
            help="field of those records with the document id; '' for ids from where records "
            "are, path:line (default: source.id_field of the config, else id)",
        )
        parser.add_argument(
            "--metadata_fields",
            metavar="NAMES",
            help="fields of those records kept as metadata, separated by commas; '' for none, "
            "'*' for all but the id and text fields; a text file's metadata is its path "
            "(default: source.metadata_fields of the config, else all)",
        )
        parser.add_argument(
            "--dead_letter_path",
            metavar="FOLDER",
            help="folder of the dead letters: each run writes <collection>/<run id>/"
            f"{DEAD_LETTER_FILES}-*.jsonl in it (default: dead_letter_path of the config, else "
            f"{DEFAULT_DEAD_LETTER_PATH})",
        )
        parser.add_argument(
            "--report_path",
            metavar="PATH",
            help="also write the run's JSON report here, a path or fsspec URL (default: none, "
            "stdout only)",
        )
        parser.add_argument(
            "--progress_interval_s",
            metavar="SECONDS",
            type=float,
            default=10.0,
            help="seconds between progress lines, where the runner reports metrics while "
            "running; 0 for none",
        )


class SearchOptions(PipelineOptions):
    """Flags of ``python -m pipelines.search``."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
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
            help="Milvus filter expression on the hits' fields (default: search.filter of the "
            "config, else none)",
        )
        parser.add_argument(
            "--output",
            metavar="FOLDER",
            help="folder of the results: each search writes <collection>/<run id>/"
            f"{SEARCH_RESULT_FILES}-*.jsonl in it (default: search.output of the config, else "
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


class LoggingOptions(PipelineOptions):
    """The launcher's logging: every entry point takes ``--log_level``.

    A registered option, so that Beam, which parses the same flags, keeps it
    instead of warning that it discards it. Workers in other processes log as
    their runner sets them up (Beam's ``--default_sdk_harness_log_level``).
    """

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_log_level_flag(parser)


PROJECT_OPTIONS: tuple[type[PipelineOptions], ...] = (
    MilvusOptions,
    IngestOptions,
    SearchOptions,
    LoggingOptions,
)
"""This project's option classes; every other registered one is Beam's (or a runner's)."""


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Everything an ingestion run needs, validated.

    Attributes:
      dead_letter_path: Prefix of this run's dead-letter files,
        ``<dead_letter_path>/<collection>/<run id>/dead_letters``: a run never
        overwrites another's.
      run_id: This run's id (see :func:`new_run_id`).
    """

    source: SourceConfig
    model: str
    chunking: ChunkingConfig
    target: MilvusTarget
    write: WriteConfig
    dead_letter_path: str
    run_id: str


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a search run needs, validated.

    Attributes:
      output: Prefix of this search's result files,
        ``<search output>/<collection>/<run id>/results``.
      run_id: This search's id (see :func:`new_run_id`).
    """

    queries: tuple[str, ...]
    model: str
    target: MilvusTarget
    top_k: int
    filter_expression: str
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


def config_path(argv: Sequence[str] | None) -> str | None:
    """The ``--config`` of these flags, or None."""
    path = PipelineOptions(list(argv or [])).view_as(MilvusOptions).config
    return str(path) if path else None


def pipeline_section(path: str | None) -> dict[str, Any]:
    """The ``pipeline:`` section of the config file at ``path`` (Beam options), or {}.

    Raises:
      ConfigError: the file cannot be read, or is not a config.
    """
    return _section(_load_yaml(path), "pipeline")


def beam_argv(argv: Sequence[str] | None) -> list[str]:
    """The Beam flags of a run: the YAML's ``pipeline:`` section, then argv.

    argv comes last, so that a flag on the command line wins over the file.

    Raises:
      ConfigError: the runner is one that would lose records of these
        pipelines (Beam's own DaskRunner; see ``pipelines.runners.dask``).
    """
    argv = list(argv or [])
    flags = []
    for key, value in pipeline_section(config_path(argv)).items():
        if isinstance(value, bool):
            flags.append(f"--{key}" if value else f"--no_{key}")
        else:
            flags.append(f"--{key}={value}")
    runner = PipelineOptions(flags + argv).view_as(StandardOptions).runner
    if isinstance(runner, str) and runner.strip() == _BEAM_DASK_RUNNER:
        raise ConfigError(
            f"--runner={runner} drops the dead-letter output and the last batch of every "
            "bundle of these pipelines (Beam's DaskRunner keeps one output per step and none "
            "from finish_bundle): use --runner=pipelines.runners.dask.DaskRunner, the same "
            "runner with those fixed."
        )
    return flags + argv


def _target(config: Mapping[str, Any], options: MilvusOptions) -> MilvusTarget:
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


def _model(config: Mapping[str, Any], options: MilvusOptions) -> str:
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


def _names_flag(value: str) -> tuple[str, ...]:
    """Field names given as a flag: one, or several separated by commas."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _source_flags(source: dict[str, Any], flags: IngestOptions) -> dict[str, Any]:
    """The config's ``source:`` section with the source flags applied over it.

    Raises:
      ConfigError: ``--text_field`` names no field.
    """
    source = dict(source)
    if flags.input:  # relative to the current folder: see ingest_settings
        source["patterns"] = list(as_patterns(flags.input))
    if flags.format is not None:
        source["format"] = flags.format
    if flags.text_field is not None:
        names = _names_flag(flags.text_field)
        if not names:
            raise ConfigError(
                f"--text_field={flags.text_field!r}: name the field that holds the text, or "
                "several separated by commas (--text_field body, --text_field title,body)."
            )
        source["text_field"] = list(names)
    if flags.id_field is not None:
        source["id_field"] = flags.id_field.strip() or None
    if flags.metadata_fields is not None:
        wanted = flags.metadata_fields.strip()
        source["metadata_fields"] = None if wanted == "*" else list(_names_flag(wanted))
    return source


def ingest_settings(options: PipelineOptions, *, run_id: str | None = None) -> IngestSettings:
    """Reads the YAML config and applies the command-line overrides.

    The source flags (``--input``, ``--format``, ``--text_field``,
    ``--id_field``, ``--metadata_fields``) win over the config's ``source:``
    keys one by one.

    Args:
      options: The run's flags.
      run_id: The run's id; a new one (:func:`new_run_id`) when None.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
      ModelLoadError: the model is a path where no folder is.
    """
    flags = options.view_as(IngestOptions)
    common = options.view_as(MilvusOptions)
    config = _load_yaml(common.config)
    source = _source_flags(_section(config, "source"), flags)
    if "patterns" not in source:
        raise ConfigError(
            "no input: pass --input PATH_OR_GLOB or set source.patterns in the config."
        )
    source["patterns"] = [_anchored(p) for p in as_patterns(source["patterns"])]
    write = _section(config, "write")
    if "index" in write:
        write["index"] = _build(IndexConfig, "write.index", write["index"])
    # Built in the order of the file, so that the first wrong value is the one named.
    source_config = _build(SourceConfig, "source", source)
    model = _model(config, common)
    chunking = _build(ChunkingConfig, "chunking", _section(config, "chunking"))
    target = _target(config, common)
    run_id = run_id or new_run_id()
    dead_letters = _anchored(
        flags.dead_letter_path or str(config.get("dead_letter_path") or DEFAULT_DEAD_LETTER_PATH)
    )
    return IngestSettings(
        source=source_config,
        model=model,
        chunking=chunking,
        target=target,
        write=_build(WriteConfig, "write", write),
        dead_letter_path=run_output(dead_letters, target.collection, run_id, DEAD_LETTER_FILES),
        run_id=run_id,
    )


def search_settings(options: PipelineOptions, *, run_id: str | None = None) -> SearchSettings:
    """Reads the YAML config and the queries, and applies the overrides.

    Args:
      options: The search's flags.
      run_id: The search's id; a new one (:func:`new_run_id`) when None.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
      ModelLoadError: the model is a path where no folder is.
    """
    flags = options.view_as(SearchOptions)
    common = options.view_as(MilvusOptions)
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
    model = _model(config, common)
    target = _target(config, common)
    run_id = run_id or new_run_id()
    output = _anchored(flags.output or str(search.get("output") or DEFAULT_SEARCH_OUTPUT))
    return SearchSettings(
        queries=tuple(queries),
        model=model,
        target=target,
        top_k=top_k,
        filter_expression=flags.filter_expression or search.get("filter", ""),
        output=run_output(output, target.collection, run_id, SEARCH_RESULT_FILES),
        run_id=run_id,
    )
