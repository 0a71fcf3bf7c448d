"""ReadDocuments: documents from files on any fsspec filesystem.

Use it to read a corpus as it is: folders of text and Markdown, JSONL/NDJSON
dumps, JSON arrays, CSV/TSV exports, Parquet from a data lake, compressed or
not (``.gz``, ``.bz2``, ``.xz``, ``.zst``), local or remote (``s3://``,
``gs://``, ``az://``, ``https://``, ``memory://``).

What it costs:

* Patterns are expanded once (one listing per pattern), files are spread
  over workers, and each file is streamed in bounded memory (see
  :mod:`transforms.io.formats`).
* An uncompressed JSONL, CSV/TSV or Parquet file larger than
  ``source.split_bytes`` is read as byte ranges by many workers; line-oriented
  ones are read twice for that, once to count lines (see
  :mod:`transforms.io.splitting`). A compressed file is read by one worker.
* With an ``id_field`` and the ``duplicate_ids`` policies ``keep_last``
  (the default), ``keep_first`` and ``dead_letter``, documents are grouped by
  id (one shuffle of the whole corpus) so that an id seen twice is resolved
  the same way on every run. That shuffle holds every document before the
  first one is chunked (on the DirectRunner, in one process). With
  ``duplicate_ids: assume_unique``, or without an ``id_field`` (ids are
  places, unique by construction), there is no shuffle: documents stream from
  the readers into the next step.

Nothing stops the run for one bad record: it goes to the ``dead_letters``
output with its place (``path``, ``path:line`` or ``path#index``) and the
reason. A pattern that matches no file is an error unless
``source.empty_match`` is ``allow``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
from apache_beam import pvalue

from transforms import metrics
from transforms.config import (
    DuplicateIds,
    EmptyMatchTreatment,
    SourceConfig,
    SourceFormat,
)
from transforms.io.formats import ReadTask, format_of, is_splittable, read_task
from transforms.io.splitting import count_range, number_ranges, plan_ranges
from transforms.types import DEAD_LETTERS, DeadLetter, Document

__all__ = [
    "DOCUMENTS",
    "NoMatchError",
    "ReadDocuments",
    "groups_by_id",
    "match_files",
    "match_files_with_sizes",
]

_LOGGER = logging.getLogger(__name__)

DOCUMENTS = "documents"


_TO_COUNT = "to_count"
_KEYED = "keyed"
_GLOB_CHARS = ("*", "?", "[")
# No listing or globbing over HTTP: '?' starts a query, and a page is not a folder.
_NO_GLOB_PROTOCOLS = frozenset({"http", "https"})
_DEDUPE_SOURCES_SHOWN = 5


class NoMatchError(FileNotFoundError):
    """An input pattern matched no file."""


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]

    def matches(glob: str) -> bool:
        return fnmatch.fnmatchcase(path, glob) or fnmatch.fnmatchcase(name, glob)

    return (not include or any(map(matches, include))) and not any(map(matches, exclude))


def _match(
    pattern: str, storage_options: dict[str, Any] | None = None
) -> list[tuple[str, int | None]]:
    """The files a pattern names, with their sizes when the filesystem knows them."""
    fs, path = fsspec.core.url_to_fs(pattern, **(storage_options or {}))
    globbing = not set(_protocols(fs)) & _NO_GLOB_PROTOCOLS
    found: dict[str, dict[str, Any]]
    if globbing and any(c in path for c in _GLOB_CHARS):
        found = fs.glob(path, detail=True)
    else:
        try:
            info = fs.info(path)
        except FileNotFoundError:
            info = None
        if info is None:
            found = {}
        elif info.get("type") == "directory":
            found = fs.find(path, detail=True)
        else:
            found = {path: info}
    files = sorted(
        (name, info.get("size")) for name, info in found.items() if info.get("type") != "directory"
    )
    if "file" in _protocols(fs):
        if not os.path.isabs(os.path.expanduser(pattern.removeprefix("file://"))):
            return [(os.path.relpath(p), size) for p, size in files]
        return files
    if not globbing:
        return files
    return [(fs.unstrip_protocol(p), size) for p, size in files]


def match_files(
    pattern: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Returns the files a path, folder or glob names, sorted.

    A folder stands for every file below it; ``**`` in a glob crosses folders.
    Local paths keep the form they were given in (relative stays relative), so
    that document ids made from them do not depend on the machine; other paths
    come back as URLs.

    Args:
      pattern: A path, folder or glob, local or any fsspec URL.
      include: Keep only files that match one of these globs (whole path or
        file name; ``*`` also crosses ``/``).
      exclude: Drop files that match one of these globs.
      storage_options: fsspec options for the filesystem.
    """
    return [
        path for path, _ in _match(pattern, storage_options) if _selected(path, include, exclude)
    ]


def match_files_with_sizes(
    pattern: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    storage_options: dict[str, Any] | None = None,
) -> list[tuple[str, int | None]]:
    """:func:`match_files`, each file with its size in bytes (None where the
    filesystem does not say), from the same listing."""
    return [
        (path, size)
        for path, size in _match(pattern, storage_options)
        if _selected(path, include, exclude)
    ]


class _MatchFilesFn(beam.DoFn):
    """Expands a pattern into the files it matches, with their sizes."""

    def __init__(self, config: SourceConfig) -> None:
        self._config = config

    def process(self, pattern: str) -> Iterator[tuple[str, int | None]]:
        config = self._config
        matched = _match(pattern, dict(config.storage_options))
        files = [(p, size) for p, size in matched if _selected(p, config.include, config.exclude)]
        _LOGGER.info("Input %s matches %d file(s), %d selected", pattern, len(matched), len(files))
        if not files and config.empty_match is EmptyMatchTreatment.DISALLOW:
            why = (
                f"all {len(matched)} of its files are left out by source.include/exclude"
                if matched
                else "it matches no file"
            )
            raise NoMatchError(
                f"input {pattern!r}: {why} (matches no file to read); fix the path or the "
                "globs, or set source.empty_match: allow."
            )
        yield from files


class _PlanReadsFn(beam.DoFn):
    """Turns a file into one read task, or into byte ranges to count first."""

    def __init__(self, config: SourceConfig) -> None:
        self._config = config
        self._bytes_to_read = metrics.counter(metrics.INPUT_BYTES)
        self._unsized = metrics.counter(metrics.INPUT_FILES_UNSIZED)

    def process(self, file: tuple[str, int | None]) -> Iterator[ReadTask | pvalue.TaggedOutput]:
        path, size = file
        if size is None:
            self._unsized.inc()
        else:
            self._bytes_to_read.inc(size)
        fmt = format_of(path, self._config.format)
        split_bytes = self._config.split_bytes
        if size is None or size <= split_bytes or not is_splittable(path, fmt):
            yield ReadTask(path, fmt, size=size)
            return
        ranges = plan_ranges(size, split_bytes)
        _LOGGER.debug("Reading %s (%d bytes) as %d ranges", path, size, len(ranges))
        for start, end in ranges:
            if fmt is SourceFormat.PARQUET:
                # Row groups know their rows: no counting pass.
                yield ReadTask(path, fmt, start, end)
            else:
                yield pvalue.TaggedOutput(_TO_COUNT, (path, fmt, start, end))


class _CountRangeFn(beam.DoFn):
    """Counts the newlines (and CSV quotes) of one byte range."""

    def __init__(self, config: SourceConfig) -> None:
        self._config = config

    def process(
        self, item: tuple[str, SourceFormat, int, int]
    ) -> Iterator[tuple[str, tuple[int, int, int, int, SourceFormat]]]:
        path, fmt, start, end = item
        quote = self._config.csv_quote if fmt in (SourceFormat.CSV, SourceFormat.TSV) else None
        with fsspec.open(path, "rb", **self._config.storage_options) as f:
            newlines, quotes = count_range(f, start, end, quote.encode() if quote else None)
        yield path, (start, end, newlines, quotes, fmt)


def _numbered_tasks(
    item: tuple[str, Iterable[tuple[int, int, int, int, SourceFormat]]],
) -> Iterator[ReadTask]:
    """The read tasks of one split file, each knowing the line it starts at."""
    path, counted = item
    ranges = list(counted)
    fmt = ranges[0][4]
    numbered = number_ranges((start, end, lines, quotes) for start, end, lines, quotes, _ in ranges)
    for start, end, lines_before, in_quotes in numbered:
        yield ReadTask(path, fmt, start, end, lines_before, in_quotes)


def groups_by_id(config: SourceConfig) -> bool:
    """Whether ``ReadDocuments`` shuffles the documents by id to find duplicates.

    Not when ids are places (no ``id_field``): files are read once each and a
    record once per file, so ``path``, ``path:line`` and ``path#index`` are
    unique. Not when ``duplicate_ids`` is ``assume_unique``.
    """
    return config.id_field is not None and config.duplicate_ids is not DuplicateIds.ASSUME_UNIQUE


def _one_file(path: str, sizes: Iterable[int | None]) -> tuple[str, int | None]:
    """A file that one or more patterns listed, once: with its size, or with
    ``None`` (read it whole, unsplit) when the listings do not agree on one."""
    known = set(sizes) - {None}
    return path, known.pop() if len(known) == 1 else None


class _ReadTaskFn(beam.DoFn):
    """Reads a file or a range: documents (keyed by id, to group them), and dead letters."""

    def __init__(self, config: SourceConfig, *, keyed: bool) -> None:
        self._config = config
        self._keyed = keyed
        self._documents_read = metrics.counter(metrics.DOCUMENTS_READ)
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)
        self._split_ranges = metrics.counter(metrics.SPLIT_RANGES)
        self._bytes_read = metrics.counter(metrics.INPUT_BYTES_READ)

    def process(
        self, task: ReadTask
    ) -> Iterator[Document | tuple[str, tuple[str, int, Document]] | pvalue.TaggedOutput]:
        for read in read_task(task, self._config):
            if isinstance(read, DeadLetter):
                self._dead_lettered.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, read)
            else:
                position, document = read
                self._documents_read.inc()
                if self._keyed:
                    yield document.id, (task.path, position, document)
                else:
                    yield document
        if not task.whole:
            self._split_ranges.inc()
        if task.nbytes is not None:
            self._bytes_read.inc(task.nbytes)


class _ResolveDuplicatesFn(beam.DoFn):
    """Keeps one document per id, by (path, position) order; passes dead letters on."""

    def __init__(self, policy: DuplicateIds) -> None:
        self._policy = policy
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)
        self._duplicates = metrics.counter(metrics.DUPLICATE_IDS)

    def process(
        self, element: DeadLetter | tuple[str, Iterable[tuple[str, int, Document]]]
    ) -> Iterator[Document | pvalue.TaggedOutput]:
        if isinstance(element, DeadLetter):
            yield pvalue.TaggedOutput(DEAD_LETTERS, element)
            return
        doc_id, copies = element
        ordered = [document for _, _, document in sorted(copies, key=lambda c: (c[0], c[1]))]
        if len(ordered) == 1:
            yield ordered[0]
            return
        for letter in resolve_duplicates(doc_id, ordered, self._policy):
            if isinstance(letter, Document):
                yield letter
            else:
                self._duplicates.inc()
                self._dead_lettered.inc()
                yield pvalue.TaggedOutput(DEAD_LETTERS, letter)


def resolve_duplicates(
    doc_id: str, ordered: Sequence[Document], policy: DuplicateIds
) -> Iterator[Document | DeadLetter]:
    """Applies the duplicate-id policy to the copies of one id.

    Args:
      doc_id: The id they share.
      ordered: The copies, in (path, position) order.
      policy: Which copy to keep, if any.

    Yields:
      The kept copy, if any, and a dead letter for each other copy.
    """
    if policy is DuplicateIds.DEAD_LETTER:
        shown = ", ".join(d.source for d in ordered[:_DEDUPE_SOURCES_SHOWN])
        more = "" if len(ordered) <= _DEDUPE_SOURCES_SHOWN else ", …"
        for document in ordered:
            yield DeadLetter.of(
                "dedupe",
                document.source,
                f"id {doc_id!r} is used by {len(ordered)} records ({shown}{more}); "
                "source.duplicate_ids: dead_letter keeps none of them",
                document.text,
            )
        return
    keep = len(ordered) - 1 if policy is DuplicateIds.KEEP_LAST else 0
    kept = ordered[keep]
    yield kept
    for i, document in enumerate(ordered):
        if i != keep:
            yield DeadLetter.of(
                "dedupe",
                document.source,
                f"id {doc_id!r} is used again at {kept.source}, the copy kept by "
                f"source.duplicate_ids: {policy.value}",
                document.text,
            )


class ReadDocuments(beam.PTransform):
    """Reads documents from files named by fsspec paths, folders or globs.

    Example::

        read = p | ReadDocuments(SourceConfig(patterns=("corpus/*.jsonl",)))
        read.documents     # PCollection[Document], one per id
        read.dead_letters  # PCollection[DeadLetter]

    Documents are grouped by id (one shuffle) only when :func:`groups_by_id`
    says so; otherwise each one is passed on as soon as it is read.

    Args:
      source: The settings, or just patterns (then everything else is default).

    Returns:
      The outputs ``documents`` and ``dead_letters`` (a ``DoOutputsTuple``).
    """

    def __init__(self, source: SourceConfig | str | Sequence[str]) -> None:
        super().__init__()
        self._config = (
            source if isinstance(source, SourceConfig) else SourceConfig(patterns=source)  # type: ignore[arg-type]
        )

    def expand(self, pbegin: pvalue.PBegin) -> pvalue.DoOutputsTuple:
        config = self._config
        plan = (
            pbegin
            | "Patterns" >> beam.Create(config.patterns)
            | "MatchFiles" >> beam.ParDo(_MatchFilesFn(config))
            | "GroupPaths" >> beam.GroupByKey()
            | "UniqueFiles" >> beam.MapTuple(_one_file)
            | "PlanReads" >> beam.ParDo(_PlanReadsFn(config)).with_outputs(_TO_COUNT, main="tasks")
        )
        ranges = (
            plan[_TO_COUNT]
            | "SpreadRanges" >> beam.Reshuffle()
            | "CountLines" >> beam.ParDo(_CountRangeFn(config))
            | "GroupRanges" >> beam.GroupByKey()
            | "NumberRanges" >> beam.FlatMap(_numbered_tasks)
        )
        keyed = groups_by_id(config)
        read = (
            (plan.tasks, ranges)
            | "AllTasks" >> beam.Flatten()
            | "SpreadTasks" >> beam.Reshuffle()
            | "ReadFiles"
            >> beam.ParDo(_ReadTaskFn(config, keyed=keyed)).with_outputs(
                DEAD_LETTERS, main=_KEYED if keyed else DOCUMENTS
            )
        )
        if not keyed:
            return read
        return (
            (read[_KEYED] | "GroupById" >> beam.GroupByKey(), read[DEAD_LETTERS])
            | "WithDeadLetters" >> beam.Flatten()
            | "ResolveDuplicates"
            >> beam.ParDo(_ResolveDuplicatesFn(config.duplicate_ids)).with_outputs(
                DEAD_LETTERS, main=DOCUMENTS
            )
        )

    def display_data(self) -> dict[str, Any]:
        config = self._config
        return {
            "patterns": ", ".join(config.patterns),
            "format": config.format.value,
            "duplicate_ids": config.duplicate_ids.value,
            "groups_by_id": groups_by_id(config),
            "split_bytes": config.split_bytes,
            "max_record_bytes": config.max_record_bytes,
        }
