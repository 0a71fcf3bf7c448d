"""Validated settings for sources, chunking, models and Milvus targets.

Each settings object is a frozen dataclass that checks itself when it is made,
so that a wrong value stops a run on the launcher, before any worker starts,
with a message that names the value and the fix. Secrets are never fields:
a :class:`MilvusTarget` holds the *name* of the environment variable or the
*path* of the file that has the token, and workers read it in ``setup()``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ChunkingConfig",
    "ConfigError",
    "DecodeErrors",
    "DuplicateIds",
    "EmptyMatchTreatment",
    "IndexConfig",
    "MilvusTarget",
    "SearchConfig",
    "SourceConfig",
    "SourceFormat",
    "TextOverflow",
    "WriteConfig",
    "WriteMode",
    "default_search_params",
]


class ConfigError(ValueError):
    """A setting is invalid; the message names it and says how to fix it."""


class SourceFormat(str, enum.Enum):
    """How a file is turned into documents.

    Every format but ``text`` holds records; the config names the record's id,
    text and metadata fields (columns, for CSV/TSV and Parquet).
    """

    AUTO = "auto"
    """By extension, after any compression suffix: ``.jsonl``/``.ndjson`` as
    JSONL, ``.json`` as JSON, ``.csv`` as CSV, ``.tsv``/``.tab`` as TSV,
    ``.parquet``/``.pq`` as Parquet, anything else (txt, md, rst, …) as text."""
    TEXT = "text"
    """The whole file is one document (txt, md, rst, …); its id is its path."""
    JSONL = "jsonl"
    """One JSON object per line (JSON Lines, NDJSON), one document per object."""
    JSON = "json"
    """A JSON array of objects, one document per element; or one object."""
    CSV = "csv"
    """Comma-separated values with a header row; quoted fields may hold newlines."""
    TSV = "tsv"
    """Tab-separated values with a header row, quoted like CSV."""
    PARQUET = "parquet"
    """Apache Parquet, one document per row; only the needed columns are read."""


class EmptyMatchTreatment(str, enum.Enum):
    """What to do when an input pattern matches no file."""

    DISALLOW = "disallow"
    ALLOW = "allow"


class DecodeErrors(str, enum.Enum):
    """What to do with bytes that are not UTF-8, and with NUL characters."""

    DEAD_LETTER = "dead_letter"
    """The record (or text file) goes to the dead letters, with the byte offset."""
    REPLACE = "replace"
    """Bad bytes and NUL characters become U+FFFD and the record is kept."""


class DuplicateIds(str, enum.Enum):
    """What to do when several records of one run have the same document id.

    ``keep_last``, ``keep_first`` and ``dead_letter`` group every document by id
    (one shuffle, which holds the whole corpus at once on one machine with the
    DirectRunner) and order the copies of an id by where they are: path, then
    line (or row, or element), never by arrival, so the outcome is the same on
    every run and runner. Copies that are not kept go to the dead letters
    (stage ``dedupe``) and are counted by the ``duplicate_ids`` counter.

    ``assume_unique`` skips that shuffle: documents stream from the files into
    the rest of the pipeline. Use it when the id field is a key known to be
    unique (a database export, a dump with a primary key).

    With ``id_field: null`` every id is a place (``path``, ``path:line``,
    ``path#index``), unique by construction, so no policy shuffles.
    """

    KEEP_LAST = "keep_last"
    """Keep the copy that comes last in (path, position) order."""
    KEEP_FIRST = "keep_first"
    """Keep the copy that comes first in (path, position) order."""
    DEAD_LETTER = "dead_letter"
    """Keep none: an id used twice is ambiguous, and every copy is dead-lettered."""
    ASSUME_UNIQUE = "assume_unique"
    """Trust the ids to be unique: no shuffle, every document read is passed on.

    A duplicate is then not detected: nothing is dead-lettered or counted
    (``duplicate_ids`` stays 0) and every copy is chunked and written. Chunk
    ids come from the document id, so in Milvus the copy written later upserts
    over the other's rows (which one is later depends on arrival order, not on
    the files), and chunks of the longer copy past the shorter one's last
    chunk remain.
    """


class WriteMode(str, enum.Enum):
    """What to do with the collection before writing."""

    CREATE_IF_MISSING = "create_if_missing"
    """Create it when missing; check it fits the run when present."""
    APPEND = "append"
    """It must exist and fit the run; never create it."""
    OVERWRITE = "overwrite"
    """Drop it if present, then create it anew."""
    FAIL_IF_EXISTS = "fail_if_exists"
    """Create it; stop if it is already there."""
    SYNC = "sync"
    """Create it when missing; write only the documents that changed, delete the
    ones gone from the run's scope (see ``transforms.milvus.sync``)."""


class TextOverflow(str, enum.Enum):
    """What to do with a chunk whose text is longer than the text field."""

    DEAD_LETTER = "dead_letter"
    TRUNCATE = "truncate"
    """Cut the stored text at the field's length (on a character boundary);
    the vector still embeds the whole chunk."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


_MIB = 1024 * 1024
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": _MIB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
# fsspec options that carry credentials: those come from the environment or
# the platform's credential chain, never from a config file.
_SECRET_STORAGE_OPTIONS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "account_key",
        "sas_token",
        "connection_string",
        "client_secret",
        "credentials",
    }
)


def _byte_size(value: object, name: str) -> int:
    """Accepts a whole number of bytes or a string such as ``64MiB`` or ``16 MB``."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "").replace("_", "")
        number = text.rstrip("kmgib")
        unit = text[len(number) :]
        if number.isdigit() and unit in _SIZE_UNITS:
            return int(number) * _SIZE_UNITS[unit]
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(
        f"{name}={value!r}: give a whole number of bytes, or a size such as '64MiB' or '16MB'."
    )


def _names(value: object, name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """One field name or a list of them, as YAML gives them."""
    names = (value,) if isinstance(value, str) else value
    _require(
        isinstance(names, (list, tuple))
        and (allow_empty or bool(names))
        and all(isinstance(n, str) and n for n in names),
        f"{name}={value!r}: give a field name or a list of field names.",
    )
    return tuple(names)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """Where documents come from and how to read them.

    Every field takes plain YAML values (strings, numbers, lists, mappings),
    so a config file's ``source:`` section is ``SourceConfig(**section)``.

    Attributes:
      patterns: fsspec paths, folders or globs, local or remote
        (``docs/**/*.md``, ``memory://c/*.jsonl``, ``s3://bucket/dump-*.jsonl.gz``).
      format: How to read the files; see :class:`SourceFormat`.
      id_field: Field (or column) with the document id. A record without it
        gets an id from where it is: ``path:line`` for JSONL/CSV/TSV,
        ``path#index`` for JSON arrays and Parquet; a text file's id is its path.
      text_field: Field with the text, or a list of fields (``[title, body]``)
        whose non-empty values are joined with ``text_separator``.
      text_separator: Joins several text fields.
      metadata_fields: Fields to keep as metadata; ``None`` keeps every field
        but the id and text fields. Parquet reads only the columns it needs.
      include: Globs a matched file must match (any of them) to be read; empty
        means every file. A glob is tried on the whole path and on the file
        name, and ``*`` also crosses ``/``: ``*.md``, ``*/2024/*``.
      exclude: Globs of matched files to skip, tried the same way.
      empty_match: Whether a pattern that matches no file (after ``include``
        and ``exclude``) is an error.
      decode_errors: Bytes that are not UTF-8, and NUL characters: dead-letter
        the record, or replace them with U+FFFD; see :class:`DecodeErrors`.
      duplicate_ids: Which copy of a document id seen twice in a run is kept,
        or ``assume_unique`` not to check (no shuffle); see :class:`DuplicateIds`.
        Ids taken from places (``id_field`` null) are never checked: they are
        unique.
      max_record_bytes: Largest record (line, CSV row, JSON element, text file)
        read; a larger one is skipped without being held in memory and
        dead-lettered. A number of bytes or a size such as ``16MiB``.
      split_bytes: Uncompressed JSONL/CSV/TSV and Parquet files larger than
        this are read as ranges of this size by many workers. Compressed files
        cannot be split and are streamed by one worker each. Ranges are fixed
        when the run starts (no runner re-splits them), so smaller ones spread
        a file over more workers and start feeding the embedder sooner; each
        costs one more file open (and, for JSONL/CSV/TSV, one more task of
        the counting pass).
      csv_delimiter: Field separator; ``None`` means ``,`` for CSV and a tab
        for TSV.
      csv_quote: Quote character of CSV/TSV, or ``None`` for files without
        quoting, where every line is a row and quotes are plain text.
      storage_options: fsspec options for every pattern (``anon``,
        ``client_kwargs: {endpoint_url: ...}``, ``requester_pays``). Credentials
        are refused here: they come from the environment or the platform.
    """

    patterns: tuple[str, ...]
    format: SourceFormat = SourceFormat.AUTO
    id_field: str | None = "id"
    text_field: str | tuple[str, ...] = "text"
    text_separator: str = "\n\n"
    metadata_fields: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    empty_match: EmptyMatchTreatment = EmptyMatchTreatment.DISALLOW
    decode_errors: DecodeErrors = DecodeErrors.DEAD_LETTER
    duplicate_ids: DuplicateIds = DuplicateIds.KEEP_LAST
    max_record_bytes: int = 16 * _MIB
    split_bytes: int = 4 * _MIB
    csv_delimiter: str | None = None
    csv_quote: str | None = '"'
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        patterns = (self.patterns,) if isinstance(self.patterns, str) else tuple(self.patterns)
        object.__setattr__(self, "patterns", patterns)
        _require(
            bool(patterns) and all(isinstance(p, str) and p.strip() for p in patterns),
            f"source.patterns={self.patterns!r}: give at least one path or glob, "
            "e.g. --input 'docs/*.md'.",
        )
        object.__setattr__(self, "format", _enum(SourceFormat, self.format, "source.format"))
        object.__setattr__(
            self, "empty_match", _enum(EmptyMatchTreatment, self.empty_match, "source.empty_match")
        )
        object.__setattr__(
            self, "decode_errors", _enum(DecodeErrors, self.decode_errors, "source.decode_errors")
        )
        object.__setattr__(
            self, "duplicate_ids", _enum(DuplicateIds, self.duplicate_ids, "source.duplicate_ids")
        )
        _require(
            self.id_field is None or isinstance(self.id_field, str),
            f"source.id_field={self.id_field!r}: name the field with the id, or null to take "
            "ids from where records are (path:line).",
        )
        object.__setattr__(self, "id_field", self.id_field or None)
        _require(
            bool(self.text_field),
            "source.text_field is empty: name the field that holds the text.",
        )
        texts = _names(self.text_field, "source.text_field")
        object.__setattr__(self, "text_field", texts[0] if len(texts) == 1 else texts)
        _require(
            isinstance(self.text_separator, str),
            f"source.text_separator={self.text_separator!r}: must be a string, e.g. '\\n\\n'.",
        )
        if self.metadata_fields is not None:
            object.__setattr__(
                self,
                "metadata_fields",
                _names(self.metadata_fields, "source.metadata_fields", allow_empty=True),
            )
        for name in ("include", "exclude"):
            value = getattr(self, name)
            globs = (value,) if isinstance(value, str) else tuple(value or ())
            _require(
                all(isinstance(g, str) and g for g in globs),
                f"source.{name}={value!r}: give a glob or a list of globs, e.g. ['*.md'].",
            )
            object.__setattr__(self, name, globs)
        for name in ("max_record_bytes", "split_bytes"):
            size = _byte_size(getattr(self, name), f"source.{name}")
            _require(size > 0, f"source.{name}={size!r}: must be more than 0 bytes.")
            object.__setattr__(self, name, size)
        for name in ("csv_delimiter", "csv_quote"):
            value = getattr(self, name)
            _require(
                value is None
                or (isinstance(value, str) and len(value) == 1 and value not in "\r\n"),
                f"source.{name}={value!r}: must be one character (not a newline), or null.",
            )
        _require(
            self.csv_delimiter is None or self.csv_delimiter != self.csv_quote,
            f"source.csv_delimiter and source.csv_quote are both {self.csv_quote!r}; "
            "they must differ.",
        )
        _require(
            isinstance(self.storage_options, Mapping),
            f"source.storage_options={self.storage_options!r}: must be a mapping of fsspec "
            "options, e.g. {anon: true}.",
        )
        secrets = sorted(_SECRET_STORAGE_OPTIONS & set(self.storage_options))
        _require(
            not secrets,
            f"source.storage_options has credentials ({', '.join(secrets)}); never put them in "
            "a config: use the environment (e.g. AWS_ACCESS_KEY_ID), a credentials file or "
            "the workers' service account.",
        )
        object.__setattr__(self, "storage_options", dict(self.storage_options))

    @property
    def text_fields(self) -> tuple[str, ...]:
        """The text field names, as a tuple even when there is one."""
        return (self.text_field,) if isinstance(self.text_field, str) else self.text_field


@dataclasses.dataclass(frozen=True)
class ChunkingConfig:
    """Token windows cut from each document.

    Attributes:
      max_tokens: Tokens per chunk, counted with the model's own tokenizer.
      overlap_tokens: Tokens shared by consecutive chunks, so that a sentence
        cut by a window boundary is whole in one of them.
    """

    max_tokens: int = 256
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        _require(
            isinstance(self.max_tokens, int) and self.max_tokens > 0,
            f"chunking.max_tokens={self.max_tokens!r}: must be a positive whole number "
            "(256 is a good start).",
        )
        _require(
            isinstance(self.overlap_tokens, int) and 0 <= self.overlap_tokens < self.max_tokens,
            f"chunking.overlap_tokens={self.overlap_tokens!r}: must be at least 0 and less "
            f"than chunking.max_tokens={self.max_tokens}.",
        )

    def fingerprint(self, tokenizer_fingerprint: str) -> str:
        """Identifies these settings with this tokenizer, for chunk ids."""
        key = f"{tokenizer_fingerprint}/{self.max_tokens}/{self.overlap_tokens}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]


HNSW_BUILD_PARAMS: Mapping[str, int] = {"M": 32, "efConstruction": 400}
"""The build parameters of an ``HNSW`` index that names none of its own.

Measured (``python -m bench.recall``, docs/search.md): against M 16,
efConstruction 200 (Milvus Lite's own defaults) it found more of the exact
top 10 at every ``ef`` (0.993 against 0.985 at ``ef`` 512 on 10,000 chunks),
for twice the build time.
"""

_INDEX_BUILD_DEFAULTS: Mapping[str, Mapping[str, int]] = {"HNSW": HNSW_BUILD_PARAMS}
# Indexes searched as HNSW graphs, whose search-time breadth is ``ef``: HNSW
# itself, its quantized kinds, and AUTOINDEX, which Milvus 2.3-2.5 servers and
# Milvus Lite build as HNSW (Zilliz Cloud tunes its own, see below).
_EF_INDEXES = frozenset({"HNSW", "HNSW_SQ", "HNSW_PQ", "HNSW_PRQ", "AUTOINDEX"})

SEARCH_EF_MIN = 1024
"""The smallest ``ef`` the search defaults pass to an HNSW graph."""
SEARCH_EF_PER_HIT = 16
"""The default ``ef`` is at least this many times ``top_k``."""
SEARCH_EF_MAX = 32768
"""The largest ``ef`` Milvus accepts (its ``top_k`` limit, 16384, times 2)."""


def default_search_params(index_type: str, top_k: int, *, zilliz: bool = False) -> dict[str, Any]:
    """The search parameters used when none are given, for an index and ``top_k``.

    An HNSW graph (and AUTOINDEX, which Milvus servers and Milvus Lite build as
    one) is searched with ``ef = max(1024, 16 * top_k)``, never below ``top_k``
    (Milvus refuses a smaller one) and at most 32768. Without it a Milvus 2.3.5
    server searches a graph with its own ``ef`` and Lite with 64, which found
    0.79-0.94 of the exact top 10 on 10,000 chunks (docs/search.md); with it,
    0.989-0.996, and 0.95-0.98 on 100,000, for a few milliseconds more. Other
    indexes get none: FLAT is exact; for IVF set ``nprobe`` in
    ``search.params``. AUTOINDEX on Zilliz Cloud gets none either: it chooses
    its own search parameters.

    Args:
      index_type: The collection's vector index type, as ``describe_index``
        reports it (case does not matter).
      top_k: Hits per query.
      zilliz: The collection is on Zilliz Cloud.

    Returns:
      The ``params`` of a Milvus search request (``{"ef": 1024}``), or ``{}``.
    """
    kind = str(index_type).upper()
    if kind not in _EF_INDEXES or (zilliz and kind == "AUTOINDEX"):
        return {}
    ef = max(SEARCH_EF_MIN, SEARCH_EF_PER_HIT * top_k, top_k)
    return {"ef": min(ef, SEARCH_EF_MAX)}


def _params(value: object, name: str) -> tuple[tuple[str, object], ...]:
    """A mapping of parameters (as YAML gives them) as sorted pairs."""
    pairs = tuple(sorted(value.items())) if isinstance(value, Mapping) else value
    _require(
        isinstance(pairs, tuple)
        and all(
            isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and p[0] for p in pairs
        ),
        f"{name}={value!r}: give a mapping of parameter names to values, e.g. {{ef: 256}}.",
    )
    return pairs  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """The vector index created with a new collection.

    The default is ``FLAT``, exact search: the only index that returned at
    least 0.99 of the exact top 10 at every size measured (1,000 to 100,000
    chunks of the benchmark corpus, Milvus 2.3.5 server and Milvus Lite), also
    right after ingestion, with nothing to build or wait for. Its cost grows
    with the rows: on two cores a search of 100,000 chunks took about 17 ms on
    the server and 140 ms on Lite, and about ten times that is expected at a
    million. For faster search of large collections choose ``HNSW`` (build
    parameters default to :data:`HNSW_BUILD_PARAMS`) and an ``ef`` from the
    measured table in docs/search.md; recall then depends on the data.
    ``AUTOINDEX`` lets the server choose (a Milvus 2.3.5 server builds HNSW
    M 18, efConstruction 240; Lite HNSW M 16, efConstruction 200; Zilliz Cloud
    its own).

    Attributes:
      index_type: Milvus index type, e.g. ``FLAT``, ``HNSW``, ``AUTOINDEX``,
        ``IVF_FLAT``.
      metric_type: ``COSINE``, ``IP`` or ``L2``.
      params: Index build parameters, passed through; for ``HNSW`` the ones
        not given are taken from :data:`HNSW_BUILD_PARAMS`.
    """

    index_type: str = "FLAT"
    metric_type: str = "COSINE"
    params: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        _require(
            isinstance(self.index_type, str) and bool(self.index_type.strip()),
            f"index.index_type={self.index_type!r}: name a Milvus index type, e.g. FLAT or HNSW.",
        )
        kind = self.index_type.strip().upper()
        object.__setattr__(self, "index_type", kind)
        object.__setattr__(self, "metric_type", str(self.metric_type).upper())
        _require(
            self.metric_type in ("COSINE", "IP", "L2"),
            f"index.metric_type={self.metric_type!r}: use COSINE, IP or L2.",
        )
        given = dict(_params(self.params, "index.params"))
        params = {**_INDEX_BUILD_DEFAULTS.get(kind, {}), **given}
        object.__setattr__(self, "params", tuple(sorted(params.items())))


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """How :class:`~transforms.milvus.search.SearchMilvus` searches: the config's
    ``search:`` keys ``top_k``, ``filter`` and ``params``.

    Attributes:
      top_k: Hits per query.
      filter: Milvus boolean expression the hits must satisfy, e.g.
        ``'document_id like "docs/%"'``; empty for none.
      params: Search parameters of the collection's index, passed through
        (``{ef: 2048}`` for HNSW, ``{nprobe: 32}`` for IVF). ``None`` (the
        default) chooses them from the index and ``top_k`` with
        :func:`default_search_params`; ``{}`` passes none, leaving them to
        the server.
    """

    top_k: int = 5
    filter: str = ""
    params: tuple[tuple[str, object], ...] | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 1,
            f"search.top_k={self.top_k!r}: must be a whole number of at least 1.",
        )
        _require(
            isinstance(self.filter, str),
            f"search.filter={self.filter!r}: must be a Milvus expression (a string).",
        )
        if self.params is not None:
            object.__setattr__(self, "params", _params(self.params, "search.params"))

    @property
    def search_params(self) -> dict[str, Any] | None:
        """``params`` as the ``search_params`` of ``SearchMilvus`` (``None``: the defaults)."""
        return None if self.params is None else dict(self.params)


_CLIENT_OPTIONS = frozenset(
    {
        "secure",
        "server_pem_path",
        "server_name",
        "client_pem_path",
        "client_key_path",
        "ca_pem_path",
    }
)


@dataclasses.dataclass(frozen=True)
class MilvusTarget:
    """A Milvus collection to write to or search.

    Use the named constructors: ``MilvusTarget.lite("./milvus.db", "docs")``
    for an embedded Milvus Lite file, ``MilvusTarget.server(uri, "docs")`` for a
    Milvus server or Zilliz Cloud.

    Attributes:
      uri: ``http(s)://host:port`` of a server, or a local ``*.db`` file path
        for Milvus Lite.
      collection: Collection name.
      db_name: Database on the server; empty for the default one.
      token_env: Environment variable that holds the token
        (``user:password`` or an API key). Read by workers, never stored.
      token_file: File that holds the token, as an alternative to
        ``token_env``.
      timeout_s: Timeout of each call to Milvus, in seconds.
      connect_timeout_s: How long to wait for the server when connecting:
        an unreachable URI fails after this long, not after minutes.
      client_options: Passed to ``MilvusClient`` as they are, for TLS:
        ``secure``, ``server_pem_path``, ``server_name``, ``client_pem_path``,
        ``client_key_path``, ``ca_pem_path``. Never put a secret here.
    """

    uri: str
    collection: str
    db_name: str = ""
    token_env: str | None = "MILVUS_TOKEN"
    token_file: str | None = None
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    client_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        _require(
            bool(self.uri),
            "milvus.uri is empty: use a local file such as ./milvus.db (Milvus Lite) or "
            "http://localhost:19530 (a server).",
        )
        _require(
            self.is_remote or self.uri.endswith(".db"),
            f"milvus.uri={self.uri!r}: a local Milvus Lite store must be a file path ending in "
            "'.db' (e.g. ./milvus.db); a server URI starts with http://, https:// or tcp://.",
        )
        _require(
            bool(self.collection)
            and (self.collection[0].isalpha() or self.collection[0] == "_")
            and all(c.isalnum() or c == "_" for c in self.collection),
            f"milvus.collection={self.collection!r}: use letters, digits and underscores, "
            "starting with a letter or underscore.",
        )
        _require(self.timeout_s > 0, f"milvus.timeout_s={self.timeout_s!r}: must be positive.")
        _require(
            self.connect_timeout_s > 0,
            f"milvus.connect_timeout_s={self.connect_timeout_s!r}: must be positive.",
        )
        options = self.client_options
        if isinstance(options, Mapping):
            options = tuple(sorted(options.items()))
        object.__setattr__(self, "client_options", tuple(options))
        unknown = sorted({k for k, _ in self.client_options} - _CLIENT_OPTIONS)
        _require(
            not unknown,
            f"milvus.client_options has {unknown}: allowed are {', '.join(sorted(_CLIENT_OPTIONS))}"
            " (the token comes from milvus.token_env or milvus.token_file).",
        )

    @classmethod
    def lite(cls, path: str, collection: str) -> MilvusTarget:
        """An embedded Milvus Lite store in a local file."""
        return cls(uri=path, collection=collection, token_env=None)

    @classmethod
    def server(
        cls,
        uri: str,
        collection: str,
        *,
        token_env: str | None = "MILVUS_TOKEN",
        token_file: str | None = None,
        db_name: str = "",
    ) -> MilvusTarget:
        """A Milvus server or Zilliz Cloud; the token is read from the
        environment variable or file when a client connects."""
        return cls(
            uri=uri,
            collection=collection,
            token_env=token_env,
            token_file=token_file,
            db_name=db_name,
        )

    def describe(self) -> str:
        """Where the collection is, for messages and reports; never the token."""
        return f"collection {self.collection!r} at {self.uri}"

    @property
    def is_remote(self) -> bool:
        return self.uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))

    def read_token(self) -> str:
        """Returns the token from the file or environment variable, or ''."""
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as f:
                    return f.read().strip()
            except OSError as e:
                raise ConfigError(
                    f"milvus.token_file={self.token_file!r} cannot be read ({e.strerror}); "
                    "point it at a readable file that holds the token."
                ) from e
        if self.token_env:
            return os.environ.get(self.token_env, "")
        return ""

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``pymilvus.MilvusClient``, secret included.

        Call this where the client is made; never keep or log the result.
        """
        kwargs: dict[str, object] = {"uri": self.uri, "timeout": self.connect_timeout_s}
        kwargs.update(self.client_options)
        token = self.read_token() if self.is_remote else ""
        if token:
            kwargs["token"] = token
        if self.db_name:
            kwargs["db_name"] = self.db_name
        return kwargs


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    """How rows are written.

    Attributes:
      max_batch_rows: Rows per upsert at most.
      max_batch_bytes: Estimated bytes per upsert at most; Milvus refuses
        requests over 64 MiB, so keep well under that.
      max_attempts: Attempts per batch when the server is unavailable, times
        out or limits the rate.
      initial_backoff_s: First wait between attempts; doubles each time,
        with jitter.
      max_backoff_s: Longest wait between attempts.
      retry_deadline_s: Longest time spent retrying one batch; past it the
        bundle fails and the runner retries it.
      text_max_length: VARCHAR length of the text field, in bytes.
      text_overflow: What to do with a longer text; see :class:`TextOverflow`.
      mode: What to do with the collection first; see :class:`WriteMode`.
      wait_for_index: At the end, wait until the index covers every row.
      index: The vector index made with a new collection.
    """

    max_batch_rows: int = 512
    max_batch_bytes: int = 8 * 1024 * 1024
    max_attempts: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    retry_deadline_s: float = 300.0
    text_max_length: int = 65535
    text_overflow: TextOverflow = TextOverflow.DEAD_LETTER
    mode: WriteMode = WriteMode.CREATE_IF_MISSING
    wait_for_index: bool = False
    index: IndexConfig = dataclasses.field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        _require(
            self.max_batch_rows > 0, f"write.max_batch_rows={self.max_batch_rows!r}: must be > 0."
        )
        _require(
            0 < self.max_batch_bytes <= 48 * 1024 * 1024,
            f"write.max_batch_bytes={self.max_batch_bytes!r}: must be > 0 and at most 48 MiB "
            "(Milvus refuses requests over 64 MiB).",
        )
        _require(self.max_attempts >= 1, f"write.max_attempts={self.max_attempts!r}: must be >= 1.")
        _require(
            0 < self.text_max_length <= 65535,
            f"write.text_max_length={self.text_max_length!r}: must be 1..65535 (Milvus VARCHAR).",
        )
        _require(
            self.retry_deadline_s > 0,
            f"write.retry_deadline_s={self.retry_deadline_s!r}: must be positive.",
        )
        object.__setattr__(self, "mode", _enum(WriteMode, self.mode, "write.mode"))
        object.__setattr__(
            self, "text_overflow", _enum(TextOverflow, self.text_overflow, "write.text_overflow")
        )
        if isinstance(self.index, Mapping):
            object.__setattr__(self, "index", IndexConfig(**self.index))


def _enum(kind: type[enum.Enum], value: object, name: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ConfigError(f"{name}={value!r}: use one of {choices}.") from None


def as_patterns(value: str | Sequence[str]) -> tuple[str, ...]:
    """Accepts one pattern, a comma-separated list, or a sequence of them."""
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return tuple(value)
