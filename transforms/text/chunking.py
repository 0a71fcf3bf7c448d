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

Cost: tokenizing each document once is most of it. A document of one window
needs nothing else but counting it; a longer one has its boundaries ranked by
a few dozen numpy operations over all of its tokens, then each window counts
the tokens of the cuts it tries, strongest first (usually just one, answered
from the document's own tokens; see :mod:`transforms.text.tokenizing`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.utils import shared

from transforms import metrics
from transforms.config import ChunkingConfig, ConfigError
from transforms.model_files import ModelFiles
from transforms.text.tokenizer import ChunkingTokenizer
from transforms.types import DEAD_LETTERS, Chunk, DeadLetter, Document, TokenIds, chunk_id

__all__ = [
    "CHUNKS",
    "ChunkDocuments",
    "boundary_strengths",
    "check_max_tokens",
    "chunk_document",
    "token_windows",
]

Offsets = Sequence[tuple[int, int]] | np.ndarray
"""``(start, end)`` character offsets of each token, in order: pairs, or an ``(n, 2)`` array."""

CHUNKS = "chunks"

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


# Scripts written without spaces between words, where every character is a
# word: kana, CJK extension A, CJK unified ideographs, Hangul syllables, CJK
# compatibility ideographs, CJK extensions B and later.
_CJK_RANGES = (
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7AF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2FA1F),
)

# Character classes, one bit each, looked up by code point in _CLASSES.
_SENTENCE_END = 1
_CLOSED_SENTENCE_END = 2
_CLAUSE_END = 4
_CLOSED_CLAUSE_END = 8
_CLOSER = 16
_ATTACHED_CHAR = 32
_SPACE = 64  # what str.strip strips
_CJK = 128
_NEWLINE = ord("\n")
# A Markdown ATX heading (``# Title``) starting where it is matched.
_HEADING = re.compile(r"#{1,6}(?:[ \t\r\n]|\Z)")


def _class_table() -> np.ndarray:
    """The classes of every code point up to U+2FFFF; the last entry (no class)
    stands for the code points above (index with ``min(code, len - 1)``)."""
    table = np.zeros(0x30001, np.uint8)
    for chars, bit in (
        (_SENTENCE_ENDS, _SENTENCE_END),
        (_CLOSED_SENTENCE_ENDS, _CLOSED_SENTENCE_END),
        (_CLAUSE_ENDS, _CLAUSE_END),
        (_CLOSED_CLAUSE_ENDS, _CLOSED_CLAUSE_END),
        (_CLOSERS, _CLOSER),
        (_ATTACHED, _ATTACHED_CHAR),
        ({chr(c) for c in range(0x3001) if chr(c).isspace()}, _SPACE),  # none above U+3000
    ):
        table[[ord(c) for c in chars]] |= bit
    for low, high in _CJK_RANGES:
        table[low : high + 1] |= _CJK
    return table


def _punctuation_table() -> np.ndarray:
    """``[spaced, classes]``: the strength a sentence or clause end gives the
    cut after it, with and without a gap between the tokens (CJK ends need
    none); INSIDE_CHARACTER, which changes nothing, for other characters."""
    table = np.full((2, 256), INSIDE_CHARACTER, np.int8)
    for spaced in (0, 1):
        for classes in range(256):
            if classes & _SENTENCE_END and (spaced or classes & _CLOSED_SENTENCE_END):
                table[spaced, classes] = SENTENCE
            elif classes & _CLAUSE_END and (spaced or classes & _CLOSED_CLAUSE_END):
                table[spaced, classes] = CLAUSE
    return table


_CLASSES = _class_table()
_PUNCTUATION = _punctuation_table()


def _line_break(text: str, before_end: int, after_start: int, newlines: int) -> tuple[int, bool]:
    """The strength of a cut at ``newlines`` line breaks between a token ending
    at ``before_end`` and one starting at ``after_start``, and whether it is
    final (no punctuation before the cut makes it stronger)."""
    if _HEADING.match(text, after_start):
        return HEADING, True
    line_start = text.rfind("\n", 0, before_end) + 1
    line = text[line_start:before_end]
    if _HEADING.match(text, line_start + len(line) - len(line.lstrip(" \t"))):
        return WORD, True  # right after a heading: keep it with its section
    return (PARAGRAPH if newlines > 1 else LINE), False


def _strengths(text: str | None, offsets: Offsets) -> np.ndarray:
    """:func:`boundary_strengths` as an ``int8`` array.

    Cost: reading the offsets (about 60 ns a token), a few dozen array
    operations over the tokens and the text, and a microsecond or two for each
    line break or run of spaces between tokens, which are looked at one by one.
    """
    n = len(offsets)
    strengths = np.zeros(n, np.int8)
    if n < 2:
        return strengths
    if isinstance(offsets, np.ndarray):
        bounds = offsets.astype(np.int64)  # a copy: it is clipped below
    else:
        bounds = np.fromiter(itertools.chain.from_iterable(offsets), np.int64, 2 * n).reshape(n, 2)
    overlapping = bounds[1:, 0] < bounds[:-1, 1]  # the tokens share a character
    if text is None:
        strengths[1:] = np.where(overlapping, INSIDE_CHARACTER, WORD)
        return strengths
    size = len(text)
    np.minimum(bounds, size, out=bounds)  # as slicing the text does
    before, after = bounds[:-1, 1], bounds[1:, 0]
    # Each character's classes, with no class at ``size`` (and so at -1).
    codes = np.frombuffer((text + "\0").encode("utf-32-le", "surrogatepass"), np.uint32)
    classes = _CLASSES[np.minimum(codes, len(_CLASSES) - 1)]
    spaced = after > before
    cut = strengths[1:]  # cut[i] is the cut before token i + 1
    cut[:] = np.where(spaced, WORD, INSIDE_WORD)
    # The end of the visible text before the cut: the end of the earlier token,
    # or punctuation between the tokens that the tokenizer left out. Right here
    # for gaps of up to one character; line breaks and runs of spaces are few,
    # and looked at one by one.
    end = before + (spaced & (classes[before] & _SPACE == 0))
    wide = np.flatnonzero((after - before > 1) | (spaced & (codes[before] == _NEWLINE)))
    ends: list[int] = []
    breaks: list[tuple[int, int, bool]] = []  # (boundary, strength, final)
    for i, before_end, after_start in zip(
        wide.tolist(), before[wide].tolist(), after[wide].tolist(), strict=True
    ):
        gap = text[before_end:after_start]
        ends.append(before_end + len(gap.rstrip()))
        newlines = gap.count("\n")
        if newlines:
            breaks.append((i, *_line_break(text, before_end, after_start, newlines)))
    end[wide] = ends
    # The last visible character steps back over up to two closers, never
    # past the first character of the text.
    closer = classes & _CLOSER != 0
    closer[0] = False
    last = end - 1
    for _ in range(2):
        last -= closer[last]
    punctuation = _PUNCTUATION[spaced.view(np.uint8), classes[last]]
    if breaks:
        at, strength, final = (np.array(column) for column in zip(*breaks, strict=True))
        cut[at] = strength
        punctuation[at[final]] = INSIDE_CHARACTER
    np.maximum(cut, punctuation, out=cut)
    next_char = classes[after]
    cjk = (classes[before - 1] | next_char) & _CJK != 0
    cut[(cut == INSIDE_WORD) & cjk] = WORD
    # Never start a window with the punctuation that ends the last.
    cut[~spaced & (next_char & _ATTACHED_CHAR != 0)] = INSIDE_WORD
    cut[overlapping] = INSIDE_CHARACTER
    return strengths


def boundary_strengths(text: str | None, offsets: Offsets) -> list[int]:
    """How good a place to cut each boundary between two tokens is.

    Args:
      text: The text the offsets point into; ``None`` to treat every boundary
        between whole characters alike (fixed windows).
      offsets: ``(start, end)`` character offsets of each token, in order
        (pairs, or an ``(n, 2)`` array).

    Returns:
      ``strengths[i]`` for the cut before token ``i``; ``strengths[0]`` is
      unused (0).
    """
    strengths: list[int] = _strengths(text, offsets).tolist()
    return strengths


def token_windows(
    offsets: Offsets,
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
      offsets: ``(start, end)`` character offsets of each token, in order
        (pairs, or an ``(n, 2)`` array).
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

    def fits(first: int, stop: int) -> bool:
        if stop - first == 1:
            return True  # one token always goes, whatever it counts
        if count_tokens is None or text is None:
            return stop - first <= max_tokens
        return count_tokens(text[offsets[first][0] : offsets[stop - 1][1]]) <= max_tokens

    windows: list[tuple[int, int]] = []
    strengths: np.ndarray | None = None  # only texts longer than one window need them
    first = 0
    while first < n:
        if n - first <= max_tokens and fits(first, n):
            windows.append((first, n))
            break
        if strengths is None:
            strengths = _strengths(text, offsets)
        stop = _cut(strengths, first, n, max_tokens, overlap_tokens, fits)
        windows.append((first, stop))
        first = _next_start(strengths, first, stop, overlap_tokens)
    return [(int(offsets[a][0]), int(offsets[b - 1][1])) for a, b in windows]


def _cut(
    strengths: np.ndarray,
    first: int,
    n: int,
    max_tokens: int,
    overlap_tokens: int,
    fits: Callable[[int, int], bool],
) -> int:
    """Where the window that starts at token ``first`` ends (exclusive)."""
    highest = min(first + max_tokens, n - 1)
    lowest = min(first + max(overlap_tokens + 1, (max_tokens + 1) // 2), highest)
    # The second half first; the first half only when no longer window fits.
    for low, high in ((lowest, highest + 1), (first + 1, lowest)):
        for stop in _by_strength(strengths, low, high):
            if fits(first, stop):
                return stop
    return first + 1


def _by_strength(strengths: np.ndarray, low: int, high: int) -> Iterator[int]:
    """The cuts ``low`` to ``high`` (exclusive), strongest first, then latest
    first; the first, which is usually the one taken, without sorting them."""
    if high <= low:
        return
    span = high - low
    best = high - 1 - int(np.argmax(strengths[low:high][::-1]))
    yield best
    key = strengths[low:high].astype(np.int64) * span + np.arange(span)
    yield from (stop for stop in (np.argsort(key)[::-1] + low).tolist() if stop != best)


def _next_start(strengths: np.ndarray, first: int, stop: int, overlap_tokens: int) -> int:
    """Where the window after ``[first, stop)`` starts: inside the overlap, or
    at ``stop`` when that starts a new section (a heading)."""
    if overlap_tokens == 0 or strengths[stop] >= HEADING:
        return stop
    earliest = max(stop - overlap_tokens, first + 1)
    latest = max(stop - (overlap_tokens + 1) // 2, earliest)
    return earliest + int(np.argmax(strengths[earliest : latest + 1]))  # the earliest strongest


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


def chunk_document(
    document: Document, tokenizer: ChunkingTokenizer, config: ChunkingConfig
) -> list[Chunk]:
    """Cuts a document into token windows (see :func:`token_windows`), as chunks.

    A pure function: the same document, tokenizer and settings always give the
    same chunks, with the same ids (see :func:`transforms.types.chunk_id`).
    Each chunk carries the token ids its window was counted with
    (:attr:`Chunk.token_ids`, tagged with the tokenizer's fingerprint), so that
    an embedder of the same model need not tokenize it again.

    Args:
      document: The document to cut.
      tokenizer: The model's tokenizer (see :class:`ChunkingTokenizer`).
      config: Window and overlap sizes.

    Returns:
      The chunks, in order; empty when the document has no tokens.
    """
    text = document.text
    tokens, tokenized = tokenizer.tokenize(text)
    counted: dict[str, np.ndarray] = {}

    def count_tokens(window: str) -> int:
        ids = tokenized.stretch_ids(window) if tokenized is not None else None
        if ids is None:
            ids = tokenizer.token_ids(window)
        counted[window] = ids
        return len(ids)

    spans = token_windows(
        tokens.offsets,
        config.max_tokens,
        config.overlap_tokens,
        text=text,
        count_tokens=count_tokens,
    )
    settings = config.fingerprint(tokenizer.fingerprint)
    chunks = []
    for index, (start, end) in enumerate(spans):
        window = text[start:end]
        ids = counted.get(window)
        chunks.append(
            Chunk(
                id=chunk_id(document.id, index, settings),
                document_id=document.id,
                index=index,
                text=window,
                start=start,
                end=end,
                metadata=document.metadata,
                token_ids=None if ids is None else TokenIds(tokenizer.fingerprint, ids),
            )
        )
    return chunks


class _ChunkDocumentsFn(beam.DoFn):
    """Runs :func:`chunk_document` with one tokenizer per worker process."""

    def __init__(self, model_source: str, config: ChunkingConfig) -> None:
        self._model_source = model_source
        self._config = config
        # Made on the launcher and pickled with the DoFn: every copy of it in
        # a worker process (one per thread) shares the process's tokenizer.
        self._shared_tokenizer = shared.Shared()
        self._tokenizer: ChunkingTokenizer | None = None
        self._chunks = metrics.counter(metrics.CHUNKS)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)

    def setup(self) -> None:
        self._tokenizer = self._shared_tokenizer.acquire(
            lambda: ChunkingTokenizer.load(self._model_source)
        )
        check_max_tokens(self._config, self._tokenizer.max_length, self._model_source)

    def process(self, document: Document) -> Iterator[Chunk | pvalue.TaggedOutput]:
        if self._tokenizer is None:
            raise RuntimeError("_ChunkDocumentsFn.setup() was not called")
        chunks = chunk_document(document, self._tokenizer, self._config)
        if not chunks:
            self._dead_lettered.inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter.of(
                    "chunk", document.source or document.id, "document has no tokens", document.text
                ),
            )
            return
        self._chunks.inc(len(chunks))
        yield from chunks


class ChunkDocuments(beam.PTransform):
    """Cuts documents into overlapping token windows that prefer text boundaries.

    On the launcher only the model's config is read, to check that
    ``config.max_tokens`` fits its ``max_length``; workers load the model's
    tokenizer (never its vectors) once per process, in ``setup()``.

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
        check_max_tokens(self._config, ModelFiles.locate(self._model).max_length, self._model)
        return documents | "Chunk" >> beam.ParDo(
            _ChunkDocumentsFn(self._model, self._config)
        ).with_outputs(DEAD_LETTERS, main=CHUNKS)

    def display_data(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "max_tokens": self._config.max_tokens,
            "overlap_tokens": self._config.overlap_tokens,
        }
