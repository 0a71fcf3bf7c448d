"""The embedder's tokenizing shortcuts give the tokenizer's own output, always.

ExactTokenizer skips the normaliser for texts it is a no-op on (but for case);
the window tokenizer remembers the windows chunking counted, and embedding
reuses their ids. Both are checked here against the plain tokenizer and
StaticModel.encode, character by character and on real text.
"""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from model2vec import StaticModel
from tokenizers import Tokenizer

from transforms import model as model_module
from transforms.model import StaticEmbedder
from transforms.tokenizing import ExactTokenizer


def _same(plain: Tokenizer, exact: ExactTokenizer, text: str) -> None:
    want = plain.encode(text, add_special_tokens=False)
    got = exact.encode(text, add_special_tokens=False)
    assert got.ids == want.ids, text
    assert got.offsets == want.offsets, text


# Every character of the shortcut, and neighbours that must not take it.
SHORTCUT_CHARS = (
    string.printable
    + "".join(map(chr, range(0x2010, 0x2028)))
    + "".join(map(chr, range(0x2030, 0x205F)))
)
OTHER_CHARS = "éÉßİΣς°µ\u00ad\u200b\u202e\u3000中文\uff46\x00\x07\x7f\u0301\u2000\u2028\u205f"


@pytest.mark.parametrize("chars", [SHORTCUT_CHARS, OTHER_CHARS], ids=["shortcut", "others"])
def test_every_character_in_every_position_tokenizes_as_the_tokenizer(
    demo_tokenizer, chars
) -> None:
    exact = ExactTokenizer(demo_tokenizer)
    assert exact.has_shortcut
    for c in chars:
        for text in (c, f"Ab{c}cD", f"word {c} Word", f"{c}{c}x{c}", f"THE{c}\n{c}end."):
            _same(demo_tokenizer, exact, text)


def test_real_text_and_added_tokens_tokenize_as_the_tokenizer(demo_tokenizer) -> None:
    from pydoc_data.topics import topics

    exact = ExactTokenizer(demo_tokenizer)
    texts = [
        *list(topics.values())[:40],
        "Use [UNK] and [PAD] as the model does, not [CLS].",
        "[unk] lower case is not a special token",
        "Tabs\tand\r\nline breaks\x0bvertical tab",
    ]
    taken = sum(exact.shortcut_text(t) is not None for t in texts)
    assert 0 < taken < len(texts)  # both paths are exercised
    assert exact.shortcut_text(texts[-3]) is None  # holds an added token
    for text in texts:
        _same(demo_tokenizer, exact, text)
    want = [e.ids for e in demo_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    got = [e.ids for e in exact.encode_batch_fast(texts, add_special_tokens=False)]
    assert got == want


def test_the_shortcut_keeps_truncation_and_special_tokens(demo_tokenizer) -> None:
    truncating = Tokenizer.from_str(demo_tokenizer.to_str())
    truncating.enable_truncation(8)
    exact = ExactTokenizer(truncating)
    text = "One two three four five six seven eight nine ten eleven"
    assert (
        exact.encode(text, add_special_tokens=False).ids
        == truncating.encode(text, add_special_tokens=False).ids
    )
    assert len(exact.encode_batch_fast([text], add_special_tokens=False)[0].ids) == 8
    # With special tokens the whole tokenizer runs.
    assert exact.encode(text).ids == truncating.encode(text).ids


def test_word_level_lowercase_model_and_unknown_normalisers(tiny_model) -> None:
    tokenizer = Tokenizer.from_file(f"{tiny_model}/tokenizer.json")
    exact = ExactTokenizer(tokenizer)
    assert exact.has_shortcut  # Lowercase + Whitespace
    for text in ("How DO I catch an Exception?", "ÉTÉ loops", "for\titem in ITEMS"):
        _same(tokenizer, exact, text)
    spec = json.loads(tokenizer.to_str())
    spec["normalizer"] = {"type": "NFKC"}
    other = ExactTokenizer(Tokenizer.from_str(json.dumps(spec)))
    assert not other.has_shortcut and other.shortcut_text("abc") is None


def test_embedding_reuses_the_windows_chunking_counted(demo_model, monkeypatch) -> None:
    embedder = StaticEmbedder.load(demo_model)
    texts = ["How do I catch an exception?", "Loops “over” lists — and more…", "Übergröße"]
    for text in texts:  # what chunking does when it counts a window's tokens
        embedder.window_tokenizer.encode(text, add_special_tokens=False)
    calls: list[list[str]] = []
    original = embedder._tokenizer.token_ids

    def counting(batch):
        calls.append(list(batch))
        return original(batch)

    monkeypatch.setattr(embedder._tokenizer, "token_ids", counting)
    got = embedder.embed([*texts, "a text never counted"])
    assert calls == [["a text never counted"]]  # only the new text was tokenized
    expected = StaticModel.from_pretrained(demo_model, force_download=False).encode(
        [*texts, "a text never counted"]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_remembered_windows_are_bounded_and_long_texts_are_not_kept(
    demo_model, monkeypatch
) -> None:
    monkeypatch.setattr(model_module, "_REMEMBERED_TEXTS", 3)
    embedder = StaticEmbedder.load(demo_model)
    window = embedder.window_tokenizer
    for i in range(5):
        window.encode(f"text number {i}", add_special_tokens=False)
    assert window.recall("text number 0") is None and window.recall("text number 1") is None
    assert window.recall("text number 4") is not None
    window.encode("word " * 600, add_special_tokens=False)  # over the model's max_length
    assert window.recall("word " * 600) is None
    window.encode("with special tokens")  # not what chunking counts
    assert window.recall("with special tokens") is None


def test_stretches_of_a_document_are_answered_from_its_tokens(demo_tokenizer) -> None:
    exact = ExactTokenizer(demo_tokenizer)
    text = "Tokenization helps. Unbelievably fast tokenizers (rust-based) split words: 42 times!"
    tokens, tokenized = exact.tokenize_text(text)
    assert tokenized is not None
    assert tokens.ids.tolist() == demo_tokenizer.encode(text, add_special_tokens=False).ids
    offsets = tokens.offsets.tolist()
    answered = 0
    for first in range(len(offsets)):
        for last in range(first, len(offsets)):
            stretch = text[offsets[first][0] : offsets[last][1]]
            want = demo_tokenizer.encode(stretch, add_special_tokens=False).ids
            got = tokenized.stretch_ids(stretch)
            if got is not None:  # answered only where exact; else the caller tokenizes
                assert got.tolist() == want, stretch
                answered += 1
    assert answered > len(offsets)  # most stretches cut between words
    assert tokenized.stretch_ids("ization helps") is None  # starts inside a word
    assert tokenized.stretch_ids("Tokenization help") is None  # ends inside a word
    assert tokenized.stretch_ids("not in the text") is None


def test_no_stretches_where_they_would_not_be_exact(demo_tokenizer) -> None:
    exact = ExactTokenizer(demo_tokenizer)
    assert exact.tokenize_text("Übergröße ist groß")[1] is None  # outside the shortcut's characters
    truncating = Tokenizer.from_str(demo_tokenizer.to_str())
    truncating.enable_truncation(4)
    assert ExactTokenizer(truncating).tokenize_text("one two three four five six")[1] is None
    spec = json.loads(demo_tokenizer.to_str())
    spec["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "\u2581",
        "prepend_scheme": "always",
    }
    assert ExactTokenizer(Tokenizer.from_str(json.dumps(spec))).tokenize_text("a b")[1] is None


def test_chunking_counts_and_embeds_exactly_with_the_window_tokenizer(
    demo_model, monkeypatch
) -> None:
    from pydoc_data.topics import topics

    from transforms.chunking import _ChunkDocumentsFn
    from transforms.config import ChunkingConfig
    from transforms.types import Chunk, Document

    plain = Tokenizer.from_file(f"{demo_model}/tokenizer.json")
    plain.no_truncation()
    plain.no_padding()
    fn = _ChunkDocumentsFn(demo_model, ChunkingConfig(48, 8))
    fn.setup()
    assert fn._embedder is not None
    window = fn._embedder.window_tokenizer
    counted: list[tuple[str, list[int]]] = []
    encode = window.encode

    def checking(text, *args, **kwargs):
        got = encode(text, *args, **kwargs)
        counted.append((text, list(got.ids)))
        return got

    monkeypatch.setattr(window, "encode", checking)  # the process's shared model: undone after
    documents = [Document(name, text) for name, text in sorted(topics.items())[:25]]
    chunks = [c for d in documents for c in fn.process(d) if isinstance(c, Chunk)]
    assert len(counted) > 2 * len(documents)
    for text, ids in counted:
        assert ids == plain.encode(text, add_special_tokens=False).ids, text[:60]
    expected = StaticModel.from_pretrained(demo_model, force_download=False).encode(
        [c.text for c in chunks]
    )
    np.testing.assert_allclose(fn._embedder.embed([c.text for c in chunks]), expected, atol=1e-6)
