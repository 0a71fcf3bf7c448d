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

from transforms.embedding.model import StaticEmbedder
from transforms.text import ChunkingTokenizer, chunk_document
from transforms.text.tokenizing import ExactTokenizer
from transforms.types import TokenIds


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


def test_embedding_takes_the_ids_chunking_counted_and_tokenizes_the_rest(
    demo_model, monkeypatch
) -> None:
    embedder = StaticEmbedder.load(demo_model)
    chunking = ChunkingTokenizer.load(demo_model)
    texts = ["How do I catch an exception?", "Loops “over” lists — and more…", "Übergröße"]
    known = [TokenIds(chunking.fingerprint, chunking.token_ids(text)) for text in texts]
    long_text = "word " * 600  # over max_length: encode truncates, so its ids are not taken
    known.append(TokenIds(chunking.fingerprint, chunking.token_ids(long_text)))
    calls: list[list[str]] = []
    original = embedder._tokenizer.token_ids

    def counting(batch):
        calls.append(list(batch))
        return original(batch)

    monkeypatch.setattr(embedder._tokenizer, "token_ids", counting)
    all_texts = [*texts, long_text, "a text never counted"]
    got = embedder.embed(all_texts, [*known, None])
    assert [len(batch) for batch in calls] == [2]  # the long text and the new one
    assert calls[0][1] == "a text never counted"
    expected = StaticModel.from_pretrained(demo_model, force_download=False).encode(all_texts)
    np.testing.assert_allclose(got, expected, atol=1e-6)


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


def test_chunking_counts_and_embeds_exactly_with_the_chunking_tokenizer(demo_model) -> None:
    from pydoc_data.topics import topics

    from transforms.config import ChunkingConfig
    from transforms.types import Document

    plain = Tokenizer.from_file(f"{demo_model}/tokenizer.json")
    plain.no_truncation()
    plain.no_padding()
    tokenizer = ChunkingTokenizer.load(demo_model)
    documents = [Document(name, text) for name, text in sorted(topics.items())[:25]]
    chunks = [c for d in documents for c in chunk_document(d, tokenizer, ChunkingConfig(48, 8))]
    assert len(chunks) > 2 * len(documents)
    for chunk in chunks:
        assert chunk.token_ids is not None and chunk.token_ids.tokenizer == tokenizer.fingerprint
        want = plain.encode(chunk.text, add_special_tokens=False).ids
        assert chunk.token_ids.ids.tolist() == want, chunk.text[:60]
        assert len(want) <= 48
    expected = StaticModel.from_pretrained(demo_model, force_download=False).encode(
        [c.text for c in chunks]
    )
    embedder = StaticEmbedder.load(demo_model)
    got = embedder.embed([c.text for c in chunks], [c.token_ids for c in chunks])
    np.testing.assert_allclose(got, expected, atol=1e-6)
