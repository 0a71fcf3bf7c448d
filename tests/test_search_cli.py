"""``milvus-search`` as a user runs it: instant answers, readable hits, the model check, filters.

Every command runs as a real process (``python -m pipelines.search``) against a
real store: embedded Milvus Lite, and the Milvus 2.3.5 server where the
behaviour is the server's (the fingerprint, the filters). Collections are
written as ingestion writes them (``prepare_collection`` with the model's
fingerprint, rows of the model's own vectors), without a pipeline; the one
"made elsewhere" with plain pymilvus and our field names. Exit statuses,
stdout and stderr lines are what is checked; no timings (the benchmark row
is ``bench/search.py``).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tests.conftest import DEMO_MODEL
from transforms.config import IndexConfig, MilvusTarget, WriteConfig
from transforms.embedding.model import StaticEmbedder
from transforms.milvus.client import close_embedded, connect
from transforms.milvus.collection import finish_collection, prepare_collection

TIMEOUT_S = 300.0
REPO = pathlib.Path(__file__).resolve().parents[1]

DOCS = [
    ("exceptions", "en", "Catch an exception with try and except; raise one with raise."),
    ("loops", "en", "Loop over the items of a list with a for statement."),
    ("imports", "en", "Import a module from a package with the import statement."),
    ("exceptions-fr", "fr", "Attraper une exception avec try et except."),
    ("boucles", "fr", "Parcourir les éléments d'une liste avec une boucle for."),
]
EXTRA = {  # metadata of a few documents, for the JSON paths of the filters
    "exceptions": {"year": 2021, "tags": ["errors", "control"], "source": {"repo": "cpython"}},
    "loops": {"year": 2019, "tags": ["control"]},
}
LITE_AND_SERVER = pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
LITE = pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)


def _target(uri: str, collection: str) -> MilvusTarget:
    if uri.endswith(".db"):
        return MilvusTarget.lite(uri, collection)
    return MilvusTarget.server(uri, collection, token_env=None)


def _rows(embedder: StaticEmbedder) -> list[dict[str, Any]]:
    vectors = embedder.embed([text for _, _, text in DOCS])
    return [
        {
            "id": f"{doc_id}-0",
            "vector": vector.tolist(),
            "text": text,
            "document_id": doc_id,
            "chunk_index": 0,
            "metadata": {"title": doc_id.title(), "lang": lang, **EXTRA.get(doc_id, {})},
        }
        for (doc_id, lang, text), vector in zip(DOCS, vectors, strict=True)
    ]


def fill(target: MilvusTarget, model: str, *, metric: str = "COSINE") -> None:
    """Writes DOCS as an ingestion with ``model`` does: fingerprint stored, its vectors."""
    embedder = StaticEmbedder.load(model)
    config = WriteConfig(index=IndexConfig(metric_type=metric))
    prepare_collection(target, dim=embedder.dim, fingerprint=embedder.fingerprint(), config=config)
    client = connect(target)
    try:
        client.insert(target.collection, _rows(embedder))
        client.flush(target.collection)
    finally:
        client.close()
    close_embedded(target)  # the store is the searching process's now


def fill_without_fingerprint(target: MilvusTarget, model: str) -> None:
    """A collection made with plain pymilvus and our field names: no fingerprint property."""
    from pymilvus import DataType, MilvusClient

    embedder = StaticEmbedder.load(model)
    client = MilvusClient(target.uri)
    try:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=embedder.dim)
        schema.add_field("text", DataType.VARCHAR, max_length=2048)
        schema.add_field("document_id", DataType.VARCHAR, max_length=256)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("metadata", DataType.JSON)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="COSINE")
        client.create_collection(target.collection, schema=schema, index_params=index)
        client.insert(target.collection, _rows(embedder))
        client.flush(target.collection)
    finally:
        client.close()
    close_embedded(target)


def search(
    args: Sequence[str], cwd: pathlib.Path, *, importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    """``python -m pipelines.search ARGS`` in ``cwd``, stdout a pipe (not a terminal)."""
    command = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    command += ["-m", "pipelines.search", *args]
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def jsonl(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr's lines that are not log lines of a level below ERROR."""
    return [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith(("INFO ", "WARNING ", "DEBUG ", "import time:"))
    ]


@pytest.fixture
def filled(milvus_uri: str, collection_name: str) -> MilvusTarget:
    target = _target(milvus_uri, collection_name)
    fill(target, DEMO_MODEL)
    return target


def _flags(target: MilvusTarget) -> list[str]:
    return ["--milvus_uri", target.uri, "--collection", target.collection, "--model", DEMO_MODEL]


@LITE
def test_a_query_is_answered_without_beam_and_without_files(filled, tmp_path) -> None:
    run = tmp_path / "cwd"
    run.mkdir()
    done = search(
        [*_flags(filled), "--query", "how do I catch an exception", "--top_k", "3"],
        run,
        importtime=True,
    )
    assert done.returncode == 0, error_lines(done)
    assert "apache_beam" not in done.stderr  # -X importtime lists every module imported
    (answer,) = jsonl(subprocess.CompletedProcess([], 0, done.stdout, ""))
    assert answer["query"] == "how do I catch an exception"
    assert answer["metric"] == "COSINE"
    top = answer["hits"][0]
    assert top["document_id"] == "exceptions" and top["rank"] == 1
    assert top["metadata"] == {"title": "Exceptions", "lang": "en", **EXTRA["exceptions"]}
    assert 0.0 < top["similarity"] <= 1.0 and "distance" not in top
    assert top["text"].startswith("Catch an exception")
    assert [h["rank"] for h in answer["hits"]] == [1, 2, 3]
    scores = [h["similarity"] for h in answer["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert list(run.iterdir()) == []  # no results folder in the current directory


@LITE
def test_the_table_shows_rank_score_document_title_and_snippet(filled, tmp_path) -> None:
    done = search(
        [
            *_flags(filled),
            "--query",
            "loop over a list",
            "--top_k",
            "2",
            *("--output_format", "table"),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "query: loop over a list"
    assert lines[1].split()[:5] == ["#", "similarity", "document", "title", "text"]
    assert "higher is closer" in lines[1]
    first = lines[3].split()
    assert first[0] == "1" and first[2] == "loops" and first[3] == "Loops"
    assert "Loop over the items" in lines[3]
    assert len(lines) == 5


def test_an_l2_collection_names_its_score_a_distance(lite_uri, collection_name, tmp_path) -> None:
    target = _target(lite_uri, collection_name)
    fill(target, DEMO_MODEL, metric="L2")
    (answer,) = jsonl(search([*_flags(target), "--query", "import a module"], tmp_path))
    assert answer["metric"] == "L2"
    distances = [h["distance"] for h in answer["hits"]]
    assert distances == sorted(distances) and "similarity" not in answer["hits"][0]
    assert answer["hits"][0]["document_id"] == "imports"


@LITE_AND_SERVER
def test_another_model_is_refused_with_one_line_naming_both(filled, tiny_model, tmp_path) -> None:
    flags = [*_flags(filled)[:-1], tiny_model, "--query", "catch an exception"]
    for extra in ([], ["--runner", "FnApiRunner"]):  # instant, and the Beam path
        done = search([*flags, *extra], tmp_path)
        assert done.returncode == 1, done.stderr
        (line,) = error_lines(done)
        assert line.startswith("error: ") and "Traceback" not in done.stderr
        assert f"filled by model {DEMO_MODEL!r}" in line
        assert f"encoded by model {tiny_model!r}" in line
        assert done.stdout == ""


@LITE_AND_SERVER
def test_a_collection_without_fingerprint_is_searched_with_a_warning(
    milvus_uri, collection_name, tmp_path
) -> None:
    target = _target(milvus_uri, collection_name)
    fill_without_fingerprint(target, DEMO_MODEL)
    done = search([*_flags(target), "--query", "catch an exception"], tmp_path)
    (answer,) = jsonl(done)
    assert answer["hits"][0]["document_id"] == "exceptions"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING ")]
    assert len(warnings) == 1 and "records no model" in warnings[0]
    assert error_lines(done) == []


def test_a_missing_collection_is_one_line(lite_uri, tmp_path) -> None:
    done = search(
        [*("--milvus_uri", lite_uri, "--collection", "never_made"), "--query", "q"],
        tmp_path,
    )
    assert done.returncode == 1
    assert error_lines(done) == [
        f"error: collection 'never_made' at {lite_uri} does not exist: ingest into it first "
        "(python -m pipelines.ingest), or name another one with --collection."
    ]


@LITE_AND_SERVER
def test_filters_on_metadata_paths_and_document_ids(filled, tmp_path) -> None:
    flags = [*_flags(filled), "--query", "catch an exception", "--top_k", "5"]
    french = jsonl(search([*flags, "--filter", 'metadata["lang"] == "fr"'], tmp_path))
    assert {h["document_id"] for h in french[0]["hits"]} == {"exceptions-fr", "boucles"}
    assert french[0]["hits"][0]["document_id"] == "exceptions-fr"
    ids = jsonl(search([*flags, "--filter", 'document_id in ["loops", "imports"]'], tmp_path))
    assert {h["document_id"] for h in ids[0]["hits"]} == {"loops", "imports"}
    like = jsonl(search([*flags, "--filter", 'document_id like "exc%"'], tmp_path))
    assert {h["document_id"] for h in like[0]["hits"]} == {"exceptions", "exceptions-fr"}
    for expression, expected in (  # the examples of docs/search.md
        ('metadata["source"]["repo"] == "cpython"', {"exceptions"}),
        ('metadata["year"] >= 2020 and chunk_index == 0', {"exceptions"}),
        ('json_contains(metadata["tags"], "control")', {"exceptions", "loops"}),
        ('exists metadata["year"]', {"exceptions", "loops"}),
        ('document_id == "loops"', {"loops"}),
    ):
        (answer,) = jsonl(search([*flags, "--filter", expression], tmp_path))
        assert {h["document_id"] for h in answer["hits"]} == expected, expression


@LITE
def test_filters_on_the_beam_path(filled, tmp_path) -> None:
    done = search(
        [
            *_flags(filled),
            *("--query", "catch an exception", "--top_k", "5"),
            *("--filter", 'metadata["lang"] == "fr"', "--runner", "FnApiRunner"),
            *("--output", str(tmp_path / "out")),
        ],
        tmp_path,
    )
    (answer,) = jsonl(done)
    assert {h["document_id"] for h in answer["hits"]} == {"exceptions-fr", "boucles"}
    assert answer["hits"][0]["metadata"] == {"title": "Exceptions-Fr", "lang": "fr"}
    written = list((tmp_path / "out" / filled.collection).glob("*/results-*.jsonl"))
    assert len(written) == 1


@LITE
def test_a_wrong_filter_or_search_params_is_one_line(filled, tmp_path) -> None:
    flags = [*_flags(filled), "--query", "catch an exception"]
    for extra, expected in (
        (["--filter", "metadata[lang] = fr"], "error: --filter 'metadata[lang] = fr': Milvus"),
        (["--search_params", "{ef: 1}"], "error: --search_params '{ef: 1}' is not JSON"),
        (["--search_params", "[64]"], "error: --search_params '[64]' must be a JSON object"),
    ):
        done = search([*flags, *extra], tmp_path)
        assert done.returncode == 1, done.stdout
        (line,) = error_lines(done)
        assert line.startswith(expected), line


@pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
def test_search_params_reach_the_index(milvus_uri, collection_name, tmp_path) -> None:
    """``--search_params`` is what the server searches with: an HNSW ``ef`` of 16 answers,
    one below ``top_k`` is refused by Milvus 2.3.5's index (``ef`` must be at least ``k``),
    in one line. The index is built only for segments of 1,024 rows or more, so 2,000
    random rows join the five documents, and the run waits for the index."""
    target = _target(milvus_uri, collection_name)
    embedder = StaticEmbedder.load(DEMO_MODEL)
    config = WriteConfig(index=IndexConfig(index_type="HNSW"), wait_for_index=True)
    state = prepare_collection(
        target, dim=embedder.dim, fingerprint=embedder.fingerprint(), config=config
    )
    random = np.random.default_rng(7).normal(size=(2000, embedder.dim)).astype(np.float32)
    filler = [
        {**_rows(embedder)[0], "id": f"filler-{i}", "document_id": f"filler-{i}",
         "vector": (v / np.linalg.norm(v)).tolist()}
        for i, v in enumerate(random)
    ]  # fmt: skip
    client = connect(target)
    client.insert(target.collection, _rows(embedder) + filler)
    client.close()
    finish_collection(target, state, rows_upserted=len(DOCS) + len(filler), config=config)
    flags = [*_flags(target), "--query", "import a module", "--top_k", "2"]
    (answer,) = jsonl(search([*flags, "--search_params", '{"ef": 16}'], tmp_path))
    assert answer["hits"][0]["document_id"] == "imports"
    refused = search([*flags, "--search_params", '{"ef": 1}'], tmp_path)
    assert refused.returncode == 1, refused.stdout
    (line,) = error_lines(refused)
    assert line.startswith("error: ") and "ef" in line, line
