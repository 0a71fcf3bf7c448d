"""What production relies on, against real servers: several worker processes,
credentials, unreachable servers, secrets, reports, and crashes mid-run."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import fsspec
import pytest
import yaml
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusUnavailableException

from pipelines import ingest
from tests.conftest import write_jsonl
from transforms import MilvusAuthError, MilvusConnectionError, MilvusTarget, WriteToMilvus
from transforms.milvus.collection import count_rows
from transforms.testing import servers

WORDS = [
    "how",
    "do",
    "i",
    "catch",
    "an",
    "exception",
    "in",
    "a",
    "loop",
    "over",
    "the",
    "list",
    "import",
    "a",
    "module",
    "define",
    "a",
    "class",
]


def make_corpus(folder, documents: int, words_per_document: int) -> str:
    """Documents of distinct word sequences; with 16-token windows and no overlap
    each one yields ``words_per_document / 16`` chunks."""
    records = [
        {
            "id": f"doc-{d}",
            "text": " ".join(WORDS[(d + i) % len(WORDS)] for i in range(words_per_document)),
        }
        for d in range(documents)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    return write_jsonl(folder / "corpus.jsonl", records)


def write_config(
    tmp_path, model: str, uri: str, collection: str, corpus: str, batch_rows: int = 500, **milvus
) -> str:
    config = {
        "source": {"patterns": [corpus]},
        "model": model,
        "chunking": {"max_tokens": 16, "overlap_tokens": 0},
        "milvus": {"uri": uri, "collection": collection, **milvus},
        "write": {"max_batch_rows": batch_rows},
        "dead_letter_path": str(tmp_path / "dead" / "dl"),
    }
    path = tmp_path / f"{collection}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def last_report(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_several_worker_processes_write_exact_counts(
    tmp_path, tiny_model, milvus_uri, collection_name, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus, token_env=None)
    ingest.run(["--config", config, *MULTI_PROCESS])
    report = last_report(capsys.readouterr().out)
    assert report["documents_read"] == 60 and report["chunks"] == 240 == report["written"]
    assert report["rows_after"] == 240
    target = (
        MilvusTarget.lite(milvus_uri, collection_name)
        if milvus_uri.endswith(".db")
        else (MilvusTarget.server(milvus_uri, collection_name, token_env=None))
    )
    assert count_rows(target) == 240


def test_the_right_token_works_and_a_wrong_one_fails_before_the_run(
    tmp_path, tiny_model, milvus_auth_server, collection_name, monkeypatch, capsys, caplog
) -> None:
    uri = milvus_auth_server.milvus["uri"]
    corpus = make_corpus(tmp_path / "corpus", documents=5, words_per_document=32)
    config = write_config(
        tmp_path, tiny_model, uri, collection_name, corpus, token_env="TEST_MILVUS_TOKEN"
    )
    monkeypatch.setenv("TEST_MILVUS_TOKEN", servers.ROOT_TOKEN)
    with caplog.at_level(logging.DEBUG):
        ingest.run(["--config", config])
    assert last_report(capsys.readouterr().out)["rows_after"] == 10
    assert servers.ROOT_TOKEN not in caplog.text

    monkeypatch.setenv("TEST_MILVUS_TOKEN", "root:not-the-password")
    started = time.monotonic()
    with pytest.raises(MilvusAuthError, match="authentication failed") as raised:
        ingest.run(["--config", config, "--collection", f"{collection_name}_x"])
    assert "not-the-password" not in str(raised.value)
    assert "$TEST_MILVUS_TOKEN" in str(raised.value)
    assert time.monotonic() - started < 10

    token_file = tmp_path / "token"
    token_file.write_text(servers.ROOT_TOKEN + "\n")
    monkeypatch.delenv("TEST_MILVUS_TOKEN")
    ingest.run(["--config", config, "--milvus_token_file", str(token_file)])
    assert last_report(capsys.readouterr().out)["rows_before"] == 10


def test_an_unreachable_uri_fails_within_the_connect_timeout(tmp_path, tiny_model) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=1, words_per_document=16)
    uri = f"http://127.0.0.1:{servers.free_port()}"
    config = write_config(
        tmp_path, tiny_model, uri, "docs", corpus, token_env=None, connect_timeout_s=2
    )
    started = time.monotonic()
    with pytest.raises(
        MilvusConnectionError, match=r"cannot connect to Milvus at http://127\.0\.0\.1"
    ):
        ingest.run(["--config", config])
    assert time.monotonic() - started < 5


def test_secrets_stay_out_of_pickles_and_display_data(monkeypatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", "user:very-secret")
    target = MilvusTarget.server("http://127.0.0.1:1", "docs")
    sink = WriteToMilvus(target, dim=16, fingerprint={"model": "m", "dim": 16}, flush=False)
    assert b"very-secret" not in pickle.dumps(sink)
    assert "very-secret" not in json.dumps(sink.display_data(), default=str)
    assert "very-secret" not in repr(target)


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_the_report_is_written_to_a_url(
    tmp_path, tiny_model, milvus_uri, collection_name, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=3, words_per_document=32)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus)
    ingest.run(["--config", config, "--report_path", "memory://reports/run.json"])
    printed = last_report(capsys.readouterr().out)
    with fsspec.open("memory://reports/run.json", "r") as f:
        stored = json.loads(f.read())
    assert stored == printed
    assert stored["written"] == 6 and stored["model"]["dim"] == 16
    assert stored["write"]["batches_written"] >= 1 and stored["write"]["bytes_written"] > 6 * 64


def fail_second_upsert(monkeypatch: pytest.MonkeyPatch, error: Exception) -> Callable:
    """Makes the second upsert of the process raise ``error``, once: the first
    batch is written by then. Returns the real ``upsert``. The DirectRunner
    runs the workers in this process, so the patch reaches them."""
    upsert = MilvusClient.upsert
    calls = {"n": 0}

    def failing_upsert(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise error
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(MilvusClient, "upsert", failing_upsert)
    return upsert


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_a_transient_failure_after_part_of_a_bundle_is_retried(
    tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=100, words_per_document=64)  # 400 chunks
    config = write_config(
        tmp_path, tiny_model, milvus_uri, collection_name, corpus, batch_rows=100, token_env=None
    )
    fail_second_upsert(monkeypatch, MilvusUnavailableException(message="injected: unavailable"))
    ingest.run(["--config", config])
    report = last_report(capsys.readouterr().out)
    assert report["write"]["write_retries_unavailable"] == 1
    assert report["written"] == report["rows_after"] == 400


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_a_crash_after_part_of_a_bundle_then_a_rerun_leaves_exact_rows(
    tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=250, words_per_document=64)  # 1000 chunks
    config = write_config(
        tmp_path, tiny_model, milvus_uri, collection_name, corpus, batch_rows=100, token_env=None
    )
    upsert = fail_second_upsert(monkeypatch, RuntimeError("injected: worker died mid-bundle"))
    with pytest.raises(Exception, match="injected: worker died"):
        ingest.run(["--config", config])
    target = MilvusTarget.server(milvus_uri, collection_name, token_env=None)
    assert 0 < count_rows(target) < 1000  # part of the run landed
    monkeypatch.setattr(MilvusClient, "upsert", upsert)
    ingest.run(["--config", config])
    report = last_report(capsys.readouterr().out)
    assert report["rows_after"] == count_rows(target) == 1000


@pytest.fixture
def crash_server(tmp_path_factory, milvus_bin):
    """A Milvus server of the test's own, to kill."""
    holder: dict[str, Any] = {}
    data_dir = tmp_path_factory.mktemp("milvus-crash")
    holder["proc"], holder["uri"] = servers.start_milvus_server(data_dir, bin_dir=milvus_bin)
    holder["data_dir"] = data_dir
    holder["bin_dir"] = milvus_bin
    yield holder
    servers.stop(holder["proc"])


def test_kill_9_mid_ingestion_then_restart_ends_with_exact_rows(
    tmp_path, tiny_model, crash_server, capsys
) -> None:
    corpus = make_corpus(
        tmp_path / "corpus", documents=3750, words_per_document=256
    )  # 60,000 chunks: the writes outlast loading the new collection
    config = write_config(
        tmp_path,
        tiny_model,
        crash_server["uri"],
        "crash",
        corpus,
        token_env=None,
        connect_timeout_s=5,
    )
    target = MilvusTarget.server(crash_server["uri"], "crash", token_env=None)
    outcome: dict = {}

    def run_ingest() -> None:
        try:
            ingest.run(["--config", config])
        except Exception as e:  # the assertions below look at it
            outcome["error"] = e

    runner = threading.Thread(target=run_ingest)
    runner.start()
    client = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until part of the rows are in
        time.sleep(0.5)
        try:
            client = client or MilvusClient(uri=crash_server["uri"], timeout=5)
            # count(*) fails until the collection, loaded while the run writes, is loaded.
            if client.has_collection("crash"):
                rows = client.query("crash", filter="", output_fields=["count(*)"])[0]["count(*)"]
                if rows >= 2000:
                    break
        except Exception:
            continue
    if client is not None:
        client.close()
    assert runner.is_alive(), "the ingestion ended before the server could be killed"
    servers.kill9(crash_server["proc"])
    time.sleep(2)
    crash_server["proc"], _ = servers.start_milvus_server(
        crash_server["data_dir"], bin_dir=crash_server["bin_dir"]
    )
    runner.join(timeout=600)
    assert not runner.is_alive()
    if "error" in outcome:  # the run gave up: a re-run must complete it
        ingest.run(["--config", config])
    report = last_report(capsys.readouterr().out)
    assert report["rows_after"] == count_rows(target) == 60_000
    retries = sum(n for name, n in report["write"].items() if name.startswith("write_retries"))
    assert retries > 0 or "error" in outcome  # the crash was felt, and survived
