"""The contenders of the benchmark, each run as a process of its own.

``python -m bench.peers NAME --corpus C --uri U --collection N --out R.json``
runs one contender on a corpus and writes what it measured inside itself
(phase timings, counts) as JSON to ``--out``; ``bench.run`` times the whole
process from outside. Contenders:

* ``prepare``: cuts the corpus into chunks once and stores them (``--chunks``)
  for the limits below, and counts the corpus's tokens; ``count`` only counts.
* ``encode``: the encode limit, on the stored chunks' texts: ``StaticModel.encode``
  (``--mode m2v_mp``: ``use_multiprocessing=True``, ``m2v``: ``False``) or our
  ``StaticEmbedder.embed`` (``--mode ours``, batches of 512 as RunInference
  forms them; ``ours_counted``: given the token ids chunking counted, which
  the chunks carry, as in our pipeline), the texts' vectors compared with encode's.
* ``write``: the write limit: ``MilvusClient.insert`` (or ``--mode upsert``)
  of the stored chunks' vectors in batches of ``--batch`` rows, then a flush.
* ``docs``: the way Milvus's documentation shows: pymilvus-model's
  ``Model2VecEmbeddingFunction`` and ``MilvusClient.insert`` in batches of
  1,000 rows, in one process.
* ``beam_rag``: Beam's own RAG path: ``MLTransform`` with a Model2Vec
  embeddings manager, ``VectorDatabaseWriteTransform`` with
  ``MilvusVectorWriterConfig``, on the DirectRunner (``--workers``).
* ``pool``: the docs' way in a ``multiprocessing`` pool of ``--workers``
  processes, each with its own client.

Every contender cuts the same chunks (the very code ``ChunkDocuments`` runs,
same ids), embeds with the same model and writes into a collection made by
``prepare_collection`` (same schema, index and load state), then flushes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from bench.chunking import chunker, documents
from bench.corpus import read_corpus

__all__ = ["CONTENDERS", "main"]

_LOGGER = logging.getLogger(__name__)

DOCS_BATCH_ROWS = 1000
"""The batch size of the documentation's insert loop, and of Beam's writer."""


# --------------------------------------------------------------------------
# What every contender shares: the corpus, the chunks, the collection.
# --------------------------------------------------------------------------
def target(uri: str, collection: str) -> Any:
    from transforms import MilvusTarget

    if uri.endswith(".db"):
        return MilvusTarget.lite(uri, collection)
    return MilvusTarget.server(uri, collection, token_env=None)


def make_collection(uri: str, collection: str, model: str) -> None:
    """A new, empty collection as our pipeline makes it (schema, index, load)."""
    from transforms import WriteConfig, WriteMode
    from transforms.embedding.model import StaticEmbedder
    from transforms.milvus.collection import prepare_collection

    embedder = StaticEmbedder.load(model)
    prepare_collection(
        target(uri, collection),
        dim=embedder.dim,
        fingerprint=embedder.fingerprint(),
        config=WriteConfig(mode=WriteMode.OVERWRITE),
    )


def row(chunk: Any, vector: Any) -> dict[str, Any]:
    """A row as a pymilvus user writes it: a dict per entity."""
    return {
        "id": chunk.id,
        "vector": vector,
        "text": chunk.text,
        "document_id": chunk.document_id,
        "chunk_index": chunk.index,
        "metadata": dict(chunk.metadata),
    }


def _client(uri: str) -> Any:
    from pymilvus import MilvusClient

    return MilvusClient(uri=uri)


def _flush(uri: str, collection: str) -> float:
    started = time.perf_counter()
    client = _client(uri)
    try:
        client.flush(collection)
    finally:
        client.close()
    return time.perf_counter() - started


class _Clock:
    """Adds up the seconds spent in named phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


def _model2vec_function(model: str) -> Any:
    """pymilvus-model's ``Model2VecEmbeddingFunction`` for a local folder.

    pymilvus-model 0.3.4 (the newest, the one ``pymilvus[model]`` installs
    with pymilvus 3.0.2) loads a local folder with ``StaticModel.load_local``,
    which model2vec 0.10 no longer has; ``from_pretrained`` is what replaced
    it, so that one name is pointed at it. Nothing else is changed.
    """
    from model2vec import StaticModel
    from pymilvus.model.dense import Model2VecEmbeddingFunction

    if not hasattr(StaticModel, "load_local"):
        StaticModel.load_local = classmethod(  # type: ignore[attr-defined]
            lambda cls, path: cls.from_pretrained(path, force_download=False)
        )
    return Model2VecEmbeddingFunction(model_source=model)


# --------------------------------------------------------------------------
# The contenders.
# --------------------------------------------------------------------------
def run_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Cuts the corpus once (two processes) and stores the chunks for the limits."""
    import multiprocessing

    from transforms.text import ChunkingTokenizer

    parts = max(1, args.workers)
    keep = bool(args.chunks)
    with multiprocessing.get_context("spawn").Pool(parts) as pool:
        settings = (args.corpus, args.model, args.max_tokens, args.overlap_tokens)
        cut = pool.starmap(_prepare_part, [(*settings, i, parts, keep) for i in range(parts)])
    if keep:
        chunks = [c for part in cut for c in part[0]]
        chunks.sort(key=lambda c: (c.document_id, c.index))
        with open(args.chunks, "wb") as f:
            pickle.dump(chunks, f, protocol=pickle.HIGHEST_PROTOCOL)
    tokenizer = ChunkingTokenizer.load(args.model)
    document_tokens = sum(tokenizer.count_tokens(r["text"]) for r in read_corpus(args.corpus))
    return {
        "documents": sum(part[1] for part in cut),
        "chunks": sum(part[2] for part in cut),
        "corpus_tokens": document_tokens,
        "chunk_characters": sum(part[3] for part in cut),
    }


def _prepare_part(
    corpus: str,
    model: str,
    max_tokens: int,
    overlap_tokens: int,
    part: int,
    parts: int,
    keep: bool,
) -> tuple[list[Any], int, int, int]:
    """One part's chunks (when kept), documents, chunks and chunk characters."""
    cut = chunker(model, max_tokens, overlap_tokens)
    kept: list[Any] = []
    documents_seen = chunks_cut = characters = 0
    for document in documents(corpus, part=part, parts=parts):
        documents_seen += 1
        chunks = cut(document)
        chunks_cut += len(chunks)
        characters += sum(len(c.text) for c in chunks)
        if keep:
            kept.extend(chunks)
    return kept, documents_seen, chunks_cut, characters


def _load_chunks(path: str) -> list[Any]:
    with open(path, "rb") as f:
        return list(pickle.load(f))


def run_encode(args: argparse.Namespace) -> dict[str, Any]:
    """The encode limit on the stored chunks' texts, best of ``--repeat`` passes."""
    chunks = _load_chunks(args.chunks)
    texts = [c.text for c in chunks]
    passes: list[float] = []
    if args.mode in ("ours", "ours_counted"):
        from transforms.embedding.model import StaticEmbedder

        embedder = StaticEmbedder.load(args.model)
        # As in our pipeline, the chunks' own token ids (chunking counted them), or none.
        ids = [c.token_ids if args.mode == "ours_counted" else None for c in chunks]

        def encode() -> tuple[np.ndarray, float]:
            parts, seconds = [], 0.0
            for i in range(0, len(texts), 512):
                started = time.perf_counter()
                parts.append(embedder.embed(texts[i : i + 512], ids[i : i + 512]))
                seconds += time.perf_counter() - started
            return np.concatenate(parts), seconds
    else:
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(args.model, force_download=False)
        use_multiprocessing = args.mode == "m2v_mp"

        def encode() -> tuple[np.ndarray, float]:
            started = time.perf_counter()
            vectors = model.encode(texts, use_multiprocessing=use_multiprocessing)
            return vectors, time.perf_counter() - started

    vectors = None
    for _ in range(args.repeat):
        vectors, seconds = encode()
        passes.append(seconds)
    assert vectors is not None
    result: dict[str, Any] = {
        "texts": len(texts),
        "stage_seconds": round(min(passes), 3),
        "passes": [round(p, 3) for p in passes],
    }
    if args.mode.startswith("ours"):
        # Against encode in this process, without its thread pool (which would
        # switch the tokenizer's own parallelism off for the rest of the process).
        from model2vec import StaticModel

        sample = slice(0, min(len(texts), 5000))
        expected = StaticModel.from_pretrained(args.model, force_download=False).encode(
            texts[sample], use_multiprocessing=False
        )
        result["max_abs_diff_vs_encode"] = float(
            np.abs(vectors[sample] - expected.astype(np.float32)).max()
        )
        result["compared"] = len(expected)
    return result


def run_write(args: argparse.Namespace) -> dict[str, Any]:
    """The write limit: the stored chunks' vectors inserted in ideal batches, then flushed."""
    from transforms.embedding.model import StaticEmbedder

    chunks = _load_chunks(args.chunks)
    embedder = StaticEmbedder.load(args.model)
    vectors = np.concatenate(
        [embedder.embed([c.text for c in chunks[i : i + 512]]) for i in range(0, len(chunks), 512)]
    )
    make_collection(args.uri, args.collection, args.model)
    client = _client(args.uri)
    clock = _Clock()
    try:
        write = client.insert if args.mode == "insert" else client.upsert
        with clock("write"):
            for i in range(0, len(chunks), args.batch):
                rows = [
                    row(c, v)
                    for c, v in zip(
                        chunks[i : i + args.batch], vectors[i : i + args.batch], strict=True
                    )
                ]
                write(args.collection, rows)
        with clock("flush"):
            client.flush(args.collection)
    finally:
        client.close()
    seconds = clock.rounded()
    return {
        "rows": len(chunks),
        "stage_seconds": round(sum(seconds.values()), 3),
        "phases": seconds,
    }


def run_docs(args: argparse.Namespace) -> dict[str, Any]:
    """Milvus's documentation: Model2VecEmbeddingFunction + insert in batches of 1,000."""
    clock = _Clock()
    with clock("setup"):
        make_collection(args.uri, args.collection, args.model)
        embedding_function = _model2vec_function(args.model)
        cut = chunker(args.model, args.max_tokens, args.overlap_tokens)
        client = _client(args.uri)
    chunks = 0
    try:
        for batch in _chunk_batches(args.corpus, cut, clock, part=0, parts=1):
            with clock("embed"):
                vectors = embedding_function.encode_documents([c.text for c in batch])
            with clock("write"):
                client.insert(
                    args.collection, [row(c, v) for c, v in zip(batch, vectors, strict=True)]
                )
            chunks += len(batch)
        with clock("flush"):
            client.flush(args.collection)
    finally:
        client.close()
    return {"chunks": chunks, "phases": clock.rounded()}


def _chunk_batches(
    corpus: str, cut: Callable[[Any], list[Any]], clock: _Clock, *, part: int, parts: int
) -> Iterator[list[Any]]:
    """Chunks of the corpus (one part of it), ``DOCS_BATCH_ROWS`` at a time."""
    pending: list[Any] = []
    for document in documents(corpus, part=part, parts=parts):
        with clock("chunk"):
            pending.extend(cut(document))
        while len(pending) >= DOCS_BATCH_ROWS:
            batch, pending = pending[:DOCS_BATCH_ROWS], pending[DOCS_BATCH_ROWS:]
            yield batch
    if pending:
        yield pending


def run_pool(args: argparse.Namespace) -> dict[str, Any]:
    """The docs' way in a pool of ``--workers`` processes, each writing its share."""
    import multiprocessing

    make_collection(args.uri, args.collection, args.model)
    parts = args.workers
    context = multiprocessing.get_context("fork")
    with context.Pool(parts) as pool:
        settings = (args.corpus, args.model, args.max_tokens, args.overlap_tokens)
        where = (args.uri, args.collection)
        done = pool.starmap(_pool_part, [(*settings, *where, i, parts) for i in range(parts)])
    flush_s = _flush(args.uri, args.collection)
    return {
        "chunks": sum(d["chunks"] for d in done),
        "workers": [d["phases"] for d in done],
        "phases": {"flush": round(flush_s, 3)},
    }


def _pool_part(
    corpus: str,
    model: str,
    max_tokens: int,
    overlap_tokens: int,
    uri: str,
    collection: str,
    part: int,
    parts: int,
) -> dict[str, Any]:
    clock = _Clock()
    embedding_function = _model2vec_function(model)
    cut = chunker(model, max_tokens, overlap_tokens)
    client = _client(uri)
    chunks = 0
    try:
        for batch in _chunk_batches(corpus, cut, clock, part=part, parts=parts):
            with clock("embed"):
                vectors = embedding_function.encode_documents([c.text for c in batch])
            with clock("write"):
                client.insert(collection, [row(c, v) for c, v in zip(batch, vectors, strict=True)])
            chunks += len(batch)
    finally:
        client.close()
    return {"chunks": chunks, "phases": clock.rounded()}


def run_beam_rag(args: argparse.Namespace) -> dict[str, Any]:
    """Beam's ml.rag: MLTransform + a Model2Vec embeddings manager + the Milvus writer."""
    import apache_beam as beam
    from apache_beam.ml.rag.ingestion.base import VectorDatabaseWriteTransform
    from apache_beam.ml.rag.ingestion.milvus_search import (
        MilvusVectorWriterConfig,
        MilvusWriteConfig,
    )
    from apache_beam.ml.rag.utils import MilvusConnectionParameters
    from apache_beam.ml.transforms.base import MLTransform
    from apache_beam.options.pipeline_options import PipelineOptions

    from bench.beam_rag import ChunkToItems, Model2VecTextEmbeddings, column_specs

    clock = _Clock()
    make_collection(args.uri, args.collection, args.model)
    options = ["--runner=DirectRunner"]
    if args.workers > 1:
        options += [
            f"--direct_num_workers={args.workers}",
            "--direct_running_mode=multi_processing",
        ]
    config = MilvusVectorWriterConfig(
        connection_params=MilvusConnectionParameters(uri=args.uri),
        write_config=MilvusWriteConfig(collection_name=args.collection),
        column_specs=column_specs(),
    )
    with (
        clock("pipeline"),
        tempfile.TemporaryDirectory() as artifacts,
        beam.Pipeline(options=PipelineOptions(options)) as p,
    ):
        _ = (
            p
            | "Read" >> beam.io.ReadFromText(args.corpus)
            | "Chunk" >> beam.ParDo(ChunkToItems(args.model, args.max_tokens, args.overlap_tokens))
            | "Embed"
            >> MLTransform(write_artifact_location=artifacts).with_transform(
                Model2VecTextEmbeddings(args.model)
            )
            | "Write" >> VectorDatabaseWriteTransform(config)
        )
    with clock("flush"):
        _flush(args.uri, args.collection)
    return {"phases": clock.rounded(), "workers": args.workers}


CONTENDERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "prepare": run_prepare,
    "count": run_prepare,  # the same counts, without storing the chunks
    "encode": run_encode,
    "write": run_write,
    "docs": run_docs,
    "beam_rag": run_beam_rag,
    "pool": run_pool,
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(CONTENDERS))
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--overlap_tokens", type=int, default=32)
    parser.add_argument("--uri", default="")
    parser.add_argument("--collection", default="")
    parser.add_argument("--chunks", help="Stored chunks (written by prepare, read by the limits).")
    parser.add_argument("--mode", default="")
    parser.add_argument("--batch", type=int, default=DOCS_BATCH_ROWS)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    result = CONTENDERS[args.name](args)
    result["pid"] = os.getpid()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
