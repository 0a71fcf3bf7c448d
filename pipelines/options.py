"""Command-line options and YAML configs for the pipelines.

A run is described by a YAML file (``--config configs/local.yaml``) and a few
flags that override it (``--input``, ``--milvus_uri``, ``--collection``,
``--model``). The YAML's ``pipeline:`` section holds Beam options
(``runner: DirectRunner``); flags on the command line win over it, and every
flag this module does not know passes through to Beam untouched (the entry
points in ``pipelines.cli`` refuse flags that neither knows).

Each flag's help is one line that ends with its default, as ``--help`` shows
it; a default that comes from the config says so.

Secrets are never options: the Milvus token comes from the environment
variable named by ``milvus.token_env`` (default ``MILVUS_TOKEN``) or from
``--milvus_token_file``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
    WriteConfig,
    as_patterns,
)

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
    "pipeline_section",
    "search_settings",
]

DEFAULT_MODEL = "minishlab/potion-base-8M"
DEFAULT_DEAD_LETTER_PATH = "dead_letters/dead_letters"
DEFAULT_SEARCH_OUTPUT = "search_results/results"
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
            help="files to read: path, folder or glob; several separated by commas (default: "
            "source.patterns of the config)",
        )
        parser.add_argument(
            "--dead_letter_path",
            metavar="PREFIX",
            help="prefix of the JSONL files that receive dead letters (default: dead_letter_path "
            f"of the config, else {DEFAULT_DEAD_LETTER_PATH})",
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
            metavar="PREFIX",
            help="prefix of the JSONL files that receive the results (default: search.output "
            f"of the config, else {DEFAULT_SEARCH_OUTPUT})",
        )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class LoggingOptions(PipelineOptions):
    """The launcher's logging: every entry point takes ``--log_level``.

    A registered option, so that Beam, which parses the same flags, keeps it
    instead of warning that it discards it. Workers in other processes log as
    their runner sets them up (Beam's ``--default_sdk_harness_log_level``).
    """

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--log_level",
            metavar="LEVEL",
            type=str.upper,
            choices=LOG_LEVELS,
            default="INFO",
            help="level of this project's log lines on stderr: DEBUG (with errors' tracebacks), "
            "INFO, WARNING or ERROR; other libraries log from WARNING (from INFO under DEBUG)",
        )


PROJECT_OPTIONS: tuple[type[PipelineOptions], ...] = (
    MilvusOptions,
    IngestOptions,
    SearchOptions,
    LoggingOptions,
)
"""This project's option classes; every other registered one is Beam's (or a runner's)."""


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Everything an ingestion run needs, validated."""

    source: SourceConfig
    model: str
    chunking: ChunkingConfig
    target: MilvusTarget
    write: WriteConfig
    dead_letter_path: str


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a search run needs, validated."""

    queries: tuple[str, ...]
    model: str
    target: MilvusTarget
    top_k: int
    filter_expression: str
    output: str


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
    return loaded


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
    milvus = _section(config, "milvus")
    if options.milvus_uri:
        milvus["uri"] = options.milvus_uri
    if options.collection:
        milvus["collection"] = options.collection
    if options.milvus_token_file:
        milvus["token_file"] = options.milvus_token_file
    if "uri" not in milvus or "collection" not in milvus:
        raise ConfigError(
            "milvus.uri and milvus.collection are required: set them in the config's milvus: "
            "section or pass --milvus_uri and --collection."
        )
    return _build(MilvusTarget, "milvus", milvus)


def _anchored(path: str) -> str:
    """A relative local path made absolute, so that it means the same on
    workers that run from another folder (Dask, portable and Flink workers);
    URLs and absolute paths are left as they are."""
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.abspath(path)


def _model(config: Mapping[str, Any], options: MilvusOptions) -> str:
    model = options.model or config.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise ConfigError(f"model={model!r}: give a Hugging Face id, a folder or a URL.")
    # A relative path that names no local folder is a Hugging Face id.
    return _anchored(model) if os.path.exists(model) else model


def ingest_settings(options: PipelineOptions) -> IngestSettings:
    """Reads the YAML config and applies the command-line overrides.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
    """
    flags = options.view_as(IngestOptions)
    common = options.view_as(MilvusOptions)
    config = _load_yaml(common.config)
    source = _section(config, "source")
    if flags.input:
        source["patterns"] = as_patterns(flags.input)
    if "patterns" not in source:
        raise ConfigError(
            "no input: pass --input PATH_OR_GLOB or set source.patterns in the config."
        )
    source["patterns"] = [_anchored(p) for p in as_patterns(source["patterns"])]
    write = _section(config, "write")
    if "index" in write:
        write["index"] = _build(IndexConfig, "write.index", write["index"])
    return IngestSettings(
        source=_build(SourceConfig, "source", source),
        model=_model(config, common),
        chunking=_build(ChunkingConfig, "chunking", _section(config, "chunking")),
        target=_target(config, common),
        write=_build(WriteConfig, "write", write),
        dead_letter_path=_anchored(
            flags.dead_letter_path
            or str(config.get("dead_letter_path") or DEFAULT_DEAD_LETTER_PATH)
        ),
    )


def search_settings(options: PipelineOptions) -> SearchSettings:
    """Reads the YAML config and the queries, and applies the overrides.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
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
    return SearchSettings(
        queries=tuple(queries),
        model=_model(config, common),
        target=_target(config, common),
        top_k=top_k,
        filter_expression=flags.filter_expression or search.get("filter", ""),
        output=_anchored(flags.output or search.get("output", DEFAULT_SEARCH_OUTPUT)),
    )
