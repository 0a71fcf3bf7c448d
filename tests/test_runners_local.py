"""Local engines: which one runs, how many worker processes, and how workers load the model.

The tests that take ``engine`` run once per local engine that pytest's
``--engines`` names (see ``tests/conftest.py``): ``fnapi``, Beam's FnApiRunner,
which the configs pin and every other test runs on; and ``prism``, Prism, Beam's
Go runner, which Beam's DirectRunner runs on where it can download it.
``make test`` names both where Go can build Prism (``make prism``), and CI
always does. Without a Prism binary, ``--engines=fnapi,prism`` fails.

Exact row counts with ``--direct_num_workers=2 --direct_running_mode=multi_processing``
into a Milvus server and into a served local Lite store are proven by
``tests/test_production.py::test_several_worker_processes_write_exact_counts``;
these tests add what happens to the model there: each worker process loads it
once (the ``model_loads`` counter sums the loads of every worker process), and
nobody asks the Hugging Face hub for a model that is a local folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence

import apache_beam as beam
import huggingface_hub
import numpy as np
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.value_provider import RuntimeValueProvider
from apache_beam.runners.direct.direct_runner import DirectPipelineResult, SwitchingDirectRunner
from apache_beam.runners.portability import portable_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.prism_runner import PrismJobServer
from apache_beam.runners.runner import PipelineState, create_runner
from apache_beam.testing.util import assert_that, equal_to

from pipelines import engines, ingest, search
from pipelines.cli import UsageError
from tests.conftest import REPO, write_jsonl
from tests.test_production import MULTI_PROCESS, last_report, make_corpus, write_config
from tests.test_sync import query_all
from transforms import MilvusTarget
from transforms.milvus.collection import manifest_target
from transforms.milvus.sync import FIELD_CHUNK_COUNT, FIELD_CONTENT_HASH
from transforms.testing.runners import BEAM_VERSION, OFFLINE_ENV, LocalEngine

TOPICS = {
    "errors": "try except catch the exception error raise",
    "loops": "for while loop over the list items",
    "imports": "import a module from the package modules",
    "files": "open read write close the file text string",
}


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_a_run_reports_the_engine_that_ran_it_and_searches_there(
    engine: LocalEngine, tmp_path, tiny_model, milvus_uri, collection_name, capsys
) -> None:
    (tmp_path / "corpus").mkdir()
    corpus = write_jsonl(
        tmp_path / "corpus" / "topics.jsonl",
        [{"id": name, "text": f"{words} " * 6} for name, words in TOPICS.items()],
    )
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus)
    ingest.run(["--config", config, *engine.flags])
    report = last_report(capsys.readouterr().out)
    assert report["engine"] == engine.name and report["runner"] == engine.runner
    assert report["documents_read"] == 4 and report["dead_lettered"] == 0
    assert report["chunks"] == report["written"] == report["rows_after"] > 4
    assert report["model_loads"] == 1  # one worker process asked for, one used

    queries = ["catch the exception error", "loop over the list items", "read the file"]
    argv = ["--config", config, *engine.flags, "--output", str(tmp_path / "results" / "r")]
    _, answers = search.answers(argv + [a for q in queries for a in ("--query", q)])
    top = {a["query"]: a["hits"][0]["fields"]["document_id"] for a in answers}
    assert top == dict(zip(queries, ["errors", "loops", "files"], strict=True))


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_several_worker_processes_each_load_the_model_once_or_the_engine_says_it_cannot(
    engine: LocalEngine, tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    # Worker processes start fresh from this environment: any hub call fails there.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus, token_env=None)
    argv = ["--config", config, *engine.flags, *MULTI_PROCESS]
    if not engine.several_processes:
        # Prism starts one SDK worker per pipeline: the flags would do nothing.
        with pytest.raises(UsageError, match=re.escape(" ".join(MULTI_PROCESS))):
            ingest.run(argv)
        return
    ingest.run(argv)
    report = last_report(capsys.readouterr().out)
    assert report["engine"] == engine.name
    assert report["documents_read"] == 60
    assert report["chunks"] == report["written"] == report["rows_after"] == 240
    # Two worker processes, each loading the model once for chunking and embedding.
    assert report["model_loads"] == 2


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_a_local_model_never_calls_the_hub(
    engine: LocalEngine, tmp_path, tiny_model, milvus_uri, collection_name, monkeypatch, capsys
) -> None:
    def no_hub(*args, **kwargs):
        raise AssertionError(f"the Hugging Face hub was called: {args} {kwargs}")

    for name in ("snapshot_download", "hf_hub_download", "model_info", "repo_exists"):
        monkeypatch.setattr(huggingface_hub, name, no_hub)
    corpus = make_corpus(tmp_path / "corpus", documents=10, words_per_document=32)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus)
    ingest.run(["--config", config, *engine.flags])
    report = last_report(capsys.readouterr().out)
    assert report["written"] == report["rows_after"] == 20


def _home_where_the_direct_runner_finds(engine: LocalEngine, home: pathlib.Path) -> dict[str, str]:
    """An environment in which Beam's DirectRunner can have Prism (``prism``:
    the zip it downloads from GitHub, in its cache, as after a download on a
    machine with internet) or cannot (``fnapi``: an empty cache, and every
    download refused at once, as on a machine without internet)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # Downloads go through a proxy that refuses at once; local connections do not.
    refused = {"https_proxy": "http://127.0.0.1:9", "no_proxy": "localhost,127.0.0.1,::1"}
    env.update(OFFLINE_ENV, HOME=str(home), **refused, **{k.upper(): v for k, v in refused.items()})
    if engine.binary is not None:
        arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "amd64"
        name = f"apache_beam-v{BEAM_VERSION}-prism-{platform.system().lower()}-{arch}"
        cache = home / os.path.relpath(PrismJobServer.BIN_CACHE, os.path.expanduser("~"))
        cache.mkdir(parents=True)
        with zipfile.ZipFile(cache / f"{name}.zip", "w") as z:
            z.write(engine.binary, name)
    return env


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_the_configs_engine_is_the_same_whether_or_not_prism_can_be_had(
    engine: LocalEngine, tmp_path, tiny_model, milvus_uri, collection_name
) -> None:
    """configs/local.yaml's engine runs with or without Prism at hand; the
    DirectRunner's changes with it, and the report says so."""
    env = _home_where_the_direct_runner_finds(engine, tmp_path / "home")
    corpus = make_corpus(tmp_path / "corpus", documents=10, words_per_document=32)
    config = pathlib.Path(write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus))
    shipped = yaml.safe_load((REPO / "configs" / "local.yaml").read_text(encoding="utf-8"))
    config.write_text(
        yaml.safe_dump({**yaml.safe_load(config.read_text()), "pipeline": shipped["pipeline"]})
    )
    ran = {}
    for flags in ([], ["--runner=DirectRunner"]):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.ingest", "--config", str(config), *flags],
            cwd=REPO, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        report = last_report(done.stdout)
        assert report["written"] == 20
        ran[report["runner"]] = report["engine"]
    assert ran == {"FnApiRunner": "FnApiRunner", "DirectRunner": engine.name}


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_prism_asked_for_several_worker_processes_is_a_one_line_error_naming_the_flags(
    tmp_path, tiny_model, milvus_uri, collection_name
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=2, words_per_document=16)
    config = write_config(tmp_path, tiny_model, milvus_uri, collection_name, corpus, token_env=None)
    # No Prism binary is needed: the run stops before Beam looks for one.
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", "--config", config, "--runner=PrismRunner",
         "--prism_location=/nonexistent/prism", *MULTI_PROCESS],
        cwd=REPO, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1].startswith(f"error: {' '.join(MULTI_PROCESS)}: Prism ")
    assert "--runner=FnApiRunner" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_direct_runner_asked_for_several_processes_runs_where_it_gets_them() -> None:
    options = PipelineOptions(["--runner=DirectRunner", *MULTI_PROCESS])
    runner = engines.make_runner(options)
    assert engines.engine_of(runner, None) == "FnApiRunner"
    assert engines.runner_name(options, runner) == "DirectRunner"
    plain = PipelineOptions(["--runner=DirectRunner"])
    assert type(engines.make_runner(plain)) is SwitchingDirectRunner
    assert engines.runner_name(PipelineOptions([]), engines.make_runner(PipelineOptions([]))) == (
        "FnApiRunner"
    )


def test_the_engine_is_named_for_every_runner() -> None:
    from pipelines.runners.dask import DaskRunner

    named = {
        name: engines.engine_of(create_runner(name), None)
        for name in (
            "PrismRunner",
            "FlinkRunner",
            "PortableRunner",
            "DataflowRunner",
            "FnApiRunner",
        )
    }
    assert named == {
        "PrismRunner": "Prism",
        "FlinkRunner": "Flink",
        "PortableRunner": "portable",
        "DataflowRunner": "Dataflow",
        "FnApiRunner": "FnApiRunner",
    }
    assert engines.engine_of(DaskRunner(), None) == "Dask"
    # The DirectRunner chooses per run; its result tells which engine it chose.
    direct = SwitchingDirectRunner()
    results = {
        "FnApiRunner": fn_runner.RunnerResult(PipelineState.DONE, {}),
        "Prism": portable_runner.PipelineResult(None, "job", None, None),
        "BundleBasedDirectRunner": DirectPipelineResult(None, None),
    }
    assert {name: engines.engine_of(direct, r) for name, r in results.items()} == {
        name: name for name in results
    }


def _job_name_seen_by_the_worker(_: object) -> str | None:
    """The run's --job_name, as the worker process that runs this step was given it."""
    options: dict[str, object] = RuntimeValueProvider.runtime_options or {}
    job_name = options.get("job_name")
    return None if job_name is None else str(job_name)


def test_fn_api_runner_worker_processes_get_the_runs_options() -> None:
    """As under Beam's DirectRunner; a bare FnApiRunner() would give them none."""
    options = PipelineOptions(
        [
            "--runner=FnApiRunner",
            "--job_name=engines-test",
            "--direct_running_mode=multi_processing",
        ]
    )
    with beam.Pipeline(runner=engines.make_runner(options), options=options) as p:
        seen = p | beam.Create([None]) | beam.Map(_job_name_seen_by_the_worker)
        assert_that(seen, equal_to(["engines-test"]))


def _target(uri: str, collection: str) -> MilvusTarget:
    if uri.endswith(".db"):
        return MilvusTarget.lite(uri, collection)
    return MilvusTarget.server(uri, collection, token_env=None)


def _query(target: MilvusTarget, fields: list[str]) -> list[dict]:
    """Every row of the target's collection, these fields (the store closed after)."""
    return query_all(target, target.collection, fields, fields[0])


def _rows(target: MilvusTarget) -> dict[str, tuple]:
    """The collection's rows by id: (text, document id, chunk index, metadata, vector)."""
    rows = _query(target, ["id", "text", "document_id", "chunk_index", "metadata", "vector"])
    return {
        r["id"]: (
            r["text"],
            r["document_id"],
            r["chunk_index"],
            json.dumps(r["metadata"], sort_keys=True),
            np.asarray(r["vector"], dtype=np.float32),
        )
        for r in rows
    }


def sync_an_edit_and_compare_with_a_fresh_ingest(
    tmp_path: pathlib.Path,
    model: str,
    uri: str,
    collection: str,
    flags: Sequence[str],
    capsys: pytest.CaptureFixture[str],
) -> list[dict]:
    """Syncs 8 documents of 4 chunks with ``flags``; then, one shrunk to 1 chunk,
    one deleted and one of 2 chunks added, syncs again. Asserts the counts of
    both reports, and that the collection's rows (ids, texts, metadata, vectors)
    are those of a fresh ingest of the edited corpus, on the in-process runner.
    Returns the two reports."""
    corpus = make_corpus(tmp_path / "corpus", documents=8, words_per_document=64)
    config = write_config(tmp_path, model, uri, collection, corpus, token_env=None)
    argv = ["--config", config, "--write_mode", "sync", *flags]
    ingest.run(argv)
    first = last_report(capsys.readouterr().out)
    assert first["documents_read"] == 8
    assert first["chunks"] == first["written"] == first["rows_after"] == 32
    assert {k: v for k, v in first["sync"].items() if k != "scope"} == {
        "documents_added": 8,
        "documents_updated": 0,
        "documents_unchanged": 0,
        "documents_deleted": 0,
        "documents_incomplete": 0,
        "chunks_upserted": 32,
        "chunks_deleted": 0,
        "deletes_refused": 0,
        "manifest_entries_read": 0,
    }

    records = {r["id"]: r for r in map(json.loads, pathlib.Path(corpus).read_text().splitlines())}
    records["doc-1"]["text"] = " ".join(records["doc-1"]["text"].split()[:16])  # 4 chunks to 1
    del records["doc-2"]  # 4 chunks gone
    records["doc-new"] = {"id": "doc-new", "text": " ".join(records["doc-3"]["text"].split()[:32])}
    write_jsonl(pathlib.Path(corpus), list(records.values()))
    ingest.run(argv)
    second = last_report(capsys.readouterr().out)
    assert second["documents_read"] == 8
    assert second["chunks"] == second["written"] == 3  # doc-1's one, doc-new's two
    assert second["rows_before"] == 32 and second["rows_after"] == 32 - 3 - 4 + 2
    assert {k: v for k, v in second["sync"].items() if k != "scope"} == {
        "documents_added": 1,
        "documents_updated": 1,
        "documents_unchanged": 6,
        "documents_deleted": 1,
        "documents_incomplete": 0,
        "chunks_upserted": 3,
        "chunks_deleted": 3 + 4,
        "deletes_refused": 0,
        "manifest_entries_read": 8,
    }

    fresh = write_config(tmp_path, model, uri, f"{collection}_fresh", corpus, token_env=None)
    ingest.run(["--config", fresh])
    assert last_report(capsys.readouterr().out)["rows_after"] == 27
    synced, expected = _rows(_target(uri, collection)), _rows(_target(uri, f"{collection}_fresh"))
    assert {k: v[:4] for k, v in synced.items()} == {k: v[:4] for k, v in expected.items()}
    for row_id, row in synced.items():
        np.testing.assert_allclose(row[4], expected[row_id][4], rtol=0, atol=1e-6)
    # The manifest: one complete entry per document of the corpus, with its row count.
    entries = _query(
        manifest_target(_target(uri, collection)),
        ["document_id", FIELD_CONTENT_HASH, FIELD_CHUNK_COUNT],
    )
    assert {e["document_id"]: e[FIELD_CHUNK_COUNT] for e in entries} == {
        d: sum(1 for v in expected.values() if v[1] == d) for d in records
    }
    assert all(e[FIELD_CONTENT_HASH] for e in entries)  # none left pending
    assert first["sync"]["scope"] == second["sync"]["scope"] == f"inputs:{corpus}"
    return [first, second]


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_sync_on_several_worker_processes_follows_edits_deletions_and_additions(
    engine: LocalEngine, tmp_path, tiny_model, milvus_uri, collection_name, capsys
) -> None:
    """Issue #14: sync on the FnApiRunner's two worker processes, the local
    Lite store served to them; on Prism (which takes no number of workers), in
    its one SDK worker."""
    flags = [*engine.flags, *(MULTI_PROCESS if engine.several_processes else [])]
    reports = sync_an_edit_and_compare_with_a_fresh_ingest(
        tmp_path, tiny_model, milvus_uri, collection_name, flags, capsys
    )
    assert [r["engine"] for r in reports] == [engine.name, engine.name]
