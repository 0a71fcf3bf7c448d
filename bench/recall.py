"""Recall@k and latency of search, per index and search setting: ``python -m bench.recall``.

What a search returns is measured against exact search: the chunks of a
generated corpus (:mod:`bench.corpus`, cut by ``chunk_document`` and embedded
with the repository's demo model, as an ingestion run would) are written into
a collection with each index to compare, and short queries (sentences of the
same topics, cut at twelve words) are searched with ``SearchMilvus``'s output
fields. Recall@k of a query is the share of its hits that belong in the exact
top k, found by numpy over the same vectors with the collection's metric; a
hit whose exact score ties the k-th best (within 1e-5) counts, so that
duplicate chunks cannot lower it.

Each collection is measured right after the ingestion ends (one flush and a
row count, as ``pipelines.ingest`` ends; every query at once, in
``SearchMilvus``'s batches of 64, with its Strong consistency), then once its
index is built and served (:func:`transforms.milvus.collection.wait_for_index`;
on Milvus Lite, once every flushed segment has its index file, since Lite
searches the segments it has not indexed yet exactly) with each search
setting, one query a call and Bounded consistency, for the latency of the
search itself.

Costs: the corpus of the largest size is cut and embedded once (about 5,000
chunks a second) and cached in ``--work``; smaller sizes are its prefixes.
Each (store, size, index) is one collection, written, measured and dropped. A
Milvus 2.3.5 server is started unless ``--milvus_uri`` names one. The default
run (1,000 to 100,000 chunks, four indexes, both stores) takes about 20
minutes on two cores.

Run it::

    python -m bench.recall                                  # 1k, 10k, 100k chunks; server, Lite
    python -m bench.recall --sizes 10000 --targets lite --index HNSW --ef default,64,512
    python -m bench.recall --index HNSW:M=32:efConstruction=256 --index FLAT
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import random
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bench.measure import DEFAULT_MODEL, REPO
from transforms.config import IndexConfig, MilvusTarget, WriteConfig, WriteMode
from transforms.milvus.client import connect
from transforms.milvus.collection import finish_collection, prepare_collection, wait_for_index
from transforms.milvus.rows import FIELD_DOCUMENT_ID, FIELD_TEXT, FIELD_VECTOR
from transforms.milvus.search import resolve_search_params

__all__ = [
    "Corpus",
    "exact_kth",
    "main",
    "make_corpus",
    "make_queries",
    "markdown",
    "pivot",
    "recall_at_k",
    "search_rows",
    "wait_lite_indexed",
]

SERVER, LITE = "server", "lite"
TIE_TOLERANCE = 1e-5
"""A hit whose exact score is within this of the k-th best counts as a true neighbour."""
_QUERY_WORDS = 12
_INSERT_ROWS = 1000
_SEARCH_BATCH = 64
_DEFAULT_INDEXES = ("default", "HNSW", "HNSW:M=16:efConstruction=200", "AUTOINDEX")
"""Queries per call right after ingestion: ``SearchMilvus``'s ``max_batch_size``."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Chunks as an ingestion run writes them: ids, document ids, texts, vectors.

    Attributes:
      ids: Chunk ids (``chunk_document``'s).
      document_ids: The documents they were cut from.
      texts: The chunks' texts.
      vectors: ``(len(ids), dim)`` float32, as ``EmbedChunks`` makes them.
    """

    ids: list[str]
    document_ids: list[str]
    texts: list[str]
    vectors: np.ndarray

    def head(self, n: int) -> Corpus:
        """The first ``n`` chunks (a smaller corpus is a prefix of a larger one)."""
        return Corpus(self.ids[:n], self.document_ids[:n], self.texts[:n], self.vectors[:n])

    def rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows of the collection's schema for chunks ``start:stop``."""
        return [
            {
                "id": self.ids[i],
                FIELD_VECTOR: self.vectors[i].tolist(),
                FIELD_TEXT: self.texts[i],
                FIELD_DOCUMENT_ID: self.document_ids[i],
                "chunk_index": i,
                "metadata": {},
            }
            for i in range(start, min(stop, len(self.ids)))
        ]


def make_corpus(
    chunks: int, *, model: str = DEFAULT_MODEL, seed: int = 0, cache_dir: str | None = None
) -> Corpus:
    """The first ``chunks`` chunks of the generated corpus, embedded with ``model``.

    Documents come from :func:`bench.corpus.documents` (document ``i`` depends
    only on ``seed`` and ``i``), are cut by ``chunk_document`` with the
    pipeline's default windows (256 tokens, 32 overlap) and embedded by
    ``StaticEmbedder.embed`` with the token ids chunking counted, as in the
    pipeline. Cost: about 5,000 chunks a second on one core; with
    ``cache_dir`` the result is kept as a pickle and reused.
    """
    name = f"recall-corpus-{chunks}-{seed}-{os.path.basename(os.path.normpath(model))}.pkl"
    path = os.path.join(cache_dir, name) if cache_dir else None
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            cached: Corpus = pickle.load(f)
        return cached
    from bench.chunking import chunker, document
    from bench.corpus import documents
    from transforms.embedding.model import StaticEmbedder

    cut = chunker(model, 256, 32)
    embedder = StaticEmbedder.load(model)
    ids: list[str] = []
    document_ids: list[str] = []
    texts: list[str] = []
    parts: list[np.ndarray] = []
    pending: list[Any] = []

    def embed_pending() -> None:
        if pending:
            parts.append(embedder.embed([c.text for c in pending], [c.token_ids for c in pending]))
            pending.clear()

    for record in documents(sys.maxsize, seed=seed):
        for chunk in cut(document(record)):
            if len(ids) == chunks:
                break
            ids.append(chunk.id)
            document_ids.append(chunk.document_id)
            texts.append(chunk.text)
            pending.append(chunk)
            if len(pending) == 512:
                embed_pending()
        if len(ids) == chunks:
            break
    embed_pending()
    corpus = Corpus(ids, document_ids, texts, np.concatenate(parts).astype(np.float32))
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as out:
            pickle.dump(corpus, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(path + ".tmp", path)
    return corpus


def make_queries(
    n: int, *, model: str = DEFAULT_MODEL, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """``n`` short queries and their vectors: sentences of the documentation
    topics, drawn with ``seed`` and cut at twelve words, the length of a question."""
    from bench.corpus import paragraphs, sentences
    from transforms.embedding.model import StaticEmbedder

    pool = sentences(paragraphs())
    rng = random.Random(f"queries:{seed}")
    texts = [" ".join(rng.choice(pool).split()[:_QUERY_WORDS]) for _ in range(n)]
    return texts, StaticEmbedder.load(model).embed(texts).astype(np.float32)


def _scores(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """Exact scores, higher is nearer: cosine, inner product, or minus the L2 distance."""
    if metric == "COSINE":
        q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
        v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
        return q @ v.T
    if metric == "IP":
        return queries @ vectors.T
    squared = (queries**2).sum(1)[:, None] - 2 * queries @ vectors.T + (vectors**2).sum(1)[None]
    return -np.sqrt(np.maximum(squared, 0.0))


def exact_kth(
    queries: np.ndarray, vectors: np.ndarray, k: int, metric: str = "COSINE", block: int = 65536
) -> np.ndarray:
    """For each query, the exact score of its k-th nearest vector (numpy brute force).

    Vectors are scored in blocks of ``block`` rows, so memory stays at
    ``len(queries) * (block + k)`` floats whatever the corpus size.
    """
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), block):
        scores = _scores(queries, vectors[start : start + block], metric).astype(np.float32)
        merged = np.concatenate([best, scores], axis=1)
        keep = min(k, merged.shape[1])
        best = -np.sort(-np.partition(merged, merged.shape[1] - keep, axis=1)[:, -keep:], axis=1)
    return best[:, k - 1]


def recall_at_k(
    hits: Sequence[Sequence[int]],
    queries: np.ndarray,
    vectors: np.ndarray,
    kth: np.ndarray,
    k: int,
    metric: str = "COSINE",
) -> np.ndarray:
    """Per query, the share of the exact top ``k`` that its hits (row numbers) hold.

    A hit counts when its exact score is at least the k-th best minus
    :data:`TIE_TOLERANCE`; missing hits count as misses.
    """
    recalls = np.zeros(len(hits))
    for q, rows in enumerate(hits):
        rows = list(rows)[:k]
        if rows:
            scores = _scores(queries[q : q + 1], vectors[rows], metric)[0]
            recalls[q] = float((scores >= kth[q] - TIE_TOLERANCE).sum()) / k
    return recalls


def search_rows(
    client: Any,
    target: MilvusTarget,
    queries: np.ndarray,
    row_of: dict[str, int],
    *,
    top_k: int,
    params: dict[str, Any],
    consistency_level: str | None = None,
    batch: int = 1,
) -> tuple[list[list[int]], list[float]]:
    """Searches the queries ``batch`` at a time with the output fields of
    ``SearchMilvus``; returns the hits' row numbers and each call's seconds.

    ``consistency_level`` ``None`` is the collection's (``Strong``, as
    ``SearchMilvus`` searches), which on a Milvus 2.3.5 standalone server
    waits for the next time tick, about 400 ms a call; ``Bounded`` does not.
    """
    hits: list[list[int]] = []
    seconds: list[float] = []
    extra = {} if consistency_level is None else {"consistency_level": consistency_level}
    for start in range(0, len(queries), batch):
        started = time.perf_counter()
        answer = client.search(
            target.collection,
            data=[v.tolist() for v in queries[start : start + batch]],
            limit=top_k,
            output_fields=[FIELD_TEXT, FIELD_DOCUMENT_ID],
            search_params={"params": params},
            anns_field=FIELD_VECTOR,
            timeout=target.timeout_s,
            **extra,
        )
        seconds.append(time.perf_counter() - started)
        hits += [[row_of[str(h["id"])] for h in found] for found in answer]
    return hits, seconds


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


def _index_spec(spec: str) -> IndexConfig:
    """``HNSW:M=32:efConstruction=256`` → ``IndexConfig``; ``default`` → ``IndexConfig()``."""
    if spec.lower() == "default":
        return IndexConfig()
    kind, *pairs = spec.split(":")
    params: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        params[key] = int(value) if value.lstrip("-").isdigit() else value
    return IndexConfig(index_type=kind, params=tuple(sorted(params.items())))


def _describe_index(index: IndexConfig) -> str:
    params = ", ".join(f"{k} {v}" for k, v in index.params)
    return f"{index.index_type} ({params})" if params else index.index_type


def _searches(index: IndexConfig, efs: Sequence[str]) -> list[tuple[str, dict[str, Any] | None]]:
    """(label, params) of each search setting for this index: ``default`` is
    ``SearchMilvus``'s (``None``), ``server`` sends none, ``N`` is ``ef`` N."""
    graph = index.index_type.startswith("HNSW") or index.index_type == "AUTOINDEX"
    found: list[tuple[str, dict[str, Any] | None]] = []
    for ef in efs:
        if ef == "default":
            found.append(("default", None))
        elif ef == "server":
            found.append(("none (the server's)", {}))
        elif graph:
            found.append((f"ef {int(ef)}", {"ef": int(ef)}))
    if not graph:  # FLAT, IVF: ef means nothing; one exact or server-default row
        found = found[:1] or [("none (the server's)", {})]
    return found


def _lite_data_dir(uri: str, collection: str) -> str:
    return os.path.join(uri, "collections", collection, "partitions")


def wait_lite_indexed(uri: str, collection: str, *, timeout_s: float = 600.0) -> float:
    """Waits until every flushed segment of a Lite collection has its vector index file.

    Lite builds indexes in a background thread and meanwhile searches those
    segments exactly; this reads Lite 3.x's own files (``data/*.parquet``,
    ``indexes/<stem>.vector.<type>.idx``), which no API reports. Returns the
    seconds waited.
    """
    started = time.monotonic()
    root = _lite_data_dir(uri, collection)
    settled = 0
    while time.monotonic() - started < timeout_s:
        stems, indexed = set(), set()
        for partition in os.listdir(root) if os.path.isdir(root) else ():
            data = os.path.join(root, partition, "data")
            indexes = os.path.join(root, partition, "indexes")
            stems |= {f[: -len(".parquet")] for f in os.listdir(data) if f.endswith(".parquet")}
            if os.path.isdir(indexes):
                indexed |= {
                    f.split(f".{FIELD_VECTOR}.")[0]
                    for f in os.listdir(indexes)
                    if f.endswith(".idx") and f".{FIELD_VECTOR}." in f
                }
        settled = settled + 1 if stems and stems <= indexed else 0
        if settled >= 2:  # twice in a row: the index is attached, no compaction pending
            return time.monotonic() - started
        time.sleep(1.0)
    raise TimeoutError(f"Lite did not index {collection} within {timeout_s:.0f}s")


@dataclasses.dataclass
class _Result:
    store: str
    chunks: int
    index: str
    when: str
    search: str
    params: dict[str, Any]
    recall: float
    lowest: float
    p50_ms: float | None
    p95_ms: float | None
    wait_s: float | None = None


def _measure(
    client: Any,
    target: MilvusTarget,
    corpus: Corpus,
    queries: np.ndarray,
    kth: np.ndarray,
    *,
    top_k: int,
    metric: str,
    given: dict[str, Any] | None,
    consistency_level: str | None,
    batch: int,
) -> tuple[dict[str, Any], np.ndarray, list[float]]:
    row_of = {chunk_id: i for i, chunk_id in enumerate(corpus.ids)}
    params = resolve_search_params(client, target, top_k, given)
    hits, seconds = search_rows(
        client,
        target,
        queries,
        row_of,
        top_k=top_k,
        params=params,
        consistency_level=consistency_level,
        batch=batch,
    )
    return params, recall_at_k(hits, queries, corpus.vectors, kth, top_k, metric), seconds


def _percentile_ms(seconds: Sequence[float], share: float) -> float:
    ordered = sorted(seconds)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _run_one(
    store: str,
    uri: str,
    corpus: Corpus,
    index: IndexConfig,
    queries: np.ndarray,
    kth: np.ndarray,
    args: argparse.Namespace,
) -> Iterator[_Result]:
    """Writes one collection with ``index``, measures it after ingestion and
    once indexed, with every search setting, then drops it."""
    n = len(corpus.ids)
    collection = f"recall_{n}_{index.index_type.lower()}_{zlib.crc32(repr(index.params).encode())}"
    target = (
        MilvusTarget.lite(uri, collection)
        if store == LITE
        else MilvusTarget.server(uri, collection, token_env=None)
    )
    config = WriteConfig(mode=WriteMode.OVERWRITE, index=index)
    state = prepare_collection(target, dim=corpus.vectors.shape[1], fingerprint=None, config=config)
    client = connect(target)
    described = _describe_index(index)

    def result(when: str, label: str, given: dict[str, Any] | None, wait: float | None) -> _Result:
        # Right after ingestion: every query at once, in SearchMilvus's batches
        # and with the collection's (Strong) consistency, to see the state the
        # ingestion left before the server moves on. Once served: one query a
        # call, Bounded (every row is older than its staleness), so that the
        # latency is the search's own.
        after = wait is None
        params, recalls, seconds = _measure(
            client,
            target,
            corpus,
            queries,
            kth,
            top_k=args.top_k,
            metric=index.metric_type,
            given=given,
            consistency_level=None if after else "Bounded",
            batch=_SEARCH_BATCH if after else 1,
        )
        shown = f"{label}: {', '.join(f'{k} {v}' for k, v in params.items()) or 'none'}"
        found = _Result(
            store,
            n,
            described,
            when,
            shown if label == "default" else label,
            params,
            float(recalls.mean()),
            float(recalls.min()),
            None if after else _percentile_ms(seconds, 0.5),
            None if after else _percentile_ms(seconds, 0.95),
            wait,
        )
        print(json.dumps(dataclasses.asdict(found)), flush=True)
        return found

    try:
        for start in range(0, n, _INSERT_ROWS):
            client.insert(collection, corpus.rows(start, start + _INSERT_ROWS))
        finish_collection(target, state, rows_upserted=n)
        ingested = time.monotonic()
        # The wait runs beside the search after ingestion, which it must not delay.
        ready: list[float] = []
        waiter = threading.Thread(
            target=lambda: ready.append(_served_after(target, uri, store, ingested, args.timeout_s))
        )
        waiter.start()
        yield result("after ingestion", "default", None, None)
        waiter.join()
        if not ready:
            raise RuntimeError(f"the index of {collection} was not served; see the log above")
        waited = ready[0]
        for label, given in _searches(index, args.ef.split(",")):
            yield result("index served", label, given, waited)
    finally:
        client.drop_collection(collection)
        client.close()


def _served_after(
    target: MilvusTarget, uri: str, store: str, since: float, timeout_s: float
) -> float:
    """Seconds from ``since`` until searches use the built index (see the module docstring)."""
    wait_for_index(target, timeout_s=timeout_s)
    if store == LITE:
        wait_lite_indexed(uri, target.collection, timeout_s=timeout_s)
    return time.monotonic() - since


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def markdown(results: Sequence[_Result], top_k: int) -> str:
    """The results as one Markdown table, a row per measurement."""
    lines = [
        f"| store | chunks | index | when | search params | recall@{top_k} | lowest query "
        "| p50 ms | p95 ms | index served after |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        wait = "" if r.wait_s is None or r.when != "index served" else f"{r.wait_s:.0f} s"
        lines.append(
            f"| {r.store} | {r.chunks:,} | {r.index} | {r.when} | {r.search} | {r.recall:.3f} "
            f"| {r.lowest:.1f} | {_fmt_ms(r.p50_ms)} | {_fmt_ms(r.p95_ms)} | {wait} |"
        )
    return "\n".join(lines) + "\n"


def _column(r: _Result) -> str:
    if r.when == "after ingestion":
        return "after ingestion"
    if r.search.startswith("default"):
        return "default"
    return "none sent" if r.search.startswith("none") else r.search


def pivot(results: Sequence[_Result], top_k: int) -> str:
    """Two compact Markdown tables, a row per (store, size, index) and a column
    per search setting: recall@k (the default's search params named), then
    the median latency in ms; ``-`` where a setting does not apply."""
    columns = ["after ingestion", "default", "none sent"]
    columns += sorted(
        {_column(r) for r in results} - set(columns), key=lambda c: int(c.split()[-1])
    )
    rows: dict[tuple[str, int, str], dict[str, _Result]] = {}
    for r in results:
        rows.setdefault((r.store, r.chunks, r.index), {})[_column(r)] = r
    tables = []
    for title, show_cell in (
        (f"recall@{top_k}", lambda r: f"{r.recall:.3f}"),
        ("p50 ms", lambda r: "-" if r.p50_ms is None else _fmt_ms(r.p50_ms)),
    ):
        recall = title.startswith("recall")
        shown = columns if recall else columns[1:]  # no latency after ingestion: batches
        head = ["store", "chunks", "index"] + [
            c if c != "default" else "default (params)" for c in shown
        ]
        if recall:
            head.append("served after")
        lines = [
            f"**{title}**",
            "",
            "| " + " | ".join(head) + " |",
            "|---|---:|---|" + "---:|" * (len(head) - 3),
        ]
        for (store, chunks, index), found in rows.items():
            cells = [store, f"{chunks:,}", index]
            for c in shown:
                measured = found.get(c)
                cell = "-" if measured is None else show_cell(measured)
                if measured is not None and c == "default" and recall:
                    named = ", ".join(f"{k} {v}" for k, v in measured.params.items())
                    cell += f" ({named or 'none'})"
                cells.append(cell)
            if recall:
                waits = [m.wait_s for m in found.values() if m.wait_s is not None]
                cells.append(f"{waits[0]:.0f} s" if waits else "-")
            lines.append("| " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Recall@k and latency of search per index and search setting "
        "(see bench/recall.py)."
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="Collection sizes in chunks (comma-separated)."
    )
    parser.add_argument("--targets", default=f"{SERVER},{LITE}", help="server, lite, or both.")
    parser.add_argument(
        "--index",
        action="append",
        help="An index to measure, repeatable: default (IndexConfig()), AUTOINDEX, FLAT, HNSW, "
        "HNSW:M=16:efConstruction=200 (default: " + ", ".join(_DEFAULT_INDEXES) + ").",
    )
    parser.add_argument(
        "--ef",
        default="default,server,256,512,1024,2048",
        help="Search settings (comma-separated): default (SearchMilvus's), server (none sent), "
        "or an ef for HNSW and AUTOINDEX.",
    )
    parser.add_argument("--queries", type=int, default=200, help="Queries per setting.")
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Model2Vec model folder.")
    parser.add_argument("--milvus_uri", help="A Milvus server to use (default: start one).")
    parser.add_argument("--work", default=os.path.join(REPO, "work", "bench", "recall"))
    parser.add_argument("--json", help="Write the results here as JSON lines.")
    parser.add_argument("--markdown", help="Write the two tables (recall, latency) here.")
    parser.add_argument("--timeout_s", type=float, default=1800.0, help="Longest index wait.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[_Result]:
    args = parse(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    targets = [t for t in args.targets.split(",") if t]
    if not targets or set(targets) - {SERVER, LITE}:
        raise SystemExit(f"--targets={args.targets!r}: give server, lite or server,lite")
    indexes = [_index_spec(s) for s in (args.index or _DEFAULT_INDEXES)]
    os.makedirs(args.work, exist_ok=True)
    started = time.monotonic()
    corpus = make_corpus(max(sizes), model=args.model, seed=args.seed, cache_dir=args.work)
    texts, queries = make_queries(args.queries, model=args.model, seed=args.seed)
    print(
        f"Corpus: {len(corpus.ids):,} chunks ({time.monotonic() - started:.0f} s); "
        f"{len(texts)} queries, e.g. {texts[0]!r}",
        flush=True,
    )
    results: list[_Result] = []
    server = None
    try:
        for store in targets:
            if store == SERVER:
                uri = args.milvus_uri
                if not uri:
                    from transforms.testing import servers

                    print("Starting a Milvus 2.3.5 server…", flush=True)
                    server, uri = servers.start_milvus_server(
                        tempfile.mkdtemp(prefix="server-", dir=args.work),
                        bin_dir=os.path.join(args.work, "milvus-bin"),
                        port_offset=800,
                    )
            else:
                uri = os.path.join(tempfile.mkdtemp(prefix="lite-", dir=args.work), "recall.db")
            for size in sizes:
                part = corpus.head(size)
                for index in indexes:
                    kth = exact_kth(queries, part.vectors, args.top_k, index.metric_type)
                    results += _run_one(store, uri, part, index, queries, kth, args)
            if store == LITE:
                shutil.rmtree(os.path.dirname(uri), ignore_errors=True)
    finally:
        if server is not None:
            from transforms.testing import servers

            servers.stop(server)
    table = pivot(results, args.top_k)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(dataclasses.asdict(r)) + "\n")
    print(f"Done in {time.monotonic() - started:.0f} s.", flush=True)
    return results


if __name__ == "__main__":
    main()
