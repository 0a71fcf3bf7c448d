"""Dask: ingestion on a local ``dask scheduler`` with two ``dask worker`` processes.

The scheduler and the workers run from the worker environment (Beam, the
project's sdist and the launcher's Dask, nothing else), in an empty folder,
offline: they see only the pickled task graph, as on a real cluster. The runner
is ``pipelines.runners.dask.DaskRunner``; Beam's own DaskRunner is refused,
because it loses tagged and ``finish_bundle`` outputs (see that module).
"""

from __future__ import annotations

import json
import operator
import re
import shutil
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines import ingest
from pipelines.runners import dask as dask_runner
from tests.test_production import last_report, make_corpus, write_config
from tests.test_runners_local import sync_an_edit_and_compare_with_a_fresh_ingest
from transforms import MilvusTarget, ReadDocuments, metrics
from transforms.config import ConfigError, SourceConfig
from transforms.milvus.collection import count_rows
from transforms.testing import runners


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory: pytest.TempPathFactory, worker_venv: runners.WorkerVenv):
    runners.add_dask(worker_venv)
    folder = tmp_path_factory.mktemp("dask")
    env = worker_venv.env(
        HF_HOME=str(folder / "hf-home"), MILVUS_INGEST_MODEL_CACHE=str(folder / "models")
    )
    with runners.dask_cluster(worker_venv, folder, env, workers=2) as address:
        yield address


def _dask_flags(address: str) -> list[str]:
    return ["--runner=pipelines.runners.dask.DaskRunner", f"--dask_client_address={address}"]


def test_tagged_outputs_finish_bundle_outputs_side_inputs_and_metrics_survive(
    tmp_path: Path, dask_address: str
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"id": f"d{n}", "text": f"text {n}"}) for n in range(10)]
    corpus.write_text("\n".join([*lines[:4], "{broken", *lines[4:], "[]"]) + "\n")
    pipeline = beam.Pipeline(options=PipelineOptions(_dask_flags(dask_address)))
    read = pipeline | ReadDocuments(SourceConfig(patterns=(str(corpus),), id_field="id"))
    ids = (
        read.documents
        | beam.Map(operator.attrgetter("id"))
        # Batches of 3 from 10 ids: the last one comes from finish_bundle.
        | beam.BatchElements(min_batch_size=3, max_batch_size=3)
        | beam.FlatMap(list)
    )
    assert_that(ids, equal_to([f"d{n}" for n in range(10)]), label="AllIds")
    # Count.Globally reads a side input; the dead letters stay apart from the documents.
    dead = read.dead_letters | beam.combiners.Count.Globally()
    assert_that(dead, equal_to([2]), label="TwoDeadLetters")
    result = pipeline.run()
    result.wait_until_finish()

    query = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    found = {c.key.metric.name: c.committed for c in query["counters"]}
    assert found[metrics.DOCUMENTS_READ] == 10


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_ingestion_on_a_dask_cluster_writes_exact_rows(
    tmp_path, tiny_model, milvus_uri, collection_name, dask_address, capsys
) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=60, words_per_document=64)
    with open(corpus, "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "text": \n')
    # A model folder of this test's own: the workers outlive a test, and keep
    # the models that earlier tests loaded.
    model = shutil.copytree(tiny_model, tmp_path / "model")
    config = write_config(tmp_path, str(model), milvus_uri, collection_name, corpus, token_env=None)
    ingest.run(["--config", config, *_dask_flags(dask_address)])

    report = last_report(capsys.readouterr().out)
    assert report["runner"] == "pipelines.runners.dask.DaskRunner"
    assert report["documents_read"] == 60
    assert report["chunks"] == report["written"] == report["rows_after"] == 240
    assert report["dead_lettered"] == 1
    assert 1 <= report["model_loads"] <= 2  # at most once per worker process
    (dead_letter_file,) = Path(report["dead_letter_path"]).parent.glob("*.jsonl")
    (letter,) = [json.loads(line) for line in dead_letter_file.read_text().splitlines()]
    assert letter["stage"] == "read" and letter["source"] == f"{corpus}:61"
    target = (
        MilvusTarget.lite(milvus_uri, collection_name)
        if milvus_uri.endswith(".db")
        else MilvusTarget.server(milvus_uri, collection_name, token_env=None)
    )
    assert count_rows(target) == 240


def test_beams_own_dask_runner_is_refused_naming_the_fixed_one(tmp_path, tiny_model) -> None:
    corpus = make_corpus(tmp_path / "corpus", documents=2, words_per_document=16)
    config = write_config(tmp_path, tiny_model, str(tmp_path / "m.db"), "c", corpus)
    with pytest.raises(ConfigError, match=r"use --runner=pipelines\.runners\.dask\.DaskRunner"):
        ingest.run(["--config", config, "--runner=apache_beam.runners.dask.dask_runner.DaskRunner"])
    assert not (tmp_path / "m.db").exists()  # refused before anything was created


def test_the_runner_refuses_a_beam_it_was_not_tested_with(monkeypatch) -> None:
    monkeypatch.setattr(beam, "__version__", "2.80.0")
    flags = PipelineOptions(["--runner=pipelines.runners.dask.DaskRunner"])
    with pytest.raises(ConfigError) as refused:
        beam.Pipeline(options=flags)  # Beam makes the runner here, before anything runs
    assert str(refused.value) == (
        "pipelines.runners.dask.DaskRunner runs on apache-beam>=2.77,<2.78 (it is built on "
        "Beam's private Dask runner code), not on the installed 2.80.0: "
        "pip install 'apache-beam[dask]>=2.77,<2.78', or choose another runner."
    )
    for older_or_newer in ("2.76.0", "2.78.0rc1", "3.0.0"):
        with pytest.raises(ConfigError, match=re.escape(f"not on the installed {older_or_newer}:")):
            dask_runner.check_beam_version(older_or_newer)


def test_the_runner_accepts_the_installed_beam_and_setup_py_pins_the_same_range() -> None:
    dask_runner.check_beam_version()  # the Beam these tests run on
    assert isinstance(dask_runner.DaskRunner(), dask_runner.DaskRunner)
    setup_py = (Path(__file__).parents[1] / "setup.py").read_text(encoding="utf-8")
    assert f'"dask": ["apache-beam[dask]{dask_runner.SUPPORTED_BEAM}"' in setup_py


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_sync_on_a_dask_cluster_follows_edits_deletions_and_additions(
    tmp_path, tiny_model, milvus_uri, collection_name, dask_address, capsys
) -> None:
    """Issue #14: sync on Dask's two worker processes, into the Milvus server.

    One partition per worker thread (the default is two): a sync has many
    more steps than an ingestion (the manifest's read, two groupings, a side
    input), each a task per partition, and eight documents need no more.
    """
    flags = [*_dask_flags(dask_address), "--dask_npartitions=2"]
    reports = sync_an_edit_and_compare_with_a_fresh_ingest(
        tmp_path, tiny_model, milvus_uri, collection_name, flags, capsys
    )
    assert {r["runner"] for r in reports} == {"pipelines.runners.dask.DaskRunner"}
