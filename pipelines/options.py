"""Command-line options and YAML configs for the pipelines.

A run is described by a YAML file (``--config configs/local.yaml``) and a few
flags that override it (``--input``, ``--milvus_uri``, ``--collection``,
``--model``). The YAML's ``pipeline:`` section holds Beam options
(``runner: DirectRunner``); flags on the command line win over it, and every
flag this module does not know passes through to Beam untouched.

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
    "IngestOptions",
    "IngestSettings",
    "MilvusOptions",
    "SearchOptions",
    "SearchSettings",
    "beam_argv",
    "ingest_settings",
    "search_settings",
]

DEFAULT_MODEL = "minishlab/potion-base-8M"
_BEAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


class MilvusOptions(PipelineOptions):
    """Flags both pipelines take: the config, the collection and the model."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", help="YAML file describing the run (see configs/).")
        parser.add_argument(
            "--milvus_uri", help="Milvus server URI, or a local *.db for Milvus Lite."
        )
        parser.add_argument("--collection", help="Milvus collection name.")
        parser.add_argument(
            "--model", help="Model2Vec model: Hugging Face id, folder or fsspec URL."
        )
        parser.add_argument(
            "--milvus_token_file", help="File holding the Milvus token (else $MILVUS_TOKEN)."
        )


class IngestOptions(PipelineOptions):
    """Flags of ``python -m pipelines.ingest``."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input", help="Files to read: path, folder or glob; several separated by commas."
        )
        parser.add_argument(
            "--dead_letter_path", help="Prefix of the JSONL files that receive dead letters."
        )
        parser.add_argument(
            "--report_path", help="Also write the run's JSON report here (a path or fsspec URL)."
        )
        parser.add_argument(
            "--progress_interval_s",
            type=float,
            default=10.0,
            help="Seconds between progress lines, where the runner reports metrics while running.",
        )


class SearchOptions(PipelineOptions):
    """Flags of ``python -m pipelines.search``."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--query", action="append", help="A query text; repeat the flag for several."
        )
        parser.add_argument("--queries_file", help="Text file with one query per line.")
        parser.add_argument("--top_k", type=int, help="Hits per query.")
        parser.add_argument("--filter", dest="filter_expression", help="Milvus filter expression.")
        parser.add_argument("--output", help="Prefix of the JSONL files that receive the results.")


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


def beam_argv(argv: Sequence[str] | None) -> list[str]:
    """The Beam flags of a run: the YAML's ``pipeline:`` section, then argv.

    argv comes last, so that a flag on the command line wins over the file.

    Raises:
      ConfigError: the runner is one that would lose records of these
        pipelines (Beam's own DaskRunner; see ``pipelines.runners.dask``).
    """
    argv = list(argv or [])
    config_path = PipelineOptions(argv).view_as(MilvusOptions).config
    flags = []
    for key, value in _section(_load_yaml(config_path), "pipeline").items():
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
            or str(config.get("dead_letter_path") or "dead_letters/dead_letters")
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
        output=_anchored(flags.output or search.get("output", "search_results/results")),
    )
