"""Dataflow, offline: the launcher writes a real Dataflow job (a classic template)
through a local GCS, and the staged pipeline then runs in a clean worker
environment built from what was staged, into a real Milvus server.

What this proves without a cloud: ``configs/dataflow.yaml`` makes a valid
DataflowRunner job; the job holds our steps and no pickled main session; the
staged package is our sdist and installs on a machine that has only Beam; the
staged requirements let workers read ``gs://``; the model comes from ``gs://``
and is staged on the worker; the staged graph, run as a worker runs it, writes
exactly the expected rows. What it cannot prove: Google's service accepting the
job (no network here) and Dataflow's own worker boot (a container image).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from pymilvus import MilvusClient

from pipelines import ingest
from tests.conftest import REPO
from tests.test_production import last_report, make_corpus
from transforms import MilvusTarget
from transforms.milvus.collection import count_rows
from transforms.testing import runners

DATAFLOW_CONFIG = REPO / "configs" / "dataflow.yaml"
DATAFLOW_REQUIREMENTS = REPO / "configs" / "dataflow-requirements.txt"
OUR_STEPS = {"ReadDocuments", "ChunkDocuments", "EmbedChunks", "WriteToMilvus", "WriteDeadLetters"}


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory):
    with runners.gcs_emulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


@pytest.fixture
def on_gcs(
    gcs: runners.GcsEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[runners.GcsEmulator]:
    """Points this process's Google and fsspec clients at the emulator, anonymously."""
    for name, value in gcs.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
    # The plain GCSFileSystem, whichever class gcsfs picked when it was imported
    # (see GcsEmulator.env), fresh: no instance cached for another endpoint.
    from gcsfs.core import GCSFileSystem

    registry = importlib.import_module("fsspec.registry")._registry
    for protocol in ("gs", "gcs"):
        monkeypatch.setitem(registry, protocol, GCSFileSystem)
    GCSFileSystem.clear_instance_cache()
    yield gcs
    GCSFileSystem.clear_instance_cache()


def _upload_folder(fs, local: Path, url: str) -> None:
    for path in sorted(local.iterdir()):
        fs.put_file(str(path), f"{url}/{path.name}")


def _blob_path(url: str, bucket: str) -> str:
    return url.split(f"{bucket}/", 1)[1]


def test_a_dataflow_job_stages_our_package_and_runs_on_a_clean_worker(
    tmp_path, tiny_model, milvus_server, collection_name, worker_venv, on_gcs, capsys
) -> None:
    bucket = f"gs://{on_gcs.bucket}"
    fs = fsspec.filesystem("gcs")
    _upload_folder(fs, Path(tiny_model), f"{bucket}/models/tiny")
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    fs.put_file(corpus, f"{bucket}/corpus/corpus.jsonl")
    setup_file = runners.copy_sources(REPO, tmp_path / "src")  # keeps *.egg-info out of the repo
    milvus_uri = milvus_server.milvus["uri"]

    # What `make run-dataflow` runs, with the template written instead of a job
    # submitted; --no_auth and a loopback endpoint keep it from Google's APIs.
    ingest.run(
        [
            "--config",
            str(DATAFLOW_CONFIG),
            "--project=offline-project",
            "--region=europe-west1",
            f"--temp_location={bucket}/tmp",
            f"--staging_location={bucket}/staging",
            f"--input={bucket}/corpus/*.jsonl",
            f"--model={bucket}/models/tiny",
            f"--milvus_uri={milvus_uri}",
            f"--collection={collection_name}",
            f"--dead_letter_path={bucket}/dead_letters/dl",
            f"--setup_file={setup_file}",
            f"--requirements_file={DATAFLOW_REQUIREMENTS}",
            f"--template_location={bucket}/templates/ingest.json",
            "--no_auth",
            "--dataflow_endpoint=http://localhost:9",
            "--max_num_workers=2",
        ]
    )
    report = last_report(capsys.readouterr().out)
    assert report["template_location"] == f"{bucket}/templates/ingest.json"
    assert report["created"] is True and report["runner"] == "DataflowRunner"
    target = MilvusTarget.server(milvus_uri, collection_name, token_env=None)
    assert count_rows(target) == 0  # the launcher made the collection; nothing ran yet

    # The job: our options, our staged files, no pickled main session.
    bucket_client = on_gcs.client().bucket(on_gcs.bucket)
    job = json.loads(bucket_client.blob("templates/ingest.json").download_as_bytes())
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert options["save_main_session"] is False
    assert options["project"] == "offline-project" and options["region"] == "europe-west1"
    packages = {p["name"]: p["location"] for p in job["environment"]["workerPools"][0]["packages"]}
    assert {"workflow.tar.gz", "requirements.txt"} <= set(packages)
    assert "pickled_main_session" not in packages
    staged = tmp_path / "staged"
    staged.mkdir()
    for name in ("workflow.tar.gz", "requirements.txt"):
        blob = _blob_path(packages[name], on_gcs.bucket)
        bucket_client.blob(blob).download_to_filename(str(staged / name))
    pipeline_pb = staged / "pipeline.pb"
    bucket_client.blob(_blob_path(options["pipelineUrl"], on_gcs.bucket)).download_to_filename(
        str(pipeline_pb)
    )

    # The graph holds our steps; the worker image is Beam's for this version.
    proto = beam_runner_api_pb2.Pipeline.FromString(pipeline_pb.read_bytes())
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert names >= OUR_STEPS
    (environment,) = proto.components.environments.values()
    payload = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
    assert payload.container_image.endswith(f":{runners.BEAM_VERSION}")

    # The staged package is our sdist: the same files.
    def members(path: Path) -> set[str]:
        with tarfile.open(path) as tar:
            return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}

    staged_files = members(staged / "workflow.tar.gz")
    assert staged_files == members(worker_venv.sdist)
    assert {"setup.py", "transforms/milvus/sink.py", "pipelines/ingest.py"} <= staged_files
    assert not any(f.startswith(("tests/", "models/")) for f in staged_files)

    # A worker: the Beam-only environment plus what was staged, installed as a
    # Dataflow worker installs it (requirements, then the package), then the
    # staged graph, run in process, from an empty folder, offline.
    site = tmp_path / "worker-site"
    worker_venv.pip_install("--target", str(site), "-r", str(staged / "requirements.txt"))
    worker_venv.pip_install("--target", str(site), "--no-deps", str(staged / "workflow.tar.gz"))
    script = tmp_path / "replay.py"
    script.write_text(runners.REPLAY_STAGED_PIPELINE)
    workdir = tmp_path / "worker-cwd"
    workdir.mkdir()
    worker_cache = tmp_path / "worker-model-cache"
    done = subprocess.run(
        [str(worker_venv.python), str(script), str(pipeline_pb), "milvus_ingest"],
        cwd=workdir,
        env=worker_venv.env(
            PYTHONPATH=str(site),
            MILVUS_INGEST_MODEL_CACHE=str(worker_cache),
            HF_HOME=str(tmp_path / "hf-home"),
            **on_gcs.env,
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    counters = json.loads(done.stdout.strip().splitlines()[-1])
    assert counters["documents_read"] == 60
    # configs/dataflow.yaml cuts 256-token windows: one per 64-word document.
    assert counters["chunks"] == counters["written"] == counters["rows_upserted"] == 60
    assert counters.get("dead_lettered", 0) == 0
    assert counters["model_loads"] == 1  # one worker process, one load
    # The code that ran is the staged one, not the launcher's.
    assert _imported_from(worker_venv, site)

    # The model came from gs:// and was staged once into the worker's cache.
    (staged_model,) = [p for p in worker_cache.iterdir() if not p.name.startswith(".")]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in staged_model.iterdir()
    }

    client = MilvusClient(uri=milvus_uri, timeout=30)
    try:
        client.flush(collection_name)
    finally:
        client.close()
    assert count_rows(target) == 60


def _imported_from(venv: runners.WorkerVenv, site: Path) -> bool:
    """Whether the worker environment imports ``transforms`` from ``site``."""
    done = subprocess.run(
        [str(venv.python), "-c", "import transforms; print(transforms.__file__)"],
        cwd=site.parent,
        env=venv.env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().startswith(str(site))
