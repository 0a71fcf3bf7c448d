"""What every command does on the console, without Beam: logging and users' mistakes.

:mod:`pipelines.cli` (the Beam commands) and :mod:`pipelines.instant` (the
search answered without Beam) both log and report mistakes this way; this
module imports nothing of Beam, so that the instant path stays instant.
"""

from __future__ import annotations

import logging
import sys

from pipelines.settings import LOG_LEVELS
from transforms.config import ConfigError
from transforms.milvus.client import MilvusAuthError, MilvusConnectionError
from transforms.milvus.collection import CollectionMismatchError, RowCountMismatchError
from transforms.model_files import ModelLoadError

__all__ = ["LOG_FORMAT", "PROJECT_LOGGERS", "USER_ERRORS", "configure_logging"]

# Errors that mean the run was set up wrong, or did not end as it should: the
# message says what to fix, so a traceback would only hide it.
USER_ERRORS = (
    ConfigError,
    CollectionMismatchError,
    MilvusAuthError,
    MilvusConnectionError,
    ModelLoadError,
    RowCountMismatchError,
)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
PROJECT_LOGGERS = ("pipelines", "transforms", "__main__")
"""Loggers that log at ``--log_level``; ``__main__`` is a pipeline run with ``python -m``."""

_LEVELS: dict[str, int] = {name: getattr(logging, name) for name in LOG_LEVELS}


def configure_logging(level: str = "INFO") -> None:
    """Logs to stderr, one line per record, as the user asked, whatever ran first.

    Beam calls ``logging.basicConfig()`` whenever options or a pipeline are
    made, and some packages configure logging when imported, so an entry
    point's own ``basicConfig`` is a no-op whenever one of them ran first. This
    one replaces whatever handler the root logger has (``force=True``) with one
    on stderr: every record is printed once, in one format. This project's
    loggers (:data:`PROJECT_LOGGERS`) log at ``level``; other libraries log
    their warnings and errors only (at ERROR, only errors; at DEBUG, their
    INFO lines too: Beam's choice of runner, Milvus Lite's server).

    Args:
      level: DEBUG, INFO, WARNING or ERROR.
    """
    project = _LEVELS[level.upper()]
    libraries = logging.INFO if project <= logging.DEBUG else max(project, logging.WARNING)
    logging.basicConfig(level=libraries, format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(project)
    if project > logging.DEBUG:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WithoutBeamWorkerNoise())


_BEAM_WORKER_NOISE = (
    # This project's flags, which a worker's Beam options do not know: they were checked
    # on the launcher before the run (an unknown flag stops the command there).
    "Discarding unparseable args",
    # Workers the FnApiRunner starts have no such directory, and need none.
    "No semi_persistent_directory found",
)


class _WithoutBeamWorkerNoise(logging.Filter):
    """Drops the two warnings every Beam SDK worker process logs on a healthy run.

    Beam's local job service relays each worker's log records to the launcher,
    where they came out as two long WARNING lines per worker process on every
    multi-process run. Only those two messages, only from Beam's runner
    loggers; shown at ``--log_level DEBUG``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apache_beam.runners"):
            return True
        message = record.getMessage()
        return not any(noise in message for noise in _BEAM_WORKER_NOISE)
