"""Other clients read our collections: the snippets of docs/clients.md, run as their users run them.

Each client (LangChain's ``langchain_milvus.Milvus``, LlamaIndex's ``MilvusVectorStore``, Beam's
``MilvusSearchEnrichmentHandler``) has a venv of its own in ``$(VENV)/clients/`` (``make
client-venvs``, which the session fixture runs, so that a missing or stale venv is made here and
one that cannot be made fails the tests): their pymilvus pins conflict, and none has this project.

A small corpus is ingested with this project's pipeline into the Milvus 2.3.5 server and into
Milvus Lite served; each snippet then searches it from its venv and prints its hits as JSON. The
hits must be the exact top k (the default index is FLAT) with the chunk ids, texts, document ids
and metadata that the collection holds, in the shape docs/clients.md gives for that client, and
the scores the collection's metric gives. What docs/clients.md says of each client's stock
behaviour (nested metadata, random node ids, the collection released) is checked too, so that a
client upgrade that changes it fails here. The snippets take 3-10 s each (Beam's the longest).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines import ingest
from tests.conftest import DEMO_MODEL, REPO, write_jsonl
from tests.test_docs import fenced_blocks
from transforms.config import MilvusTarget
from transforms.embedding.model import QueryEncoder
from transforms.milvus.client import connect
from transforms.milvus.rows import FIELD_ID

CLIENTS_DIR = REPO / "docs" / "clients"
CLIENTS_PAGE = REPO / "docs" / "clients.md"
SNIPPETS = {
    "langchain": "langchain_read.py",
    "llamaindex": "llamaindex_read.py",
    "beam": "beam_enrichment.py",
}
TIMEOUT_S = 300.0
TOP_K = 3

CORPUS = [
    {
        "id": "exceptions",
        "title": "Handling exceptions",
        "tags": ["errors", "control flow"],
        "year": 2021,
        "text": "Use a try statement to catch an exception. The except clause names the exception "
        "class it handles, and an else clause runs when no exception was raised. A finally "
        "clause always runs, whether or not an error happened. Raise an exception with the "
        "raise statement.",
    },
    {
        "id": "loops",
        "title": "Looping over lists",
        "tags": ["lists"],
        "year": 2019,
        "text": "A for loop iterates over the items of a list in order. Use enumerate to get the "
        "index of each item, and zip to loop over two lists together. A while loop repeats as "
        "long as its condition is true; break leaves the loop early.",
    },
    {
        "id": "modules",
        "title": "Modules and packages",
        "tags": ["imports"],
        "year": 2020,
        "text": "The import statement loads a module. A package is a folder of modules with an "
        "__init__ file. Import a name from a module with from module import name, and use "
        "relative imports inside a package.",
    },
    {
        "id": "files",
        "title": "Reading and writing files",
        "tags": ["io"],
        "year": 2022,
        "text": "Open a file with the open function and a mode such as r for reading or w for "
        "writing. The with statement closes the file for you. Read the whole file with read, "
        "or iterate over its lines.",
    },
]
QUERIES = {
    "how do I catch an exception": "exceptions",
    "loop over the items of a list": "loops",
    "import a module from a package": "modules",
    "open a file for reading": "files",
}
STORES = ["milvus_server", "lite_server"]


# The venvs


@pytest.fixture(scope="session")
def client_python() -> dict[str, pathlib.Path]:
    """Each client's venv Python; ``make client-venvs`` makes (or remakes) what is missing."""
    command = ["make", "--no-print-directory", "client-venvs", f"VENV={sys.prefix}"]
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=1800, env=_environment()
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(command)} did not end within 30 min: {e}")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{tail}")
    pythons = {
        name: pathlib.Path(sys.prefix, "clients", name, "bin", "python") for name in SNIPPETS
    }
    missing = [str(p) for p in pythons.values() if not p.exists()]
    assert not missing, f"make client-venvs left no {missing}"
    return pythons


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"  # the model is the demo model's folder
    env.pop("MILVUS_TOKEN", None)
    return env


def run_client(python: pathlib.Path, args: list[str]) -> str:
    """Runs a script or ``-c`` code in a client's venv, docs/clients/ importable; its stdout."""
    env = _environment()
    env["PYTHONPATH"] = str(CLIENTS_DIR)
    try:
        done = subprocess.run(
            [str(python), *args],
            cwd=CLIENTS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{args[:2]} did not end within {TIMEOUT_S:.0f} s") from e
    tail = "\n".join(done.stderr.splitlines()[-30:])
    assert done.returncode == 0, f"{python} {args[:2]} exited {done.returncode}:\n{tail}"
    return done.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# The collection, as this project writes it


class Collection:
    """An ingested collection and its rows, with the exact search to compare hits with."""

    def __init__(self, uri: str, name: str) -> None:
        self.uri = uri
        self.name = name
        self.target = MilvusTarget.server(uri, name, token_env=None)
        client = connect(self.target)
        try:
            fields = [FIELD_ID, "document_id", "chunk_index", "text", "metadata", "vector"]
            rows = client.query(name, filter='id != ""', output_fields=fields)
        finally:
            client.close()
        self.rows = {row[FIELD_ID]: row for row in rows}
        self.ids = list(self.rows)
        vectors = np.array([self.rows[i]["vector"] for i in self.ids], dtype=np.float64)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.encoder = QueryEncoder(DEMO_MODEL)

    def exact(self, query: str, k: int = TOP_K) -> list[tuple[str, float]]:
        """The k nearest chunks by cosine similarity (the collection's metric), best first."""
        vector = np.asarray(self.encoder.encode_queries([query])[0], dtype=np.float64)
        scores = self.vectors @ (vector / np.linalg.norm(vector))
        order = np.argsort(-scores)[:k]
        return [(self.ids[i], float(scores[i])) for i in order]

    def load_state(self) -> str:
        client = connect(self.target)
        try:
            state = client.get_load_state(self.name)["state"]
        finally:
            client.close()
        return getattr(state, "name", str(state))

    def load(self) -> None:
        client = connect(self.target)
        try:
            client.load_collection(self.name)
        finally:
            client.close()


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The corpus ingested by this project's pipeline, in small chunks, once per store (on
    first use): the Milvus 2.3.5 server and Milvus Lite served, which every client reaches."""
    made: dict[str, Collection] = {}

    def get(store: str) -> Collection:
        if store not in made:
            made[store] = _ingest(
                str(request.getfixturevalue(store).milvus["uri"]),
                tmp_path_factory.mktemp(f"clients-{store}"),
            )
        return made[store]

    return get


def _ingest(uri: str, folder: pathlib.Path) -> Collection:
    name = f"clients_{uuid.uuid4().hex[:10]}"
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    config = {
        "pipeline": {"runner": "FnApiRunner"},
        "source": {"patterns": [str(folder / "corpus.jsonl")], "id_field": "id"},
        "model": DEMO_MODEL,
        "chunking": {"max_tokens": 24, "overlap_tokens": 4},
        "milvus": {"uri": uri, "collection": name, "token_env": None},
        "dead_letter_path": str(folder / "dead"),
    }
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    ingest.run(["--config", str(folder / "run.yaml")])
    ingested = Collection(uri, name)
    assert len({row["document_id"] for row in ingested.rows.values()}) == len(CORPUS)
    assert len(ingested.rows) > 2 * len(CORPUS)  # several chunks a document
    return ingested


@pytest.fixture(params=STORES)
def collection(request: pytest.FixtureRequest, collections) -> Collection:
    """The ingested corpus on each store."""
    return collections(request.param)


@pytest.fixture
def server_collection(collections) -> Collection:
    """The ingested corpus on the Milvus 2.3.5 server, for what only a server shows."""
    return collections("milvus_server")


def run_snippet(
    client_python: dict[str, pathlib.Path], client: str, collection: Collection, *extra: str
) -> dict[str, list[dict[str, Any]]]:
    """Runs a client's snippet over every query; its hits by query, best first."""
    args = [str(CLIENTS_DIR / SNIPPETS[client]), "--uri", collection.uri]
    args += ["--collection", collection.name, "--k", str(TOP_K)]
    for query in QUERIES:
        args += ["--query", query]
    by_query: dict[str, list[dict[str, Any]]] = {query: [] for query in QUERIES}
    for hit in json_lines(run_client(client_python[client], [*args, *extra])):
        by_query[hit["query"]].append(hit)
    for hits in by_query.values():
        hits.sort(key=lambda hit: hit["rank"])
    return by_query


def check_hits(
    collection: Collection, by_query: dict[str, list[dict[str, Any]]], expected_row: Any
) -> None:
    """Every query's hits are the exact top k, each as ``expected_row(row)`` says it reads."""
    for query, document_id in QUERIES.items():
        hits = by_query[query]
        exact = collection.exact(query)
        assert [hit["rank"] for hit in hits] == list(range(1, TOP_K + 1)), hits
        assert [hit["id"] for hit in hits] == [chunk_id for chunk_id, _ in exact], query
        assert [hit["score"] for hit in hits] == pytest.approx([s for _, s in exact], abs=1e-4)
        row = collection.rows[hits[0]["id"]]
        assert row["document_id"] == document_id, f"{query!r} found {row['document_id']!r}"
        for hit in hits:
            row = collection.rows[hit["id"]]
            shown = {k: v for k, v in hit.items() if k not in ("query", "rank", "score")}
            assert shown == expected_row(row), query


def _flat_metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {**row["metadata"], "document_id": row["document_id"], "chunk_index": row["chunk_index"]}


# The snippets


def test_langchain_reads_chunk_ids_and_flat_metadata(client_python, collection) -> None:
    by_query = run_snippet(client_python, "langchain", collection)
    check_hits(
        collection,
        by_query,
        lambda row: {"id": row["id"], "text": row["text"], "metadata": _flat_metadata(row)},
    )


def test_llamaindex_reads_chunk_ids_as_node_ids_and_documents_as_ref_docs(
    client_python, collection
) -> None:
    by_query = run_snippet(client_python, "llamaindex", collection)
    check_hits(
        collection,
        by_query,
        lambda row: {
            "id": row["id"],
            "ref_doc_id": row["document_id"],
            "text": row["text"],
            "metadata": _flat_metadata(row),
        },
    )


def test_beams_enrichment_handler_reads_the_rows_and_leaves_the_collection_loaded(
    client_python, collection
) -> None:
    by_query = run_snippet(client_python, "beam", collection, "--runner=FnApiRunner")
    check_hits(
        collection,
        by_query,
        lambda row: {k: v for k, v in row.items() if k != "vector"},
    )
    assert collection.load_state() == "Loaded"


# What docs/clients.md says of the clients beyond the snippets' output

LANGCHAIN_MORE = """
import json, sys
from langchain_milvus import Milvus
from langchain_read import IngestedMilvus, Model2VecEmbeddings, recorded_model

uri, collection, query = sys.argv[1:4]
embeddings = Model2VecEmbeddings(recorded_model(uri, "", collection))
stock = Milvus(embeddings, collection_name=collection, connection_args={"uri": uri},
               primary_field="id")
doc, score = stock.similarity_search_with_score(query, k=1)[0]
ours = IngestedMilvus(embeddings, collection, connection_args={"uri": uri})
mmr = ours.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 6})
OLD = 'metadata["year"] <= 2020'  # a Milvus expression: fields and JSON paths
print(json.dumps({
    "stock": {"id": doc.id, "metadata": doc.metadata, "score": score},
    "retriever": [d.id for d in ours.as_retriever(search_kwargs={"k": 2}).invoke(query)],
    "mmr": [d.id for d in mmr.invoke(query)],
    "relevance": [[d.id, s] for d, s in ours.similarity_search_with_relevance_scores(query, k=2)],
    "old": [d.metadata for d in ours.similarity_search(query, k=3, expr=OLD)],
}))
"""


def test_langchain_stock_store_and_the_adapters_retrievers(
    client_python, server_collection
) -> None:
    collection = server_collection
    query = "loop over the items of a list"
    exact = collection.exact(query, k=6)
    out = json_lines(
        run_client(
            client_python["langchain"],
            ["-c", LANGCHAIN_MORE, collection.uri, collection.name, query],
        )
    )[0]
    top = collection.rows[exact[0][0]]
    # Stock: no Document.id, the row's fields as metadata, ours nested in them.
    assert out["stock"]["id"] is None
    assert out["stock"]["metadata"] == {k: v for k, v in top.items() if k not in ("text", "vector")}
    assert out["stock"]["score"] == pytest.approx(exact[0][1], abs=1e-4)
    assert out["retriever"] == [exact[0][0], exact[1][0]]
    assert out["mmr"][0] == exact[0][0] and set(out["mmr"]) <= {i for i, _ in exact}
    # Relevance from the collection's metric (COSINE: (1 + similarity) / 2), not from L2.
    assert out["relevance"] == [[i, pytest.approx((1 + s) / 2, abs=1e-4)] for i, s in exact[:2]]
    # A Milvus expression over the fields and the JSON metadata.
    assert len(out["old"]) == 3 and all(m["year"] <= 2020 for m in out["old"])
    assert out["old"][0]["document_id"] == "loops"


LLAMAINDEX_MORE = """
import asyncio, json, sys
from llama_index.core import VectorStoreIndex
from llama_index.core.vector_stores import (FilterOperator, MetadataFilter, MetadataFilters,
    VectorStoreQuery)
from llama_index.vector_stores.milvus import MilvusVectorStore
from llamaindex_read import (FIELDS, IngestedMilvusVectorStore, Model2VecEmbedding,
    recorded_model)

uri, collection, query = sys.argv[1:4]
embedding = Model2VecEmbedding(recorded_model(uri, "", collection))
vector = embedding.get_query_embedding(query)
out = {}
try:
    MilvusVectorStore(uri=uri, collection_name=collection).query(
        VectorStoreQuery(query_embedding=vector, similarity_top_k=1))
except Exception as e:
    out["defaults"] = str(e)
stock = MilvusVectorStore(uri=uri, collection_name=collection, text_key="text",
    embedding_field="vector", doc_id_field="document_id", output_fields=FIELDS)
found = stock.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=1))
node = found.nodes[0]
out["stock"] = {"id": node.node_id, "ref_doc_id": node.ref_doc_id, "metadata": node.metadata,
    "ids": found.ids}
index = VectorStoreIndex.from_vector_store(IngestedMilvusVectorStore(uri=uri,
    collection_name=collection), embed_model=embedding)
recent = MetadataFilters(filters=[MetadataFilter(key='metadata["year"]', value=2021,
    operator=FilterOperator.GTE)])
out["recent"] = [h.node.ref_doc_id for h in
    index.as_retriever(similarity_top_k=4, filters=recent).retrieve(query)]
out["async"] = [h.node.node_id for h in
    asyncio.run(index.as_retriever(similarity_top_k=2).aretrieve(query))]
only = IngestedMilvusVectorStore(uri=uri, collection_name=collection).query(
    VectorStoreQuery(query_embedding=vector, similarity_top_k=2, doc_ids=["modules"]))
out["doc_ids"] = [n.ref_doc_id for n in only.nodes]
print(json.dumps(out))
"""


def test_llamaindex_stock_store_and_the_adapters_filters(client_python, server_collection) -> None:
    collection = server_collection
    query = "loop over the items of a list"
    exact = collection.exact(query, k=2)
    out = json_lines(
        run_client(
            client_python["llamaindex"],
            ["-c", LLAMAINDEX_MORE, collection.uri, collection.name, query],
        )
    )[0]
    top = collection.rows[exact[0][0]]
    assert "embedding" in out["defaults"] and "not found" in out["defaults"]
    # Stock, with the fields named: a random node id, no ref_doc_id, the row's fields as metadata.
    assert out["stock"]["ids"] == [top["id"]]
    assert out["stock"]["id"] != top["id"] and len(out["stock"]["id"]) == 36  # a uuid4
    assert out["stock"]["ref_doc_id"] is None
    assert out["stock"]["metadata"] == {k: v for k, v in top.items() if k not in ("text", "vector")}
    assert out["recent"] and set(out["recent"]) <= {"exceptions", "files"}
    assert out["async"] == [i for i, _ in exact]
    assert out["doc_ids"] == ["modules", "modules"]


BEAM_STOCK = """
import sys
import apache_beam as beam
from apache_beam.ml.rag.enrichment.milvus_search import (MilvusConnectionParameters,
    MilvusSearchEnrichmentHandler, MilvusSearchParameters, MilvusCollectionLoadParameters,
    VectorSearchParameters)
from apache_beam.ml.rag.types import Chunk, Content, Embedding
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.enrichment import Enrichment

uri, collection, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
handler = MilvusSearchEnrichmentHandler(MilvusConnectionParameters(uri=uri),
    MilvusSearchParameters(collection_name=collection,
        search_strategy=VectorSearchParameters(anns_field="vector", limit=1)),
    collection_load_parameters=MilvusCollectionLoadParameters())
query = Chunk(content=Content(text="q"), embedding=Embedding(dense_embedding=[1.0] * dim))
with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
    _ = p | beam.Create([query]) | Enrichment(handler) | beam.Map(
        lambda c: print("fields:", c.metadata["enrichment_data"]["fields"]))
"""


def test_beams_stock_handler_releases_the_collection(client_python, server_collection) -> None:
    collection = server_collection
    dim = collection.vectors.shape[1]
    try:
        out = run_client(
            client_python["beam"], ["-c", BEAM_STOCK, collection.uri, collection.name, str(dim)]
        )
        assert "fields: [{}]" in out  # one hit, with no field but its id and score
        assert collection.load_state() == "NotLoad"
    finally:
        collection.load()


def test_the_pages_excerpts_are_the_snippets_code() -> None:
    """docs/clients.md quotes the snippets in blocks tagged ``from=FILE``: each is in FILE as is."""
    blocks = [b for b in fenced_blocks(CLIENTS_PAGE) if any(w.startswith("from=") for w in b.info)]
    assert len(blocks) >= len(SNIPPETS)
    for block in blocks:
        (source,) = [w.removeprefix("from=") for w in block.info if w.startswith("from=")]
        assert block.text in (REPO / source).read_text(encoding="utf-8"), (
            f"{block.where}: this excerpt is no longer in {source}: copy it again"
        )
