"""What the console entry points share: help, strict flags, logging, one-line errors.

``python -m pipelines.ingest``, ``pipelines.search``, ``pipelines.demo`` and
their console scripts call :func:`run_main` with a :class:`Command` that names
their own option classes. Before the pipeline is built, it:

* prints ``--help`` (the command's flags, one line each with its default) or
  ``--help_beam`` (Beam's flags) and exits with status 0;
* sets up logging on stderr (``--log_level``), whatever was imported first;
* refuses a flag that neither the command nor Beam knows, naming the closest
  known flag, with status 2. Beam's flags are those of every
  ``PipelineOptions`` subclass registered, as Beam itself collects them, once
  the runner's module is imported (a runner may register its own, like the
  Dask runner's ``--dask_client_address``); they pass through to Beam as
  before. Flags after a lone ``--`` are not checked, for options that only a
  runner's job server knows. Keys of the config's ``pipeline:`` section are
  checked the same way.

Then it runs the pipeline. A user's mistake (a wrong config, an unreachable
server, a model that cannot be loaded...) ends with one line on stderr and
status 1; its traceback is logged under ``--log_level DEBUG`` only. A run that
ended but failed (it wrote nothing, or dead-lettered more than
``--max_dead_letters``: :mod:`pipelines.outcome`) ends with its report, one
line and status 3; Ctrl-C with one line and status 130
(:mod:`pipelines.interrupt`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import gc
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    # The parser class PipelineOptions parses every flag with: some of Beam's
    # options are added with its add_value_provider_argument.
    _BeamArgumentParser,
)

from pipelines.console import LOG_FORMAT, PROJECT_LOGGERS, USER_ERRORS, configure_logging
from pipelines.interrupt import INTERRUPTED_STATUS
from pipelines.options import (
    PROJECT_OPTIONS,
    IngestOptions,
    LoggingOptions,
    SearchOptions,
    beam_argv,
    config_path,
    pipeline_section,
)
from pipelines.outcome import RUN_FAILED_STATUS, RunFailedError
from transforms.config import ConfigError

__all__ = [
    "LOG_FORMAT",
    "PROJECT_LOGGERS",
    "USER_ERRORS",
    "Command",
    "UsageError",
    "beam_option_classes",
    "configure_logging",
    "run_main",
]

_LOGGER = logging.getLogger(__name__)

USAGE_STATUS = 2
"""Exit status of a command line that cannot be run as written (Unix habit, as argparse)."""

_UNCHECKED = "--"
_HELP_BEAM = "--help_beam"


class UsageError(ValueError):
    """The command line names a flag no one knows, or gives a flag a bad value."""


@dataclasses.dataclass(frozen=True)
class Command:
    """An entry point: its module, what it does, and the options it takes.

    Attributes:
      module: The module run with ``python -m`` (``pipelines.ingest``).
      doc: Its docstring; the first paragraph is the help's description.
      options: Its own option classes (``MilvusOptions``, ``IngestOptions``);
        ``--log_level`` is added to every command.
      defaults: Values that a flag not given takes in this command (the
        demo's ``config``); they are shown by ``--help`` and passed to the
        run as flags.
    """

    module: str
    doc: str | None
    options: tuple[type[PipelineOptions], ...]
    defaults: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def prog(self) -> str:
        """How the user ran it: the console script's name, or ``python -m module``."""
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if not script or script.endswith(".py") or script in ("-c", "-m", "__main__.py"):
            return f"python -m {self.module}"
        return script

    def parser(self) -> _FlagParser:
        """The command's own flags, as ``--help`` lists them."""
        description = (self.doc or "").strip().split("\n\n", 1)[0].replace("\n", " ")
        parser = _FlagParser(
            prog=self.prog,
            usage="%(prog)s [--config FILE] [FLAG VALUE ...] [BEAM FLAG VALUE ...] "
            "[-- UNCHECKED BEAM FLAG ...]",
            description=description,
            epilog="Beam's flags (--runner, --direct_num_workers, --direct_running_mode, "
            "--flink_master, --project, ...) pass through to Beam, as do the keys of the "
            "config's pipeline: section (the command line wins over the file). "
            f"{_HELP_BEAM} lists them; with --runner NAME, that runner's own flags too. An "
            "unknown flag is an error (exit status 2); flags after a lone -- pass to the "
            "runner unchecked, e.g. options that only its job server knows.",
            add_help=True,
            formatter_class=_DefaultsFormatter,
        )
        parser.add_argument(
            _HELP_BEAM,
            action="store_true",
            help="list Beam's flags, which pass through to Beam, and exit",
        )
        _add_options(parser, (*self.options, LoggingOptions))
        parser.set_defaults(**self.defaults)
        return parser


class _FlagParser(_BeamArgumentParser):
    """Beam's argument parser, raising :class:`UsageError` instead of exiting.

    ``group``, when set, is where ``add_argument`` and
    ``add_mutually_exclusive_group`` put the next flags: a titled section of
    the help. (An argument group itself has no
    ``add_value_provider_argument``, which Beam's option classes may call.)
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("add_help", False)
        self.group: argparse._ArgumentGroup | None = None  # set first: __init__ adds -h
        super().__init__(allow_abbrev=False, conflict_handler="resolve", **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if self.group is not None:
            return self.group.add_argument(*args, **kwargs)
        return super().add_argument(*args, **kwargs)

    def add_mutually_exclusive_group(self, **kwargs: Any) -> argparse._MutuallyExclusiveGroup:
        if self.group is not None:
            return self.group.add_mutually_exclusive_group(**kwargs)
        return super().add_mutually_exclusive_group(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def flags(self) -> list[str]:
        """Every ``--flag`` this parser knows."""
        return sorted(
            {s for action in self._actions for s in action.option_strings if s.startswith("--")}
        )


class _DefaultsFormatter(argparse.HelpFormatter):
    """Ends each flag's help with its default, unless the help says it itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "(default:" in help_text or action.nargs == 0 or action.default is argparse.SUPPRESS:
            return help_text
        default = "none" if action.default is None else "%(default)s"
        return f"{help_text} (default: {default})"


def beam_option_classes() -> list[type[PipelineOptions]]:
    """Every ``PipelineOptions`` subclass registered so far but this project's.

    As ``PipelineOptions.get_all_options`` collects them (subclasses of
    subclasses too), in the order they were defined: Beam's, and those of the
    runners and IOs imported so far.
    """
    found: list[type[PipelineOptions]] = []
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop(0)
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return [cls for cls in found if not issubclass(cls, PROJECT_OPTIONS)]


def _add_options(parser: _FlagParser, classes: Iterable[type[PipelineOptions]]) -> None:
    for cls in classes:
        if "_add_argparse_args" in cls.__dict__:  # as PipelineOptions does: each class once
            cls._add_argparse_args(parser)


def _load_runner(runner: object) -> None:
    """Imports the runner's module, so that the options it registers are known.

    Raises:
      ConfigError: the runner is not one Beam knows, or cannot be imported.
    """
    if not isinstance(runner, str) or not runner.strip():
        return
    name = runner.strip()
    known = {path.rsplit(".", 1)[-1].lower(): path for path in StandardOptions.ALL_KNOWN_RUNNERS}
    path = known.get(name.lower()) or known.get(name.lower() + "runner") or name
    if "." not in path:
        short = {n.lower().removesuffix("runner"): n for n in StandardOptions.KNOWN_RUNNER_NAMES}
        close = difflib.get_close_matches(name.lower().removesuffix("runner"), short, n=1)
        hint = f" (did you mean {short[close[0]]}?)" if close else ""
        raise ConfigError(
            f"--runner={name} is not a runner Beam knows{hint}: use one of "
            f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)}, or a runner class's full path "
            "(package.module.Class)."
        )
    module, _, cls = path.rpartition(".")
    try:
        loaded = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"--runner={name} cannot be loaded ({e}): install what it needs on the launcher, "
            "e.g. the [gcp] or [dask] extra."
        ) from e
    if not hasattr(loaded, cls):
        raise ConfigError(f"--runner={name}: module {module} has no {cls}.")


def _closest(name: str, known: Sequence[str]) -> str:
    """``; did you mean --flag?`` for the known flag most like ``name``, or ''.

    Compared without the leading dashes, which every flag shares and which
    would make any short name look like any other.
    """
    bare = {flag.lstrip("-"): flag for flag in known}
    close = difflib.get_close_matches(name.lstrip("-"), bare, n=1)
    return f"; did you mean {bare[close[0]]}?" if close else ""


def _command_of(flag: str) -> str | None:
    """The other command of this project whose flag this is, if any."""
    for cls, module in ((IngestOptions, "pipelines.ingest"), (SearchOptions, "pipelines.search")):
        parser = _FlagParser()
        _add_options(parser, [cls])
        if flag in parser.flags():
            return module
    return None


def _known_flags(command: Command) -> _FlagParser:
    """Every flag this command accepts: its own, then Beam's (the runner's imported first)."""
    parser = _FlagParser()
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument(_HELP_BEAM, action="store_true")
    # Beam's first: a flag of this project that Beam has too (--dry_run) is this project's.
    _add_options(parser, beam_option_classes())
    _add_options(parser, (*command.options, LoggingOptions))
    return parser


def _check_flags(command: Command, argv: Sequence[str]) -> None:
    """Refuses flags no one knows, on the command line and in the config's ``pipeline:``.

    Raises:
      UsageError: a flag on the command line is unknown, or its value is wrong.
      ConfigError: the config cannot be read, its runner cannot be loaded, or
        a key of its ``pipeline:`` section is no Beam flag.
    """
    _load_runner(PipelineOptions(beam_argv(argv)).view_as(StandardOptions).runner)
    parser = _known_flags(command)
    _, unknown = parser.parse_known_args(list(argv))
    if unknown:
        token = unknown[0]
        if not token.startswith("-"):
            raise UsageError(
                f"unexpected argument {token!r}: flags are --name VALUE or --name=VALUE"
            )
        name = token.split("=", 1)[0]
        other = _command_of(name)
        if other:
            raise UsageError(f"unknown flag {name}: a flag of {other}, not of this command")
        raise UsageError(f"unknown flag {name}{_closest(name, parser.flags())}")
    path = config_path(argv)
    flags = parser.flags()
    for key in pipeline_section(path):
        if f"--{key}" not in flags and f"--no_{key}" not in flags:
            close = _closest(key, flags).replace("--", "")
            raise ConfigError(
                f"--config {path!r}: pipeline: {key!r} is no Beam flag{close} "
                f"({_HELP_BEAM} lists them)"
            )


def _beam_help(command: Command, argv: Sequence[str]) -> str:
    """The help of every Beam flag, one section per options class."""
    _load_runner(PipelineOptions(beam_argv(argv)).view_as(StandardOptions).runner)
    parser = _FlagParser(
        prog=command.prog,
        usage="%(prog)s [FLAG VALUE ...] [BEAM FLAG VALUE ...]",
        description="Beam's flags, which pass through to Beam untouched (the runner's own "
        "appear with --runner NAME). This command's flags: --help.",
    )
    for cls in beam_option_classes():
        parser.group = parser.add_argument_group(f"{cls.__name__} ({cls.__module__})")
        _add_options(parser, [cls])
    parser.group = None
    return parser.format_help()


def _with_defaults(command: Command, argv: list[str]) -> list[str]:
    """argv with the command's defaults of flags that are not on it, first."""
    given = {arg.split("=", 1)[0] for arg in argv}
    added = [f"--{dest}={value}" for dest, value in command.defaults.items()]
    return [flag for flag in added if flag.split("=", 1)[0] not in given] + argv


def _fail(message: str, status: int) -> NoReturn:
    """Ends the process with one line on stderr, as a failed run does."""
    _LOGGER.debug("The command line cannot be run", exc_info=True)
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run_main(run: Callable[[Sequence[str] | None], Any], command: Command | None = None) -> None:
    """Runs a pipeline's ``run`` with the process's arguments.

    Args:
      run: The pipeline's ``run(argv)``.
      command: The entry point, for ``--help`` and strict flags. Without it,
        the arguments go to ``run`` unchecked and only logging is set up (for
        scripts of one's own).
    """
    argv = sys.argv[1:]
    if command is None:
        configure_logging()
        _run(run, argv)
        return
    split = argv.index(_UNCHECKED) if _UNCHECKED in argv else len(argv)
    checked, unchecked = argv[:split], argv[split + 1 :]
    try:
        known, _ = command.parser().parse_known_args(checked)  # --help prints and exits here
    except UsageError as e:
        _fail(str(e), USAGE_STATUS)
    configure_logging(known.log_level)
    checked = _with_defaults(command, checked)
    try:
        if known.help_beam:
            print(_beam_help(command, checked), end="", flush=True)
            return
        _check_flags(command, checked)
    except UsageError as e:
        _fail(f"{e} (--help lists this command's flags, {_HELP_BEAM} Beam's)", USAGE_STATUS)
    except USER_ERRORS as e:
        _fail(str(e), 1)
    _run(run, checked + unchecked)


def _run(run: Callable[[Sequence[str] | None], Any], argv: list[str]) -> None:
    try:
        run(argv)
    except UsageError as e:  # flags the run cannot honour, found once the runner is known
        _fail(str(e), USAGE_STATUS)
    except USER_ERRORS as e:
        _LOGGER.debug("The run stopped", exc_info=True)
        sys.exit(f"error: {e}")
    except RunFailedError as e:  # it ran to its end, and failed: the report is printed
        _fail(str(e), RUN_FAILED_STATUS)
    except KeyboardInterrupt:  # Ctrl-C outside a run's own handling (pipelines.interrupt)
        _fail("interrupted (Ctrl-C)", INTERRUPTED_STATUS)
    # The process ends here. A launcher holds a few hundred thousand objects
    # (Beam's pipeline and runner, the model), and the interpreter's last
    # collections over them took 0.6 s of every run; the operating system
    # frees them at once. Reference counting and atexit handlers (logging,
    # temporary files) still run.
    gc.freeze()
