"""Whole-process measurements: wall time, CPU time and memory of a command.

A command runs as a child process; its wall time is measured from before the
start to after the exit, its CPU time and the peak memory of its largest
process come from the kernel's accounting of the finished child (``wait4``),
and the peak of the memory of all its processes together is sampled from
``/proc`` every 50 ms (Linux; elsewhere only the kernel's figures).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Sequence

__all__ = [
    "DEFAULT_MODEL",
    "REPO",
    "Measurement",
    "add_run_arguments",
    "code_commit",
    "measure",
    "write_report",
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "models", "minilm-l6-m2v-256")
"""The demo model the repository ships: what every bench embeds with by default."""


@dataclasses.dataclass
class Measurement:
    """What one run of a command cost."""

    returncode: int
    wall_s: float
    cpu_s: float
    """User plus system time of the command and every process it waited for."""
    max_process_rss_mb: float
    """Peak resident memory of its largest single process (kernel accounting)."""
    peak_tree_rss_mb: float
    """Peak of the resident memory of all its processes together (sampled),
    without the processes named in ``apart``."""
    peak_apart_rss_mb: float
    """Peak of the processes kept apart (e.g. a Milvus Lite server it started)."""


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        found.setdefault(ppid, []).append(int(name))
    return found


def _rss_mb(pid: int) -> tuple[float, str]:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            pages = int(f.read().split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return 0.0, ""
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, command


def _sample_tree(
    root: int, apart: Sequence[str], stop: threading.Event, peaks: list[float]
) -> None:
    while not stop.is_set():
        tree = [root]
        children = _children()
        for pid in tree:
            tree.extend(children.get(pid, ()))
        ours = kept_apart = 0.0
        for pid in tree:
            rss, command = _rss_mb(pid)
            if any(word in command for word in apart):
                kept_apart += rss
            else:
                ours += rss
        peaks[0] = max(peaks[0], ours)
        peaks[1] = max(peaks[1], kept_apart)
        stop.wait(0.05)


def measure(
    command: Sequence[str],
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    log_path: str | None = None,
    timeout_s: float = 3600.0,
    apart: Sequence[str] = (),
) -> Measurement:
    """Runs ``command`` to its end and returns what it cost.

    Args:
      command: The program and its arguments.
      cwd: Where to run it.
      env: Its environment (default: this one's).
      log_path: Where its standard output and error go (default: discarded).
      timeout_s: Longest run; then it is killed (and the measurement says so
        with a negative return code).
      apart: Words of command lines whose processes are measured apart.
    """
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        peaks = [0.0, 0.0]
        stop = threading.Event()
        sampler = threading.Thread(
            target=_sample_tree, args=(process.pid, tuple(apart), stop, peaks), daemon=True
        )
        sampler.start()
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        stop.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    return Measurement(
        returncode=process.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_process_rss_mb=usage.ru_maxrss / 1024,
        peak_tree_rss_mb=peaks[0],
        peak_apart_rss_mb=peaks[1],
    )


def write_report(
    report: dict, table: str, json_path: str | None, markdown_path: str | None
) -> None:
    """Writes a bench's report as JSON and its table as Markdown where asked, then prints
    the table."""
    import json

    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    if markdown_path:
        with open(markdown_path, "w", encoding="utf-8") as f:
            f.write(table)
    print()
    print(table)


def code_commit() -> str:
    """The commit measured: ``HEAD``, marked when ``transforms/`` or ``pipelines/`` differ
    from it (the code a benchmark runs is the working tree's)."""

    def git(*words: str) -> str:
        done = subprocess.run(
            ["git", *words], cwd=REPO, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "transforms", "pipelines"):
        commit += " + uncommitted changes in transforms/ or pipelines/"
    return commit


def add_run_arguments(parser: argparse.ArgumentParser, *, name: str, work_help: str) -> None:
    """The flags every whole-process bench takes: the model, its work folder
    (``work/bench/<name>`` of the repository), and where its JSON report and Markdown
    table go."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Model2Vec model folder.")
    parser.add_argument("--work", default=os.path.join(REPO, "work", "bench", name), help=work_help)
    parser.add_argument("--json", help="Write the report here as JSON.")
    parser.add_argument("--markdown", help="Write the table here as Markdown.")
