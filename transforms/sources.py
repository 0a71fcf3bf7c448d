"""ReadDocuments: documents from files on any fsspec filesystem.

Patterns are expanded once, files are spread over workers, and each file is
streamed: a JSONL file is read line by line, never loaded whole. A record that
cannot be read (bad bytes, bad JSON, no text) goes to the dead-letter output
with its file and line; the other records keep flowing.

Formats: a text file (txt, md, rst, …) is one document whose id is its path;
a JSONL/NDJSON file has one document per line, whose id comes from the id
field, else from ``path:line``. Compression (``.gz``, ``.bz2``, …) is inferred
from the extension.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam import pvalue

from transforms import metrics
from transforms.config import EmptyMatchTreatment, SourceConfig, SourceFormat
from transforms.types import DeadLetter, Document

__all__ = ["DEAD_LETTERS", "DOCUMENTS", "ReadDocuments", "match_files"]

DOCUMENTS = "documents"
DEAD_LETTERS = "dead_letters"

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
_GLOB_CHARS = ("*", "?", "[")


class NoMatchError(FileNotFoundError):
    """An input pattern matched no file."""


def match_files(pattern: str) -> list[str]:
    """Returns the files a path, folder or glob names, sorted.

    A folder stands for every file below it. Local paths keep the form they
    were given in (relative stays relative), so that document ids made from
    them do not depend on the machine; other paths come back as URLs.
    """
    fs, path = fsspec.core.url_to_fs(pattern)
    if any(c in path for c in _GLOB_CHARS):
        found = fs.glob(path)
    elif fs.isdir(path):
        found = fs.find(path)
    else:
        found = [path] if fs.exists(path) else []
    files = sorted(p for p in found if not fs.isdir(p))
    if _is_local(fs):
        if not os.path.isabs(os.path.expanduser(pattern.removeprefix("file://"))):
            return [os.path.relpath(p) for p in files]
        return files
    return [fs.unstrip_protocol(p) for p in files]


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _format_of(path: str, configured: SourceFormat) -> SourceFormat:
    if configured is not SourceFormat.AUTO:
        return configured
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return SourceFormat.JSONL if name.endswith(_JSONL_SUFFIXES) else SourceFormat.TEXT


class _MatchFilesFn(beam.DoFn):
    """Expands a pattern into the files it matches."""

    def __init__(self, empty_match: EmptyMatchTreatment) -> None:
        self._empty_match = empty_match

    def process(self, pattern: str) -> Iterator[str]:
        files = match_files(pattern)
        if not files and self._empty_match is EmptyMatchTreatment.DISALLOW:
            raise NoMatchError(
                f"input {pattern!r} matches no file; fix the path, or set "
                "source.empty_match: allow."
            )
        yield from files


class _ReadFileFn(beam.DoFn):
    """Turns one file into documents and dead letters."""

    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._documents_read = metrics.counter(metrics.DOCUMENTS_READ)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)

    def process(self, path: str) -> Iterator[Document | pvalue.TaggedOutput]:
        read = (
            _read_jsonl
            if _format_of(path, self._config.format) is SourceFormat.JSONL
            else _read_text
        )
        for record in read(path, self._config):
            if isinstance(record, DeadLetter):
                self._dead_lettered.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, record)
            else:
                self._documents_read.inc()
                yield record


def _read_text(path: str, config: SourceConfig) -> Iterator[Document | DeadLetter]:
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            data = f.read()
    except (OSError, EOFError, ValueError) as e:
        yield DeadLetter.of("read", path, f"cannot read file: {e}")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield DeadLetter.of("read", path, f"invalid UTF-8 at byte {e.start}: {e.reason}")
        return
    if not text.strip():
        yield DeadLetter.of("read", path, "document has no text (empty or whitespace only)")
        return
    yield Document(id=path, text=text, metadata={"path": path}, source=path)


def _read_jsonl(path: str, config: SourceConfig) -> Iterator[Document | DeadLetter]:
    line_no = 0
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            for line_no, raw in enumerate(f, start=1):
                if line_no == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if raw.strip():
                    yield _parse_jsonl_line(raw, path, line_no, config)
    except (OSError, EOFError, ValueError) as e:
        yield DeadLetter.of(
            "read", f"{path}:{line_no + 1}", f"cannot read file past line {line_no}: {e}"
        )


def _parse_jsonl_line(
    raw: bytes, path: str, line_no: int, config: SourceConfig
) -> Document | DeadLetter:
    where = f"{path}:{line_no}"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return DeadLetter.of("read", where, f"invalid UTF-8 at byte {e.start} of the line", raw)
    except json.JSONDecodeError as e:
        return DeadLetter.of("read", where, f"malformed JSON: {e.msg} at column {e.colno}", raw)
    if not isinstance(record, dict):
        return DeadLetter.of(
            "read", where, f"expected a JSON object, got {type(record).__name__}", raw
        )
    text = record.get(config.text_field)
    if not isinstance(text, str) or not text.strip():
        found = (
            "missing"
            if text is None
            else f"a {type(text).__name__}"
            if not isinstance(text, str)
            else "empty"
        )
        return DeadLetter.of(
            "read",
            where,
            f"text field {config.text_field!r} is {found}; it must be non-empty text",
            raw,
        )
    doc_id = _document_id(record, config.id_field, where)
    if isinstance(doc_id, DeadLetter):
        return doc_id
    return Document(id=doc_id, text=text, metadata=_metadata(record, config), source=where)


def _document_id(record: dict[str, Any], id_field: str | None, where: str) -> str | DeadLetter:
    if not id_field or record.get(id_field) is None:
        return where
    value = record[id_field]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return DeadLetter.of(
            "read", where, f"id field {id_field!r} must be a non-empty string or an integer", value
        )
    return str(value)


def _metadata(record: dict[str, Any], config: SourceConfig) -> dict[str, Any]:
    if config.metadata_fields is None:
        skip = {config.text_field, config.id_field}
        return {k: v for k, v in record.items() if k not in skip}
    return {k: record[k] for k in config.metadata_fields if k in record}


class ReadDocuments(beam.PTransform):
    """Reads documents from files named by fsspec paths, folders or globs.

    Example::

        read = p | ReadDocuments(SourceConfig(patterns=("corpus/*.jsonl",)))
        read.documents     # PCollection[Document]
        read.dead_letters  # PCollection[DeadLetter]

    Returns:
      The outputs ``documents`` and ``dead_letters`` (a ``DoOutputsTuple``).
    """

    def __init__(self, source: SourceConfig | str | Sequence[str]) -> None:
        super().__init__()
        self._config = source if isinstance(source, SourceConfig) else SourceConfig(patterns=source)  # type: ignore[arg-type]

    def expand(self, pbegin: pvalue.PBegin) -> pvalue.DoOutputsTuple:
        return (
            pbegin
            | "Patterns" >> beam.Create(self._config.patterns)
            | "MatchFiles" >> beam.ParDo(_MatchFilesFn(self._config.empty_match))
            | "UniqueFiles" >> beam.Distinct()
            | "ReadFiles"
            >> beam.ParDo(_ReadFileFn(self._config)).with_outputs(DEAD_LETTERS, main=DOCUMENTS)
        )

    def display_data(self) -> dict[str, Any]:
        return {"patterns": ", ".join(self._config.patterns), "format": self._config.format.value}
