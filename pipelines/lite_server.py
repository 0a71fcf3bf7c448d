"""A Milvus Lite server for one run, when workers in several processes share a local store.

Embedded Milvus Lite holds a lock on its data folder, so one process only can
open it. When the runner starts workers in other processes
(``--direct_running_mode=multi_processing``, a local Flink, Dask or portable
worker pool), the launcher serves the folder on a free loopback port for the
length of the run, and the workers write there. The server is
:mod:`transforms.milvus.lite_server`: Milvus Lite's own, under the ping policy
of Milvus' servers, so that pymilvus' keepalive pings do not end the
launcher's idle connection during a long run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from transforms.config import ConfigError, MilvusTarget

__all__ = ["needs_server", "serve_lite"]

_LOGGER = logging.getLogger(__name__)

# Runners whose SDK workers are threads of the launcher, unless told to start
# worker processes (--direct_running_mode=multi_processing).
_DIRECT_RUNNERS = {
    "",
    "directrunner",
    "direct",
    "bundlebaseddirectrunner",
    "switchingdirectrunner",
    "testdirectrunner",
    "fnapirunner",
    "fnapi",
}
# Portable runners: their workers are the launcher's threads under the
# LOOPBACK environment (Prism's default), other processes otherwise.
_PORTABLE_RUNNERS = {
    "portablerunner",
    "portable",
    "prismrunner",
    "prism",
    "flinkrunner",
    "flink",
    "sparkrunner",
    "spark",
}
_LOOPBACK_BY_DEFAULT = {"prismrunner", "prism"}
_REMOTE_RUNNERS = {"dataflowrunner", "dataflow", "testdataflowrunner"}


def needs_server(target: MilvusTarget, options: PipelineOptions) -> bool:
    """Whether the target is a local Milvus Lite store that workers in other
    processes must reach: only then is it served.

    In-process engines (the DirectRunner's, multi-threaded or not, and
    portable runners under the ``LOOPBACK`` environment) write to the
    embedded store directly; worker processes (``multi_processing``, a
    worker pool, Dask) need the store served.

    Raises:
      ConfigError: the runner's workers are on other machines, where the
        local store cannot be reached.
    """
    if target.is_remote:
        return False
    runner = options.view_as(StandardOptions).runner
    name = (runner if isinstance(runner, str) else type(runner).__name__ if runner else "") or ""
    name = name.rsplit(".", 1)[-1].lower()
    if name in _REMOTE_RUNNERS:
        raise ConfigError(
            f"milvus.uri={target.uri!r} is a local Milvus Lite store, which {runner} workers "
            "cannot reach: point --milvus_uri at a Milvus server or Zilliz Cloud."
        )
    if name in _DIRECT_RUNNERS:
        return options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    if name in _PORTABLE_RUNNERS:
        environment = (options.view_as(PortableOptions).environment_type or "").upper()
        if not environment and name in _LOOPBACK_BY_DEFAULT:
            environment = "LOOPBACK"
        return environment != "LOOPBACK"
    return True  # Dask and other runners: worker processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_ready(uri: str, process: subprocess.Popen, timeout_s: float) -> None:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the Milvus Lite server exited with code {process.returncode}")
        try:
            MilvusClient(uri=uri, timeout=2).close()
            return
        except Exception as e:  # not up yet: pymilvus raises several types
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the Milvus Lite server at {uri} was not ready in {timeout_s:g}s"
                ) from e
            time.sleep(0.2)


@contextlib.contextmanager
def serve_lite(target: MilvusTarget, *, ready_timeout_s: float = 60.0) -> Iterator[MilvusTarget]:
    """Serves the target's local store on loopback; yields the served target."""
    port = _free_port()
    log_path = f"{os.path.abspath(target.uri).rstrip(os.sep)}.server.log"
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    command = [
        sys.executable, "-m", "transforms.milvus.lite_server",
        "--data-dir", target.uri, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        # A session of its own: a terminal's Ctrl-C reaches the run's launcher
        # and workers, not the store they write to, which this process stops
        # (below, or pipelines.interrupt) once no worker writes any more.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    served = dataclasses.replace(
        target, uri=f"http://127.0.0.1:{port}", token_env=None, token_file=None
    )
    try:
        _wait_until_ready(served.uri, process, ready_timeout_s)
        _LOGGER.info("Serving %s at %s for this run (log: %s)", target.uri, served.uri, log_path)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
