"""Tokenizing word by word from the cache gives the tokenizer's ids and offsets, always."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from tests.test_embed_tokenizing import OTHER_CHARS, SHORTCUT_CHARS
from transforms.text.tokenizing import ExactTokenizer
from transforms.text.words import WordCache, splits_like


def _with(tokenizer: Tokenizer, **changes) -> Tokenizer:
    spec = json.loads(tokenizer.to_str())
    spec.update(changes)
    return Tokenizer.from_str(json.dumps(spec))


def _texts() -> list[str]:
    from pydoc_data.topics import topics

    texts = [
        f"{a}{c}{b}"
        for c in SHORTCUT_CHARS + OTHER_CHARS
        for a, b in (("", ""), ("Ab", "cD"), ("word ", " Word"), ("THE", "\nend."), (c, "x" + c))
    ]
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 3  # over 100 characters: [UNK]
    return [*texts, *topics.values(), long_word, f"{long_word}, again", "", "   ", "\n\t"]


def _assert_same(plain: Tokenizer, exact: ExactTokenizer, texts: list[str]) -> int:
    """Checks tokenize_text and token_ids against the tokenizer; returns how
    many texts took the cache."""
    cached = 0
    for text in texts:
        want = plain.encode(text, add_special_tokens=False)
        tokens, _ = exact.tokenize_text(text)
        assert tokens.ids.tolist() == want.ids, text
        assert [tuple(o) for o in tokens.offsets.tolist()] == want.offsets, text
        cached += exact.shortcut_text(text) is not None
    want_ids = [e.ids for e in plain.encode_batch_fast(texts, add_special_tokens=False)]
    assert [list(ids) for ids in exact.token_ids(texts)] == want_ids
    return cached


@pytest.mark.parametrize("pre_tokenizer", ["BertPreTokenizer", "WhitespaceSplit"])
def test_every_character_and_real_text_tokenize_as_the_tokenizer(
    demo_tokenizer, pre_tokenizer
) -> None:
    plain = _with(demo_tokenizer, pre_tokenizer={"type": pre_tokenizer})
    exact = ExactTokenizer(plain)
    assert exact._words is not None  # the cache is what is tested here
    texts = _texts()
    cached = _assert_same(plain, exact, texts)
    assert 0.5 * len(texts) < cached < len(texts)
    # Again, from a warm cache.
    _assert_same(plain, exact, texts[::-1])


def test_a_full_cache_forgets_and_stays_exact(demo_tokenizer) -> None:
    bare = _with(demo_tokenizer, normalizer=None)
    words = WordCache(bare, "BertPreTokenizer", max_words=20)
    for text in ("the quick brown fox jumps over the lazy dog. " * 3, "x" * 30, "a, b; c: d!"):
        text = text.lower()
        ids, offsets = words.tokenize(text)
        want = bare.encode(text, add_special_tokens=False)
        assert ids.tolist() == want.ids and [tuple(o) for o in offsets.tolist()] == want.offsets
        assert np.array_equal(words.ids(text), ids)
        assert len(words._index) <= 20


def test_cached_ids_are_truncated_as_the_tokenizer_truncates(demo_tokenizer) -> None:
    truncating = Tokenizer.from_str(demo_tokenizer.to_str())
    truncating.enable_truncation(8)
    exact = ExactTokenizer(truncating)
    texts = ["One two three four five six seven eight nine ten eleven", "short one", ""]
    want = [e.ids for e in truncating.encode_batch_fast(texts, add_special_tokens=False)]
    assert [list(ids) for ids in exact.token_ids(texts)] == want
    truncating.enable_truncation(8, direction="left")
    exact = ExactTokenizer(truncating)
    want = [e.ids for e in truncating.encode_batch_fast(texts, add_special_tokens=False)]
    assert [list(ids) for ids in exact.token_ids(texts)] == want


def test_only_tokenizers_that_never_look_across_words_take_the_cache(
    demo_tokenizer, tiny_model
) -> None:
    spec = json.loads(demo_tokenizer.to_str())
    assert splits_like(spec)
    assert not splits_like({**spec, "pre_tokenizer": {"type": "Whitespace"}})
    assert not splits_like({**spec, "model": {**spec["model"], "type": "BPE"}})
    # The tiny model (Whitespace pre-tokenizer) goes through the tokenizer, exactly.
    tiny = Tokenizer.from_file(f"{tiny_model}/tokenizer.json")
    exact = ExactTokenizer(tiny)
    assert exact._words is None
    _assert_same(tiny, exact, ["How DO I catch an Exception?", "for\titem in ITEMS", "‿x‿"])
