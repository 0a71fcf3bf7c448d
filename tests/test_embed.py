"""EmbedChunks and EncodeQueries on RunInference: the vectors of StaticModel.encode."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from model2vec import StaticModel

from transforms import (
    Chunk,
    ChunkingConfig,
    ChunkingTokenizer,
    Document,
    EmbedChunks,
    EncodeQueries,
    Model2VecModelHandler,
    StaticEmbedder,
    chunk_document,
    metrics,
)
from transforms.embedding.embed import count_model_load
from transforms.types import TokenIds

TEXTS = ["catch the exception", "loop over the list", "import a module", "unknownword"]


def _expected(model: str, texts: list[str]) -> dict[str, list[float]]:
    vectors = StaticModel.from_pretrained(model, force_download=False).encode(texts)
    return {t: v.tolist() for t, v in zip(texts, vectors, strict=True)}


def _close_to(expected: dict[str, list[float]]):
    def check(actual: list[tuple[str, list[float]]]) -> None:
        assert sorted(t for t, _ in actual) == sorted(expected)
        for text, vector in actual:
            np.testing.assert_allclose(vector, expected[text], atol=1e-6)

    return check


def test_embed_chunks_adds_the_encode_vectors(tiny_model) -> None:
    chunks = [Chunk(f"id{i}", "doc", i, t, 0, len(t), {"k": i}) for i, t in enumerate(TEXTS)]
    with TestPipeline() as p:
        embedded = p | beam.Create(chunks) | EmbedChunks(tiny_model)
        assert_that(
            embedded | beam.Map(lambda c: (c.text, c.embedding.tolist())),
            _close_to(_expected(tiny_model, TEXTS)),
            label="vectors",
        )
        assert_that(
            embedded | beam.Map(lambda c: (c.id, c.index, c.metadata["k"], c.embedding.dtype.name)),
            equal_to([(f"id{i}", i, i, "float32") for i in range(len(TEXTS))]),
            label="fields",
        )


def test_encode_queries_uses_the_same_vectors(tiny_model) -> None:
    with TestPipeline() as p:
        encoded = p | beam.Create(TEXTS) | EncodeQueries(tiny_model)
        assert_that(
            encoded | beam.Map(lambda q: (q.text, q.embedding.tolist())),
            _close_to(_expected(tiny_model, TEXTS)),
        )


def test_the_handler_works_with_plain_run_inference(tiny_model) -> None:
    handler = Model2VecModelHandler(tiny_model, max_batch_size=2)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 2
    with TestPipeline() as p:
        results = p | beam.Create(TEXTS) | RunInference(handler)
        assert_that(
            results | beam.Map(lambda r: (r.example, r.inference.tolist())),
            _close_to(_expected(tiny_model, TEXTS)),
        )


class _LoadAndCount(beam.DoFn):
    """Loads a model in setup(), as RunInference does, and counts the load per element."""

    def __init__(self, model: str) -> None:
        self._source = model
        self._model: StaticEmbedder | None = None

    def setup(self) -> None:
        self._model = StaticEmbedder.load(self._source)

    def process(self, element: int):
        assert self._model is not None
        count_model_load(self._model)
        yield element


def test_a_load_is_counted_once_by_the_job_that_embeds_with_it(tiny_model) -> None:
    pipeline = TestPipeline()
    _ = pipeline | beam.Create([0, 1, 2]) | beam.ParDo(_LoadAndCount(tiny_model))
    result = pipeline.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_name(metrics.MODEL_LOADS))
    assert sum(c.committed for c in query["counters"]) == 1  # one load, counted once


def test_embed_chunks_alone_gives_the_vectors_of_chunking_then_embedding(demo_model) -> None:
    # Chunks carry the token ids chunking counted; EmbedChunks uses them when
    # they are its tokenizer's. Without them (chunks made elsewhere), or with
    # another tokenizer's ids, it tokenizes: the vectors are the same.
    from pydoc_data.topics import topics

    tokenizer = ChunkingTokenizer.load(demo_model)
    documents = [Document(name, text) for name, text in sorted(topics.items())[:20]]
    chunked = [c for d in documents for c in chunk_document(d, tokenizer, ChunkingConfig(64, 8))]
    assert all(c.token_ids is not None for c in chunked)
    bare = [dataclasses.replace(c, token_ids=None) for c in chunked]
    foreign = [
        dataclasses.replace(c, token_ids=TokenIds("another-tokenizer", c.token_ids.ids[:1]))
        for c in chunked
        if c.token_ids is not None
    ]
    expected = StaticModel.from_pretrained(demo_model, force_download=False).encode(
        [c.text for c in chunked]
    )
    for chunks in (chunked, bare, foreign):
        with TestPipeline() as p:
            embedded = p | beam.Create(chunks) | EmbedChunks(demo_model)
            assert_that(
                embedded | beam.Map(lambda c: (c.id, c.embedding.tolist(), c.token_ids)),
                _equal_vectors({c.id: v for c, v in zip(chunked, expected, strict=True)}),
            )


def _equal_vectors(expected: dict[str, np.ndarray]):
    def check(actual: list[tuple[str, list[float], object]]) -> None:
        assert sorted(i for i, _, _ in actual) == sorted(expected)
        for chunk_id, vector, token_ids in actual:
            np.testing.assert_allclose(vector, expected[chunk_id], atol=1e-6)
            assert token_ids is None  # embedded chunks drop the ids they no longer need

    return check
