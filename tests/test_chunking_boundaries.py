"""Chunks that end where the text does, never over the model's length, in any script."""

from __future__ import annotations

import itertools
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from tests.beam_util import collect
from transforms import ChunkDocuments, ChunkingConfig, ChunkingTokenizer, ConfigError, Document
from transforms.text.chunking import (
    _CJK_RANGES,
    CLAUSE,
    HEADING,
    INSIDE_CHARACTER,
    INSIDE_WORD,
    LINE,
    PARAGRAPH,
    SENTENCE,
    WORD,
    boundary_strengths,
    token_windows,
)


@pytest.fixture(scope="module")
def tokenizer(demo_model):
    return ChunkingTokenizer.load(demo_model)


def _offsets(tokenizer, text: str) -> list[tuple[int, int]]:
    """The window tokenizer's offsets (an array) as pairs, to compare and index."""
    return [(int(a), int(b)) for a, b in tokenizer.encode(text).offsets]


def _count(tokenizer):
    return lambda text: len(tokenizer.encode(text).ids)


def _windows(tokenizer, text: str, max_tokens: int, overlap: int) -> list[str]:
    offsets = _offsets(tokenizer, text)
    spans = token_windows(offsets, max_tokens, overlap, text=text, count_tokens=_count(tokenizer))
    return [text[a:b] for a, b in spans]


def test_boundary_strengths_rank_headings_paragraphs_sentences_and_words(tokenizer) -> None:
    text = "# Title\n\nOne two. Three, four\nfive\n\n## Next\nsix naïveté"
    offsets = _offsets(tokenizer, text)
    strengths = boundary_strengths(text, offsets)
    assert strengths == boundary_strengths(text, np.array(offsets))  # pairs or an array

    def before(word: str) -> int:  # the strength of the cut before a word's first token
        start = text.index(word)
        return strengths[next(i for i, (s, _) in enumerate(offsets) if s == start)]

    assert before("One") == WORD  # right after a heading: keep it with its section
    assert before("Three") == SENTENCE
    assert before("four") == CLAUSE
    assert before("five") == LINE
    assert before("## Next") == HEADING
    assert before("two") == WORD
    assert before(". Three") == INSIDE_WORD and before(", four") == INSIDE_WORD
    assert before("Next") == WORD  # the heading's own line
    assert min(strengths[1:]) == INSIDE_WORD  # naïveté is several word pieces


def test_windows_end_at_the_strongest_boundary_in_their_second_half(tokenizer) -> None:
    paragraph = "The pipeline reads files. It chunks them into windows. Then it embeds them."
    text = f"# Guide\n\n{paragraph}\n\n{paragraph}\n\n## Part two\n\n{paragraph} {paragraph}"
    chunks = _windows(tokenizer, text, 24, 4)
    assert chunks[0] == f"# Guide\n\n{paragraph}"  # ends at the paragraph break
    assert chunks[1].endswith(paragraph)
    assert any(c.startswith("## Part two") for c in chunks)  # a heading starts a window
    assert not any(c.rstrip().endswith("## Part two") for c in chunks)
    for chunk in chunks[:-1]:
        assert chunk.endswith("."), chunk  # every window ends with a sentence


def test_fixed_windows_without_text_and_overlap_within_bounds(tokenizer) -> None:
    words = " ".join(f"w{i}" for i in range(200))
    offsets = _offsets(tokenizer, words)
    fixed = token_windows(offsets, 20, 6)
    starts = [offsets.index(next(o for o in offsets if o[0] == a)) for a, _ in fixed]
    assert all(b - a == 14 for a, b in itertools.pairwise(starts))
    spans = token_windows(offsets, 20, 6, text=words, count_tokens=_count(tokenizer))
    token_starts = [o[0] for o in offsets]
    token_ends = [o[1] for o in offsets]
    for (_a1, b1), (a2, _) in itertools.pairwise(spans):
        stop = token_ends.index(b1) + 1
        shared = stop - token_starts.index(a2)
        assert 3 <= shared <= 6


def test_cjk_emoji_and_right_to_left_text_with_the_demo_model(tokenizer) -> None:
    text = (
        "東京は日本の首都です。大阪も大きな都市です。京都には古い寺がたくさんあります。"
        "😀🎉 Emoji 👋🏽 between words 🇯🇵! "
        "مرحبا بالعالم. كيف حالك اليوم؟ أنا بخير، شكرا. "
        "שלום עולם. מה שלומך? "
        "서울은 한국의 수도입니다. 부산은 항구 도시입니다."
    )
    count = _count(tokenizer)
    offsets = _offsets(tokenizer, text)
    spans = token_windows(offsets, 12, 3, text=text, count_tokens=count)
    assert spans[0][0] == offsets[0][0] and spans[-1][1] == offsets[-1][1]
    covered = set()
    for a, b in spans:
        assert count(text[a:b]) <= 12
        covered |= {i for i, (s, e) in enumerate(offsets) if a <= s and e <= b}
    assert covered == set(range(len(offsets)))  # every token is in a chunk
    chunks = [text[a:b] for a, b in spans]
    assert any(c.endswith("。") for c in chunks) and any(c.endswith("؟") for c in chunks)
    assert not any(c.startswith(("。", "،", "!")) for c in chunks)


def test_random_text_keeps_every_invariant(tokenizer) -> None:
    rnd = random.Random(5)
    pieces = ["word", "naïveté", "東京", "😀", "مرحبا", ".", ",", "\n", "\n\n", "# Head", "x" * 40]
    count = _count(tokenizer)
    for _ in range(40):
        text = " ".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 120)))
        offsets = _offsets(tokenizer, text)
        max_tokens = rnd.randint(1, 30)
        overlap = rnd.randint(0, max_tokens - 1)
        spans = token_windows(offsets, max_tokens, overlap, text=text, count_tokens=count)
        if not offsets:
            assert spans == []
            continue
        assert spans[0][0] == offsets[0][0] and spans[-1][1] == offsets[-1][1]
        assert all(a1 < a2 and b1 < b2 for (a1, b1), (a2, b2) in itertools.pairwise(spans))
        assert all(count(text[a:b]) <= max_tokens for a, b in spans if b - a > 1)
        assert spans == token_windows(offsets, max_tokens, overlap, text=text, count_tokens=count)


def test_a_window_over_the_limit_when_retokenized_is_cut_shorter() -> None:
    text = "aa bb cc dd ee ff gg hh"
    offsets = [(i * 3, i * 3 + 2) for i in range(8)]

    def count(chunk: str) -> int:  # "cc" counts as three tokens
        return sum(3 if w == "cc" else 1 for w in chunk.split())

    spans = token_windows(offsets, 4, 0, text=text, count_tokens=count)
    assert all(count(text[a:b]) <= 4 for a, b in spans)
    assert [text[a:b] for a, b in spans] == ["aa bb", "cc dd", "ee ff gg hh"]


def test_chunks_carry_offsets_and_stable_ids_for_any_script(demo_model) -> None:
    docs = [
        Document(id="ja", text="東京は日本の首都です。大阪も大きな都市です。" * 6),
        Document(id="ar", text="مرحبا بالعالم. كيف حالك اليوم؟ " * 8),
        Document(id="emoji", text="Party 🎉 time 😀! " * 10),
    ]

    def run() -> list[tuple]:
        with TestPipeline() as p:
            chunks = p | beam.Create(docs) | ChunkDocuments(demo_model, ChunkingConfig(16, 4))
            rows = collect(
                chunks.chunks
                | beam.Map(lambda c: (c.document_id, c.index, c.start, c.end, c.text, c.id))
            )
        return sorted(rows)

    rows = run()
    texts = {d.id: d.text for d in docs}
    assert {r[0] for r in rows} == {"ja", "ar", "emoji"}
    for doc_id, _, start, end, chunk_text, _ in rows:
        assert texts[doc_id][start:end] == chunk_text
    assert rows == run()
    assert len({r[5] for r in rows}) == len(rows)


def test_max_tokens_over_the_model_max_length_is_refused(tiny_model) -> None:
    p = TestPipeline()
    with pytest.raises(ConfigError, match=r"chunking.max_tokens=600 is over the max_length=512"):
        _ = (
            p
            | beam.Create([Document("d", "try")])
            | ChunkDocuments(tiny_model, ChunkingConfig(600, 10))
        )


def test_paragraph_breaks_beat_sentence_ends() -> None:
    text = "a b. c d\n\ne f. g h"
    offsets = [(i, i + 1) for i, c in enumerate(text) if c.isalpha()]
    strengths = boundary_strengths(text, offsets)
    assert strengths[2] == SENTENCE and strengths[4] == PARAGRAPH
    assert token_windows(offsets, 6, 0, text=text) == [(0, 8), (10, 18)]


def test_windows_always_move_on_even_when_nothing_fits() -> None:
    text = "aa bb cc dd"
    offsets = [(0, 2), (3, 5), (6, 8), (9, 11)]
    spans = token_windows(offsets, 3, 1, text=text, count_tokens=lambda _: 100)
    assert spans == [(0, 2), (3, 5), (6, 8), (9, 11)]  # one token each, none dropped


# The punctuation of the rules, as escapes for the linter (see transforms.text.chunking).
_SENTENCE_ENDS = ".!?\u2026\u203c\u2047\u2048\u2049\u3002\uff01\uff1f\uff61\u061f\u06d4\u0964\u0965"
_CLOSED_SENTENCE_ENDS = "\u3002\uff01\uff1f\uff61\u2026"
_CLAUSE_ENDS = ",;:\u3001\uff0c\uff1b\uff1a\u060c\u061b"
_CLOSED_CLAUSE_ENDS = "\u3001\uff0c\uff1b\uff1a"
_CLOSERS = "\"')]}\u00bb\u201d\u2019\u300d\u300f\uff09\u3011"


def _one_boundary(text: str, before_end: int, after_start: int) -> int:
    """The strength rules, one boundary at a time: what boundary_strengths
    computes for all the boundaries of a text at once."""

    def heading_at(start: int) -> bool:
        end = start
        while end < len(text) and text[end] == "#" and end - start < 7:
            end += 1
        return 0 < end - start <= 6 and (end == len(text) or text[end] in " \t\r\n")

    def cjk(char: str) -> bool:
        return bool(char) and any(low <= ord(char) <= high for low, high in _CJK_RANGES)

    if after_start < before_end:
        return INSIDE_CHARACTER
    gap = text[before_end:after_start]
    if "\n" in gap:
        if heading_at(after_start):
            return HEADING
        line_start = text.rfind("\n", 0, before_end) + 1
        line = text[line_start:before_end]
        if heading_at(line_start + len(line) - len(line.lstrip(" \t"))):
            return WORD
        strength = PARAGRAPH if gap.count("\n") > 1 else LINE
    elif gap:
        strength = WORD
    elif text[after_start : after_start + 1] in set(_SENTENCE_ENDS + _CLAUSE_ENDS + _CLOSERS):
        return INSIDE_WORD
    else:
        strength = INSIDE_WORD
    end = before_end + len(gap.rstrip())
    last = end - 1
    while last > 0 and text[last] in _CLOSERS and end - last < 3:
        last -= 1
    char = text[last] if 0 <= last < len(text) else ""
    if char and char in _SENTENCE_ENDS and (gap or char in _CLOSED_SENTENCE_ENDS):
        strength = max(strength, SENTENCE)
    elif char and char in _CLAUSE_ENDS and (gap or char in _CLOSED_CLAUSE_ENDS):
        strength = max(strength, CLAUSE)
    if strength == INSIDE_WORD and (
        cjk(text[before_end - 1 : before_end]) or cjk(text[after_start : after_start + 1])
    ):
        strength = WORD
    return strength


def test_boundary_strengths_follow_the_rules_at_every_boundary(tokenizer) -> None:
    rnd = random.Random(11)
    pieces = [
        *(_SENTENCE_ENDS + _CLAUSE_ENDS + _CLOSERS + "ab #"),
        *[" ", "  ", "\t", "\n", "\n\n", "\r\n", "\n  ", "\n# ", "## x", "#######", "\u3000"],
        *["東京", "서울", "ひら", "\U00020000", "😀", "مرحبا", "naïve", "\u200b", "\x85", "\x00"],
    ]
    for _ in range(300):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 80)))
        tokens = _offsets(tokenizer, text)
        arbitrary, at = [], 0  # gaps, overlaps and empty tokens, inside the text
        for _ in range(rnd.randint(0, 40)):
            start = min(len(text), max(0, at + rnd.randint(-2, 4)))
            at = min(len(text), start + rnd.randint(0, 4))
            arbitrary.append((start, at))
        for offsets in (tokens, arbitrary):
            expected = [
                _one_boundary(text, offsets[i - 1][1], offsets[i][0]) if i else 0
                for i in range(len(offsets))
            ]
            assert boundary_strengths(text, offsets) == expected, (text, offsets)
