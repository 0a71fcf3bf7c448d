"""Ctrl-C that stops a run at once, with one line, whatever the runner started.

A terminal sends SIGINT to every process of the foreground job: the launcher
and each worker process it started (``--direct_running_mode
multi_processing``, a served Lite store). Left alone, each of them prints its
own ``KeyboardInterrupt`` traceback, and the launcher waits for Beam's
threads and workers to wind down: measured on this project, 132 lines for
one process, and 46 s and 1,532 lines with two workers.

:func:`stop_on_interrupt` makes Ctrl-C end the run within a second or two
instead, on every runner and engine:

* A *sentinel*, a tiny Python process started first, is the one process of
  the run that takes SIGINT: it tells the launcher through a pipe.
* The launcher then sets SIGINT to be ignored. An ignored signal stays
  ignored across ``fork`` and ``exec`` (and through ``/bin/sh``, which
  Beam starts its workers with; a blocked one would not: ``sh`` unblocks
  signals), and Python keeps it ignored, so Beam's workers never see the
  terminal's SIGINT: no tracebacks from them, and no thread of the launcher
  can swallow the signal either.
* On the sentinel's word, a watcher thread ends the processes the run
  started (SIGTERM, then SIGKILL after a grace period: the Lite server
  closes its store on SIGTERM), asks the caller what was done so far,
  prints one line on stderr and ends the process with status 130, without
  unwinding Beam's threads.

Ctrl-C means SIGINT to the process group, as a terminal sends it (``kill
-INT -PGID``); within the block, a SIGINT sent to the launcher's pid alone is
ignored. Nothing is lost that a re-run does not restore: ingestion upserts
rows whose ids are deterministic, and the collection is marked incomplete
(see :func:`transforms.milvus.collection.mark_run`) until a run completes.
Outside the main thread, or where the sentinel cannot start, it does nothing
and Ctrl-C raises ``KeyboardInterrupt`` as usual (the entry points end it with
status 130 and one line too).

A program or notebook that calls a run keeps Ctrl-C for itself:
:func:`keyboard_interrupt_reaches_caller` only makes sure it gets the
``KeyboardInterrupt``, which Beam's in-process runner would otherwise hand
back as a ``RuntimeError`` when the signal lands inside a ``DoFn``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator

__all__ = ["INTERRUPTED_STATUS", "keyboard_interrupt_reaches_caller", "stop_on_interrupt"]

_LOGGER = logging.getLogger(__name__)

INTERRUPTED_STATUS = 130
"""Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)."""

_DESCRIBE_TIMEOUT_S = 2.0
_TERMINATE_GRACE_S = 2.0


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc on Linux, ``pgrep`` elsewhere)."""
    if os.path.isdir("/proc"):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read()
            except OSError:  # it ended meanwhile
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and int(fields[1]) == pid:
                found.append(int(entry))
        return found
    try:
        listed = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=2, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(p) for p in listed.split()]


def _descendants() -> list[int]:
    """Every process this one started, and theirs, parents first."""
    found: list[int] = []
    pending = [os.getpid()]
    while pending:
        children = _children(pending.pop())
        found += children
        pending += children
    return found


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reaps our own children
        if waited:
            return False
    except ChildProcessError:  # not our child: a grandchild
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _end_descendants(grace_s: float) -> None:
    """SIGTERM to every descendant, SIGKILL to those alive after ``grace_s``."""
    pids = _descendants()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _describe(describe: Callable[[], str]) -> str:
    """What ``describe`` says, or a plain line if it fails or takes too long."""
    said: list[str] = []

    def ask() -> None:
        try:
            said.append(describe())
        except Exception as e:  # the store may be gone: the line is still printed
            _LOGGER.debug("Cannot tell what was written: %s", e, exc_info=True)

    asker = threading.Thread(target=ask, name="describe_interrupt", daemon=True)
    asker.start()
    asker.join(_DESCRIBE_TIMEOUT_S)
    return said[0] if said else "interrupted (Ctrl-C)"


def _stop(describe: Callable[[], str]) -> None:
    """Ends the process: the run's processes ended, one line on stderr, status 130.

    The processes go first, so that none writes after the line; meanwhile
    this process's own stderr goes nowhere (Beam's threads report the
    workers they lost), and the line is written to the real one.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    stderr = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)
    _end_descendants(_TERMINATE_GRACE_S)
    line = _describe(describe)
    os.write(stderr, (line + "\n").encode("utf-8", "replace"))
    os._exit(INTERRUPTED_STATUS)


# The sentinel: says "interrupt" on its stdout on SIGINT; ends when its stdin closes.
_SENTINEL = """
import signal, sys
def say(signum, frame):
    sys.stdout.write("interrupt\\n")
    sys.stdout.flush()
    raise SystemExit(0)
signal.signal(signal.SIGINT, say)
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.read()
"""


def _start_sentinel() -> subprocess.Popen[str] | None:
    """The sentinel process, once it listens for SIGINT; None if it cannot start."""
    try:
        sentinel = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _SENTINEL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError as e:
        _LOGGER.debug("No Ctrl-C sentinel: %s", e)
        return None
    assert sentinel.stdout is not None  # stdout=PIPE
    if sentinel.stdout.readline().strip() != "ready":  # it ended first: Ctrl-C already?
        sentinel.wait()
        raise KeyboardInterrupt
    return sentinel


@contextlib.contextmanager
def stop_on_interrupt(describe: Callable[[], str]) -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT to the process group) ends the process at once.

    Enter it in the main thread before the run starts any process: those
    started within the block ignore SIGINT. On Ctrl-C the process prints
    one line on stderr and exits with status 130.

    Args:
      describe: Says, in one line, what the run did so far and how to finish
        it; asked once, on Ctrl-C, from another thread, for at most 2 s,
        once every process the run started has ended.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sentinel = _start_sentinel()
    if sentinel is None:
        yield
        return
    assert sentinel.stdout is not None and sentinel.stdin is not None  # both pipes
    done = threading.Event()

    def watch() -> None:
        said = sentinel.stdout.readline()  # type: ignore[union-attr]
        if not done.is_set():  # "interrupt", or the sentinel was killed: stop too
            _LOGGER.debug("Ctrl-C sentinel said %r", said)
            _stop(describe)

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    watcher = threading.Thread(target=watch, name="stop_on_interrupt", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        sentinel.stdin.close()  # it ends
        sentinel.wait()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def keyboard_interrupt_reaches_caller() -> Iterator[None]:
    """Within the block, Ctrl-C reaches the caller as ``KeyboardInterrupt``.

    Beam's in-process runner processes bundles on the calling thread, the
    one Python delivers SIGINT to, and re-raises what a ``DoFn`` raised,
    ``KeyboardInterrupt`` included, as ``RuntimeError("KeyboardInterrupt
    [while running ...]")``: a program's ``except KeyboardInterrupt`` would
    miss it. Within the block, SIGINT is noted before the handler in place
    runs, and an exception that ends the block after it is raised again as
    ``KeyboardInterrupt`` (chained to Beam's). The handler in place is
    restored on exit; outside the main thread, or with a handler that is not
    Python code (SIGINT ignored or default), the block changes nothing.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    interrupted = threading.Event()

    def note_then_handle(signum: int, frame: types.FrameType | None) -> None:
        interrupted.set()
        previous(signum, frame)

    signal.signal(signal.SIGINT, note_then_handle)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception as e:
        if interrupted.is_set():
            raise KeyboardInterrupt from e
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
