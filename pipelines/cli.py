"""What the console entry points share: logging, and clear errors instead of tracebacks."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from transforms.config import ConfigError
from transforms.embedding.model import ModelLoadError
from transforms.milvus.client import MilvusAuthError, MilvusConnectionError
from transforms.milvus.collection import CollectionMismatchError, RowCountMismatchError

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


def run_main(run: Callable[[Sequence[str] | None], Any]) -> None:
    """Runs a pipeline's ``run`` with the process's arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(sys.argv[1:])
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    # The process ends here. A launcher holds a few hundred thousand objects
    # (Beam's pipeline and runner, the model), and the interpreter's last
    # collections over them took 0.6 s of every run; the operating system
    # frees them at once. Reference counting and atexit handlers (logging,
    # temporary files) still run.
    gc.freeze()
