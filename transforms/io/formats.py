"""File formats: how one file, or one byte range of it, becomes documents.

Pure functions over fsspec files, without Beam: :func:`read_task` streams a
:class:`ReadTask` and yields ``(position, Document)`` pairs and
:class:`~transforms.types.DeadLetter` records, in file order. Bad input is
never raised: a record that cannot be used is a dead letter that says where
it is (``path:line``, ``path#index`` or ``path``) and why, and the reader goes
on with the next record. Only infrastructure errors (permission denied, lost
connections, timeouts) raise, so that the runner retries the work.

Memory stays bounded whatever the file size: line-oriented formats hold one
record (at most ``source.max_record_bytes``) and one block; a JSON array is
scanned element by element; Parquet is read a batch of rows at a time from one
row group at a time, and only the columns the config needs.

Where a record is, and the default document id when it has no id field:

==========  =====================================  ============================
format      record                                 where / default id
==========  =====================================  ============================
text        the whole file                         ``path``
jsonl       one line                               ``path:line`` (from 1)
csv, tsv    one row (quoted fields may span lines) ``path:line`` of its start
json        one element of the top-level array     ``path#index`` (from 0)
parquet     one row                                ``path#row`` (from 0)
==========  =====================================  ============================
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import json
import logging
import lzma
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from transforms.config import DecodeErrors, SourceConfig, SourceFormat
from transforms.io.files import open_binary, strip_compression
from transforms.io.jsonarray import iter_elements
from transforms.io.splitting import UTF8_BOM, Frame, iter_frames, read_bounded
from transforms.types import DeadLetter, Document

__all__ = [
    "Read",
    "ReadTask",
    "format_of",
    "is_splittable",
    "read_task",
    "to_document",
]

_LOGGER = logging.getLogger(__name__)

Read = tuple[int, Document] | DeadLetter
"""What a reader yields: a document with its position in the file (line, row
or element), which orders copies of one id; or a dead letter."""

_STAGE = "read"
_PARQUET_BATCH_ROWS = 256

_BY_SUFFIX = {
    ".jsonl": SourceFormat.JSONL,
    ".ndjson": SourceFormat.JSONL,
    ".json": SourceFormat.JSON,
    ".csv": SourceFormat.CSV,
    ".tsv": SourceFormat.TSV,
    ".tab": SourceFormat.TSV,
    ".parquet": SourceFormat.PARQUET,
    ".pq": SourceFormat.PARQUET,
}
_SPLITTABLE = (SourceFormat.JSONL, SourceFormat.CSV, SourceFormat.TSV, SourceFormat.PARQUET)

# Errors of the network and of permissions: raised, so that the runner retries.
_INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    PermissionError,
    ConnectionError,
    TimeoutError,
)


def _bad_data_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [
        OSError,
        EOFError,
        ValueError,
        zlib.error,
        lzma.LZMAError,
        csv.Error,
    ]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:
        pass
    try:
        import pyarrow

        errors.append(pyarrow.ArrowException)
    except ImportError:
        pass
    return tuple(errors)


# Errors that mean the bytes are bad: truncated or corrupt compressed streams,
# files that are not what their name says. The file is dead-lettered.
_BAD_DATA_ERRORS = _bad_data_errors()


@dataclasses.dataclass(frozen=True)
class ReadTask:
    """One file, or one byte range of a large file, for one worker to read.

    Attributes:
      path: The file's URL or local path.
      format: Its format, never ``auto``.
      start: First byte of the range.
      end: One past its last byte; ``None`` for the whole file.
      lines_before: Newlines before ``start`` (line-oriented formats).
      in_quotes: Whether ``start`` is inside a quoted CSV field.
      size: The whole file's size in bytes, when its listing gave one.
    """

    path: str
    format: SourceFormat
    start: int = 0
    end: int | None = None
    lines_before: int = 0
    in_quotes: bool = False
    size: int | None = None

    @property
    def nbytes(self) -> int | None:
        """Bytes of storage the task covers: its range, or the whole file's size if known."""
        return self.size if self.end is None else self.end - self.start

    @property
    def whole(self) -> bool:
        """Whether the task is the whole file rather than one range of it."""
        return self.start == 0 and self.end is None

    @property
    def first(self) -> bool:
        """Whether the task holds the file's first byte, and so its header and
        any dead letter about the file as a whole."""
        return self.start == 0


def format_of(path: str, configured: SourceFormat) -> SourceFormat:
    """The format to read ``path`` in: the configured one, or by extension."""
    if configured is not SourceFormat.AUTO:
        return configured
    name = strip_compression(path.lower())
    for suffix, fmt in _BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    return SourceFormat.TEXT


def is_splittable(path: str, fmt: SourceFormat) -> bool:
    """Whether ranges of the file can be read on their own: an uncompressed
    JSONL, CSV, TSV or Parquet file."""
    return fmt in _SPLITTABLE and strip_compression(path.lower()) == path.lower()


def _open(path: str, config: SourceConfig, *, compressed: bool = True) -> Any:
    return open_binary(path, config.storage_options, decompress=compressed)


@dataclasses.dataclass
class _Progress:
    """Where a reader is, for the dead letter of a file that breaks midway.

    Attributes:
      where: Where the next record would be.
      done: The last part read, in words (``line 12``).
    """

    where: str
    done: str = "its start"

    def after(self, path: str, frame: Frame) -> None:
        self.where, self.done = f"{path}:{frame.next_line}", f"line {frame.next_line - 1}"


def read_task(task: ReadTask, config: SourceConfig) -> Iterator[Read]:
    """Reads a file, or a range of one, into documents and dead letters.

    Args:
      task: The file or range.
      config: The source settings (fields, limits, decoding).

    Yields:
      ``(position, Document)`` pairs and dead letters, in file order. A whole
      file that holds no record at all yields one dead letter.

    Raises:
      PermissionError, ConnectionError, TimeoutError: the storage failed; a
        runner retries the work.
    """
    progress = _Progress(task.path)
    reader = _READERS[task.format]
    yielded = False
    try:
        for read in reader(task, config, progress):
            yielded = True
            yield read
    except _INFRASTRUCTURE_ERRORS:
        raise
    except _BAD_DATA_ERRORS as e:
        yielded = True
        reason = f"cannot read file past {progress.done}: {type(e).__name__}: {e}"
        _LOGGER.warning("Dead-lettering the rest of %s: %s", task.path, reason)
        yield DeadLetter.of(_STAGE, progress.where, reason)
    if task.whole and not yielded:
        yield DeadLetter.of(_STAGE, task.path, "file has no records (empty or only blank lines)")


def _decode(data: bytes, config: SourceConfig) -> str | UnicodeDecodeError:
    if config.decode_errors is DecodeErrors.REPLACE:
        return data.decode("utf-8", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e


def _clean_text(text: str, config: SourceConfig) -> str | None:
    """The text with NUL characters replaced, or ``None`` to dead-letter it."""
    if "\x00" not in text:
        return text
    if config.decode_errors is DecodeErrors.REPLACE:
        return text.replace("\x00", "\ufffd")
    return None


# Signatures of common binary files, by their first bytes, and what they are.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "an ELF executable or shared library"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or .docx, .xlsx, .jar)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x00asm", "a WebAssembly module"),
    (b"PAR1", "a Parquet file"),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFFED_BYTES = 8192


def binary_kind(data: bytes) -> str | None:
    """What a file is if its first bytes say it is not text, else None.

    A known signature (PNG, JPEG, ELF, PDF, ZIP...), a UTF-16 byte-order
    mark, or a NUL byte in the first 8 KiB (as ``git`` and ``grep`` tell
    binary files): no UTF-8 text has one, and no decoding option makes such
    a file a document.
    """
    head = data[:_SNIFFED_BYTES]
    for signature, kind in _SIGNATURES:
        if head.startswith(signature) and (signature != b"MZ" or b"\x00" in head):
            return kind
    if head.startswith(_UTF16_BOMS):
        return "UTF-16 text"
    if b"\x00" in head:
        return f"binary data, or UTF-16 text (a NUL character at offset {head.index(0)})"
    return None


def _not_text(kind: str) -> str:
    if kind == "UTF-16 text":  # with a byte-order mark
        return (
            "file is UTF-16 text, not UTF-8: convert it (iconv -f UTF-16 -t UTF-8) or leave it "
            "out of --input"
        )
    return (
        f"file is not text: {kind}; only text files can be ingested: leave it out of --input "
        "(a narrower glob, or source.exclude)"
    )


def _nul_reason(text: str) -> str:
    return (
        f"text has a NUL character at offset {text.index(chr(0))}: binary data, or text that "
        "is not UTF-8 (UTF-16?); set source.decode_errors: replace to keep it"
    )


def _kind(value: object) -> str:
    return f"a {type(value).__name__}"


def _text_field_advice(fields: Mapping[str, Any]) -> str:
    """Where a record's text may be, when none is where the run looked: its fields of text."""
    named = [repr(str(name)) for name, value in fields.items() if isinstance(value, str)]
    if not named:
        return " (the record has no field of text)"
    shown = ", ".join(named[:5]) + (", …" if len(named) > 5 else "")
    return f" (its fields of text: {shown}; name one with --text_field or source.text_fields)"


def to_document(
    fields: Mapping[str, Any], where: str, config: SourceConfig, *, raw: object = ""
) -> Document | DeadLetter:
    """Builds a document from one record's fields, or says why it cannot.

    Args:
      fields: The record: a JSON object, a CSV row by column, a Parquet row.
      where: Where the record is; its id when it has no id field.
      config: Which fields hold the id, the text and the metadata.
      raw: The record as read, for the dead letter's preview.

    Returns:
      The document, or a dead letter naming the field that is wrong.
    """
    names = config.text_fields
    texts = []
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            return DeadLetter.of(
                _STAGE,
                where,
                f"text field {name!r} is {_kind(value)}; it must be non-empty text",
                raw,
            )
        if value.strip():
            texts.append(value)
    if not texts:
        if len(names) == 1:
            found = "missing" if fields.get(names[0]) is None else "empty"
            reason = f"text field {names[0]!r} is {found}; it must be non-empty text"
        else:
            listed = ", ".join(repr(n) for n in names)
            reason = f"text fields {listed} are all missing or empty; one must be non-empty text"
        if all(fields.get(name) is None for name in names):
            reason += _text_field_advice(fields)
        return DeadLetter.of(_STAGE, where, reason, raw)
    text = _clean_text(config.text_separator.join(texts), config)
    if text is None:
        return DeadLetter.of(_STAGE, where, _nul_reason(config.text_separator.join(texts)), raw)
    doc_id = _document_id(fields, config.id_field, where)
    if isinstance(doc_id, DeadLetter):
        return doc_id
    return Document(id=doc_id, text=text, metadata=_metadata(fields, config), source=where)


def _document_id(fields: Mapping[str, Any], id_field: str | None, where: str) -> str | DeadLetter:
    if not id_field or fields.get(id_field) is None:
        return where
    value = fields[id_field]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # integer ids in a float column (a Parquet column with nulls)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return DeadLetter.of(
            _STAGE,
            where,
            f"id field {id_field!r} must be a non-empty string or an integer, got {value!r}",
            value,
        )
    return str(value)


def _metadata(fields: Mapping[str, Any], config: SourceConfig) -> dict[str, Any]:
    if config.metadata_fields is None:
        skip = {*config.text_fields, config.id_field}
        return {k: v for k, v in fields.items() if k not in skip}
    return {k: fields[k] for k in config.metadata_fields if k in fields}


def _oversized(size: int, config: SourceConfig) -> str:
    return (
        f"record is {size} bytes, over source.max_record_bytes={config.max_record_bytes}; "
        "raise the limit or fix the record"
    )


def _invalid_utf8(e: UnicodeDecodeError, what: str) -> str:
    return (
        f"invalid UTF-8 at byte {e.start} of the {what}: {e.reason}; set "
        "source.decode_errors: replace to keep the record"
    )


# Text: one document per file.


def _read_text(task: ReadTask, config: SourceConfig, progress: _Progress) -> Iterator[Read]:
    path = task.path
    limit = config.max_record_bytes
    with _open(path, config) as f:
        data, size = read_bounded(f, limit)
    if data is None:
        with _open(path, config) as f:
            kind = binary_kind(f.read(_SNIFFED_BYTES))
        yield DeadLetter.of(
            _STAGE,
            path,
            _not_text(kind)
            if kind is not None
            else f"file is {size} bytes, over source.max_record_bytes={limit}; raise the limit "
            "or split the file",
        )
        return
    kind = binary_kind(data)
    if kind is not None:  # whatever source.decode_errors says: no decoding makes it text
        yield DeadLetter.of(_STAGE, path, _not_text(kind))
        return
    bom = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    decoded = _decode(data[bom:], config)
    if isinstance(decoded, UnicodeDecodeError):
        yield DeadLetter.of(
            _STAGE,
            path,
            f"invalid UTF-8 at byte {decoded.start + bom}: {decoded.reason}; set "
            "source.decode_errors: replace to keep the file",
        )
        return
    if not decoded.strip():
        yield DeadLetter.of(_STAGE, path, "document has no text (empty or whitespace only)")
        return
    text = _clean_text(decoded, config)
    if text is None:
        yield DeadLetter.of(_STAGE, path, _nul_reason(decoded), decoded)
        return
    yield 0, Document(id=path, text=text, metadata={"path": path}, source=path)


# JSONL: one JSON object per line.


def _parse_json_object(
    data: bytes, where: str, config: SourceConfig, what: str
) -> Document | DeadLetter:
    decoded = _decode(data, config)
    if isinstance(decoded, UnicodeDecodeError):
        return DeadLetter.of(_STAGE, where, _invalid_utf8(decoded, what), data)
    try:
        # strict=False: raw tabs and other control characters inside strings
        # are common in hand-made dumps, and harmless.
        record = json.loads(decoded, strict=False)
    except json.JSONDecodeError as e:
        return DeadLetter.of(_STAGE, where, f"malformed JSON: {e.msg} at column {e.colno}", decoded)
    except RecursionError:
        return DeadLetter.of(_STAGE, where, "malformed JSON: nested too deeply", decoded)
    if not isinstance(record, dict):
        return DeadLetter.of(_STAGE, where, f"expected a JSON object, got {_kind(record)}", decoded)
    return to_document(record, where, config, raw=decoded)


def _read_jsonl(task: ReadTask, config: SourceConfig, progress: _Progress) -> Iterator[Read]:
    with _open(task.path, config, compressed=task.whole) as f:
        frames = iter_frames(
            f,
            max_record_bytes=config.max_record_bytes,
            start=task.start,
            end=task.end,
            lines_before=task.lines_before,
        )
        for frame in frames:
            progress.after(task.path, frame)
            where = f"{task.path}:{frame.line}"
            if frame.data is None:
                yield DeadLetter.of(_STAGE, where, _oversized(frame.size, config))
                continue
            data = frame.data.removeprefix(UTF8_BOM) if frame.offset == 0 else frame.data
            if data.strip():
                read = _parse_json_object(data, where, config, "line")
                yield read if isinstance(read, DeadLetter) else (frame.line, read)


# CSV and TSV: a header row, then one record per row.


def _csv_options(task: ReadTask, config: SourceConfig) -> dict[str, Any]:
    delimiter = config.csv_delimiter or ("\t" if task.format is SourceFormat.TSV else ",")
    if config.csv_quote is None:
        return {"delimiter": delimiter, "quoting": csv.QUOTE_NONE}
    return {"delimiter": delimiter, "quotechar": config.csv_quote, "doublequote": True}


def _csv_row(text: str, options: dict[str, Any]) -> list[str] | str:
    """Parses one framed CSV record; returns its fields, or why it cannot."""
    try:
        rows = list(csv.reader([text], **options))
    except csv.Error as e:
        return f"malformed CSV row: {e}"
    if len(rows) != 1:
        return "malformed CSV row: a quote character inside an unquoted field?"
    return rows[0]


def _csv_header(
    frame: Frame, config: SourceConfig, options: dict[str, Any]
) -> list[str] | str | None:
    """The column names in a header frame, why they cannot be read, or
    ``None`` for a blank line before the header."""
    if frame.data is None:
        return "the header row is " + _oversized(frame.size, config).removeprefix("record is ")
    decoded = _decode(
        frame.data.removeprefix(UTF8_BOM) if frame.offset == 0 else frame.data, config
    )
    if isinstance(decoded, UnicodeDecodeError):
        return "the header row has " + _invalid_utf8(decoded, "row")
    if not decoded.strip():
        return None
    return _csv_row(decoded, options)


def _quote_bytes(config: SourceConfig) -> bytes | None:
    return config.csv_quote.encode() if config.csv_quote else None


def _allow_csv_fields_of(size: int) -> None:
    """Raises the csv module's field size limit (128 KiB by default) to ``size``.

    The limit is global to the process; it is only ever raised, never lowered,
    so other users of the csv module keep working. The reader bounds records
    by ``source.max_record_bytes`` itself.
    """
    if csv.field_size_limit() < size:
        csv.field_size_limit(size)


def _read_csv(task: ReadTask, config: SourceConfig, progress: _Progress) -> Iterator[Read]:
    _allow_csv_fields_of(config.max_record_bytes)
    options = _csv_options(task, config)
    quote = _quote_bytes(config)
    limit = config.max_record_bytes
    with _open(task.path, config, compressed=task.whole) as f:
        header: list[str] | None = None
        if not task.first:
            # The header is in the first range: read it again. If it is bad,
            # the first range says so.
            found = _first_header(
                iter_frames(f, max_record_bytes=limit, quote=quote), config, options
            )
            if isinstance(found, str):
                return
            header = found
        frames = iter_frames(
            f,
            max_record_bytes=limit,
            quote=quote,
            start=task.start,
            end=task.end,
            lines_before=task.lines_before,
            in_quotes=task.in_quotes,
        )
        if header is None:
            found = _first_header(frames, config, options)
            if isinstance(found, str):
                yield DeadLetter.of(_STAGE, f"{task.path}:1", found)
                return
            header = found
        for frame in frames:
            progress.after(task.path, frame)
            where = f"{task.path}:{frame.line}"
            read = _csv_record(frame, where, header, options, config)
            if read is not None:
                yield read if isinstance(read, DeadLetter) else (frame.line, read)


def _first_header(
    frames: Iterator[Frame], config: SourceConfig, options: dict[str, Any]
) -> list[str] | str:
    """Reads frames up to the header row; returns its columns, or what is wrong."""
    for frame in frames:
        columns = _csv_header(frame, config, options)
        if columns is None:
            continue
        if isinstance(columns, str):
            return f"cannot read the header: {columns}"
        if not set(config.text_fields) & set(columns):
            return (
                f"the header has no text column {' or '.join(config.text_fields)!r} "
                f"(columns: {', '.join(columns)}); set source.text_field"
            )
        return columns
    return "file is empty: a CSV/TSV file needs a header row"


def _csv_record(
    frame: Frame,
    where: str,
    header: list[str],
    options: dict[str, Any],
    config: SourceConfig,
) -> Document | DeadLetter | None:
    """One CSV row as a document or a dead letter; ``None`` for a blank line."""
    if frame.data is None:
        return DeadLetter.of(_STAGE, where, _oversized(frame.size, config))
    decoded = _decode(frame.data, config)
    if isinstance(decoded, UnicodeDecodeError):
        return DeadLetter.of(_STAGE, where, _invalid_utf8(decoded, "row"), frame.data)
    if not decoded.strip():
        return None
    if frame.open_quote:
        return DeadLetter.of(
            _STAGE,
            where,
            "the file ends inside a quoted field that starts in this row: a quote that is "
            "never closed, or a truncated file",
            decoded,
        )
    row = _csv_row(decoded, options)
    if isinstance(row, str):
        return DeadLetter.of(_STAGE, where, row, decoded)
    if len(row) != len(header):
        return DeadLetter.of(
            _STAGE,
            where,
            f"row has {len(row)} fields, the header has {len(header)}",
            decoded,
        )
    return to_document(dict(zip(header, row, strict=True)), where, config, raw=decoded)


# JSON: a top-level array of objects, scanned element by element.


def _read_json(task: ReadTask, config: SourceConfig, progress: _Progress) -> Iterator[Read]:
    with _open(task.path, config) as f:
        for element in iter_elements(f, config.max_record_bytes):
            where = f"{task.path}#{element.index}"
            progress.where = f"{task.path}#{element.index + 1}"
            progress.done = f"element {element.index}"
            if element.error:
                yield DeadLetter.of(_STAGE, where, element.error)
            elif element.data is None:
                yield DeadLetter.of(_STAGE, where, _oversized(element.size, config))
            else:
                read = _parse_json_object(element.data, where, config, "element")
                yield read if isinstance(read, DeadLetter) else (element.index, read)


# Parquet: one document per row, a row group and a batch of rows at a time.


def _jsonable(value: Any) -> Any:
    """Parquet values as JSON values, for metadata."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _row_group_start(row_group: Any) -> int:
    """Byte offset of a row group's first page."""
    offsets = []
    for i in range(row_group.num_columns):
        column = row_group.column(i)
        offsets.append(column.data_page_offset)
        if column.has_dictionary_page and column.dictionary_page_offset:
            offsets.append(column.dictionary_page_offset)
    return min(offsets) if offsets else 0


def _read_parquet(task: ReadTask, config: SourceConfig, progress: _Progress) -> Iterator[Read]:
    import pyarrow.parquet as pq

    with _open(task.path, config, compressed=False) as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        if not set(config.text_fields) & set(names):
            if task.first:
                yield DeadLetter.of(
                    _STAGE,
                    task.path,
                    f"Parquet file has no text column {' or '.join(config.text_fields)!r} "
                    f"(columns: {', '.join(names)}); set source.text_field",
                )
            return
        columns = None
        if config.metadata_fields is not None:
            wanted = (config.id_field or "", *config.text_fields, *config.metadata_fields)
            columns = [c for c in dict.fromkeys(wanted) if c in names]
        metadata = parquet.metadata
        first_row = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            start = _row_group_start(row_group)
            rows = row_group.num_rows
            if task.start <= start and (task.end is None or start < task.end):
                yield from _parquet_rows(parquet, group, columns, first_row, task, config, progress)
            first_row += rows


def _parquet_rows(
    parquet: Any,
    group: int,
    columns: list[str] | None,
    first_row: int,
    task: ReadTask,
    config: SourceConfig,
    progress: _Progress,
) -> Iterator[Read]:
    row = first_row
    progress.where, progress.done = f"{task.path}#{row}", f"row {row - 1}"
    batches = parquet.iter_batches(
        batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=columns, use_threads=False
    )
    for batch in batches:
        for values in batch.to_pylist():
            where = f"{task.path}#{row}"
            fields = {k: _jsonable(v) for k, v in values.items()}
            read = to_document(fields, where, config, raw=values)
            yield read if isinstance(read, DeadLetter) else (row, read)
            row += 1
        progress.where, progress.done = f"{task.path}#{row}", f"row {row - 1}"


_READERS: dict[SourceFormat, Callable[[ReadTask, SourceConfig, _Progress], Iterator[Read]]] = {
    SourceFormat.TEXT: _read_text,
    SourceFormat.JSONL: _read_jsonl,
    SourceFormat.JSON: _read_json,
    SourceFormat.CSV: _read_csv,
    SourceFormat.TSV: _read_csv,
    SourceFormat.PARQUET: _read_parquet,
}
