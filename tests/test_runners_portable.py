"""Portable workers: setup.py as workers install it, and the PortableRunner with
Beam's Python job service and an EXTERNAL worker pool whose environment has only
Beam and our sdist.

The workers run in another virtual environment, from an empty folder, offline
(``HF_HUB_OFFLINE=1``, an empty ``HF_HOME``): they see nothing of the launcher's
memory, modules or files but the pickled transforms, which proves that nothing
relies on ``save_main_session`` and that the model loads without the hub. This
is the path the FlinkRunner takes too (its job server hands the same Fn API
work to the same kind of worker pool).
"""

from __future__ import annotations

import subprocess
import tarfile

import fsspec
import pytest

from pipelines import ingest
from tests.test_production import last_report, make_corpus, write_config
from tests.test_runners_local import sync_an_edit_and_compare_with_a_fresh_ingest
from transforms import MilvusTarget
from transforms.milvus.collection import count_rows
from transforms.testing import runners

DISTRIBUTION = "milvus-beam-ingest"  # setup.py's name (its console script: milvus-ingest)
NOT_IN_BEAM_ALONE = {DISTRIBUTION, "model2vec", "pymilvus", "milvus-lite"}


@pytest.fixture(scope="module")
def portable(tmp_path_factory: pytest.TempPathFactory, worker_venv: runners.WorkerVenv):
    folder = tmp_path_factory.mktemp("portable")
    # The workers' own model cache: they are another machine, as far as models go.
    env = worker_venv.env(
        HF_HOME=str(folder / "hf-home"), MILVUS_INGEST_MODEL_CACHE=str(folder / "models")
    )
    with runners.portable_services(worker_venv, folder, env) as services:
        yield services


@pytest.fixture(autouse=True)
def launcher_model_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MILVUS_INGEST_MODEL_CACHE", str(tmp_path / "launcher-model-cache"))


def test_the_sdist_installs_into_a_venv_with_only_beam(worker_venv, tmp_path) -> None:
    assert worker_venv.beam_only["apache-beam"] == runners.BEAM_VERSION
    assert not NOT_IN_BEAM_ALONE & set(worker_venv.beam_only)
    assert worker_venv.installed[DISTRIBUTION] == "0.1.0"
    assert set(worker_venv.installed) >= NOT_IN_BEAM_ALONE
    assert worker_venv.installed["apache-beam"] == runners.BEAM_VERSION  # left as it was

    with tarfile.open(worker_venv.sdist) as tar:
        files = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert {"setup.py", "README.md", "transforms/milvus/sink.py", "pipelines/ingest.py"} <= files
    assert not any(f.startswith(("tests/", "models/", "work/")) for f in files)

    # From an empty folder, the package and its console scripts come from the venv.
    env = worker_venv.env(HF_HOME=str(tmp_path / "hf-home"))
    where = subprocess.run(
        [str(worker_venv.python), "-c", "import pipelines, transforms; print(transforms.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(worker_venv.root))
    refused = subprocess.run(
        [str(worker_venv.bin / "milvus-ingest"), "--milvus_uri=x.db", "--collection=c"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert "error: no input: pass --input" in refused.stderr


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_a_portable_runner_with_an_external_worker_pool_writes_exact_rows(
    tmp_path, tiny_model, milvus_uri, collection_name, portable, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus, token_env=None)
    ingest.run(["--config", config, *portable.flags(), "--progress_interval_s=0.5"])
    report = last_report(capsys.readouterr().out)
    assert report["runner"] == "PortableRunner"
    assert report["documents_read"] == 60
    assert report["chunks"] == report["written"] == report["rows_after"] == 240
    assert report["dead_lettered"] == 0
    assert report["model_loads"] == 1  # the pool's one worker process loaded it once
    target = (
        MilvusTarget.lite(milvus_uri, collection_name)
        if milvus_uri.endswith(".db")
        else MilvusTarget.server(milvus_uri, collection_name, token_env=None)
    )
    assert count_rows(target) == 240


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_a_worker_that_cannot_load_the_model_fails_naming_its_source(
    tmp_path, tiny_model, milvus_uri, collection_name, portable
) -> None:
    # memory:// lives in one process: the launcher has the model, workers do not.
    source = f"memory://{collection_name}/tiny"
    memory = fsspec.filesystem("memory")
    for path in sorted(fsspec.filesystem("file").ls(tiny_model)):
        memory.put_file(path, f"{source}/{path.rsplit('/', 1)[1]}")
    corpus = make_corpus(tmp_path / "corpus", documents=4, words_per_document=32)
    config = write_config(tmp_path, source, milvus_uri, collection_name, corpus, token_env=None)
    with pytest.raises(RuntimeError) as failed:
        ingest.run(["--config", config, *portable.flags()])
    message = str(failed.value)
    assert "ModelLoadError" in message
    assert f"could not copy the model from {source!r}" in message


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_sync_on_a_portable_runner_follows_edits_deletions_and_additions(
    tmp_path, tiny_model, milvus_uri, collection_name, worker_venv, portable, capsys
) -> None:
    """Issue #14: sync in the external worker pool (a Lite store served to it),
    which has the sync's code from the sdist."""
    with tarfile.open(worker_venv.sdist) as tar:
        assert any(m.name.endswith("/transforms/milvus/sync.py") for m in tar.getmembers())
    reports = sync_an_edit_and_compare_with_a_fresh_ingest(
        tmp_path, tiny_model, milvus_uri, collection_name, portable.flags(), capsys
    )
    assert {r["runner"] for r in reports} == {"PortableRunner"}
