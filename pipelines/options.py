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
from collections.abc import Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.outcome import DeadLetterLimit
from pipelines.settings import (
    DEAD_LETTER_FILES,
    DEFAULT_DEAD_LETTER_PATH,
    LOG_LEVELS,
    SearchSettings,
    _anchored,
    _build,
    _load_yaml,
    _model,
    _section,
    _target,
    add_log_level_flag,
    add_milvus_flags,
    add_search_flags,
    new_run_id,
    read_search_settings,
    run_output,
)
from transforms.config import (
    ChunkingConfig,
    ConfigError,
    IndexConfig,
    MilvusTarget,
    SourceConfig,
    SourceFormat,
    WriteConfig,
    WriteMode,
    as_patterns,
)
from transforms.milvus.sync import SCOPE_MAX_LENGTH, default_scope

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

_BEAM_DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


class MilvusOptions(PipelineOptions):
    """Flags both pipelines take: the config, the collection and the model."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_milvus_flags(parser)


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
            default=5.0,
            help="seconds between progress lines on stderr (a bar on a terminal): documents "
            "read, chunks written, rates, elapsed, ETA; 0 for none",
        )
        parser.add_argument(
            "--progress_host",
            metavar="HOST",
            default="127.0.0.1",
            help="an address of this machine that the workers can reach, where they send their "
            "progress counts (UDP); the loopback address suits workers on this machine, give "
            "one of its network addresses for a cluster's",
        )
        parser.add_argument(
            "--max_dead_letters",
            metavar="LIMIT",
            help="fail the run (exit status 3) past this many dead letters: a count (100) or a "
            "fraction of the records read (0.05, 5%%) (default: write.max_dead_letters of "
            "the config, else no limit)",
        )
        modes = [m.value for m in WriteMode]
        parser.add_argument(
            "--write_mode",
            metavar="MODE",
            type=str.lower,
            choices=modes,
            help=f"what to do with the collection: {', '.join(modes[:-1])} or {modes[-1]}, "
            "which writes only the documents that changed and deletes those gone from the "
            "scope (default: write.mode of the config, else create_if_missing)",
        )
        parser.add_argument(
            "--scope",
            metavar="NAME",
            help="with --write_mode sync: the documents this run answers for, and may delete "
            "(default: write.scope of the config, else named after the inputs)",
        )
        parser.add_argument(
            "--allow_empty_scope",
            action="store_true",
            default=None,
            help="with --write_mode sync: delete the scope's documents even if the run reads "
            "none (default: write.allow_empty_scope of the config, else off)",
        )
        # Beam's TestOptions has a --dry_run of its own, for its test runners,
        # that takes a value: this one replaces it (both set dry_run, which
        # Beam reads only to skip a check of GCS buckets). argparse's own
        # "resolve" conflict handling, called as it calls it.
        beams = parser._option_string_actions.get("--dry_run")
        if beams is not None:
            parser._handle_conflict_resolve(beams, [("--dry_run", beams)])
        parser.add_argument(
            "--dry_run",
            action="store_true",
            help="print the files matched, an estimate of documents and chunks and what "
            "would happen to the collection, and write nothing (default: off)",
        )


class SearchOptions(PipelineOptions):
    """Flags of ``python -m pipelines.search``."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_search_flags(parser)


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
      max_dead_letters: Past this, the run fails (``--max_dead_letters``,
        ``write.max_dead_letters`` of the config); None for no limit.
      scope: In ``sync`` mode, the documents the run answers for
        (``--scope``, ``write.scope``, else named after the inputs by
        :func:`~transforms.milvus.sync.default_scope`); None otherwise.
      allow_empty_scope: In ``sync`` mode, delete the scope's documents even
        if the run reads none.
    """

    source: SourceConfig
    model: str
    chunking: ChunkingConfig
    target: MilvusTarget
    write: WriteConfig
    dead_letter_path: str
    run_id: str
    max_dead_letters: DeadLetterLimit | None = None
    scope: str | None = None
    allow_empty_scope: bool = False


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
    # write.max_dead_letters is the run's, not the sink's (WriteConfig).
    configured_limit = write.pop("max_dead_letters", None)
    if flags.max_dead_letters is not None:
        limit = DeadLetterLimit.parse(flags.max_dead_letters)
    elif configured_limit is not None:
        limit = DeadLetterLimit.parse(configured_limit, "write.max_dead_letters")
    else:
        limit = None
    # write.scope and write.allow_empty_scope are the sync's (pipelines.ingest), not the sink's.
    scope = flags.scope if flags.scope is not None else write.pop("scope", None)
    write.pop("scope", None)
    allow_empty_scope = write.pop("allow_empty_scope", False)
    if flags.allow_empty_scope is not None:
        allow_empty_scope = flags.allow_empty_scope
    if flags.write_mode is not None:
        write["mode"] = flags.write_mode
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
    write_config = _build(WriteConfig, "write", write)
    if write_config.mode is WriteMode.SYNC:
        scope = _scope(scope, source_config)
    elif scope is not None and flags.scope is not None:
        raise ConfigError(
            f"--scope={flags.scope!r} is for sync runs: add --write_mode sync (or set "
            "write.mode: sync), or leave --scope out."
        )
    else:
        scope = None
    return IngestSettings(
        source=source_config,
        model=model,
        chunking=chunking,
        target=target,
        write=write_config,
        dead_letter_path=run_output(dead_letters, target.collection, run_id, DEAD_LETTER_FILES),
        run_id=run_id,
        max_dead_letters=limit,
        scope=scope,
        allow_empty_scope=bool(allow_empty_scope),
    )


def _scope(scope: object, source: SourceConfig) -> str:
    """A sync run's scope: as given, else named after its inputs.

    Raises:
      ConfigError: the scope given is empty, or too long to store.
    """
    if scope is None:
        return default_scope(source.patterns)
    named = str(scope).strip()
    if not named or len(named.encode("utf-8")) > SCOPE_MAX_LENGTH:
        raise ConfigError(
            f"scope {scope!r}: name it with 1 to {SCOPE_MAX_LENGTH} bytes (--scope NAME, "
            "write.scope), or leave it out to name it after the inputs."
        )
    return named


def search_settings(options: PipelineOptions, *, run_id: str | None = None) -> SearchSettings:
    """Reads the YAML config and the queries, and applies the overrides
    (:func:`~pipelines.settings.read_search_settings` of the search's flags).

    Args:
      options: The search's flags.
      run_id: The search's id; a new one (:func:`new_run_id`) when None.

    Raises:
      ConfigError: naming the value that is wrong and the fix.
      ModelLoadError: the model is a path where no folder is.
    """
    return read_search_settings(
        options.view_as(SearchOptions), options.view_as(MilvusOptions), run_id=run_id
    )
