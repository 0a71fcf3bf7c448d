"""Live progress of an ingestion run, on stderr: a bar on a terminal, plain lines otherwise.

Every ``--progress_interval_s`` seconds (0: never) the launcher shows the
documents read, the chunks written, their rate, the time elapsed and, when
the size of the input is known, an ETA. A run shorter than one interval
shows nothing; one that showed progress ends it with a last line whose
counts are the run's report's. stdout carries only the report.

Where the counts come from (see :mod:`transforms.progress`):

* the workers' own reports, sent to a :class:`Collector` that listens on a
  UDP port of the launcher's loopback interface while the pipeline runs, also
  while ``pipeline.run()`` blocks, as it does on the FnApiRunner. This works on
  every runner whose workers run on the launcher's machine: the FnApiRunner
  (in memory or ``multi_processing``), Prism, and local Dask or portable
  workers; with ``--progress_host`` set to a network address of the
  launcher's machine, also for workers on other machines that can reach it
  (a Dask or Flink cluster, a portable worker pool);
* else, where the runner reports metrics while the job runs (Dataflow), Beam's
  metrics, polled. A portable job's result is never polled: it keeps the first
  metrics it fetches, which would freeze the report's counts.

The ETA: the input's size is what the readers' file listings gave
(:data:`transforms.metrics.INPUT_BYTES`); work done is the share of it read,
times the share of the documents read that have gone on to chunking (when
documents are grouped by id, none go on before all are read), times the share
of the chunks made that are written. The time left is extrapolated from how
fast that share grew over the last half minute.

What it costs: one thread on the launcher that wakes every interval (half a
second for a bar), one that receives datagrams; nothing on the workers but
what :mod:`transforms.progress` says. The bar is drawn by ``tqdm``, which also
keeps log lines from breaking it (``logging_redirect_tqdm``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any

from apache_beam.runners.portability import portable_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.runner import PipelineResult
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from transforms import metrics
from transforms import progress as reporting

__all__ = ["Collector", "Progress", "Snapshot", "format_bytes", "format_duration"]

_LOGGER = logging.getLogger(__name__)

_BAR_TICK_S = 0.5
_ETA_WINDOW_S = 30.0
_RATE_WINDOW_S = 10.0
_ETA_MIN_SHARE = 0.01
_BAR_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The counts of a run at one moment, summed over workers."""

    documents_read: int = 0
    chunks: int = 0
    written: int = 0
    dead_lettered: int = 0
    input_bytes: int = 0
    input_bytes_read: int = 0
    input_files_unsized: int = 0
    documents_started: int | None = None
    """Documents that went on to chunking, where workers report it (not Beam's metrics)."""

    @classmethod
    def of(cls, counts: Mapping[str, int], *, from_workers: bool) -> Snapshot:
        """From counters by name, as workers report them or Beam's metrics hold them."""
        return cls(
            documents_read=counts.get(metrics.DOCUMENTS_READ, 0),
            chunks=counts.get(metrics.CHUNKS, 0),
            written=counts.get(metrics.WRITTEN, 0),
            dead_lettered=counts.get(metrics.DEAD_LETTERED, 0),
            input_bytes=counts.get(metrics.INPUT_BYTES, 0),
            input_bytes_read=counts.get(metrics.INPUT_BYTES_READ, 0),
            input_files_unsized=counts.get(metrics.INPUT_FILES_UNSIZED, 0),
            documents_started=(
                counts.get(reporting.DOCUMENTS_STARTED, 0) if from_workers else None
            ),
        )

    def done(self) -> float | None:
        """The share of the run's work done, 0 to 1, or ``None`` if the input's size is unknown."""
        if self.input_bytes <= 0 or self.input_files_unsized:
            return None
        share = min(1.0, self.input_bytes_read / self.input_bytes)
        if self.documents_started is not None and self.documents_read > 0:
            share *= min(1.0, self.documents_started / self.documents_read)
        if self.chunks > 0:
            share *= min(1.0, self.written / self.chunks)
        return share


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(n: float) -> str:
    """``512 B``, ``3.2 KB``, ``1.5 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class Collector:
    """Receives one run's reports from its workers on a UDP port of the loopback interface.

    Each worker process sends its cumulative counts; the collector keeps the
    newest report of each (by sequence number: datagrams may come out of
    order) and sums them. Reports of other runs are ignored.

    Args:
      run: The run's id, as the workers' reporters carry it.
      host: Where to listen: by default the loopback interface, so that nothing
        outside this machine can send to it; a network address of this machine
        for workers elsewhere (anything that reaches it may then send counts,
        which are only shown: reports of other runs are ignored, and the run's
        report comes from Beam's metrics, never from these).
    """

    def __init__(self, run: str, host: str = "127.0.0.1") -> None:
        self._run = run
        self._host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self._latest: dict[str, tuple[int, dict[str, int]]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._receive, name="progress-collector", daemon=True
        )

    @property
    def address(self) -> str:
        """``host:port``, for the workers."""
        return f"{self._host}:{self._sock.getsockname()[1]}"

    @property
    def workers(self) -> int:
        """Worker processes heard from."""
        with self._lock:
            return len(self._latest)

    def start(self) -> Collector:
        self._thread.start()
        return self

    def counts(self) -> dict[str, int]:
        """The counts of every worker heard from, summed."""
        total: dict[str, int] = {}
        with self._lock:
            for _, counts in self._latest.values():
                for name, n in counts.items():
                    total[name] = total.get(name, 0) + n
        return total

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            report = reporting.decode(data)
            if report is None or report[0] != self._run:
                continue
            _, worker, seq, counts = report
            with self._lock:
                if worker not in self._latest or self._latest[worker][0] < seq:
                    self._latest[worker] = (seq, counts)

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        self._sock.close()


def _live_metrics(result: PipelineResult) -> bool:
    """Whether Beam's metrics of ``result`` may be polled while the job runs.

    Not a portable result (Prism, Flink, a job service): it keeps the first
    metrics it fetches. Not the FnApiRunner's: it exists once the run is over.
    """
    return not isinstance(result, (portable_runner.PipelineResult, fn_runner.RunnerResult))


class Progress:
    """Shows a run's progress on ``stream`` while it runs; a context manager.

    Example::

        with Progress(5.0, run_id) as live:
            build_pipeline(..., progress_address=live.address)
            result = pipeline.run()
            live.wait(result, poll=lambda: counters(result))
            live.finish(counters(result))

    Args:
      interval_s: Seconds between lines, and before the first; 0 or less for
        no progress at all (no collector, no reports, nothing shown).
      run: The run's id.
      stream: Where to show it (stderr).
      bar: A bar redrawn in place (what a terminal gets) instead of lines;
        ``None``: a bar if ``stream`` is a terminal.
      host: The address the collector listens on, which the workers send to:
        loopback for workers on this machine, one of its network addresses
        for workers on other machines (``--progress_host``).
    """

    def __init__(
        self,
        interval_s: float,
        run: str,
        *,
        stream: IO[str] | None = None,
        bar: bool | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._interval = interval_s
        self._run = run
        self._host = host
        self._stream = stream if stream is not None else sys.stderr
        self._bar_wanted = bar
        self._collector: Collector | None = None
        self._poll: Callable[[], Mapping[str, int]] | None = None
        self._started = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._render_lock = threading.Lock()
        self._shown = False
        self._bar: tqdm[Any] | None = None
        self._exit = contextlib.ExitStack()
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._counts: collections.deque[tuple[float, Snapshot]] = collections.deque()
        self._env_before: str | None = None
        self._last = Snapshot()

    @property
    def enabled(self) -> bool:
        return self._interval > 0

    @property
    def address(self) -> str | None:
        """Where workers send their counts (``host:port``); ``None`` when progress is off."""
        return self._collector.address if self._collector is not None else None

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if not self.enabled:
            return self
        try:
            self._collector = Collector(self._run, self._host).start()
        except OSError as e:  # no such address here: Beam's metrics only, where live
            _LOGGER.warning(
                "No live progress from the workers: cannot listen on %r: %s", self._host, e
            )
        if self._collector is not None:
            address = self._collector.address
            # Workers in this process, and those it starts, report from their first count.
            reporting.start_reporting(address, self._run, from_now=True)
            self._env_before = os.environ.get(reporting.ENV_VAR)
            os.environ[reporting.ENV_VAR] = f"{self._run}@{address}"
        self._thread = threading.Thread(target=self._render_loop, name="progress", daemon=True)
        self._thread.start()
        return self

    def wait(
        self, result: PipelineResult, poll: Callable[[], Mapping[str, int]] | None = None
    ) -> None:
        """Waits for the run to finish, polling ``poll`` (Beam's metrics) where they are live.

        One thread calls ``wait_until_finish()`` once and this one waits for it:
        the PortableRunner (and so the FlinkRunner) allows a single wait, as each
        call reads the job's state stream anew, and a second one fails with
        "Internal gRPC call error 8".

        Raises:
          Whatever ``wait_until_finish()`` raised.
        """
        if poll is not None and _live_metrics(result):
            self._poll = poll
        failure: list[BaseException] = []

        def wait() -> None:
            try:
                result.wait_until_finish()
            except BaseException as e:  # re-raised in the caller's thread below
                failure.append(e)

        waiter = threading.Thread(target=wait, name="wait_until_finish", daemon=True)
        waiter.start()
        while waiter.is_alive():
            waiter.join(0.5)
        self._poll = None
        if failure:
            raise failure[0]

    def finish(self, counts: Mapping[str, int]) -> None:
        """Ends the progress with the run's final counts (Beam's), if any was shown."""
        self._stop_rendering()
        if not self._shown:
            return
        final = Snapshot.of(counts, from_workers=False)
        try:
            self._render(final, time.monotonic() - self._started, done=True)
        except Exception:  # progress must never fail a run (a closed stderr, say)
            _LOGGER.debug("Progress not shown", exc_info=True)
        self._close_bar()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_rendering()
        self._close_bar()
        if self._collector is not None:
            reporting.stop_reporting(self._run)
            if self._env_before is None:
                os.environ.pop(reporting.ENV_VAR, None)
            else:
                os.environ[reporting.ENV_VAR] = self._env_before
            self._collector.close()
            self._collector = None

    def _close_bar(self) -> None:
        """Leaves the bar as it was last drawn, and log lines as they were."""
        try:
            self._exit.close()
        except Exception:  # progress must never fail a run
            _LOGGER.debug("Progress bar not closed", exc_info=True)
        self._bar = None

    def _stop_rendering(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _bar_on(self) -> bool:
        if self._bar_wanted is not None:
            return self._bar_wanted
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())

    def _snapshot(self) -> Snapshot:
        """The counts of the source that has seen the most of the run.

        Workers that reach the collector and Beam's live metrics (polled where
        the runner has them: Dataflow) count the same things, both only ever
        growing; where the workers cannot reach the collector (Dataflow's),
        only this process's own reporter does, with nothing counted.
        """
        found: list[Snapshot] = []
        collector = self._collector
        if collector is not None:
            found.append(Snapshot.of(collector.counts(), from_workers=True))
        poll = self._poll
        if poll is not None:
            try:
                found.append(Snapshot.of(poll(), from_workers=False))
            except Exception as e:  # some runners report metrics only at the end
                _LOGGER.debug("No metrics while running: %s", e)
        # Never backwards: Beam's metrics can stop answering as the job ends.
        found.append(self._last)
        self._last = max(
            found, key=lambda snapshot: (snapshot.written, snapshot.documents_read, snapshot.chunks)
        )
        return self._last

    def _render_loop(self) -> None:
        tick = min(self._interval, _BAR_TICK_S) if self._bar_on() else self._interval
        next_line = self._started + self._interval
        while not self._stopped.wait(max(0.0, min(tick, next_line - time.monotonic()))):
            now = time.monotonic()
            if now < next_line:
                continue
            next_line = now + (tick if self._bar_on() else self._interval)
            try:
                self._render(self._snapshot(), now - self._started, done=False)
            except Exception:  # progress must never fail a run
                _LOGGER.debug("Progress not shown", exc_info=True)

    def _eta(self, share: float | None, elapsed: float) -> float | None:
        """Seconds left, from how fast the share of work done grew lately."""
        if share is None or share < _ETA_MIN_SHARE:
            return None
        self._samples.append((elapsed, share))
        while len(self._samples) > 2 and elapsed - self._samples[0][0] > _ETA_WINDOW_S:
            self._samples.popleft()
        if share >= 1:
            return 0.0
        then, share_then = self._samples[0]
        if elapsed > then and share > share_then:
            return (1 - share) * (elapsed - then) / (share - share_then)
        return None

    def _rates(self, now: Snapshot, elapsed: float, *, done: bool) -> tuple[float, float]:
        """Documents read and chunks written per second: over the last few
        seconds while the run goes on, over the whole run at its end."""
        then, before = 0.0, Snapshot()
        if not done:
            if not self._counts:
                self._counts.append((0.0, Snapshot()))  # the run's start
            self._counts.append((elapsed, now))
            while len(self._counts) > 2 and elapsed - self._counts[0][0] > _RATE_WINDOW_S:
                self._counts.popleft()
            then, before = self._counts[0]
        span = elapsed - then
        if span <= 0:
            return 0.0, 0.0
        return (
            (now.documents_read - before.documents_read) / span,
            (now.written - before.written) / span,
        )

    def _text(self, now: Snapshot, elapsed: float, eta: float | None, *, done: bool) -> str:
        """A line's text: every count, rate and size."""
        documents_per_s, written_per_s = self._rates(now, elapsed, done=done)
        parts = [
            f"{now.documents_read:,} documents read ({documents_per_s:,.0f}/s)",
            f"{now.written:,} chunks written ({written_per_s:,.0f}/s)",
            f"{now.dead_lettered:,} dead-lettered",
        ]
        if now.input_bytes and not now.input_files_unsized:
            parts.append(
                f"{format_bytes(now.input_bytes_read)} of {format_bytes(now.input_bytes)} read"
            )
        parts.append(f"elapsed {format_duration(elapsed)}")
        if done:
            parts.append("done")
        elif eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)

    def _bar_text(self, now: Snapshot, elapsed: float, eta: float | None, *, done: bool) -> str:
        """What follows the bar: the line's text, short enough for 100 columns."""
        _, written_per_s = self._rates(now, elapsed, done=done)
        parts = [
            f"{now.documents_read:,} documents read",
            f"{now.written:,} chunks written ({written_per_s:,.0f}/s)",
            f"{now.dead_lettered:,} dead-lettered",
            format_duration(elapsed),
        ]
        if done:
            parts.append("done")
        elif eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)

    def _render(self, now: Snapshot, elapsed: float, *, done: bool) -> None:
        with self._render_lock:
            share = 1.0 if done else now.done()
            eta = None if done else self._eta(share, elapsed)
            self._shown = True
            if not self._bar_on():
                text = self._text(now, elapsed, eta, done=done)
                # One write, the newline in it: print() writes the end apart, and a log
                # line written by another thread in between lands inside this one.
                self._stream.write(f"progress: {text}\n")
                self._stream.flush()
                return
            text = self._bar_text(now, elapsed, eta, done=done)
            bar = self._bar
            if bar is None:
                width = _columns(self._stream)
                bar = self._bar = self._exit.enter_context(
                    tqdm(
                        total=_BAR_STEPS,
                        file=self._stream,
                        # The terminal's width as it changes; 100 columns where
                        # it tells none (a pseudo-terminal nobody sized).
                        dynamic_ncols=width > 0,
                        ncols=None if width > 0 else 100,
                        mininterval=0,
                        leave=True,
                        bar_format="ingest: {desc}",
                        desc=text,
                    )
                )
                # Log lines go above the bar, not through it.
                self._exit.enter_context(logging_redirect_tqdm())
            if share is None:
                bar.bar_format = "ingest: {desc}"
            else:
                bar.bar_format = "ingest {percentage:3.0f}%|{bar}| {desc}"
                bar.n = min(_BAR_STEPS, int(share * _BAR_STEPS))
            bar.set_description_str(text, refresh=False)
            bar.refresh()


def _columns(stream: IO[str]) -> int:
    """The width of the terminal ``stream`` is, or 0 if it tells none."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0
