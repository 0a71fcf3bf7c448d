"""Live progress: each worker process sends its running counts to the launcher.

Beam's metrics reach the launcher only when the runner reports them: the
FnApiRunner runs the whole pipeline inside ``pipeline.run()`` and reports at
the end, and a portable job's result keeps the first metrics it fetches. So
the counters that a run's progress is made of
(:data:`transforms.metrics.PROGRESS_COUNTERS`) also add to running totals kept
in each process (:func:`count`), and a daemon thread sends this process's
totals since the run began to the launcher's collector, as one small UDP
datagram every :data:`REPORT_INTERVAL_S` when they changed (and every
:data:`RESEND_S` when they did not).

What it costs: per increment, a lock and a dict update; per process, one
thread that wakes twice a second. No network call per element or per bundle.

Why it is safe: messages carry cumulative counts, so a lost datagram costs
freshness, not correctness; a collector that is gone (or a launcher that
workers cannot reach, as on Dataflow) is ignored, never an error. The final
counts of a run are Beam's metrics, as before; these are only for display.

A reporter starts in a process in one of three ways, for one run at a time:

* :func:`start_reporting` on the launcher, for the workers that run in its
  own process (Beam's FnApiRunner in memory, Prism's loopback workers);
* the environment variable :data:`ENV_VAR`, which the launcher sets while the
  pipeline runs, so that worker processes it starts (the FnApiRunner's
  ``multi_processing`` mode) report from their first count;
* :class:`ReportProgress`, a step whose ``setup()`` starts it on workers that
  neither reaches (a Dask or portable worker pool started elsewhere). There,
  counts made before the step is set up in a long-lived worker are not shown.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

__all__ = [
    "DOCUMENTS_STARTED",
    "ENV_VAR",
    "REPORT_INTERVAL_S",
    "RESEND_S",
    "ReportProgress",
    "count",
    "decode",
    "start_reporting",
    "stop_reporting",
]

_LOGGER = logging.getLogger(__name__)

ENV_VAR = "MILVUS_INGEST_PROGRESS"
"""``<run id>@<host>:<port>``: where this run's workers send their counts."""
REPORT_INTERVAL_S = 0.5
RESEND_S = 2.0
DOCUMENTS_STARTED = "documents_started"
"""Documents that reached the step after reading (chunking): a run's work after
reading is done, for the ETA; counted by :class:`ReportProgress` only, not a Beam metric."""
_VERSION = 1

_lock = threading.Lock()
_totals: dict[str, int] = {}
_reporter: _Reporter | None = None
_reported = False  # whether a reporter ever ran in this process
_environment_read = False


def count(name: str, n: int = 1) -> None:
    """Adds ``n`` to this process's running total of ``name``."""
    if not _environment_read:
        _start_from_environment()
    with _lock:
        _totals[name] = _totals.get(name, 0) + n


def _start_from_environment() -> None:
    global _environment_read
    _environment_read = True
    spec = os.environ.get(ENV_VAR)
    if spec:
        run, _, address = spec.rpartition("@")
        start_reporting(address, run)


def _parse(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


class _Reporter(threading.Thread):
    """Sends this process's counts for one run, until stopped or the process ends."""

    def __init__(self, address: tuple[str, int], run: str, baseline: Mapping[str, int]) -> None:
        super().__init__(name="milvus-ingest-progress", daemon=True)
        self.run_id = run
        self._address = address
        self._baseline = dict(baseline)
        self._worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stopped = threading.Event()
        self._seq = 0

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        try:
            family = socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as e:
            _LOGGER.debug("No progress reports: %s", e)
            return
        with sock:
            last: dict[str, int] | None = None
            sent_at = 0.0
            while True:
                stopping = self._stopped.wait(REPORT_INTERVAL_S)
                now = self._counts()
                if stopping or now != last or time.monotonic() - sent_at >= RESEND_S:
                    self._send(sock, now)
                    last, sent_at = now, time.monotonic()
                if stopping:
                    return

    def _counts(self) -> dict[str, int]:
        with _lock:
            totals = dict(_totals)
        return {
            name: value - self._baseline.get(name, 0)
            for name, value in totals.items()
            if value != self._baseline.get(name, 0)
        }

    def _send(self, sock: socket.socket, counts: Mapping[str, int]) -> None:
        self._seq += 1
        message = {
            "v": _VERSION,
            "run": self.run_id,
            "worker": self._worker,
            "seq": self._seq,
            "counts": counts,
        }
        try:
            sock.sendto(json.dumps(message, separators=(",", ":")).encode(), self._address)
        except OSError as e:  # the launcher is gone or unreachable: progress only
            _LOGGER.debug("Progress report not sent to %s: %s", self._address, e)


def start_reporting(address: str, run: str, *, from_now: bool = False) -> None:
    """Sends this process's counts for run ``run`` to ``address`` (``host:port``).

    Which counts are the run's: with ``from_now`` (the launcher, as the run
    begins), those made from now on; else all of this process's if it never
    reported for another run (a worker process started for this run), or
    those made from now on if it did (a long-lived worker: there, counts of
    this run made before the call are not shown). A second call for the same
    run does nothing; one for another run replaces the previous reporter.
    """
    global _reporter, _reported
    parsed = _parse(address)
    if parsed is None:
        _LOGGER.debug("Ignoring progress address %r", address)
        return
    with _lock:
        if _reporter is not None and _reporter.run_id == run and _reporter.is_alive():
            return
        if _reporter is not None:
            _reporter.stop()
        _reporter = _Reporter(parsed, run, _totals if from_now or _reported else {})
        _reported = True
        _reporter.start()


def stop_reporting(run: str) -> None:
    """Stops the reporter of run ``run`` in this process, after a last report."""
    global _reporter
    with _lock:
        reporter = _reporter if _reporter is not None and _reporter.run_id == run else None
        if reporter is not None:
            _reporter = None
    if reporter is not None:
        reporter.stop()
        reporter.join(timeout=2)


def decode(data: bytes) -> tuple[str, str, int, dict[str, int]] | None:
    """A report's ``(run, worker, seq, counts)``, or ``None`` if it is not one."""
    try:
        message: Any = json.loads(data)
        counts = message["counts"]
        if message.get("v") != _VERSION or not isinstance(counts, dict):
            return None
        return (
            str(message["run"]),
            str(message["worker"]),
            int(message["seq"]),
            {str(k): int(v) for k, v in counts.items()},
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


class _StartReportingFn(beam.DoFn):
    """Starts the run's reporter where it runs; counts the documents it sees."""

    def __init__(self, address: str, run: str, counted: str | None) -> None:
        self._address = address
        self._run = run
        self._counted = counted

    def setup(self) -> None:
        start_reporting(self._address, self._run)

    def process(self, element: Any) -> Iterable[Any]:
        if self._counted:
            count(self._counted)
        return ()


class ReportProgress(beam.PTransform):
    """Makes every worker process that runs the steps it follows report progress.

    Example::

        _ = read.documents | ReportProgress("127.0.0.1:40001", run_id)

    It takes a PCollection of documents, counts them as
    :data:`DOCUMENTS_STARTED`, and costs one call per document: it only needs
    to be set up where they are made, which fuses it into that step. It
    returns an empty PCollection, not ``PDone``: with a ``PDone`` here, the
    project's Dask runner (``pipelines.runners.dask``, Beam 2.77) ran
    ``WriteToText``'s finalizing step without its side inputs, and the run
    failed (seen, not yet understood).

    Args:
      address: The launcher's collector, ``host:port``.
      run: The run's id: reports of another run are ignored by the collector.
    """

    def __init__(self, address: str, run: str) -> None:
        super().__init__()
        self._address = address
        self._run = run

    def expand(self, documents: pvalue.PCollection) -> pvalue.PCollection:
        return documents | "Report" >> beam.ParDo(
            _StartReportingFn(self._address, self._run, DOCUMENTS_STARTED)
        )
