"""The ingest and search pipelines end to end.

Tests that make claims about Milvus run against each kind (``milvus_kind``):
embedded Milvus Lite, Milvus Lite as a server, and a Milvus 2.3.5 server.
Tests of options and runner flags run against embedded Lite only.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import yaml
from apache_beam.runners.direct.direct_runner import DirectRunner
from model2vec import StaticModel

import transforms
from pipelines import ingest, search
from pipelines.options import beam_argv
from tests.conftest import write_jsonl
from transforms import CollectionMismatchError, ConfigError, MilvusTarget, ensure_collection
from transforms.milvus.client import connect

CORPUS = [
    {
        "id": "exceptions",
        "text": "try except catch the exception error raise " * 6,
        "title": "Errors",
    },
    {"id": "loops", "text": "for while loop over the list items in a loop " * 6, "title": "Loops"},
    {
        "id": "imports",
        "text": "import a module from the package modules import " * 6,
        "title": "Imports",
    },
    {"id": "classes", "text": "define a class object with a function def return value " * 6},
]


LITE_ONLY = pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)


def _target(uri: str, collection: str) -> MilvusTarget:
    if uri.endswith(".db"):
        return MilvusTarget.lite(uri, collection)
    return MilvusTarget.server(uri, collection, token_env=None)


def count_rows(uri: str, collection: str) -> int:
    return transforms.count_rows(_target(uri, collection))


def query(uri: str, collection: str, expression: str, fields: list[str]) -> list[dict]:
    client = connect(_target(uri, collection))
    try:
        client.load_collection(collection)
        return list(client.query(collection, filter=expression, output_fields=fields))
    finally:
        client.close()


@pytest.fixture
def lite_uri(milvus_uri: str) -> str:
    """The URI under test (named for the tests that began with Lite only)."""
    return milvus_uri


@pytest.fixture
def config_file(tmp_path, tiny_model, milvus_uri, collection_name) -> str:
    config = {
        "pipeline": {"runner": "DirectRunner"},
        "source": {
            "patterns": [str(tmp_path / "corpus" / "*.jsonl")],
            "metadata_fields": ["title"],
        },
        "model": tiny_model,
        "chunking": {"max_tokens": 16, "overlap_tokens": 4},
        "milvus": {"uri": milvus_uri, "collection": collection_name, "token_env": None},
        "search": {"top_k": 2, "output": str(tmp_path / "results" / "r")},
        "dead_letter_path": str(tmp_path / "dead" / "dl"),
    }
    (tmp_path / "corpus").mkdir()
    write_jsonl(tmp_path / "corpus" / "c.jsonl", CORPUS)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def last_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def test_ingest_writes_every_chunk_and_reports_counts(
    config_file, lite_uri, collection_name, tiny_model, capsys
) -> None:
    ingest.run(["--config", config_file])
    report = last_json_line(capsys.readouterr().out)
    assert report["documents_read"] == 4
    assert report["chunks"] == report["written"] > 4
    assert report["dead_lettered"] == 0 and report["seconds"] > 0
    assert report["created"] and report["rows_before"] == 0
    assert report["rows_after"] == report["write"]["rows_upserted"] == report["written"]
    assert count_rows(lite_uri, collection_name) == report["written"]

    rows = query(
        lite_uri,
        collection_name,
        'document_id == "loops"',
        ["text", "vector", "metadata", "chunk_index"],
    )
    assert rows and all(r["metadata"] == {"title": "Loops"} for r in rows)
    expected = StaticModel.from_pretrained(tiny_model, force_download=False).encode(
        [r["text"] for r in rows]
    )
    np.testing.assert_allclose(np.array([r["vector"] for r in rows]), expected, atol=1e-6)


@LITE_ONLY
@pytest.mark.parametrize(
    "flags",
    [
        ["--runner=FnApiRunner"],
        ["--direct_running_mode=multi_threading", "--direct_num_workers=2"],
    ],
)
def test_in_process_engines_write_to_the_embedded_store_directly(
    config_file, lite_uri, collection_name, flags, capsys
) -> None:
    ingest.run(["--config", config_file, *flags])
    report = last_json_line(capsys.readouterr().out)
    assert report["written"] == count_rows(lite_uri, collection_name) > 0
    assert not pathlib.Path(f"{lite_uri}.server.log").exists()  # nothing was served


@LITE_ONLY
def test_a_lite_store_in_a_folder_not_yet_made_is_created(
    config_file, tmp_path, collection_name, capsys
) -> None:
    store = tmp_path / "not" / "yet" / "made.db"
    ingest.run(["--config", config_file, f"--milvus_uri={store}"])
    report = last_json_line(capsys.readouterr().out)
    assert report["written"] == count_rows(str(store), collection_name) > 0


def test_ingesting_twice_changes_no_row(config_file, lite_uri, collection_name, capsys) -> None:
    fields = ["id", "text", "vector", "document_id", "chunk_index", "metadata"]

    def snapshot() -> list[tuple]:
        rows = query(lite_uri, collection_name, 'id != ""', fields)
        return sorted(
            (r["id"], r["text"], tuple(np.round(r["vector"], 6)), r["chunk_index"]) for r in rows
        )

    ingest.run(["--config", config_file])
    first = snapshot()
    ingest.run(["--config", config_file])
    report = last_json_line(capsys.readouterr().out)
    assert not report["created"] and report["rows_before"] == report["rows_after"] == len(first)
    assert report["written"] == len(first)
    assert snapshot() == first


def test_search_returns_the_document_a_query_was_taken_from(config_file, capsys) -> None:
    ingest.run(["--config", config_file])
    queries = ["catch the exception error", "loop over the list items", "import a module"]
    argv = ["--config", config_file] + [a for q in queries for a in ("--query", q)]
    _, answers = search.answers(argv)
    top = {a["query"]: a["hits"][0]["fields"]["document_id"] for a in answers}
    assert top == {queries[0]: "exceptions", queries[1]: "loops", queries[2]: "imports"}
    assert all(len(a["hits"]) == 2 for a in answers)
    search.run(argv[:4])
    printed = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"query"')
    ]
    assert printed[-1]["query"] == queries[0]


@LITE_ONLY
def test_search_filter_restricts_the_hits(config_file) -> None:
    ingest.run(["--config", config_file])
    _, answers = search.answers(
        [
            "--config",
            config_file,
            "--query",
            "catch the exception",
            "--filter",
            'document_id == "classes"',
        ]
    )
    assert {h["fields"]["document_id"] for h in answers[0]["hits"]} == {"classes"}


def test_bad_records_are_counted_and_written_as_dead_letters(
    config_file, tmp_path, lite_uri, collection_name, capsys
) -> None:
    with open(tmp_path / "corpus" / "bad.jsonl", "wb") as f:
        f.write(b'{"id": "fine", "text": "a good record about the loop"}\n{"id": "x", "text": \n')
        f.write(b'{"id": "y"}\n{"id": "z", "text": "caf\xe9"}\n')
    ingest.run(["--config", config_file])
    report = last_json_line(capsys.readouterr().out)
    assert report["documents_read"] == 5
    assert report["dead_lettered"] == 3
    assert report["written"] == report["chunks"] == count_rows(lite_uri, collection_name)
    assert report["dead_letters_by_stage"] == {"read": 3}
    letters = [
        json.loads(line)
        for path in pathlib.Path(report["dead_letter_path"]).parent.glob("dead_letters-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    bad = str(tmp_path / "corpus" / "bad.jsonl")
    assert sorted(d["source"] for d in letters) == [f"{bad}:2", f"{bad}:3", f"{bad}:4"]
    assert all(d["stage"] == "read" and d["reason"] for d in letters)


class RecordingRunner(DirectRunner):
    """A DirectRunner that remembers it ran, to prove --runner is honoured."""

    runs = 0

    def run_pipeline(self, pipeline, options):
        RecordingRunner.runs += 1
        return super().run_pipeline(pipeline, options)


@LITE_ONLY
def test_the_runner_flag_is_honoured(config_file) -> None:
    before = RecordingRunner.runs
    ingest.run(["--config", config_file, "--runner", f"{__name__}.RecordingRunner"])
    assert RecordingRunner.runs == before + 1
    with pytest.raises(ValueError, match="NoSuchRunner"):
        ingest.run(["--config", config_file, "--runner", "NoSuchRunner"])


@LITE_ONLY
def test_command_line_wins_over_the_config(config_file, tmp_path, lite_uri) -> None:
    other = write_jsonl(
        tmp_path / "other.jsonl", [{"id": "solo", "text": "a single loop document"}]
    )
    ingest.run(["--config", config_file, "--input", other, "--collection", "other_docs"])
    assert count_rows(lite_uri, "other_docs") == 1
    assert beam_argv(["--config", config_file, "--runner", "X"])[-2:] == ["--runner", "X"]
    assert "--runner=DirectRunner" in beam_argv(["--config", config_file])


@LITE_ONLY
def test_wrong_settings_fail_before_the_pipeline_starts(
    config_file, tmp_path, lite_uri, collection_name, tiny_model
) -> None:
    with pytest.raises(ConfigError, match="matches no file"):
        ingest.run(["--config", config_file, "--input", str(tmp_path / "nope" / "*.jsonl")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("chunking: {max_tokens: 8, overlap: 2}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        ingest.run(
            [
                "--config",
                str(bad),
                "--input",
                config_file,
                "--milvus_uri",
                lite_uri,
                "--collection",
                "c",
            ]
        )
    ensure_collection(MilvusTarget.lite(lite_uri, collection_name), dim=3, fingerprint={"dim": 3})
    with pytest.raises(CollectionMismatchError, match="3-dimensional"):
        ingest.run(["--config", config_file])
    assert count_rows(lite_uri, collection_name) == 0
    with pytest.raises(CollectionMismatchError, match="does not exist"):
        search.answers(["--config", config_file, "--collection", "never_made", "--query", "q"])


def test_another_model_cannot_write_into_the_collection(config_file, tiny_model_f16) -> None:
    ingest.run(["--config", config_file])
    with pytest.raises(CollectionMismatchError, match="differs in"):
        ingest.run(["--config", config_file, "--model", tiny_model_f16])


def test_demo_answers_the_sample_question(tmp_path, demo_model, monkeypatch) -> None:
    from pipelines import demo

    repo = pathlib.Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((repo / "configs" / "local.yaml").read_text())
    config["model"] = demo_model
    (tmp_path / "configs").mkdir()  # its paths are relative to its folder: ../work/...
    (tmp_path / "configs" / "local.yaml").write_text(yaml.safe_dump(config))
    argv = ["--config", "configs/local.yaml"]
    demo.write_corpus("work/demo")
    ingest.run(argv)
    _, answers = search.answers([*argv, "--query", "how do I catch an exception"])
    top3 = [h["fields"]["document_id"] for h in answers[0]["hits"]]
    assert "try" in top3
