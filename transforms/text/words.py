"""Tokenizing word by word from a cache, for tokenizers that never look across words.

A WordPiece or WordLevel model tokenizes each pre-token (a word, or a
punctuation mark) on its own, so a text's tokens are its words' tokens, end to
end. A corpus repeats its words (a few thousand make up most of any text), and
the tokenizer spends most of its time (about 1.5 microseconds a token, with
offsets) re-tokenizing the same ones. :class:`WordCache` splits a text into
words as the pre-tokenizer does (one regular expression, in C), looks each word
up in a dictionary, asks the tokenizer only for the words it has not seen, and
assembles ids and character offsets with a few numpy operations per text:
about a third of the tokenizer's time, and the very same output (the tests
compare them on every character of the alphabet and on real text).

Only texts of the tokenizing shortcut's alphabet come here (printable ASCII,
tabs and line breaks, common typographic punctuation; see
:mod:`transforms.text.tokenizing`), already lowercased where the model lowercases,
so that splitting needs to know nothing about the rest of Unicode. Every word
is tokenized by the tokenizer itself, so the splitting only has to never cut
inside one of the pre-tokenizer's words; a cut it missed would only cost a
cache entry.
"""

from __future__ import annotations

import re
import string
import threading
import unicodedata
from typing import Any

import numpy as np

__all__ = ["WordCache", "splits_like"]

# The shortcut's alphabet beyond ASCII; see transforms.text.tokenizing.
_TYPOGRAPHIC = [chr(c) for c in (*range(0x2010, 0x2028), *range(0x2030, 0x205F))]
_SPACES = "\t\n\r "  # the only whitespace in the alphabet (char::is_whitespace)
# BertPreTokenizer isolates ASCII punctuation and Unicode category P.
_BERT_PUNCTUATION = string.punctuation + "".join(
    c for c in _TYPOGRAPHIC if unicodedata.category(c).startswith("P")
)

_SPACE, _ISOLATED, _WORD = 0, 1, 2


def _splitter(isolated: str) -> tuple[re.Pattern[str], np.ndarray]:
    """The pattern that finds the words, and the class of each character (by
    code point) that tells where they start."""
    if isolated:
        escaped = re.escape(isolated)
        pattern = re.compile(f"[^{re.escape(_SPACES)}{escaped}]+|[{escaped}]")
    else:
        pattern = re.compile(f"[^{re.escape(_SPACES)}]+")
    classes = np.full(0x2060, _WORD, np.uint8)
    classes[[ord(c) for c in _SPACES]] = _SPACE
    classes[[ord(c) for c in isolated]] = _ISOLATED
    return pattern, classes


# Pre-tokenizers whose words the splitter finds exactly, within the alphabet:
# the characters each one isolates.
_SPLITTERS = {"BertPreTokenizer": _BERT_PUNCTUATION, "WhitespaceSplit": ""}


def splits_like(spec: dict[str, Any]) -> bool:
    """Whether :class:`WordCache` tokenizes exactly as the tokenizer of this
    ``tokenizer.json`` (without its normaliser) does."""
    pre_tokenizer = (spec.get("pre_tokenizer") or {}).get("type")
    model = (spec.get("model") or {}).get("type")
    return pre_tokenizer in _SPLITTERS and model in ("WordPiece", "WordLevel")


class _Column:
    """A growable numpy array."""

    def __init__(self, dtype: type) -> None:
        self.values: np.ndarray = np.zeros(1024, dtype)
        self.size = 0

    def extend(self, values: list[int]) -> None:
        end = self.size + len(values)
        if end > len(self.values):
            self.values = np.resize(self.values, max(end, 2 * len(self.values)))
        self.values[self.size : end] = values
        self.size = end


class WordCache:
    """Tokenizes texts a word at a time, asking the tokenizer once per distinct word.

    Thread-safe. Holds at most ``max_words`` words (about 300 bytes each,
    measured with words of five pieces: 30 MB when full), forgetting all of
    them when full: a corpus whose words never repeat costs what the
    tokenizer costs, not memory.

    Args:
      tokenizer: The ``tokenizers.Tokenizer`` to follow, without normaliser
        and without truncation; its pre-tokenizer and model must pass
        :func:`splits_like`.
      pre_tokenizer: The tokenizer's pre-tokenizer type.
      max_words: How many words to remember.
    """

    def __init__(self, tokenizer: Any, pre_tokenizer: str, max_words: int = 100_000) -> None:
        self._tokenizer = tokenizer
        self._pattern, self._classes = _splitter(_SPLITTERS[pre_tokenizer])
        self._max_words = max_words
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._index: dict[str, int] = {}  # word -> its number
        self._first = _Column(np.int64)  # each word's first token, in the columns below
        self._first.extend([0])
        self._ids = _Column(np.int32)
        self._starts = _Column(np.int64)  # token offsets within the word
        self._ends = _Column(np.int64)

    def ids(self, text: str) -> np.ndarray:
        """The ids (``int32``) of ``text``'s tokens.

        Args:
          text: A text of the shortcut's alphabet, as the tokenizer's model
            sees it (lowercased where the normaliser lowercases).
        """
        return self._tokens(text, offsets=False)[0]

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The ids (``int32``) and ``(start, end)`` character offsets
        (``int64``, shape ``(n, 2)``) of ``text``'s tokens; see :meth:`ids`."""
        ids, offsets = self._tokens(text, offsets=True)
        assert offsets is not None
        return ids, offsets

    def _tokens(self, text: str, offsets: bool) -> tuple[np.ndarray, np.ndarray | None]:
        words = self._pattern.findall(text)
        with self._lock:
            known = list(map(self._index.get, words))
            numbers = self._learn(words) if None in known else known
            first = self._first.values
            token_ids, starts, ends = self._ids.values, self._starts.values, self._ends.values
        word = np.array(numbers, np.int64)
        begin, counts = first[word], first[word + 1] - first[word]
        total = int(counts.sum())
        # Token k of the text is token (k - the text's tokens before its word) of its word.
        at = np.repeat(begin - (np.cumsum(counts) - counts), counts) + np.arange(total)
        if not offsets:
            return token_ids[at], None
        offset = np.repeat(self._word_starts(text, len(words)), counts)
        found = np.empty((total, 2), np.int64)
        np.add(offset, starts[at], out=found[:, 0])
        np.add(offset, ends[at], out=found[:, 1])
        return token_ids[at], found

    def _learn(self, words: list[str]) -> list[int]:
        """Tokenizes the words not seen yet; returns every word's number."""
        new = [w for w in dict.fromkeys(words) if w not in self._index]
        if len(self._index) + len(new) > self._max_words:
            self._clear()
            new = list(dict.fromkeys(words))
        for word, encoding in zip(
            new, self._tokenizer.encode_batch(new, add_special_tokens=False), strict=True
        ):
            self._index[word] = len(self._index)
            self._ids.extend(encoding.ids)
            self._starts.extend([start for start, _ in encoding.offsets])
            self._ends.extend([end for _, end in encoding.offsets])
            self._first.extend([self._ids.size])
        return [self._index[w] for w in words]

    def _word_starts(self, text: str, words: int) -> np.ndarray:
        """Where each word starts: at an isolated character, or at a word
        character after a space or an isolated one."""
        codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
        kind = self._classes[codes]
        starts = kind == _ISOLATED
        starts[0:1] |= kind[0:1] == _WORD
        starts[1:] |= (kind[1:] == _WORD) & (kind[:-1] != _WORD)
        found = np.flatnonzero(starts)
        if len(found) != words:  # the pattern and the table disagree: a bug, not bad input
            raise AssertionError(f"found {len(found)} word starts for {words} words")
        return found
