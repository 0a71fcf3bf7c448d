"""Ctrl-C: a real SIGINT to the process group of a run, as a terminal sends it.

``python -m pipelines.ingest`` runs in a session of its own (its own process
group, as a shell's foreground job), with two worker processes
(``--direct_num_workers 2 --direct_running_mode multi_processing``, the
local store served to them) or in one process on the embedded store. Once
it has started writing, the test sends SIGINT to the whole group and checks
what a user sees: status 130, one line on stderr after the run's log lines
(what was written, how to finish), no traceback, and that ``inspect`` shows
the collection as incomplete until a re-run of the same command completes it.

The target is an exit within 5 s (docs/reliability.md); the bound asserted
here is a generous 30 s, so that a loaded machine does not fail it: the
times measured are printed (``pytest -s``). About 2 minutes on two cores.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import apache_beam as beam
import pytest

from pipelines.interrupt import INTERRUPTED_STATUS, keyboard_interrupt_reaches_caller
from tests.conftest import WORDS

REPO = pathlib.Path(__file__).resolve().parents[1]
EXIT_BOUND_S = 30.0
START_TIMEOUT_S = 240.0
LOG_PREFIXES = ("INFO ", "WARNING ", "DEBUG ", "progress")


def corpus(path: pathlib.Path, documents: int) -> pathlib.Path:
    """A JSONL file of documents of a few hundred words each."""
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(documents):
            text = " ".join(rng.choice(WORDS) for _ in range(400))
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return path


def start(args: list[str], cwd: pathlib.Path) -> subprocess.Popen[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.ingest", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def interrupt_once_writing(process: subprocess.Popen[str], after_s: float) -> tuple[list, float]:
    """Waits for the run to make its collection, then ``after_s`` more, then SIGINT to the
    group; returns the stderr lines read before, and the time it was sent."""
    assert process.stderr is not None
    before = []
    deadline = time.monotonic() + START_TIMEOUT_S
    for line in process.stderr:
        before.append(line.rstrip("\n"))
        if "Created collection" in line:
            break
        assert time.monotonic() < deadline, before
    else:
        raise AssertionError(f"the run ended before it wrote: {before}")
    time.sleep(after_s)
    assert process.poll() is None, "the run ended before the interrupt: make the corpus larger"
    os.killpg(process.pid, signal.SIGINT)
    return before, time.monotonic()


def inspect_json(uri: str, collection: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.inspect", "--milvus_uri", uri,
         "--collection", collection, "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "workers",
    [
        pytest.param(
            ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
            id="two-worker-processes",
        ),
        pytest.param([], id="one-process"),
    ],
)
def test_ctrl_c_stops_the_run_with_one_line_and_a_rerun_completes_it(
    tmp_path: pathlib.Path, demo_model: str, workers: list[str]
) -> None:
    store = str(tmp_path / "milvus.db")
    args = [
        "--input", str(corpus(tmp_path / "big.jsonl", 12000)),
        "--model", demo_model,
        "--milvus_uri", store,
        "--collection", "big",
        "--runner", "DirectRunner",
        *workers,
    ]  # fmt: skip
    process = start(args, tmp_path)
    try:
        _, sent = interrupt_once_writing(process, after_s=3.0)
        try:
            stdout, stderr = process.communicate(timeout=EXIT_BOUND_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit within {EXIT_BOUND_S:.0f} s of SIGINT") from None
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    print(f"\n{' '.join(workers) or 'one process'}: exited {took:.1f} s after SIGINT")

    assert process.returncode == INTERRUPTED_STATUS, stderr
    assert "Traceback" not in stderr, stderr
    assert stdout == ""  # no report: the run did not end
    said = [line for line in stderr.splitlines() if not line.startswith(LOG_PREFIXES)]
    assert len(said) == 1, stderr
    [line] = said
    assert line.startswith(f"interrupted (Ctrl-C): collection 'big' at {store} holds about ")
    assert line.endswith(
        "is marked incomplete; run the same command again to finish: rows are upserted by "
        "their ids, so nothing is written twice"
    )
    rows_said = int(line.split("holds about ")[1].split(" rows")[0])

    shown = inspect_json(store, "big")
    assert shown["last_run"]["completed"] is False
    # "about": counted from the statistics; in one process, writes may end after the count.
    assert shown["rows"] >= rows_said

    rerun = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=START_TIMEOUT_S * 2,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert report["rows_before"] == shown["rows"]
    assert report["rows_after"] == report["written"]  # rows written twice were written once
    shown = inspect_json(store, "big")
    assert shown["last_run"]["completed"] is True
    assert shown["last_run"]["run_id"] == report["run_id"]


# Python takes Ctrl-C as KeyboardInterrupt unless it started with SIGINT ignored, as a
# background job of a non-interactive shell does (a CI script's ``&``): the program sets it,
# as one run from a terminal has it.
CALLER = """
import logging
import signal
import sys
from pipelines import ingest
signal.signal(signal.SIGINT, signal.default_int_handler)
logging.basicConfig(level=logging.INFO)
try:
    ingest.run(sys.argv[1:])
except KeyboardInterrupt:
    print("the caller caught KeyboardInterrupt", flush=True)
    sys.exit(7)
"""


def test_ctrl_c_in_a_program_that_calls_run_is_the_programs_to_handle(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    """Only the command line ends the process on Ctrl-C: a program or notebook calling
    ``ingest.run`` gets its ``KeyboardInterrupt``, and goes on."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-c", CALLER,
         "--input", str(corpus(tmp_path / "big.jsonl", 12000)), "--model", demo_model,
         "--milvus_uri", str(tmp_path / "milvus.db"), "--collection", "big",
         "--runner", "DirectRunner"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        interrupt_once_writing(process, after_s=3.0)
        stdout, stderr = process.communicate(timeout=EXIT_BOUND_S * 4)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 7, stderr
    assert "the caller caught KeyboardInterrupt" in stdout


class _InterruptOnce(beam.DoFn):
    """Sends SIGINT to its own process, as Ctrl-C would, while processing an element."""

    def process(self, element: int) -> Iterator[int]:
        if element == 0:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler runs here, inside the DoFn
        yield element


def test_a_sigint_inside_a_dofn_reaches_the_caller_as_keyboard_interrupt() -> None:
    """Beam's in-process runner hands a ``KeyboardInterrupt`` raised inside a ``DoFn``
    back as a ``RuntimeError``; within the block it is a ``KeyboardInterrupt`` again,
    and the SIGINT handler in place before is back after."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # see CALLER
    try:
        with (
            pytest.raises(KeyboardInterrupt),
            keyboard_interrupt_reaches_caller(),
            beam.Pipeline(runner="FnApiRunner") as pipeline,
        ):
            _ = pipeline | beam.Create([0, 1]) | beam.ParDo(_InterruptOnce())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_other_failures_pass_through_unchanged() -> None:
    with pytest.raises(ValueError, match="not an interrupt"), keyboard_interrupt_reaches_caller():
        raise ValueError("not an interrupt")
