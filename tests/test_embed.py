"""EmbedChunks and EncodeQueries on RunInference: the vectors of StaticModel.encode."""

from __future__ import annotations

import collections

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from model2vec import StaticModel

from transforms import Chunk, EmbedChunks, EncodeQueries, Model2VecModelHandler, metrics
from transforms import model as model_module
from transforms.model import count_model_loads

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


def test_a_load_is_counted_by_a_job_of_its_own_model(monkeypatch) -> None:
    # Long-lived workers run job after job: a load that its own job never
    # counted must not turn up in a later job's count for another model.
    left = collections.Counter({"model-a": 1, "model-b": 2})
    monkeypatch.setattr(model_module, "_uncounted_loads", left)
    pipeline = TestPipeline()
    _ = pipeline | beam.Create([0, 1]) | beam.Map(lambda _: count_model_loads("model-b"))
    result = pipeline.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_name(metrics.MODEL_LOADS))
    assert sum(c.committed for c in query["counters"]) == 2  # once, not per element
    assert left == {"model-a": 1}
