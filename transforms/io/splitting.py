"""Byte ranges of large files, and records framed in bounded memory.

Use this module to read a line-oriented file (JSONL, CSV, TSV) from any byte
offset without loading it: :func:`iter_frames` cuts a stream into records and
never holds more than one record (up to a limit) and one block of the file.

How a large file is read in parallel:

1. :func:`plan_ranges` cuts it into fixed byte ranges.
2. :func:`count_range` counts, for each range and in parallel, its newlines
   (and quote characters, for CSV). Prefix sums of those counts
   (:func:`number_ranges`) give each range the line number it starts at and
   whether it starts inside a quoted CSV field.
3. :func:`iter_frames` reads one range. A range owns the records that *start*
   inside it: the first range starts at byte 0; the others skip to the first
   record boundary (a newline, outside quotes for CSV) and read on past their
   end to finish their last record. Every record is read exactly once, and its
   line number is the one a reader from byte 0 would give it, so ids like
   ``path:line`` do not depend on how, or whether, a file was split.

The cost is one extra pass over each split file (a C-speed count, in parallel).
Compressed files cannot be split: they are read by one worker each.

CSV boundaries are exact when the file's quotes pair up, as RFC 4180 writes
them (a quote inside a quoted field is doubled). A stray quote in an unquoted
field makes the lines up to the next stray quote one record, which the CSV
parser then rejects: those rows are dead-lettered, the same whether the file
is split or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = [
    "BLOCK_BYTES",
    "UTF8_BOM",
    "Frame",
    "count_range",
    "iter_frames",
    "number_ranges",
    "plan_ranges",
]

UTF8_BOM = b"\xef\xbb\xbf"
"""The byte-order mark some tools write at the start of UTF-8 files."""

BLOCK_BYTES = 1024 * 1024
"""How much of a file is read at a time."""

_NEWLINE = b"\n"


@dataclasses.dataclass(frozen=True)
class Frame:
    """One record of a line-oriented file, as bytes.

    Attributes:
      offset: Byte offset of the record's first byte in the file.
      line: Line number (from 1) of the record's first line.
      data: The record's bytes, line ending included; ``None`` when the record
        is over the size limit and was skipped.
      size: The record's size in bytes, also when it was skipped.
      next_line: Line number where the next record starts.
      open_quote: The file ended inside a quoted CSV field of this record.
    """

    offset: int
    line: int
    data: bytes | None
    size: int
    next_line: int = 0
    open_quote: bool = False


def plan_ranges(size: int, split_bytes: int) -> list[tuple[int, int]]:
    """Cuts ``size`` bytes into ``(start, end)`` ranges of ``split_bytes``.

    Returns:
      At least one range; together they cover ``[0, size)`` without overlap.
    """
    if size <= 0:
        return [(0, 0)]
    return [(start, min(start + split_bytes, size)) for start in range(0, size, split_bytes)]


def count_range(f: IO[bytes], start: int, end: int, quote: bytes | None) -> tuple[int, int]:
    """Counts newlines and quote characters in ``[start, end)`` of a file.

    Args:
      f: The file, opened in binary mode; it must be seekable.
      start: First byte.
      end: One past the last byte.
      quote: The CSV quote character, or ``None`` not to count quotes.

    Returns:
      ``(newlines, quotes)``.
    """
    f.seek(start)
    newlines = quotes = 0
    left = end - start
    while left > 0:
        block = f.read(min(BLOCK_BYTES, left))
        if not block:
            break
        left -= len(block)
        newlines += block.count(_NEWLINE)
        if quote:
            quotes += block.count(quote)
    return newlines, quotes


def number_ranges(
    counted: Iterable[tuple[int, int, int, int]],
) -> list[tuple[int, int, int, bool]]:
    """Turns per-range counts into where each range starts.

    Args:
      counted: ``(start, end, newlines, quotes)`` of every range of one file,
        in any order.

    Returns:
      ``(start, end, lines_before, in_quotes)`` in file order: the newlines
      before ``start``, and whether ``start`` is inside a quoted field.
    """
    numbered = []
    lines = quotes = 0
    for start, end, newlines, quote_count in sorted(counted):
        numbered.append((start, end, lines, quotes % 2 == 1))
        lines += newlines
        quotes += quote_count
    return numbered


class _Pieces:
    """Reads a binary stream as pieces that end at a newline or a block end.

    Holds one block at a time: a line longer than a block comes in several
    pieces, so that the caller decides how much of it to keep.
    """

    def __init__(self, f: IO[bytes], block_bytes: int = BLOCK_BYTES) -> None:
        self._f = f
        self._block_bytes = block_bytes
        self._block = b""
        self._pos = 0

    def next(self) -> bytes:
        """The next piece; ``b""`` at the end of the stream."""
        if self._pos >= len(self._block):
            self._block = self._f.read(self._block_bytes)
            self._pos = 0
            if not self._block:
                return b""
        newline = self._block.find(_NEWLINE, self._pos)
        stop = len(self._block) if newline < 0 else newline + 1
        piece = self._block[self._pos : stop]
        self._pos = stop
        return piece


def read_bounded(f: IO[bytes], max_bytes: int, head: bytes = b"") -> tuple[bytes | None, int]:
    """Reads the rest of a stream, after ``head`` that was read already.

    Returns the bytes, or ``None`` when there are more than ``max_bytes``, and
    the size. Memory stays within ``max_bytes`` plus one block either way.
    """
    parts, size = [head], len(head)
    while block := f.read(BLOCK_BYTES):
        size += len(block)
        if size <= max_bytes:
            parts.append(block)
        elif parts:
            parts = []
    return (b"".join(parts) if size <= max_bytes else None), size


def _read_record(
    pieces: _Pieces, quote: bytes | None, parity: bool, keep_bytes: int
) -> tuple[int, int, bool, list[bytes]]:
    """Reads the pieces of one record: lines until the quotes pair up.

    Returns the record's size, its newlines, the quote parity after it, and
    its pieces if it is at most ``keep_bytes`` long (else none are kept).
    """
    kept: list[bytes] = []
    size = newlines = 0
    while True:
        piece = pieces.next()
        if not piece:
            break
        size += len(piece)
        if size <= keep_bytes:
            kept.append(piece)
        elif kept:
            kept = []
        if quote is not None and piece.count(quote) % 2:
            parity = not parity
        if piece.endswith(_NEWLINE):
            newlines += 1
            if not parity:
                break
    return size, newlines, parity, kept


def iter_frames(
    f: IO[bytes],
    *,
    max_record_bytes: int,
    quote: bytes | None = None,
    start: int = 0,
    end: int | None = None,
    lines_before: int = 0,
    in_quotes: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[Frame]:
    """Cuts a stream into records: lines, or CSV rows whose quotes pair up.

    Reads the records that start in ``[start, end)``. Memory stays within one
    record of ``max_record_bytes`` plus one block: a longer record is skipped
    as it streams by and comes back with ``data=None`` and its size.

    Args:
      f: The file in binary mode; it must be seekable when ``start > 0``.
      max_record_bytes: Largest record kept.
      quote: The CSV quote character; a newline inside quotes does not end a
        record. ``None`` for JSONL (and CSV without quoting).
      start: Byte offset where the range starts.
      end: Byte offset where it ends; ``None`` for the end of the file.
      lines_before: Newlines in the file before ``start``.
      in_quotes: Whether ``start`` is inside a quoted field (an odd number of
        quote characters before it).
      block_bytes: How much to read at a time.

    Yields:
      The records, blank lines included, in file order.
    """
    lines = lines_before
    parity = in_quotes and quote is not None
    pos = start
    if start > 0:
        f.seek(start - 1)
        at_boundary = f.read(1) == _NEWLINE and not parity
    else:
        at_boundary = True
    pieces = _Pieces(f, block_bytes)
    if not at_boundary:
        # Skip the rest of the record that started in an earlier range.
        size, newlines, parity, _ = _read_record(pieces, quote, parity, keep_bytes=0)
        if not size:
            return
        pos += size
        lines += newlines
    while end is None or pos < end:
        offset, line = pos, lines + 1
        size, newlines, parity, kept = _read_record(pieces, quote, parity, max_record_bytes)
        if not size:
            return
        pos += size
        lines += newlines
        data = b"".join(kept) if size <= max_record_bytes else None
        yield Frame(offset, line, data, size, next_line=lines + 1, open_quote=parity)
