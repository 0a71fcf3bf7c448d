"""Local server processes: free ports, start in a process group, wait, stop.

What :mod:`transforms.testing.servers` and :mod:`transforms.testing.runners`
share. Every process runs in a process group of its own, so that stopping it
also stops what it started (Milvus' etcd, Dask's nanny and worker, Beam's
SDK harnesses). Only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["free_port", "kill9", "start_process", "stop_process", "tail", "wait_for_port"]


def free_port() -> int:
    """A kernel-chosen free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, n: int = 40) -> str:
    """The last ``n`` lines of a log file ("" if it cannot be read), for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def start_process(
    command: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen:
    """Starts a server in its own process group, its output appended to ``log``.

    Stop it with :func:`stop_process` (or :func:`transforms.testing.servers.stop`).
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_port(
    port: int, proc: subprocess.Popen, log: Path, what: str, timeout_s: float
) -> None:
    """Waits until something listens on 127.0.0.1:``port``.

    Raises:
      RuntimeError: ``proc`` exited first (the message ends with its log's tail).
      TimeoutError: nothing listened within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on {port} in {timeout_s:g}s:\n{tail(log)}")


def stop_process(
    proc: subprocess.Popen | None, *, sig: int = signal.SIGTERM, timeout: float = 15.0
) -> int | None:
    """Sends ``sig`` to the process's group, then SIGKILL after ``timeout`` seconds.

    Returns:
      The return code, or None when ``proc`` is None.
    """
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    if proc.poll() is None:
        kill9(proc)
    return proc.returncode


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILLs the process's group (a crash, as far as it can tell) and reaps it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
