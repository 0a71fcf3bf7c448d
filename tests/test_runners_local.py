"""Several local processes, and how workers load the model.

Exact row counts with ``--direct_num_workers=2 --direct_running_mode=multi_processing``
into a Milvus server and into a served local Lite store are proven by
``tests/test_production.py::test_several_worker_processes_write_exact_counts``;
these tests add what happens to the model there: each worker process loads it
once (the ``model_loads`` counter sums the loads of every worker process), and
nobody asks the Hugging Face hub for a model that is a local folder.
"""

from __future__ import annotations

import huggingface_hub
import pytest

from pipelines import ingest
from tests.test_production import MULTI_PROCESS, last_report, make_corpus, write_config


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_each_worker_process_loads_the_model_once_without_the_hub(
    tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    # Worker processes start fresh from this environment: any hub call fails there.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus, token_env=None)
    ingest.run(["--config", config, *MULTI_PROCESS])
    report = last_report(capsys.readouterr().out)
    assert report["documents_read"] == 60
    assert report["chunks"] == report["written"] == report["rows_after"] == 240
    # Two worker processes; chunking and embedding share each one's model.
    assert 1 <= report["model_loads"] <= 2


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_a_local_model_never_calls_the_hub(
    tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    def no_hub(*args, **kwargs):
        raise AssertionError(f"the Hugging Face hub was called: {args} {kwargs}")

    for name in ("snapshot_download", "hf_hub_download", "model_info", "repo_exists"):
        monkeypatch.setattr(huggingface_hub, name, no_hub)
    corpus = make_corpus(tmp_path / "corpus", documents=10, words_per_document=32)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus)
    ingest.run(["--config", config])
    report = last_report(capsys.readouterr().out)
    assert report["written"] == report["rows_after"] == 20
