"""Recall by default: search with the default index and search settings finds the exact top 10.

A generated corpus (``bench.recall``: the benchmark's documents, cut and embedded with the demo
model as ingestion does) goes into a collection made with ``WriteConfig()``; once its index is
served, ``SearchMilvus`` with its defaults, and the instant command's ``Searcher``, must return
at least 0.99 of the exact top 10 that numpy finds over the same vectors, on embedded Milvus Lite
and on a Milvus 2.3.5 server; so must an HNSW index with its default build and search
parameters. Quality assertions, never timing ones. Also: the defaults themselves, the settings
that override them, the wait for the built index, and Lite building the index it is asked for.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that

from bench.recall import (
    Corpus,
    exact_kth,
    make_corpus,
    make_queries,
    recall_at_k,
    wait_lite_indexed,
)
from tests.conftest import DEMO_MODEL
from transforms import IndexConfig, MilvusTarget, SearchMilvus, WriteConfig
from transforms.config import (
    HNSW_BUILD_PARAMS,
    SEARCH_EF_MAX,
    SEARCH_EF_MIN,
    SEARCH_EF_PER_HIT,
    ConfigError,
    SearchConfig,
    default_search_params,
)
from transforms.milvus.client import connect
from transforms.milvus.collection import (
    IndexNotReadyError,
    finish_collection,
    prepare_collection,
    wait_for_index,
)
from transforms.milvus.search import _SearchMilvusFn, resolve_search_params
from transforms.milvus.searcher import Searcher, open_for_search
from transforms.types import EncodedQuery, SearchResult

CHUNKS = 4000
"""A few thousand chunks: one segment on the server, big enough to get an HNSW index there
(a 2.3.5 server searches segments under 1,024 rows through a temporary index instead)."""
QUERIES = 100
TOP_K = 10
BOTH_STORES = pytest.mark.parametrize("milvus_kind", ["lite", "milvus_server"], indirect=True)
LITE = pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """The first 4,000 chunks of the benchmark corpus, embedded with the demo model (~3 s)."""
    return make_corpus(CHUNKS, model=DEMO_MODEL)


@pytest.fixture(scope="module")
def queries() -> tuple[list[str], np.ndarray]:
    """100 twelve-word sentences of the same topics, embedded with the demo model."""
    return make_queries(QUERIES, model=DEMO_MODEL)


def _fill(target: MilvusTarget, corpus: Corpus, config: WriteConfig) -> None:
    """Writes the corpus as an ingestion run does: prepare, upsert, finish (flush and count)."""
    state = prepare_collection(target, dim=corpus.vectors.shape[1], fingerprint=None, config=config)
    client = connect(target)
    try:
        for start in range(0, len(corpus.ids), 1000):
            client.upsert(target.collection, corpus.rows(start, start + 1000))
    finally:
        client.close()
    finish_collection(target, state, rows_upserted=len(corpus.ids), config=config)


def _recall_of(corpus: Corpus, queries: np.ndarray, threshold: float) -> Any:
    """A Beam matcher: the mean recall@10 of the results is at least ``threshold``."""
    row_of = {chunk_id: i for i, chunk_id in enumerate(corpus.ids)}
    kth = exact_kth(queries, corpus.vectors, TOP_K)

    def check(results: list[SearchResult]) -> None:
        ordered = sorted(results, key=lambda r: int(r.query))
        if [int(r.query) for r in ordered] != list(range(len(queries))):
            raise BeamAssertException(f"expected one result per query, got {len(results)}")
        hits = [[row_of[h.id] for h in r.hits] for r in ordered]
        recall = float(recall_at_k(hits, queries, corpus.vectors, kth, TOP_K).mean())
        if recall < threshold:
            raise BeamAssertException(f"recall@{TOP_K} {recall:.3f} is below {threshold}")

    return check


def _search_and_check(target: MilvusTarget, corpus: Corpus, vectors: np.ndarray) -> None:
    """SearchMilvus (the Beam path) and the instant command's Searcher, each with its
    default search parameters, find >= 0.99 of the exact top 10."""
    encoded = [EncodedQuery(text=str(i), embedding=v) for i, v in enumerate(vectors)]
    with TestPipeline() as p:
        results = p | beam.Create(encoded) | SearchMilvus(target, top_k=TOP_K)
        assert_that(results, _recall_of(corpus, vectors, 0.99))
    client = connect(target)
    try:
        searcher = Searcher(client, target, open_for_search(client, target, None), top_k=TOP_K)
        _recall_of(corpus, vectors, 0.99)(
            searcher.search([str(i) for i in range(len(vectors))], list(vectors))
        )
    finally:
        client.close()


def _vector_index(target: MilvusTarget) -> dict[str, Any]:
    client = connect(target)
    try:
        return dict(client.describe_index(target.collection, index_name="vector"))
    finally:
        client.close()


@BOTH_STORES
def test_the_default_config_finds_the_exact_top_10(milvus_target, corpus, queries):
    target = milvus_target("recall")
    # The defaults, with the documented way to have the built index at the end of a run.
    config = WriteConfig(wait_for_index=True)
    assert config.index == IndexConfig()
    _fill(target, corpus, config)
    assert _vector_index(target)["index_type"] == IndexConfig().index_type
    _search_and_check(target, corpus, queries[1])


@BOTH_STORES
def test_an_hnsw_index_with_the_default_search_params_finds_the_top_10(
    milvus_target, milvus_kind, corpus, queries
):
    target = milvus_target("hnsw")
    _fill(target, corpus, WriteConfig(index=IndexConfig(index_type="HNSW")))
    if milvus_kind == "milvus_server":
        # Right after a run a server searches the new rows through a temporary index.
        with pytest.raises(IndexNotReadyError, match="is not ready after 0s"):
            wait_for_index(target, timeout_s=0)
    progress = wait_for_index(target, timeout_s=300)
    assert progress.ready and progress.indexed_rows == progress.total_rows == CHUNKS
    if milvus_kind == "milvus_server":
        assert progress.served_rows == CHUNKS
        client = connect(target)
        try:
            loaded = client.list_loaded_segments(target.collection)
        finally:
            client.close()
        assert loaded and all(s.state_name != "Growing" and s.index_id for s in loaded)
    else:
        # Lite searches unindexed segments exactly (nothing to wait for), and builds
        # their index in the background: wait for it, to measure its graph.
        assert progress.served_rows is None
        wait_lite_indexed(target.uri, target.collection, timeout_s=120)
    index = _vector_index(target)
    built = index.get("params") or index  # Lite nests the build parameters, a server does not
    assert index["index_type"] == "HNSW"
    assert {k: int(built[k]) for k in HNSW_BUILD_PARAMS} == dict(HNSW_BUILD_PARAMS)
    _search_and_check(target, corpus, queries[1])


@LITE
def test_lite_builds_the_index_it_is_asked_for(milvus_target):
    target = milvus_target("lite_params")
    index = IndexConfig(index_type="HNSW", params=(("M", 32), ("efConstruction", 300)))
    prepare_collection(target, dim=8, fingerprint=None, config=WriteConfig(index=index))
    client = connect(target)
    try:
        described = client.describe_index(target.collection, index_name="vector")
    finally:
        client.close()
    assert described["params"] == {"M": 32, "efConstruction": 300}


def test_default_search_params_follow_the_index_and_top_k() -> None:
    for kind in ("HNSW", "hnsw", "AUTOINDEX", "HNSW_SQ"):
        assert default_search_params(kind, 10) == {"ef": SEARCH_EF_MIN}
    assert default_search_params(IndexConfig().index_type, 10) == {}  # FLAT: exact
    for top_k in (1, 10, 100, 1000, 16384):
        ef = default_search_params("HNSW", top_k)["ef"]
        assert top_k <= ef <= SEARCH_EF_MAX and ef >= SEARCH_EF_MIN
    assert default_search_params("HNSW", 16384)["ef"] == SEARCH_EF_MAX
    assert default_search_params("HNSW", 5000)["ef"] > default_search_params("HNSW", 1000)["ef"]
    for kind in ("FLAT", "IVF_FLAT", "DISKANN", ""):
        assert default_search_params(kind, 10) == {}
    assert default_search_params("AUTOINDEX", 10, zilliz=True) == {}  # Zilliz tunes its own
    assert default_search_params("HNSW", 10, zilliz=True) == {"ef": SEARCH_EF_MIN}


def test_index_config_defaults_to_exact_search_and_fills_hnsw_params() -> None:
    assert IndexConfig() == IndexConfig(index_type="FLAT", metric_type="COSINE", params=())
    assert dict(IndexConfig(index_type="HNSW").params) == dict(HNSW_BUILD_PARAMS)
    yaml_index: dict[str, Any] = {"index_type": "hnsw", "params": {"M": 32}}
    merged = IndexConfig(**yaml_index)
    assert merged.index_type == "HNSW"
    assert dict(merged.params) == {**HNSW_BUILD_PARAMS, "M": 32}
    assert IndexConfig(index_type="AUTOINDEX").params == ()  # the server's choice, untouched
    yaml_write: dict[str, Any] = {"index": {"index_type": "hnsw"}}
    assert WriteConfig(**yaml_write).index == IndexConfig(index_type="HNSW")
    with pytest.raises(ConfigError, match=r"index.params=\['M'\]: give a mapping"):
        IndexConfig(params=["M"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"index.index_type='': name a Milvus index type"):
        IndexConfig(index_type="")


def test_search_config_holds_the_search_keys_of_a_config() -> None:
    assert SearchConfig().search_params is None  # the defaults for the collection's index
    assert SearchConfig(params=()).search_params == {}  # none: the server's own
    config = SearchConfig(top_k=3, filter='document_id like "a%"', params=(("ef", 512),))
    assert config.search_params == {"ef": 512}
    from_yaml: dict[str, Any] = {"top_k": 3, "params": {"ef": 512}}
    assert SearchConfig(**from_yaml) == SearchConfig(top_k=3, params=(("ef", 512),))
    with pytest.raises(ConfigError, match=r"search.top_k=0: must be a whole number"):
        SearchConfig(top_k=0)
    with pytest.raises(ConfigError, match=r"search.params=512: give a mapping"):
        SearchConfig(params=512)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="search_params=512: give a mapping"):
        SearchMilvus(MilvusTarget.lite("x.db", "c"), search_params=512)  # type: ignore[arg-type]


class _FakeClient:
    """The calls ``_SearchMilvusFn`` makes, recorded; one HNSW index on the vector field."""

    def __init__(self, index_type: str = "HNSW") -> None:
        self.index_type = index_type
        self.calls: list[tuple[str, Any]] = []

    def list_indexes(self, collection: str) -> list[str]:
        self.calls.append(("list_indexes", collection))
        return ["vector"]

    def describe_index(self, collection: str, index_name: str) -> dict[str, Any]:
        self.calls.append(("describe_index", index_name))
        return {"field_name": "vector", "index_type": self.index_type}

    def search(self, collection: str, **kwargs: Any) -> list[list[dict[str, Any]]]:
        self.calls.append(("search", kwargs["search_params"]))
        return [[{"id": "a", "distance": 0.5, "entity": {}}] for _ in kwargs["data"]]


def _searched_with(monkeypatch, client: _FakeClient, top_k: int, given: Any) -> list[Any]:
    from transforms.milvus import search as search_module

    monkeypatch.setattr(search_module, "connect", lambda target: client)
    fn = _SearchMilvusFn(MilvusTarget.lite("x.db", "c"), top_k, "", ("text",), given)
    fn.setup()
    query = EncodedQuery(text="q", embedding=np.ones(4, np.float32))
    for _ in range(2):  # two batches: the index is described once, in setup
        assert [r.hits[0].id for r in fn.process([query])] == ["a"]
    return client.calls


def test_search_chooses_its_parameters_once_per_worker(monkeypatch) -> None:
    calls = _searched_with(monkeypatch, _FakeClient(), 500, None)
    assert [c[0] for c in calls] == ["list_indexes", "describe_index", "search", "search"]
    assert calls[-1] == ("search", {"params": {"ef": SEARCH_EF_PER_HIT * 500}})  # above the min
    flat = _searched_with(monkeypatch, _FakeClient("FLAT"), 10, None)
    assert flat[-1] == ("search", {"params": {}})


def test_search_sends_the_parameters_it_is_given(monkeypatch) -> None:
    calls = _searched_with(monkeypatch, _FakeClient(), 10, {"ef": 64})
    assert calls == [("search", {"params": {"ef": 64}})] * 2  # no index lookup
    nested = _searched_with(monkeypatch, _FakeClient(), 10, {"params": {"ef": 32}})
    assert nested[-1] == ("search", {"params": {"ef": 32}})  # pymilvus's shape, flattened
    none = _searched_with(monkeypatch, _FakeClient(), 10, {})
    assert none[-1] == ("search", {"params": {}})
    zilliz = MilvusTarget.server("https://in01-x.zillizcloud.com", "c", token_env=None)
    assert resolve_search_params(_FakeClient("AUTOINDEX"), zilliz, 10, None) == {}
