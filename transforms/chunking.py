"""ChunkDocuments: token windows with overlap that prefer to end where the text does.

Counting tokens with the tokenizer that will embed the text means no chunk is
silently truncated by the model: every chunk has at most ``max_tokens`` tokens
when its own text is tokenized again, and ``max_tokens`` may not exceed the
model's ``max_length``. Within that limit a window ends at the strongest
boundary it can find in its second half: before a Markdown heading, then at a
paragraph break, a sentence end, a line break, a clause, a word, and only when
nothing else is there, inside a word. The next window starts at the strongest
boundary inside the overlap. Sentence ends and clauses are recognised in Latin,
CJK, Arabic and Devanagari punctuation; between CJK characters every character
is a word.

Chunk ids are deterministic (see :func:`transforms.types.chunk_id`): the same
document, tokenizer and settings always give the same chunks, so a re-run
rewrites the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from transforms import metrics
from transforms.config import ChunkingConfig, ConfigError
from transforms.model import StaticEmbedder, acquire_embedder
from transforms.types import Chunk, DeadLetter, Document, chunk_id

__all__ = ["CHUNKS", "ChunkDocuments", "boundary_strengths", "check_max_tokens", "token_windows"]

CHUNKS = "chunks"
DEAD_LETTERS = "dead_letters"

# How good a place to cut a boundary between two tokens is; higher is better.
HEADING = 6
PARAGRAPH = 5
SENTENCE = 4
LINE = 3
CLAUSE = 2
WORD = 1
INSIDE_WORD = 0
INSIDE_CHARACTER = -1
"""Two tokens of one character (byte-level BPE): cut only when nothing else fits."""

# Written as escapes, for the linter; they are: . ! ? … ‼ ⁇ ⁈ ⁉ and the CJK,
# fullwidth, Arabic and Devanagari sentence ends.
_SENTENCE_ENDS = frozenset(
    ".!?\u2026\u203c\u2047\u2048\u2049\u3002\uff01\uff1f\uff61\u061f\u06d4\u0964\u0965"
)
_CLOSED_SENTENCE_ENDS = frozenset("\u3002\uff01\uff1f\uff61\u2026")  # no space needed after them
_CLAUSE_ENDS = frozenset(",;:\u3001\uff0c\uff1b\uff1a\u060c\u061b")
_CLOSED_CLAUSE_ENDS = frozenset("\u3001\uff0c\uff1b\uff1a")
# Quotes and brackets that may close a sentence after its end.
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019\u300d\u300f\uff09\u3011")
_ATTACHED = _SENTENCE_ENDS | _CLAUSE_ENDS | _CLOSERS


def _is_cjk(char: str) -> bool:
    """Whether the character is written without spaces between words."""
    if not char:
        return False
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # kana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B and later
    )


def _is_heading_at(text: str, start: int) -> bool:
    """Whether a Markdown ATX heading (``# Title``) starts at ``start``."""
    end = start
    while end < len(text) and text[end] == "#" and end - start < 7:
        end += 1
    return 0 < end - start <= 6 and (end == len(text) or text[end] in " \t\r\n")


def _strength(text: str, before_end: int, after_start: int) -> int:
    """How good a cut is between a token ending at ``before_end`` and the next
    one, starting at ``after_start``."""
    if after_start < before_end:
        return INSIDE_CHARACTER
    gap = text[before_end:after_start]
    newlines = gap.count("\n")
    if newlines:
        if _is_heading_at(text, after_start):
            return HEADING
        line_start = text.rfind("\n", 0, before_end) + 1
        line = text[line_start:before_end]
        if _is_heading_at(text, line_start + len(line) - len(line.lstrip(" \t"))):
            return WORD  # right after a heading: keep it with its section
        strength = PARAGRAPH if newlines > 1 else LINE
    elif gap:
        strength = WORD
    elif text[after_start : after_start + 1] in _ATTACHED:
        return INSIDE_WORD  # never start a window with the punctuation that ends the last
    else:
        strength = INSIDE_WORD
    # The last visible character before the cut: the end of the earlier token,
    # or punctuation between the tokens that the tokenizer left out.
    end = before_end + len(gap.rstrip())
    last = end - 1
    while last > 0 and text[last] in _CLOSERS and end - last < 3:
        last -= 1
    char = text[last] if 0 <= last < len(text) else ""
    if char in _SENTENCE_ENDS and (gap or char in _CLOSED_SENTENCE_ENDS):
        strength = max(strength, SENTENCE)
    elif char in _CLAUSE_ENDS and (gap or char in _CLOSED_CLAUSE_ENDS):
        strength = max(strength, CLAUSE)
    if strength == INSIDE_WORD and (
        _is_cjk(text[before_end - 1 : before_end]) or _is_cjk(text[after_start : after_start + 1])
    ):
        strength = WORD
    return strength


def boundary_strengths(text: str | None, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """How good a place to cut each boundary between two tokens is.

    Args:
      text: The text the offsets point into; ``None`` to treat every boundary
        between whole characters alike (fixed windows).
      offsets: ``(start, end)`` character offsets of each token, in order.

    Returns:
      ``strengths[i]`` for the cut before token ``i``; ``strengths[0]`` is
      unused (0).
    """
    strengths = [0] * len(offsets)
    for i in range(1, len(offsets)):
        before_end, after_start = offsets[i - 1][1], offsets[i][0]
        if text is None:
            strengths[i] = INSIDE_CHARACTER if after_start < before_end else WORD
        else:
            strengths[i] = _strength(text, before_end, after_start)
    return strengths


def token_windows(
    offsets: Sequence[tuple[int, int]],
    max_tokens: int,
    overlap_tokens: int,
    *,
    text: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> list[tuple[int, int]]:
    """Returns the character spans of token windows over a tokenized text.

    Without ``text``, windows are fixed: ``max_tokens`` tokens every
    ``max_tokens - overlap_tokens`` tokens. With it, a window ends at the
    strongest boundary (see :func:`boundary_strengths`) in its second half,
    the latest one of that strength, and the next window starts at the
    strongest boundary in the first half of the overlap, the earliest one of
    that strength: consecutive windows share between half and all of
    ``overlap_tokens`` tokens, except across a heading, where the next window
    starts with the heading.

    Args:
      offsets: ``(start, end)`` character offsets of each token, in order.
      max_tokens: Tokens per window at most.
      overlap_tokens: Tokens shared by consecutive windows at most.
      text: The text, to find paragraph, heading and sentence boundaries.
      count_tokens: Counts the tokens of a window's text as the model will
        see it; a window over ``max_tokens`` by that count is cut shorter.
        Needs ``text``.

    Returns:
      ``(start, end)`` character spans, in order; the first starts at the
      first token and the last ends at the last token. Empty for no tokens.
    """
    n = len(offsets)
    strengths = boundary_strengths(text, offsets)

    def fits(first: int, stop: int) -> bool:
        if stop - first == 1:
            return True  # one token always goes, whatever it counts
        if count_tokens is None or text is None:
            return stop - first <= max_tokens
        return count_tokens(text[offsets[first][0] : offsets[stop - 1][1]]) <= max_tokens

    windows: list[tuple[int, int]] = []
    first = 0
    while first < n:
        if n - first <= max_tokens and fits(first, n):
            windows.append((first, n))
            break
        stop = _cut(strengths, first, n, max_tokens, overlap_tokens, fits)
        windows.append((first, stop))
        first = _next_start(strengths, first, stop, overlap_tokens)
    return [(offsets[a][0], offsets[b - 1][1]) for a, b in windows]


def _cut(
    strengths: list[int],
    first: int,
    n: int,
    max_tokens: int,
    overlap_tokens: int,
    fits: Callable[[int, int], bool],
) -> int:
    """Where the window that starts at token ``first`` ends (exclusive)."""
    highest = min(first + max_tokens, n - 1)
    lowest = min(first + max(overlap_tokens + 1, (max_tokens + 1) // 2), highest)

    def by_strength(stops: range) -> list[int]:
        return sorted(stops, key=lambda c: (strengths[c], c), reverse=True)

    def candidates() -> Iterator[int]:
        yield from by_strength(range(lowest, highest + 1))
        yield from by_strength(range(first + 1, lowest))  # when no longer window fits

    return next((stop for stop in candidates() if fits(first, stop)), first + 1)


def _next_start(strengths: list[int], first: int, stop: int, overlap_tokens: int) -> int:
    """Where the window after ``[first, stop)`` starts: inside the overlap, or
    at ``stop`` when that starts a new section (a heading)."""
    if overlap_tokens == 0 or strengths[stop] >= HEADING:
        return stop
    earliest = max(stop - overlap_tokens, first + 1)
    latest = max(stop - (overlap_tokens + 1) // 2, earliest)
    return min(range(earliest, latest + 1), key=lambda i: (-strengths[i], i))


def check_max_tokens(config: ChunkingConfig, model_max_length: int | None, model: str) -> None:
    """Refuses windows longer than the model reads.

    Raises:
      ConfigError: ``chunking.max_tokens`` is over the model's ``max_length``.
    """
    if model_max_length is not None and config.max_tokens > model_max_length:
        raise ConfigError(
            f"chunking.max_tokens={config.max_tokens} is over the max_length={model_max_length} "
            f"of the model {model!r}, which would cut every longer chunk; set "
            f"chunking.max_tokens to at most {model_max_length}."
        )


class _ChunkDocumentsFn(beam.DoFn):
    def __init__(self, model_source: str, config: ChunkingConfig) -> None:
        self._model_source = model_source
        self._config = config
        self._embedder: StaticEmbedder | None = None
        self._settings = ""
        self._chunks = metrics.counter(metrics.CHUNKS)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)

    def setup(self) -> None:
        self._embedder = acquire_embedder(self._model_source)
        check_max_tokens(self._config, self._embedder.max_length, self._model_source)
        self._settings = self._config.fingerprint(self._embedder.tokenizer_fingerprint)

    def _count_tokens(self, text: str) -> int:
        assert self._embedder is not None, "setup() was not called"
        return len(self._embedder.window_tokenizer.encode(text, add_special_tokens=False).ids)

    def process(self, document: Document) -> Iterator[Chunk | pvalue.TaggedOutput]:
        assert self._embedder is not None, "setup() was not called"
        encoding = self._embedder.window_tokenizer.encode(document.text, add_special_tokens=False)
        spans = token_windows(
            encoding.offsets,
            self._config.max_tokens,
            self._config.overlap_tokens,
            text=document.text,
            count_tokens=self._count_tokens,
        )
        if not spans:
            self._dead_lettered.inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter.of(
                    "chunk", document.source or document.id, "document has no tokens", document.text
                ),
            )
            return
        for index, (start, end) in enumerate(spans):
            self._chunks.inc()
            yield Chunk(
                id=chunk_id(document.id, index, self._settings),
                document_id=document.id,
                index=index,
                text=document.text[start:end],
                start=start,
                end=end,
                metadata=document.metadata,
            )


class ChunkDocuments(beam.PTransform):
    """Cuts documents into overlapping token windows that prefer text boundaries.

    The model is loaded once here, on the launcher, to check that
    ``config.max_tokens`` fits its ``max_length``; workers load it again in
    ``setup()``.

    Args:
      model: Source of the Model2Vec model whose tokenizer counts tokens:
        Hugging Face id, local folder or fsspec URL.
      config: Window and overlap sizes.

    Returns:
      The outputs ``chunks`` and ``dead_letters`` (a ``DoOutputsTuple``).

    Raises:
      ConfigError: ``config.max_tokens`` is over the model's ``max_length``.
    """

    def __init__(self, model: str, config: ChunkingConfig = ChunkingConfig()) -> None:
        super().__init__()
        self._model = model
        self._config = config

    def expand(self, documents: beam.PCollection[Document]) -> pvalue.DoOutputsTuple:
        check_max_tokens(self._config, acquire_embedder(self._model).max_length, self._model)
        return documents | "Chunk" >> beam.ParDo(
            _ChunkDocumentsFn(self._model, self._config)
        ).with_outputs(DEAD_LETTERS, main=CHUNKS)

    def display_data(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "max_tokens": self._config.max_tokens,
            "overlap_tokens": self._config.overlap_tokens,
        }
