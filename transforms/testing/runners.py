"""Runner infrastructure for the runner tests: what a cluster's workers would have.

* :func:`make_worker_venv`: a virtual environment with only ``apache-beam``
  (the launcher's version), into which the project's sdist, built from a
  source checkout, is then installed, as Dataflow and portable workers install
  ``--setup_file``. Nothing else of the launcher's is importable there.
* :func:`portable_services`: Beam's Python job service and an EXTERNAL worker
  pool (``worker_pool_main``) started from such an environment, the set-up a
  portable runner submits to.
* :func:`dask_cluster`: a ``dask scheduler`` and two ``dask worker``
  processes started from such an environment (with Dask added).
* :func:`gcs_emulator`: a local GCS (``gcp-storage-emulator``), so that
  DataflowRunner can stage a job and a model can come from ``gs://`` offline.
* :data:`REPLAY_STAGED_PIPELINE`: a script, run inside the worker
  environment, that executes a staged Dataflow ``pipeline.pb`` in process.
* :func:`local_engine`: the local engines the pipeline tests run on (Beam's
  FnApiRunner, and Prism from a binary ``make prism`` builds), as Beam flags.

Every server listens on 127.0.0.1 or ``localhost`` on a free port, runs in its
own process group, and is stopped (the whole group) by the context managers.
Costs, measured on 2 cores: the worker environment takes ~35 s to build
(Beam ~18 s, the sdist and its dependencies ~15 s); the services start in ~3 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import apache_beam

from transforms.testing.processes import free_port, start_process, stop_process, wait_for_port

__all__ = [
    "BEAM_VERSION",
    "LOCAL_ENGINES",
    "OFFLINE_ENV",
    "REPLAY_STAGED_PIPELINE",
    "SDIST_SOURCES",
    "GcsEmulator",
    "LocalEngine",
    "PortableServices",
    "WorkerVenv",
    "add_dask",
    "build_sdist",
    "copy_sources",
    "dask_cluster",
    "distributions",
    "gcs_emulator",
    "local_engine",
    "make_worker_venv",
    "portable_services",
]

BEAM_VERSION = apache_beam.__version__

SDIST_SOURCES = ("setup.py", "pyproject.toml", "README.md", "transforms", "pipelines")
"""What the sdist is built from: the distribution's own files, nothing else."""

# No process of the tests may look for Google credentials on a metadata server
# (that is not a loopback address), nor reach the Hugging Face hub.
OFFLINE_ENV = {
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "HF_HUB_OFFLINE": "1",
}


def _run(command: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None):
    """Runs a command; on failure, raises with its output."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))} exited with {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done


def copy_sources(checkout: Path, dest: Path, names: Sequence[str] = SDIST_SOURCES) -> Path:
    """Copies the distribution's files from a source ``checkout`` to ``dest``
    (building there leaves the checkout clean: setuptools writes
    ``*.egg-info`` next to setup.py). Returns the copied setup.py."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = checkout / name
        if source.is_dir():
            shutil.copytree(
                source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, dest / name)
    return dest / "setup.py"


def build_sdist(checkout: Path, dest: Path) -> Path:
    """Builds the checkout's sdist in ``dest`` as Beam's stager does for
    ``--setup_file`` (setup.py sdist)."""
    setup_file = copy_sources(checkout, dest / "src")
    _run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dest / "dist")],
        cwd=setup_file.parent,
    )
    (sdist,) = (dest / "dist").glob("*.tar.gz")
    return sdist


def distributions(python: Path) -> dict[str, str]:
    """The distributions installed for an interpreter, by normalised name."""
    listed = _run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
    )
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout)}


@dataclasses.dataclass(frozen=True)
class WorkerVenv:
    """A worker's environment: Beam only, then the project's sdist."""

    root: Path
    beam_only: Mapping[str, str]
    """Distributions before the sdist was installed."""
    installed: Mapping[str, str]
    """Distributions after."""
    sdist: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for its processes: its bin/ first on PATH (Beam's
        worker pool starts workers as plain ``python``), offline, nothing of
        the launcher's on PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(OFFLINE_ENV)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def pip_install(self, *args: str) -> None:
        _run([str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args])


def make_worker_venv(checkout: Path, folder: Path) -> WorkerVenv:
    """Creates a venv in ``folder`` with only ``apache-beam==<launcher's version>``,
    then installs the sdist of the source ``checkout`` (and so its dependencies)
    into it. Takes ~35 s on 2 cores, and the network or a pip cache."""
    root = folder / "venv"
    _run([sys.executable, "-m", "venv", str(root)])
    python = root / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"apache-beam=={BEAM_VERSION}"]
    )  # fmt: skip
    beam_only = distributions(python)
    sdist = build_sdist(checkout, folder)
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(sdist)])
    return WorkerVenv(root, beam_only, distributions(python), sdist)


@dataclasses.dataclass(frozen=True)
class PortableServices:
    """Beam's Python job service and an EXTERNAL worker pool."""

    job_endpoint: str
    worker_pool: str
    logs: tuple[Path, ...]

    def flags(self) -> list[str]:
        """The PortableRunner's flags for these services."""
        return [
            "--runner=PortableRunner",
            f"--job_endpoint={self.job_endpoint}",
            "--environment_type=EXTERNAL",
            f"--environment_config={self.worker_pool}",
        ]


@contextlib.contextmanager
def portable_services(
    venv: WorkerVenv, folder: Path, env: Mapping[str, str] | None = None
) -> Iterator[PortableServices]:
    """Starts the job service and the worker pool from ``venv``, in an empty
    working folder, so that workers see only what the venv has installed."""
    folder.mkdir(parents=True, exist_ok=True)
    workdir = folder / "cwd"
    workdir.mkdir(exist_ok=True)
    env = dict(env or venv.env(HF_HOME=str(folder / "hf-home")))
    started: list[subprocess.Popen] = []

    def serve(module: str, port_flag: str, log: Path, what: str) -> int:
        port = free_port()
        proc = start_process(
            [str(venv.python), "-m", module, f"{port_flag}={port}"], log=log, cwd=workdir, env=env
        )
        started.append(proc)
        wait_for_port(port, proc, log, what, 60)
        return port

    try:
        pool_log, job_log = folder / "worker-pool.log", folder / "job-service.log"
        pool_port = serve(
            "apache_beam.runners.worker.worker_pool_main", "--service_port", pool_log,
            "the worker pool",
        )  # fmt: skip
        job_port = serve(
            "apache_beam.runners.portability.local_job_service_main", "--port", job_log,
            "the job service",
        )  # fmt: skip
        yield PortableServices(
            f"localhost:{job_port}", f"localhost:{pool_port}", (pool_log, job_log)
        )
    finally:
        for proc in reversed(started):
            stop_process(proc)


def add_dask(venv: WorkerVenv) -> None:
    """Installs the launcher's Dask into a worker environment: scheduler,
    workers and client must unpickle each other's task graphs."""
    import dask
    import distributed

    venv.pip_install(f"dask=={dask.__version__}", f"distributed=={distributed.__version__}")


@contextlib.contextmanager
def dask_cluster(
    venv: WorkerVenv, folder: Path, env: Mapping[str, str], workers: int = 2
) -> Iterator[str]:
    """Starts a scheduler and ``workers`` single-threaded worker processes from
    ``venv`` in an empty folder; yields the scheduler's address."""
    workdir = folder / "cwd"
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []
    try:
        port = free_port()
        log = folder / "scheduler.log"
        scheduler = start_process(
            [str(venv.bin / "dask"), "scheduler", "--host=127.0.0.1", f"--port={port}",
             "--no-dashboard"],
            log=log, cwd=workdir, env=env,
        )  # fmt: skip
        started.append(scheduler)
        wait_for_port(port, scheduler, log, "the Dask scheduler", 60)
        address = f"tcp://127.0.0.1:{port}"
        for n in range(workers):
            worker = start_process(
                [str(venv.bin / "dask"), "worker", address, "--nthreads=1", "--no-dashboard",
                 "--host=127.0.0.1", f"--name=worker-{n}"],
                log=folder / f"worker-{n}.log", cwd=workdir, env=env,
            )  # fmt: skip
            started.append(worker)
        _wait_for_workers(venv, address, workers, env)
        yield address
    finally:
        for proc in reversed(started):
            stop_process(proc)


def _wait_for_workers(venv: WorkerVenv, address: str, workers: int, env: Mapping[str, str]):
    _run(
        [str(venv.python), "-c",
         "import sys, distributed; c = distributed.Client(sys.argv[1], timeout=60); "
         "c.wait_for_workers(int(sys.argv[2]), timeout=60); c.close()",
         address, str(workers)],
        env=env,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class GcsEmulator:
    """A local GCS; ``env`` points Google's and fsspec's clients at it."""

    host: str
    bucket: str
    proc: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """For processes that use it: Google's clients, and fsspec's gcsfs
        (anonymous, and without its gRPC bucket-type probe, which the emulator
        does not serve: gcsfs would retry it for a minute per bucket)."""
        return {
            "STORAGE_EMULATOR_HOST": self.host,
            "FSSPEC_GCS_TOKEN": "anon",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            **OFFLINE_ENV,
        }

    def client(self) -> Any:
        """An anonymous ``google.cloud.storage.Client`` (reaches the emulator
        when ``STORAGE_EMULATOR_HOST`` is set, as :attr:`env` does)."""
        import google.cloud.storage

        return google.cloud.storage.Client.create_anonymous_client()


@contextlib.contextmanager
def gcs_emulator(folder: Path, bucket: str = "milvus-ingest") -> Iterator[GcsEmulator]:
    """Runs ``gcp-storage-emulator`` (in memory) on a free loopback port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / "gcs-emulator.log"
    script = Path(sys.executable).with_name("gcp-storage-emulator")
    proc = start_process(
        [str(script), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory",
         f"--default-bucket={bucket}"],
        log=log, cwd=folder, env=os.environ,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, log, "the GCS emulator", 60)
        yield GcsEmulator(f"http://127.0.0.1:{port}", bucket, proc)
    finally:
        stop_process(proc)


LOCAL_ENGINES = ("fnapi", "prism")
"""The keys of :func:`local_engine`, as ``pytest --engines`` takes them."""


@dataclasses.dataclass(frozen=True)
class LocalEngine:
    """A local engine, and the Beam flags that run a pipeline on it."""

    key: str
    """As ``pytest --engines`` names it: ``fnapi`` or ``prism``."""
    name: str
    """As the run's report names it (its ``engine`` field)."""
    runner: str
    """As ``--runner`` names it (the report's ``runner`` field)."""
    flags: tuple[str, ...]
    several_processes: bool
    """Whether it runs ``--direct_num_workers=N --direct_running_mode=multi_processing``
    in N worker processes. Prism (Beam 2.77) starts one SDK worker per pipeline."""
    binary: Path | None = None
    """The engine's own executable (Prism's), if it has one."""


def local_engine(key: str, prism_location: Path) -> LocalEngine:
    """The local engine named ``key`` (one of :data:`LOCAL_ENGINES`).

    Args:
      key: ``fnapi`` for Beam's FnApiRunner, what ``configs/local.yaml`` pins;
        ``prism`` for Prism, Beam's Go runner, what Beam's DirectRunner runs on
        where it can download it.
      prism_location: The Prism binary (``make prism`` builds it into the venv).

    Raises:
      FileNotFoundError: ``prism`` without a binary at ``prism_location``, so
        that a run meant to test Prism fails instead of testing nothing.
      ValueError: an unknown key.
    """
    if key == "fnapi":
        return LocalEngine(key, "FnApiRunner", "FnApiRunner", ("--runner=FnApiRunner",), True)
    if key == "prism":
        if not prism_location.is_file():
            raise FileNotFoundError(
                f"no Prism binary at {prism_location}: build it with `make prism` (needs Go), or "
                "pass pytest --prism_location=PATH"
            )
        flags = ("--runner=PrismRunner", f"--prism_location={prism_location}")
        return LocalEngine(key, "Prism", "PrismRunner", flags, False, prism_location)
    raise ValueError(f"unknown engine {key!r}; known: {', '.join(LOCAL_ENGINES)}")


REPLAY_STAGED_PIPELINE = '''\
"""Runs a staged Dataflow pipeline (pipeline.pb) in this process, as a worker
with the staged packages installed would: argv = pipeline.pb, metrics namespace.
Prints the namespace's counters as one JSON line."""
import json
import sys

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

with open(sys.argv[1], "rb") as f:
    proto = beam_runner_api_pb2.Pipeline.FromString(f.read())
for environment in proto.components.environments.values():
    # Dataflow's container (beam:env:docker:v1) becomes this very process.
    environment.urn = python_urns.EMBEDDED_PYTHON
    environment.payload = b""
    del environment.dependencies[:]
result = FnApiRunner().run_via_runner_api(proto, PipelineOptions([]))
result.wait_until_finish()
counters = {}
query = result.metrics().query(MetricsFilter().with_namespace(sys.argv[2]))
for counter in query["counters"]:
    name = counter.key.metric.name
    counters[name] = counters.get(name, 0) + int(counter.committed or 0)
print(json.dumps(counters, sort_keys=True))
'''
