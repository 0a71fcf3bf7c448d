"""Live progress, as a user sees it: ``python -m pipelines.ingest`` run as a process.

Each run ingests a corpus that takes several seconds with the tiny model, and
reads stderr: progress lines (documents read, chunks written, rates, elapsed,
an ETA) while it runs, on every local engine, with the last line's counts
those of the JSON report on stdout; a bar on a pseudo-terminal; nothing for a
run shorter than the first interval. The collector and the workers'
reporters are also tested on their own: a collector that is gone, reports of
another run, datagrams out of order.

Costs: about 10 s per run on two cores (Beam's import, ~6 s of ingestion).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pathlib
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence

import pytest

from pipelines.progress import Collector, Progress, Snapshot, format_bytes, format_duration
from tests.test_production import make_corpus, write_config
from transforms import progress as reporting

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300.0
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]

LINE = re.compile(
    r"^progress: (?P<documents>[\d,]+) documents read \([\d,]+/s\), "
    r"(?P<written>[\d,]+) chunks written \([\d,]+/s\), "
    r"(?P<dead>[\d,]+) dead-lettered"
    r"(?:, (?P<read>[\d.]+ [KMGT]?B) of (?P<total>[\d.]+ [KMGT]?B) read)?"
    r", elapsed (?P<elapsed>\d+:\d\d)"
    r"(?:, (?:(?P<done>done)|ETA (?P<eta>\d+:\d\d)))?$"
)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)  # this checkout's packages, whatever is installed
    env["HF_HUB_OFFLINE"] = "1"
    env.pop(reporting.ENV_VAR, None)
    return env


def _command(config: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.ingest", "--config", config, *flags]


def ingest(config: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Runs an ingestion as a process with pipes (no terminal): stdout, stderr, status."""
    done = subprocess.run(
        _command(config, *flags),
        cwd=REPO,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def report_of(stdout: str) -> dict:
    (line,) = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(line)


def progress_lines(stderr: str) -> list[re.Match[str]]:
    """The progress lines of stderr, each checked against the format."""
    lines = [line for line in stderr.splitlines() if line.startswith("progress:")]
    parsed = [LINE.match(line) for line in lines]
    bad = [line for line, match in zip(lines, parsed, strict=True) if match is None]
    assert not bad, f"progress lines not in the expected format: {bad[:3]}"
    return [m for m in parsed if m is not None]


def number(match: re.Match[str], name: str) -> int:
    return int(match[name].replace(",", ""))


def check_progress(stderr: str, report: dict) -> None:
    """Lines while the run goes on, counts that only grow, an ETA, and a last
    line whose counts are the report's."""
    lines = progress_lines(stderr)
    assert len(lines) >= 3, stderr[-3000:]
    *running, last = lines
    assert last["done"] and not any(line["done"] for line in running)
    assert number(last, "documents") == report["documents_read"] > 0
    assert number(last, "written") == report["written"] > 0
    assert number(last, "dead") == report["dead_lettered"]
    for name in ("documents", "written"):
        seen = [number(line, name) for line in lines]
        assert seen == sorted(seen), f"{name} went down: {seen}"
    # Live, not only at the end: some line shows part of the chunks written.
    assert any(0 < number(line, "written") < report["written"] for line in running), stderr
    assert any(line["eta"] for line in running), "no line has an ETA"
    assert last["read"] == last["total"]  # the input's size is known, and all of it was read


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    """1,500 JSONL documents of 256 words: 24,000 chunks, ~6 s with the tiny model."""
    return make_corpus(tmp_path_factory.mktemp("progress-corpus"), 1500, 256)


def config_for(tmp_path: pathlib.Path, tiny_model: str, corpus: str, name: str) -> str:
    return write_config(tmp_path, tiny_model, str(tmp_path / "milvus.db"), name, corpus)


def test_progress_lines_on_each_local_engine(engine, tmp_path, tiny_model, corpus) -> None:
    config = config_for(tmp_path, tiny_model, corpus, "progress")
    done = ingest(config, *engine.flags, "--progress_interval_s", "0.5")
    report = report_of(done.stdout)
    assert report["engine"] == engine.name
    check_progress(done.stderr, report)
    assert "progress:" not in done.stdout  # stdout is the report's


def test_progress_lines_from_several_worker_processes(tmp_path, tiny_model, corpus) -> None:
    config = config_for(tmp_path, tiny_model, corpus, "progress_mp")
    done = ingest(config, *MULTI_PROCESS, "--progress_interval_s", "0.5")
    report = report_of(done.stdout)
    assert report["model_loads"] == 2  # two worker processes did the work, and reported it
    check_progress(done.stderr, report)


def test_no_progress_for_a_run_shorter_than_the_interval_or_when_off(tmp_path, tiny_model) -> None:
    small = make_corpus(tmp_path / "small", documents=3, words_per_document=32)
    config = config_for(tmp_path, tiny_model, small, "short")
    for interval in ("600", "0"):
        done = ingest(config, "--progress_interval_s", interval, "--collection", f"c{interval}")
        assert report_of(done.stdout)["written"] == 6
        assert "progress:" not in done.stderr and "%|" not in done.stderr, done.stderr


def _run_on_a_terminal(command: Sequence[str]) -> tuple[int, str, str]:
    """Runs ``command`` with stderr on a pseudo-terminal: status, stdout, the terminal's text."""
    main, worker = pty.openpty()
    # As a terminal window is: 160 columns by 40 lines.
    fcntl.ioctl(worker, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=worker,
    )
    os.close(worker)
    seen = bytearray()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1.0)
        if main in ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    os.close(main)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    status = proc.wait(timeout=TIMEOUT_S)
    return status, stdout, seen.decode(errors="replace")


def test_a_bar_on_a_terminal(tmp_path, tiny_model, corpus) -> None:
    config = config_for(tmp_path, tiny_model, corpus, "progress_tty")
    status, stdout, terminal = _run_on_a_terminal(_command(config, "--progress_interval_s", "0.5"))
    assert status == 0, terminal[-3000:]
    report = report_of(stdout)
    assert "progress:" not in terminal  # no plain lines: a bar
    # One line redrawn in place: carriage returns, a percentage and a bar.
    redraws = terminal.count("\r")
    assert redraws >= 3, terminal[-3000:]
    bars = re.findall(r"ingest +(\d+)%\|[^|\r\n]*\| ([^\r\n]*)", terminal)
    assert bars, terminal[-3000:]
    assert any(0 < int(percent) < 100 for percent, _ in bars), bars
    percent, text = bars[-1]
    assert percent == "100"
    assert f"{report['documents_read']:,} documents read" in text
    assert f"{report['written']:,} chunks written" in text and text.rstrip().endswith("done")
    assert any("ETA" in text for _, text in bars)
    # Log lines are not drawn into the bar: each one is on a line of its own.
    logged = [line for line in re.split(r"[\r\n]+", terminal) if "Loaded Model2Vec" in line]
    assert logged and all(line.startswith("INFO ") for line in logged), logged


# The pieces on their own.


def test_a_collector_sums_the_newest_report_of_each_worker_of_its_run() -> None:
    collector = Collector("run-a").start()
    try:
        host, port = collector.address.rsplit(":", 1)
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def report(run: str, worker: str, seq: int, **counts: int) -> None:
            message = {"v": 1, "run": run, "worker": worker, "seq": seq, "counts": counts}
            send.sendto(json.dumps(message).encode(), (host, int(port)))

        report("run-a", "w1", 2, documents_read=20)
        report("run-a", "w1", 1, documents_read=10)  # older, arrives later: ignored
        report("run-a", "w2", 1, documents_read=5, written=7)
        report("run-b", "w3", 9, documents_read=1000)  # another run's
        send.sendto(b"not json", (host, int(port)))
        send.sendto(b'{"v": 1, "run": "run-a"}', (host, int(port)))
        deadline = time.monotonic() + 10
        while collector.counts() != {"documents_read": 25, "written": 7}:
            assert time.monotonic() < deadline, collector.counts()
            time.sleep(0.05)
        assert collector.workers == 2
        send.close()
    finally:
        collector.close()


def test_a_reporter_whose_collector_is_gone_costs_nothing_and_fails_nothing() -> None:
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{gone.getsockname()[1]}"
    gone.close()
    reporting.start_reporting(address, "run-gone")
    try:
        for _ in range(1000):
            reporting.count("documents_read")
        time.sleep(3 * reporting.REPORT_INTERVAL_S)  # several sends to nowhere
        reporting.count("documents_read")
    finally:
        reporting.stop_reporting("run-gone")


def test_a_reporter_sends_its_process_counts_since_the_run_began() -> None:
    reporting.count("chunks", 100)  # before the run: not its
    with Progress(600, "run-in-process") as live:
        assert live.address is not None
        reporting.count("chunks", 3)
        reporting.count("documents_read", 2)
        collector = live._collector
        assert collector is not None
        deadline = time.monotonic() + 10
        while collector.counts() != {"chunks": 3, "documents_read": 2}:
            assert time.monotonic() < deadline, collector.counts()
            time.sleep(0.05)
        assert os.environ[reporting.ENV_VAR].startswith("run-in-process@")
    assert reporting.ENV_VAR not in os.environ


def test_the_share_of_work_done_needs_the_input_size() -> None:
    assert Snapshot(input_bytes=0, input_bytes_read=0).done() is None
    assert Snapshot(input_bytes=100, input_bytes_read=50, input_files_unsized=1).done() is None
    assert Snapshot(input_bytes=100, input_bytes_read=50).done() == 0.5
    # Documents grouped by id: all read, a quarter gone on to chunking.
    read_all = Snapshot(input_bytes=100, input_bytes_read=100, documents_read=40)
    assert read_all.done() == 1.0  # Beam's metrics: no count of documents started
    started = Snapshot(
        input_bytes=100, input_bytes_read=100, documents_read=40, documents_started=10
    )
    assert started.done() == 0.25
    writing = Snapshot(
        input_bytes=100,
        input_bytes_read=100,
        documents_read=40,
        documents_started=40,
        chunks=100,
        written=50,
    )
    assert writing.done() == 0.5  # all chunked, half the chunks written
    assert format_duration(7.4) == "0:07" and format_duration(3723) == "1:02:03"
    assert format_bytes(512) == "512 B" and format_bytes(3_600_000) == "3.6 MB"


class _Writes(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_a_progress_line_is_one_write_with_its_newline() -> None:
    """A log line written by another thread can never land inside a progress line (seen under
    load: ``elapsed 0:01INFO transforms...``), since the line and its end go in one write."""
    stream = _Writes()
    progress = Progress(1.0, "run", stream=stream, bar=False)
    progress._render(Snapshot(documents_read=3, written=5), 1.0, done=False)
    progress._render(Snapshot(documents_read=4, written=9), 2.0, done=True)
    lines = [call for call in stream.calls if call.strip()]
    assert len(lines) == 2
    assert all(line.startswith("progress: ") and line.endswith("\n") for line in lines)


def _network_address() -> str:
    """An address of this machine other than loopback: the one its default route leaves from."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("203.0.113.1", 9))  # no datagram is sent: this only picks the route
        return str(probe.getsockname()[0])
    finally:
        probe.close()


def test_progress_reports_reach_a_network_address_given_for_remote_workers(
    tmp_path, tiny_model, corpus
) -> None:
    """``--progress_host``: the collector listens on a network address of this machine, not
    loopback, as for a cluster's workers, and the worker processes' reports reach it."""
    host = _network_address()
    assert not host.startswith("127."), "this machine has no address but loopback"
    config = config_for(tmp_path, tiny_model, corpus, "progress_host")
    done = ingest(config, *MULTI_PROCESS, "--progress_interval_s", "0.5", "--progress_host", host)
    check_progress(done.stderr, report_of(done.stdout))
