"""What the console entry points share: logging, and clear errors instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from transforms.config import ConfigError
from transforms.milvus import CollectionMismatchError, MilvusConnectionError
from transforms.model import ModelLoadError

# Errors that mean the run was set up wrong: the message says what to fix,
# so a traceback would only hide it.
USER_ERRORS = (ConfigError, CollectionMismatchError, MilvusConnectionError, ModelLoadError)


def run_main(run: Callable[[Sequence[str] | None], Any]) -> None:
    """Runs a pipeline's ``run`` with the process's arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(sys.argv[1:])
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
