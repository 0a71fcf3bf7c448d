"""EmbedChunks(output=BATCHES): ChunkBatch elements with the vectors of StaticModel.encode."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from model2vec import StaticModel

from transforms import Chunk, EmbedChunks, Model2VecModelHandler
from transforms.batch import ChunkBatch
from transforms.embedding.embed import EmbedOutput

TEXTS = ["catch the exception", "loop over the list", "import a module", "unknownword", ""]


def _chunks() -> list[Chunk]:
    return [Chunk(f"id{i}", "doc", i, t, 0, len(t), {"k": i}) for i, t in enumerate(TEXTS)]


def test_batches_hold_every_chunk_once_with_the_encode_vectors(tiny_model) -> None:
    expected = StaticModel.from_pretrained(tiny_model, force_download=False).encode(TEXTS)
    by_text = {t: v for t, v in zip(TEXTS, expected, strict=True)}
    handler = Model2VecModelHandler(tiny_model, min_batch_size=2, max_batch_size=2)

    def check(batches: list[ChunkBatch]) -> None:
        assert all(isinstance(b, ChunkBatch) and 1 <= len(b) <= 2 for b in batches)
        chunks = [c for b in batches for c in b.chunks]
        assert sorted(c.id for c in chunks) == [f"id{i}" for i in range(len(TEXTS))]
        for batch in batches:
            assert batch.embeddings.dtype == np.float32 and batch.dim == 16
            for chunk, vector in zip(batch.chunks, batch.embeddings, strict=True):
                np.testing.assert_allclose(vector, by_text[chunk.text], atol=1e-6)
                assert chunk.embedding is None  # the chunk as it came

    with TestPipeline() as p:
        batches = p | beam.Create(_chunks()) | EmbedChunks(handler, output=EmbedOutput.BATCHES)
        assert_that(batches, check)


def test_a_batch_turns_back_into_the_chunks_embed_chunks_emits(tiny_model) -> None:
    with TestPipeline() as p:
        chunks = p | beam.Create(_chunks())
        singles = chunks | "Singles" >> EmbedChunks(tiny_model)
        from_batches = (
            chunks
            | "Batches" >> EmbedChunks(tiny_model, output=EmbedOutput("batches"))
            | beam.FlatMap(ChunkBatch.to_chunks)
        )
        as_lists = beam.Map(lambda c: (c.id, c.text, c.metadata["k"], c.embedding.tolist()))
        assert_that(
            from_batches | "FromBatches" >> as_lists,
            equal_to(
                [
                    (c.id, c.text, c.metadata["k"], v.tolist())
                    for c, v in zip(
                        _chunks(),
                        StaticModel.from_pretrained(tiny_model, force_download=False).encode(TEXTS),
                        strict=True,
                    )
                ]
            ),
        )
        assert_that(
            singles | "Count" >> beam.combiners.Count.Globally(),
            equal_to([len(TEXTS)]),
            label="singles",
        )


def test_chunk_batch_checks_its_shape_and_is_read_only() -> None:
    chunks = _chunks()[:2]
    batch = ChunkBatch.of(chunks, np.ones((2, 3)))
    assert batch.embeddings.dtype == np.float32 and len(batch) == 2 and batch.dim == 3
    with pytest.raises(ValueError):
        batch.embeddings[0, 0] = 2.0
    with pytest.raises(ValueError, match="one embedding row per chunk"):
        ChunkBatch.of(chunks, np.ones((3, 3)))
    assert pickle.loads(pickle.dumps(batch)) == batch
    assert [np.asarray(c.embedding).tolist() for c in batch.to_chunks()] == [[1.0] * 3] * 2


def test_embed_chunks_says_what_it_emits(tiny_model) -> None:
    assert EmbedChunks(tiny_model).display_data()["output"] == "chunks"
    assert EmbedChunks(tiny_model, output=EmbedOutput.BATCHES).display_data()["output"] == "batches"
    with pytest.raises(ValueError):
        EmbedChunks(tiny_model, output="rows")  # type: ignore[arg-type]
