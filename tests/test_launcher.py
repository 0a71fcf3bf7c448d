"""Launcher-side pieces of the ingest pipeline: progress, served stores, client options."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineState

from pipelines import ingest
from pipelines.lite_server import needs_server
from pipelines.progress import Progress
from transforms import ConfigError, MilvusTarget


class _Counter:
    def __init__(self, name: str, value: int) -> None:
        self.key = type("Key", (), {"metric": type("Metric", (), {"name": name})()})()
        self.committed = value
        self.attempted = value


class _Metrics:
    def __init__(self, n: int) -> None:
        self._n = n

    def query(self, _filter):
        return {"counters": [_Counter("documents_read", self._n), _Counter("written", 3 * self._n)]}


class _RunningResult(PipelineResult):
    """A run that lasts ``seconds`` and reports growing counts while it runs,
    as a remote runner does."""

    def __init__(self, seconds: float) -> None:
        super().__init__(PipelineState.RUNNING)
        self._seconds = seconds
        self.queries = 0

    def wait_until_finish(self, duration=None):
        time.sleep(self._seconds)
        self._state = PipelineState.DONE
        return self._state

    def metrics(self) -> _Metrics:
        self.queries += 1
        return _Metrics(100 * self.queries)


def _progress_lines(result: PipelineResult, interval_s: float) -> list[str]:
    """What a run's progress shows when only Beam's metrics report it (as on Dataflow)."""
    shown = io.StringIO()
    with Progress(interval_s, "run", stream=shown, bar=False) as live:
        live.wait(result, poll=lambda: ingest.counters(result))
        live.finish(ingest.counters(result))
    return [line for line in shown.getvalue().splitlines() if line.startswith("progress:")]


def test_progress_lines_while_the_runner_reports_running() -> None:
    lines = _progress_lines(_RunningResult(seconds=1.0), interval_s=0.2)
    assert len(lines) >= 3, lines
    read = [int(line.split(" documents read")[0].split()[-1].replace(",", "")) for line in lines]
    assert read == sorted(read) and read[0] < read[-1]  # the counts grow as the run goes on
    assert all(" chunks written (" in line for line in lines)
    assert lines[-1].endswith("done")  # the last line has the final counts


def test_a_short_run_prints_no_progress() -> None:
    assert _progress_lines(_RunningResult(seconds=0.0), interval_s=5) == []


def test_a_failed_run_raises_in_the_launcher() -> None:
    class _Failing(_RunningResult):
        def wait_until_finish(self, duration=None):
            raise RuntimeError("the job failed")

    with pytest.raises(RuntimeError, match="the job failed"):
        _progress_lines(_Failing(seconds=0), interval_s=0.1)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], False),
        (["--runner=DirectRunner"], False),
        (["--direct_running_mode=multi_threading", "--direct_num_workers=2"], False),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
        (["--runner=FlinkRunner"], True),
        (["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"], True),
        (["--runner=PortableRunner"], True),
        (["--runner=PortableRunner", "--environment_type=EXTERNAL"], True),
        (["--runner=PortableRunner", "--environment_type=LOOPBACK"], False),
        (["--runner=FlinkRunner", "--environment_type=LOOPBACK"], False),
        (["--runner=PrismRunner"], False),
        (["--runner=PrismRunner", "--environment_type=PROCESS"], True),
        (["--runner=FnApiRunner"], False),
        (["--runner=FnApiRunner", "--direct_running_mode=multi_processing"], True),
    ],
)
def test_a_local_store_is_served_when_workers_are_other_processes(flags, expected) -> None:
    lite = MilvusTarget.lite("x.db", "docs")
    assert needs_server(lite, PipelineOptions(flags)) is expected
    server = MilvusTarget.server("http://127.0.0.1:19530", "docs")
    assert needs_server(server, PipelineOptions(flags)) is False


def test_remote_workers_cannot_use_a_local_store() -> None:
    with pytest.raises(ConfigError, match="cannot reach"):
        needs_server(
            MilvusTarget.lite("x.db", "docs"), PipelineOptions(["--runner=DataflowRunner"])
        )


def test_tls_options_pass_through_and_unknown_ones_are_refused() -> None:
    target = MilvusTarget(
        uri="https://milvus.example:443",
        collection="docs",
        token_env=None,
        client_options={"secure": True, "server_name": "milvus.example"},  # type: ignore[arg-type]
    )
    kwargs = target.client_kwargs()
    assert kwargs["secure"] is True and kwargs["server_name"] == "milvus.example"
    assert kwargs["timeout"] == target.connect_timeout_s
    with pytest.raises(ConfigError, match="client_options"):
        MilvusTarget(uri="http://h:1", collection="docs", client_options={"token": "x"})  # type: ignore[arg-type]


def test_the_entry_point_skips_the_last_collections_but_not_atexit(tmp_path) -> None:
    # In a process of its own: freezing the garbage collector is for exits.
    marker = tmp_path / "atexit.txt"
    script = f"""
import atexit, gc, sys
from pipelines.cli import run_main
atexit.register(lambda: open({str(marker)!r}, "w").write(str(gc.get_freeze_count())))
run_main(lambda argv: print("ran", argv))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, "--flag"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "ran ['--flag']"
    assert int(marker.read_text()) > 10_000  # atexit ran, after the objects were frozen
