"""Token windows: the pure splitter and the ChunkDocuments transform."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_util import collect
from transforms import ChunkDocuments, ChunkingConfig, ChunkingTokenizer, Document, token_windows

OFFSETS = [(i * 2, i * 2 + 1) for i in range(10)]  # ten one-character tokens


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "expected"),
    [
        (4, 1, [(0, 7), (6, 13), (12, 19)]),
        (10, 2, [(0, 19)]),
        (20, 0, [(0, 19)]),
        (3, 0, [(0, 5), (6, 11), (12, 17), (18, 19)]),
    ],
)
def test_token_windows_cover_the_text_with_overlap(max_tokens, overlap, expected) -> None:
    assert token_windows(OFFSETS, max_tokens, overlap) == expected


def test_token_windows_of_no_tokens_is_empty() -> None:
    assert token_windows([], 4, 1) == []


def _chunk(documents, model, config):
    with TestPipeline() as p:
        result = p | beam.Create(documents) | ChunkDocuments(model, config)
        rows = result.chunks | beam.Map(
            lambda c: (c.document_id, c.index, c.text, c.start, c.end, c.id)
        )
        captured = collect(rows)
        assert_that(
            result.dead_letters | beam.Map(lambda d: (d.stage, d.source)),
            equal_to([]),
            label="none",
        )
    return sorted(captured)


def test_chunk_documents_windows_by_model_tokens(tiny_model) -> None:
    text = " ".join(["catch the exception"] * 10)  # 30 tokens
    doc = Document(id="d1", text=text, source="f.txt")
    rows = _chunk([doc], tiny_model, ChunkingConfig(max_tokens=12, overlap_tokens=3))
    tokenizer = ChunkingTokenizer.load(tiny_model)
    assert [r[1] for r in rows] == [0, 1, 2]  # windows start at tokens 0, 9 and 18
    for _, _, chunk_text, start, end, _ in rows:
        assert text[start:end] == chunk_text
        assert len(tokenizer.encode(chunk_text).ids) <= 12
    # Consecutive chunks share the overlap tokens.
    assert rows[1][3] < rows[0][4]
    assert rows[-1][4] == len(text)


def test_chunk_ids_are_the_same_on_a_rerun_and_change_with_settings(tiny_model) -> None:
    doc = Document(id="d1", text="how do i catch an exception in a loop " * 5)
    first = _chunk([doc], tiny_model, ChunkingConfig(max_tokens=8, overlap_tokens=2))
    again = _chunk([doc], tiny_model, ChunkingConfig(max_tokens=8, overlap_tokens=2))
    other = _chunk([doc], tiny_model, ChunkingConfig(max_tokens=8, overlap_tokens=1))
    assert [r[5] for r in first] == [r[5] for r in again]
    assert len({r[5] for r in first}) == len(first)
    assert not {r[5] for r in first} & {r[5] for r in other}


def test_a_document_without_tokens_is_dead_lettered(tiny_model) -> None:
    with TestPipeline() as p:
        docs = [
            Document(id="blank", text="   \n ", source="blank.txt"),
            Document(id="ok", text="try"),
        ]
        result = p | beam.Create(docs) | ChunkDocuments(tiny_model, ChunkingConfig(4, 0))
        assert_that(
            result.chunks | beam.Map(lambda c: c.document_id), equal_to(["ok"]), label="chunks"
        )
        assert_that(
            result.dead_letters | beam.Map(lambda d: (d.stage, d.source, d.reason)),
            equal_to([("chunk", "blank.txt", "document has no tokens")]),
            label="dead",
        )
