"""Tokenizing as the model's tokenizer does, with less work where that is provably equal.

Most of what embedding and chunking cost is the tokenizer, and a third of the
tokenizer's time goes into its normaliser, which for BERT-style vocabularies
(the default potion models, the demo model) lowercases, strips accents,
separates CJK characters and removes control characters, keeping an alignment
entry for every character it touches. For a text made only of printable ASCII,
tabs and line breaks, and the common typographic punctuation (dashes, curly
quotes, bullets, ellipses: U+2010-U+2027, U+2030-U+205E), none of that changes
anything but the case of ASCII letters: the same text lowercased by Python and
handed to a copy of the tokenizer without its normaliser gives the same ids and
the same offsets (lowercasing keeps every position). :class:`ExactTokenizer`
takes that path for such texts and the full one for every other text, so its
output is the tokenizer's, always; the tests compare both paths character by
character.

The shortcut is only taken for normalisers it understands (none,
``Lowercase``, ``BertNormalizer``) followed by a pre-tokenizer that treats
tabs and line breaks as spaces (``BertPreTokenizer``, ``Whitespace``,
``WhitespaceSplit``), and never for a text holding an added token (``[CLS]``
and the like, which are matched before normalisation).

For such a text, and a ``WordPiece`` or ``WordLevel`` vocabulary, there is a
second exact shortcut: these models tokenize each pre-token (word or
punctuation mark) on its own, so a stretch of the text that starts and ends
between two pre-tokens tokenizes to the very tokens the whole text has there.
:class:`TokenizedText` answers "the ids of this stretch" from the whole text's
tokens, which is what chunking asks for every window it considers. The same
fact gives the third: with ``BertPreTokenizer`` or ``WhitespaceSplit``, such a
text is tokenized a word at a time from a cache of the words seen before (see
:mod:`transforms.text.words`), and only new words go to the tokenizer.

Cost: checking a text is one regular-expression scan (about 2 microseconds a
KB); the first shortcut saves about 40 % of the tokenizer's CPU time, the
third about 60 % of what is left (measured on the benchmark's corpus: chunking
it went from 16.7 to 6.9 CPU-seconds), the second replaces tokenizing a window
by a substring search.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from transforms.text.words import WordCache, splits_like

__all__ = ["ExactTokenizer", "TokenizedText", "Tokens", "plain_text"]

# Characters the shortcut is exact for (see the module docstring).
_OUTSIDE_SHORTCUT = re.compile(r"[^\t\n\r\x20-\x7e\u2010-\u2027\u2030-\u205e]")
_SHORTCUT_PRE_TOKENIZERS = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})


def plain_text(
    sequence: Any, pair: Any, is_pretokenized: bool, add_special_tokens: bool
) -> str | None:
    """The text of a ``Tokenizer.encode`` call that asks for one plain text
    without special tokens, the only call the shortcuts answer; else ``None``."""
    plain = pair is None and not is_pretokenized and not add_special_tokens
    return sequence if plain and isinstance(sequence, str) else None


def _continuation_mask(spec: dict[str, Any]) -> np.ndarray | None:
    """Which ids continue a word (``##ing``), for models that tokenize each
    pre-token on its own; ``None`` for the other models."""
    model = spec.get("model") or {}
    vocab: dict[str, int] = model.get("vocab") or {}
    if model.get("type") not in ("WordPiece", "WordLevel") or not isinstance(vocab, dict):
        return None
    size = 1 + max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))], default=0)
    mask = np.zeros(size, dtype=bool)
    prefix = model.get("continuing_subword_prefix") if model["type"] == "WordPiece" else None
    if prefix:
        for token, token_id in vocab.items():
            if token.startswith(prefix):
                mask[token_id] = True
    return mask


def _shortcut(tokenizer: Any, spec: dict[str, Any]) -> tuple[Any, bool, tuple[str, ...]] | None:
    """A copy of the tokenizer without its normaliser, whether to lowercase,
    and the added tokens; ``None`` when the shortcut would not be exact for
    this tokenizer (whose ``tokenizer.json`` is ``spec``)."""
    normalizer = spec.get("normalizer")
    pre_tokenizer = spec.get("pre_tokenizer") or {}
    if pre_tokenizer.get("type") not in _SHORTCUT_PRE_TOKENIZERS:
        return None
    if normalizer is None:
        lowercase = False
    elif normalizer.get("type") == "Lowercase":
        lowercase = True
    elif normalizer.get("type") == "BertNormalizer":
        lowercase = bool(normalizer.get("lowercase", True))
    else:
        return None
    bare = copy.deepcopy(tokenizer)
    bare.normalizer = None
    added = tuple(token["content"] for token in spec.get("added_tokens", []) if token["content"])
    return bare, lowercase, added


class ExactTokenizer:
    """A ``tokenizers.Tokenizer`` that skips its normaliser where that changes nothing.

    ``encode`` and ``encode_batch_fast`` return what the wrapped tokenizer's
    methods of the same names return (ids, offsets, truncation); the wrapped
    tokenizer itself is :attr:`tokenizer`. Thread-safe, like the tokenizer.

    Args:
      tokenizer: The tokenizer to follow; its settings (truncation, padding)
        are copied once, here, and never changed.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        spec = json.loads(tokenizer.to_str())
        self._shortcut = _shortcut(tokenizer, spec)
        self._continuation = None if self._shortcut is None else _continuation_mask(spec)
        self._words: WordCache | None = None
        if self._shortcut is not None and splits_like(spec):
            whole_words = self._shortcut[0]
            if tokenizer.truncation is not None or tokenizer.padding is not None:
                whole_words = copy.deepcopy(whole_words)
                whole_words.no_truncation()
                whole_words.no_padding()
            self._words = WordCache(whole_words, spec["pre_tokenizer"]["type"])
        # The cache's ids are cut as the tokenizer cuts a single text: to its
        # first max_length tokens (cut from the left, they go to the tokenizer).
        truncation = tokenizer.truncation
        self._keep = None if truncation is None else int(truncation["max_length"])
        self._ids_from_words = self._words is not None and (
            truncation is None or truncation["direction"] == "right"
        )

    @property
    def tokenizer(self) -> Any:
        """The wrapped tokenizer."""
        return self._tokenizer

    @property
    def has_shortcut(self) -> bool:
        """Whether some texts can skip the normaliser (it depends on the tokenizer)."""
        return self._shortcut is not None

    def shortcut_text(self, text: str) -> str | None:
        """What the tokenizer without its normaliser is given for ``text``, or
        ``None`` when ``text`` must go through the whole tokenizer."""
        if self._shortcut is None or _OUTSIDE_SHORTCUT.search(text) is not None:
            return None
        _, lowercase, added = self._shortcut
        if any(token in text for token in added):
            return None
        return text.lower() if lowercase else text

    def encode(
        self,
        sequence: Any,
        pair: Any = None,
        is_pretokenized: bool = False,
        add_special_tokens: bool = True,
    ) -> Any:
        """``Tokenizer.encode``; a single text without special tokens may take the shortcut."""
        plain = plain_text(sequence, pair, is_pretokenized, add_special_tokens)
        if plain is not None and self._shortcut is not None:
            text = self.shortcut_text(plain)
            if text is not None:
                return self._shortcut[0].encode(text, add_special_tokens=False)
        return self._tokenizer.encode(sequence, pair, is_pretokenized, add_special_tokens)

    def tokenize_text(self, text: str) -> tuple[Tokens, TokenizedText | None]:
        """``encode(text, add_special_tokens=False)``'s ids and offsets, as
        arrays, and, where the second shortcut is exact for the text, its
        tokens to answer for its stretches."""
        short = self.shortcut_text(text)
        if short is None or self._shortcut is None:
            return Tokens.of(self._tokenizer.encode(text, add_special_tokens=False)), None
        if self._words is not None and self._tokenizer.truncation is None:
            tokens = Tokens(*self._words.tokenize(short))
        else:
            tokens = Tokens.of(self._shortcut[0].encode(short, add_special_tokens=False))
        if self._continuation is None or self._tokenizer.truncation is not None:
            return tokens, None
        return tokens, TokenizedText(text, tokens, self._continuation)

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray | list[int]]:
        """Each text's ids as ``encode_batch_fast(texts, add_special_tokens=False)``
        gives them, truncation included."""
        found: list[np.ndarray | list[int]] = [[] for _ in texts]
        others: list[int] = []
        for i, text in enumerate(texts):
            short = self.shortcut_text(text) if self._ids_from_words else None
            if short is None:
                others.append(i)
                continue
            assert self._words is not None
            found[i] = self._words.ids(short)[: self._keep]
        if others:
            encodings = self.encode_batch_fast([texts[i] for i in others], add_special_tokens=False)
            for i, encoding in zip(others, encodings, strict=True):
                found[i] = encoding.ids
        return found

    def encode_batch_fast(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[Any]:
        """``Tokenizer.encode_batch_fast`` (no offsets), in at most two tokenizer calls."""
        if self._shortcut is None or add_special_tokens:
            return list(self._tokenizer.encode_batch_fast(list(texts), add_special_tokens))
        shortcut: list[str] = []
        shortcut_at: list[int] = []
        whole: list[str] = []
        whole_at: list[int] = []
        for i, text in enumerate(texts):
            short = self.shortcut_text(text)
            if short is None:
                whole.append(text)
                whole_at.append(i)
            else:
                shortcut.append(short)
                shortcut_at.append(i)
        encodings: list[Any] = [None] * len(texts)
        if shortcut:
            found = self._shortcut[0].encode_batch_fast(shortcut, add_special_tokens=False)
            for i, encoding in zip(shortcut_at, found, strict=True):
                encodings[i] = encoding
        if whole:
            found = self._tokenizer.encode_batch_fast(whole, add_special_tokens=False)
            for i, encoding in zip(whole_at, found, strict=True):
                encodings[i] = encoding
        return encodings


class Tokens:
    """A text's token ids (``int32``) and ``(start, end)`` character offsets
    (``int64``, shape ``(n, 2)``), as arrays."""

    __slots__ = ("ids", "offsets")

    def __init__(self, ids: np.ndarray, offsets: np.ndarray) -> None:
        self.ids = ids
        self.offsets = offsets

    @classmethod
    def of(cls, encoding: Any) -> Tokens:
        """The tokens of a ``tokenizers.Encoding``."""
        offsets = np.array(encoding.offsets, np.int64).reshape(-1, 2)
        return cls(np.array(encoding.ids, np.int32), offsets)

    def __len__(self) -> int:
        return len(self.ids)


class TokenizedText:
    """A text and its tokens, answering for the ids of its stretches.

    Made by :meth:`ExactTokenizer.tokenize_text` for texts where it is exact:
    a stretch that starts at a token's start, ends at a token's end, and cuts
    no word in pieces (neither its first token nor the one after its last
    continues a word) tokenizes, on its own, to the tokens between.
    """

    __slots__ = ("_continuation", "_ends", "_hint", "_starts", "_tokens", "text")

    def __init__(self, text: str, tokens: Tokens, continuation: np.ndarray) -> None:
        self.text = text
        self._tokens = tokens
        self._starts = np.ascontiguousarray(tokens.offsets[:, 0])
        self._ends = np.ascontiguousarray(tokens.offsets[:, 1])
        self._continuation = continuation
        self._hint = 0

    @property
    def ids(self) -> np.ndarray:
        """The whole text's ids, as ``int32``."""
        return self._tokens.ids

    def stretch_ids(self, stretch: str) -> np.ndarray | None:
        """The ids ``stretch`` tokenizes to, if it is a clean stretch of the text.

        Stretches are looked for from where the last one was found (chunking
        asks for windows in order), then from the start.

        Returns:
          The ids, or ``None`` when ``stretch`` is not a stretch of the text
          that starts and ends between words (then tokenize it).
        """
        if not stretch:
            return None
        at = self.text.find(stretch, self._hint)
        if at < 0:
            at = self.text.find(stretch)
            if at < 0:
                return None
        end = at + len(stretch)
        ids = self._tokens.ids
        first = int(np.searchsorted(self._starts, at))
        last = int(np.searchsorted(self._ends, end))
        if last < first or last >= len(ids) or self._starts[first] != at or self._ends[last] != end:
            return None
        if self._continues(ids[first]) or (last + 1 < len(ids) and self._continues(ids[last + 1])):
            return None
        self._hint = at
        return ids[first : last + 1]

    def _continues(self, token_id: int) -> bool:
        return bool(token_id < len(self._continuation) and self._continuation[token_id])
