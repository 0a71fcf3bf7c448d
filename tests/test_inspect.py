"""``python -m pipelines.inspect`` and ``milvus-inspect``, run as a user runs them.

Every check runs the real entry point as a subprocess against collections
that the real ingest pipeline filled, on each kind of Milvus (embedded
Milvus Lite, Milvus Lite as a server, a Milvus 2.3.5 server) where the claim
is about Milvus, on embedded Lite where it is about the command line.
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys

import pytest
import yaml

from pipelines import ingest
from tests.conftest import write_jsonl
from transforms import MilvusTarget
from transforms.milvus.client import connect

REPO = pathlib.Path(__file__).resolve().parents[1]
LITE_ONLY = pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
MILVUS_SERVER = pytest.mark.parametrize("milvus_kind", ["milvus_server"], indirect=True)
CORPUS = [
    {"id": "exceptions", "text": "try except catch the exception error raise " * 6},
    {"id": "loops", "text": "for while loop over the list items in a loop " * 6},
    {"id": "imports", "text": "import a module from the package modules import " * 6},
    {"id": "classes", "text": "define a class object with a function def return value " * 6},
]
INDEX = {"index_type": "HNSW", "metric_type": "COSINE", "params": {"M": 8, "efConstruction": 64}}
EXPECTED_FIELDS = ["id", "vector", "text", "document_id", "chunk_index", "metadata"]


def inspect(*flags: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m pipelines.inspect`` (or the console script) with these flags."""
    command = (
        [str(pathlib.Path(sys.executable).parent / script)]
        if script
        else [sys.executable, "-m", "pipelines.inspect"]
    )
    return subprocess.run([*command, *flags], cwd=REPO, capture_output=True, text=True, timeout=120)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a user's error prints on stderr (no traceback, nothing else)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return lines[0]


def quiet(done: subprocess.CompletedProcess[str]) -> None:
    """A successful run: status 0, and nothing alarming on stderr."""
    assert done.returncode == 0, done.stderr
    for word in ("Traceback", "ERROR", "WARNING"):
        assert word not in done.stderr, done.stderr


def target(uri: str, collection: str) -> MilvusTarget:
    if uri.endswith(".db"):
        return MilvusTarget.lite(uri, collection)
    return MilvusTarget.server(uri, collection, token_env=None)


def release_embedded(uri: str) -> None:
    """Lets other processes open an embedded Lite store this process opened.

    milvus-lite serves each ``*.db`` store opened in a process until the
    process ends, and holds its lock so long: the tests' own ingest and
    clients release it before a subprocess inspects it.
    """
    if uri.endswith(".db"):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def load_state(uri: str, collection: str) -> str:
    client = connect(target(uri, collection))
    try:
        return client.get_load_state(collection)["state"].name
    finally:
        client.close()
        release_embedded(uri)


@pytest.fixture
def run_config(tmp_path, tiny_model, milvus_uri, collection_name) -> pathlib.Path:
    """A config for the corpus of test_pipelines, in chunks of 16 tokens (several a document)."""
    (tmp_path / "corpus").mkdir()
    write_jsonl(tmp_path / "corpus" / "c.jsonl", CORPUS)
    config = {
        "pipeline": {"runner": "FnApiRunner"},
        "source": {"patterns": [str(tmp_path / "corpus" / "*.jsonl")]},
        "model": tiny_model,
        "chunking": {"max_tokens": 16, "overlap_tokens": 4},
        "milvus": {"uri": milvus_uri, "collection": collection_name, "token_env": None},
        "write": {"index": INDEX},
        "dead_letter_path": str(tmp_path / "dead" / "dl"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def ingested(run_config, tmp_path) -> dict:
    """The ingest pipeline's report of a run into the config's collection."""
    report = tmp_path / "report.json"
    ingest.run(["--config", str(run_config), "--report_path", str(report)])
    found = json.loads(report.read_text())
    assert found["documents_read"] == len(CORPUS) and found["dead_lettered"] == 0
    assert found["written"] > len(CORPUS)  # several chunks a document
    release_embedded(found["uri"])
    return found


def test_inspect_shows_what_the_ingest_wrote(
    milvus_kind, milvus_uri, collection_name, ingested
) -> None:
    alias = f"{collection_name}_live"
    client = connect(target(milvus_uri, collection_name))
    try:
        client.create_alias(collection_name, alias)
    finally:
        client.close()
        release_embedded(milvus_uri)

    done = inspect("--milvus_uri", milvus_uri, "--collection", collection_name, "--json")
    quiet(done)
    shown = json.loads(done.stdout)
    assert shown["name"] == collection_name and shown["uri"] == milvus_uri
    assert shown["rows"] == ingested["written"] == ingested["rows_after"]
    assert shown["rows_in_statistics"] >= shown["rows"]
    assert shown["documents"] == len(CORPUS) and shown["documents_note"] == ""
    assert shown["model"] == ingested["model"]  # the fingerprint stored, as the run reported it
    assert shown["dim"] == ingested["model"]["dim"] == 16
    assert [f["name"] for f in shown["fields"]] == EXPECTED_FIELDS
    assert shown["fields"][0] == {
        "name": "id",
        "type": "VARCHAR",
        "primary": True,
        "params": {"max_length": 64},
    }
    [index] = shown["indexes"]
    assert [index[k] for k in ("field", "index_type", "metric_type")] == [
        "vector",
        "HNSW",
        "COSINE",
    ]
    assert index["indexed_rows"] == index["total_rows"] == ingested["written"]
    if milvus_kind == "milvus_server":  # Milvus Lite does not report the build params
        assert index["params"] == {"M": "8", "efConstruction": "64"}
    assert shown["aliases"] == [alias]
    assert shown["properties"] == {}
    # The run recorded itself on the collection (alter_collection_properties works on
    # embedded Lite, the Lite server and the 2.3.5 server alike), and completed.
    run = shown["last_run"]
    assert (run["run_id"], run["completed"], run["outcome"]) == (ingested["run_id"], True, "ok")
    assert run["started"] <= run["finished"]
    assert run["counts"]["written"] == ingested["written"]
    assert run["counts"]["documents_read"] == len(CORPUS)
    assert shown["embedded"] is milvus_uri.endswith(".db")
    if shown["embedded"]:  # each process loads its own: inspect loaded it to count
        assert shown["loaded_by_inspect"] is True
    else:  # the ingest left it loaded, and inspect left it so
        assert (shown["load_state"], shown["loaded_by_inspect"]) == ("Loaded", False)

    by_alias = inspect("--milvus_uri", milvus_uri, "--collection", alias, "--json")
    quiet(by_alias)
    assert json.loads(by_alias.stdout)["name"] == collection_name

    text = inspect("--milvus_uri", milvus_uri, "--collection", collection_name)
    quiet(text)
    lines = [line.split(":", 1) for line in text.stdout.splitlines()[1:]]
    items = {key.strip(): value.strip() for key, value in lines}
    assert text.stdout.startswith(f"collection {collection_name} at {milvus_uri} (Milvus ")
    assert items["rows"] == str(ingested["written"])
    assert items["documents"] == str(len(CORPUS))
    assert items["model"].startswith(f"{ingested['model']['model']} (dim 16, ")
    assert items["dimension"] == "16"
    assert items["index"].startswith("vector: HNSW, metric COSINE, params ")
    assert items["aliases"] == alias
    assert items["fields"].startswith("id VARCHAR(64) primary key, vector FLOAT_VECTOR(dim 16)")
    assert items["last run"].startswith(f"{ingested['run_id']}, started {run['started']}")
    assert f"completed {run['finished']} ({len(CORPUS)} documents read, " in items["last run"]

    listing = inspect("--milvus_uri", milvus_uri, "--json")
    quiet(listing)
    listed = json.loads(listing.stdout)
    [mine] = [c for c in listed["collections"] if c["name"] == collection_name]
    assert mine["rows"] == ingested["written"]
    assert (mine["model"], mine["dim"]) == (ingested["model"]["model"], 16)
    assert mine["last_run"]["completed"] is True
    assert listed["server_version"] == shown["server_version"]


@LITE_ONLY
def test_inspect_reads_the_config_as_the_pipelines_do(
    run_config, collection_name, ingested
) -> None:
    listing = inspect("--config", str(run_config))
    quiet(listing)
    assert listing.stdout.startswith("1 collection at ")
    [row] = [line.split() for line in listing.stdout.splitlines() if collection_name in line]
    assert row[:2] == [collection_name, str(ingested["written"])]

    done = inspect("--config", str(run_config), "--collection", collection_name, "--json")
    quiet(done)
    assert json.loads(done.stdout)["rows"] == ingested["written"]


@MILVUS_SERVER
def test_a_collection_not_loaded_stays_so_unless_load(
    milvus_uri, collection_name, ingested
) -> None:
    client = connect(target(milvus_uri, collection_name))
    try:
        client.release_collection(collection_name)
    finally:
        client.close()

    done = inspect("--milvus_uri", milvus_uri, "--collection", collection_name, "--json")
    quiet(done)
    shown = json.loads(done.stdout)
    assert (shown["rows"], shown["documents"], shown["load_state"]) == (None, None, "NotLoad")
    assert shown["rows_in_statistics"] >= ingested["written"]
    assert "not loaded" in shown["documents_note"]
    assert load_state(milvus_uri, collection_name) == "NotLoad"
    listing = inspect("--milvus_uri", milvus_uri, "--json")
    quiet(listing)
    [mine] = [c for c in json.loads(listing.stdout)["collections"] if c["name"] == collection_name]
    assert (mine["rows"], mine["load_state"]) == (None, "NotLoad")
    assert load_state(milvus_uri, collection_name) == "NotLoad"

    loaded = inspect("--milvus_uri", milvus_uri, "--collection", collection_name, "--load")
    quiet(loaded)
    assert f"rows:       {ingested['written']}\n" in loaded.stdout
    assert f"documents:  {len(CORPUS)}\n" in loaded.stdout
    assert "load state: NotLoad, loaded now by --load (it stays loaded)" in loaded.stdout
    assert load_state(milvus_uri, collection_name) == "Loaded"


@pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
def test_an_unknown_collection_is_one_line_naming_the_closest(
    milvus_uri, collection_name, ingested
) -> None:
    typo = collection_name[:-1] + "x"
    done = inspect("--milvus_uri", milvus_uri, "--collection", typo)
    assert done.returncode == 2
    line = one_error_line(done)
    assert line.startswith(f"python -m pipelines.inspect: error: no collection {typo!r} at ")
    assert f"did you mean {collection_name}?" in line


@LITE_ONLY
def test_a_lite_store_another_process_holds_is_one_line_saying_so(
    milvus_uri, collection_name, ingested
) -> None:
    client = connect(target(milvus_uri, collection_name))  # this process holds it now
    try:
        done = inspect("--milvus_uri", milvus_uri)
    finally:
        client.close()
        release_embedded(milvus_uri)
    assert done.returncode == 1
    line = one_error_line(done)
    assert f"error: cannot open the Milvus Lite store at {milvus_uri}: another process" in line
    assert "is a run still writing to it?" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_one_line_and_status_1() -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    done = inspect("--milvus_uri", uri)
    assert done.returncode == 1
    assert f"error: cannot connect to Milvus at {uri}" in one_error_line(done)


def test_a_missing_lite_file_is_one_line_and_is_not_created(tmp_path) -> None:
    missing = tmp_path / "nothing.db"
    done = inspect("--milvus_uri", str(missing), "--collection", "docs")
    assert done.returncode == 1
    assert f"error: no Milvus Lite store at {missing}" in one_error_line(done)
    assert not missing.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--milvus_uri", "x.db", "--colection", "docs"], "unknown flag --colection; did you mean "
         "--collection?"),
        (["--collection", "docs"], "give --milvus_uri URI (a server or a *.db file) or --config"),
        (["--milvus_uri", "x.db", "docs"], "unexpected argument 'docs'"),
    ],
)  # fmt: skip
def test_a_command_line_that_cannot_run_is_status_2(tmp_path, flags, message) -> None:
    done = inspect(*flags)
    assert done.returncode == 2
    assert message in one_error_line(done)


def test_the_console_script_lists_every_flag_with_its_default() -> None:
    done = inspect("--help", script="milvus-inspect")
    quiet(done)
    assert done.stdout.startswith("usage: milvus-inspect ")
    for flag in ("--milvus_uri", "--config", "--collection", "--milvus_token_file", "--json"):
        assert flag in done.stdout
    assert "(default: INFO)" in done.stdout
    assert "in pages of 10,000 rows" in " ".join(done.stdout.split())


@LITE_ONLY
def test_a_synced_collection_shows_its_scopes_and_pending_documents(
    run_config: pathlib.Path, milvus_uri: str, collection_name: str, tmp_path: pathlib.Path
) -> None:
    """``inspect`` reads the sync manifest: documents per scope, and those a stopped sync left
    pending (here one is marked pending by hand, as a killed sync leaves it)."""
    ingest.run(["--config", str(run_config), "--write_mode", "sync", "--scope", "corpus"])
    release_embedded(milvus_uri)

    shown = inspect("--milvus_uri", milvus_uri, "--collection", collection_name, "--json")
    quiet(shown)
    assert json.loads(shown.stdout)["sync_scopes"] == {"corpus": [len(CORPUS), 0]}

    manifest = f"{collection_name}__sync"
    client = connect(target(milvus_uri, manifest))
    try:
        client.load_collection(manifest)
        [entry] = client.get(manifest, ids=["loops"])
        client.upsert(manifest, [{**entry, "content_hash": ""}])
    finally:
        client.close()
        release_embedded(milvus_uri)
    shown = inspect("--milvus_uri", milvus_uri, "--collection", collection_name)
    quiet(shown)
    [line] = [line for line in shown.stdout.splitlines() if line.strip().startswith("sync:")]
    assert line.split("sync:", 1)[1].strip() == (
        f"scope 'corpus': {len(CORPUS)} documents, 1 PENDING (a sync stopped: the next one "
        "finishes them)"
    )
