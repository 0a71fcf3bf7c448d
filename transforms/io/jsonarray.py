"""A JSON array read element by element, in bounded memory.

Use :func:`iter_elements` to stream the elements of a (possibly huge) JSON
file shaped ``[{...}, {...}, ...]`` without parsing it whole: it finds where
each element starts and ends and hands its bytes to the caller, who parses
them one at a time. Only brackets, braces, commas, quotes and backslashes are
looked at, and those are ASCII, which never occurs inside a multi-byte UTF-8
character; so an element is found even when it is not valid JSON, and the one
after it is read as usual. An element over the size limit is skipped as it
streams by. The scan is a regular-expression search per structural character:
tens of MB/s, one worker per file. For large corpora, JSONL is faster and
can be split.

A file that is one JSON value rather than an array comes back as one element.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import IO

from transforms.io.splitting import BLOCK_BYTES, UTF8_BOM, read_bounded

__all__ = ["Element", "iter_elements"]


_JSON_STRUCTURE = re.compile(rb'[\[\]{},"\\]')
_JSON_STRING_END = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


@dataclasses.dataclass(frozen=True)
class Element:
    """One element of a JSON array: its bytes, or why it has none.

    Attributes:
      index: Position in the array, from 0.
      data: The element's bytes, stripped of whitespace; ``None`` when it is
        over the size limit or there is an error.
      size: Bytes the element took in the file.
      error: Why the element could not be cut out (an empty element, a file
        that ends inside the array, data after it); empty when all is well.
    """

    index: int
    data: bytes | None
    size: int
    error: str = ""


class _ArrayScanner:
    """Finds the elements of a top-level JSON array in a stream of blocks.

    Only brackets, braces, commas, quotes and backslashes are looked at (all
    ASCII, which never occurs inside a multi-byte UTF-8 character), so an
    element is found even when it is not valid JSON, and the next one after
    it is read as usual. An element over the size limit is skipped, not kept.
    """

    def __init__(self, max_record_bytes: int) -> None:
        self._limit = max_record_bytes
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._parts: list[bytes] = []
        self._size = 0
        self.index = 0
        self.closed = False
        self.rest = b""
        """What follows the closing bracket in the block that holds it."""

    def _add(self, part: bytes) -> None:
        self._size += len(part)
        if self._size <= self._limit:
            self._parts.append(part)
        elif self._parts:
            self._parts = []

    def _element(self, closing: bool) -> Iterator[Element]:
        size = self._size
        data = b"".join(self._parts).strip(_WHITESPACE) if size <= self._limit else None
        self._parts, self._size = [], 0
        if data == b"":
            if closing and self.index == 0:
                return  # []
            yield Element(self.index, None, 0, "empty element: a comma too many?")
        else:
            yield Element(self.index, data, size)
        self.index += 1

    def feed(self, block: bytes) -> Iterator[Element]:
        """Scans the next block; yields the elements that end in it."""
        pos = 0
        from_ = 0  # start of the current element's bytes in this block
        n = len(block)
        while pos < n and not self.closed:
            if self._escaped:
                self._escaped = False
                pos += 1
                continue
            pattern = _JSON_STRING_END if self._in_string else _JSON_STRUCTURE
            match = pattern.search(block, pos)
            if match is None:
                break
            at = match.start()
            char = block[at : at + 1]
            pos = at + 1
            if char == b"\\":
                self._escaped = self._in_string
            elif char == b'"':
                self._in_string = not self._in_string
            elif char in b"[{":
                self._depth += 1
            elif char in b"]}" and self._depth > 0:
                self._depth -= 1
            elif (char == b"," or char == b"]") and self._depth == 0:
                self._add(block[from_:at])
                yield from self._element(closing=char == b"]")
                from_ = pos
                self.closed = char == b"]"
        if self.closed:
            self.rest = block[pos:]
        else:
            self._add(block[from_:])

    def finish(self) -> Iterator[Element]:
        """The end of the stream: an array that is not closed is an error."""
        if self.closed:
            return
        started = self._size > self._limit or b"".join(self._parts).strip(_WHITESPACE)
        where = f"inside element {self.index}" if started else "before"
        yield Element(
            self.index,
            None,
            self._size,
            f"the file ends {where} the array's closing ']': a truncated file?",
        )


def iter_elements(f: IO[bytes], max_record_bytes: int) -> Iterator[Element]:
    """Streams the elements of the JSON array in ``f``.

    Args:
      f: The file, in binary mode; a UTF-8 BOM at its start is skipped.
      max_record_bytes: Largest element kept; a larger one comes back with
        ``data=None`` and its size.

    Yields:
      The elements in order, then, if the file does not end cleanly after the
      closing bracket, one element with an ``error``. A file that is not an
      array is one element with the whole value (up to the limit).
    """
    scanner: _ArrayScanner | None = None
    head = b""
    while True:
        block = f.read(BLOCK_BYTES)
        if scanner is None:
            if not block:
                if head.strip(_WHITESPACE):
                    yield from _single_value(head, f, max_record_bytes)
                return
            head = (head + block).removeprefix(UTF8_BOM).lstrip(_WHITESPACE)
            if not head:
                continue
            if not head.startswith(b"["):
                yield from _single_value(head, f, max_record_bytes)
                return
            scanner = _ArrayScanner(max_record_bytes)
            block = head[1:]
        elif not block:
            yield from scanner.finish()
            return
        yield from scanner.feed(block)
        if scanner.closed:
            trailing = scanner.rest.strip(_WHITESPACE) or f.read(BLOCK_BYTES).strip(_WHITESPACE)
            if trailing:
                yield Element(
                    scanner.index, None, 0, "unexpected data after the array's closing ']'"
                )
            return


def _single_value(head: bytes, f: IO[bytes], max_record_bytes: int) -> Iterator[Element]:
    """A JSON file that is not an array: one record when it is one object."""
    data, size = read_bounded(f, max_record_bytes, head)
    yield Element(0, data, size)
