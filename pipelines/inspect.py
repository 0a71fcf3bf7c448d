"""What a Milvus holds: its collections, or one collection's counts, model, index and load state.

Run it::

    python -m pipelines.inspect --milvus_uri work/milvus_demo.db
    python -m pipelines.inspect --config configs/local.yaml --collection python_docs
    milvus-inspect --milvus_uri http://localhost:19530 --collection docs --json

Without ``--collection`` it lists the collections of the Milvus at the URI,
with their row counts, load states and models. With one, it shows that
collection: rows, distinct documents, the fingerprint of the model that
filled it, the vector dimension and fields, the indexes, the load state, the
aliases, the last ingestion run and whether it completed (a collection whose
last run did not complete holds part of it: re-running that run's command
finishes it), and any other collection properties. Text for people by
default, ``--json`` for programs.

It reads and never writes: on a server, a collection that is not loaded is
not loaded (counting needs it loaded; ``--load`` loads it and leaves it
loaded), and a Milvus Lite file that does not exist is not created. (An
embedded Lite store is loaded by each process that opens it, for itself
alone: its collections are loaded to be counted.) Counting documents reads
the ``document_id`` of every row, in pages of :data:`PAGE_ROWS` rows (one pass
over the collection, about a second per million rows on a local server,
memory for the distinct ids); ``--no_documents`` skips it.

Exit status: 0 when it showed what was asked, 1 when Milvus cannot be reached
or the config is wrong, 2 for a command line that cannot be run (an unknown
flag) and for a collection that does not exist (the message names the
closest one that does), 130 on Ctrl-C. Errors are one line on stderr; their traceback is
logged under ``--log_level DEBUG`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import options as run_options
from pipelines.cli import USAGE_STATUS, USER_ERRORS, Command, configure_logging
from pipelines.options import MilvusOptions, add_log_level_flag
from transforms.config import ConfigError, MilvusTarget
from transforms.milvus.client import MilvusConnectionError, connect
from transforms.milvus.collection import (
    FINGERPRINT_PROPERTY,
    RUN_PROPERTY,
    RunRecord,
    last_run,
    manifest_target,
)
from transforms.milvus.rows import FIELD_DOCUMENT_ID
from transforms.milvus.sync import FIELD_CONTENT_HASH, FIELD_SCOPE

__all__ = [
    "PAGE_ROWS",
    "CollectionInfo",
    "CollectionSummary",
    "FieldInfo",
    "IndexInfo",
    "Listing",
    "UnknownCollectionError",
    "format_collection",
    "format_listing",
    "inspect_collection",
    "list_collections",
    "main",
    "run",
    "target_from_flags",
]

_LOGGER = logging.getLogger(__name__)

PAGE_ROWS = 10_000
"""Rows read per page when counting documents (Milvus' query limit is 16,384)."""

LOADED = "Loaded"
"""The load state of a collection that can be queried."""

_MODULE = "pipelines.inspect"
# MilvusTarget needs a collection name; listing needs none. This one is never used.
_NO_COLLECTION = "_"
_INDEX_KEYS = ("field_name", "index_name", "index_type", "metric_type")
_INDEX_PROGRESS_KEYS = ("total_rows", "indexed_rows", "pending_index_rows", "state")
_NAMES_IN_ERRORS = 10
_INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it
# A query iterator asks the server for the timestamp of its snapshot; Milvus
# Lite answers none, and pymilvus then takes its own clock (a snapshot as of
# now, what a count wants) and says so with a warning, on every count.
_ITERATOR_LOGGER = "pymilvus.client.iterator.query_iterator"
_CLIENT_CLOCK_WARNING = "failed to get mvccTs from milvus server"
_RPC_LOGGER = "pymilvus.decorators"
# milvus-lite logs a store it cannot open (another process holds its lock)
# with a traceback, before pymilvus raises a "cannot connect" that hides why:
# its message is the reason, told in the one-line error instead.
_LITE_LOGGER = "milvus_lite.server_manager"
_LITE_START_FAILED = "Failed to start MilvusLite server"


class UnknownCollectionError(LookupError):
    """The collection asked for does not exist at the URI; the message names the closest."""


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One field of a collection's schema.

    Attributes:
      name: The field's name.
      type: Its Milvus data type (``VARCHAR``, ``FLOAT_VECTOR``, ...).
      primary: Whether it is the primary key.
      params: Its type parameters (``max_length``, ``dim``).
    """

    name: str
    type: str
    primary: bool
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class IndexInfo:
    """One index of a collection.

    Attributes:
      field: The indexed field.
      name: The index's name.
      index_type: ``AUTOINDEX``, ``HNSW``, ``IVF_FLAT``, ...
      metric_type: ``COSINE``, ``L2``, ``IP``, ...; empty for scalar indexes.
      params: The index's build parameters (``M``, ``nlist``, ...).
      indexed_rows: Rows the index covers, where the server says.
      total_rows: Rows to index, where the server says.
      state: The index build's state (``Finished``, ``InProgress``), where
        the server says.
    """

    field: str
    name: str
    index_type: str
    metric_type: str
    params: Mapping[str, Any]
    indexed_rows: int | None
    total_rows: int | None
    state: str | None


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    """What one collection holds.

    Attributes:
      uri: The Milvus it is in.
      server_version: What that Milvus says it is (``v2.3.5``, ``milvus_lite-3.2.2``).
      name: The collection's name.
      rows: Rows, exactly (``count(*)``); None when the collection is not loaded.
      rows_in_statistics: Rows as the server's statistics count them, which
        needs no load but counts rows replaced by upserts or deleted until
        the server compacts its segments.
      documents: Distinct ``document_id`` values; None when not counted (not
        loaded, ``--no_documents``, or no such field).
      documents_note: Why ``documents`` is None, else empty.
      load_state: ``Loaded``, ``Loading`` or ``NotLoad``, as found.
      embedded: Whether the Milvus is an embedded Lite store (a ``*.db``
        file), whose collections each process that opens it loads for itself.
      loaded_by_inspect: Whether this inspection loaded it: with ``--load``
        on a server (it stays loaded), or to count an embedded store's.
      dim: The dimension of its first float vector field, else None.
      model: The fingerprint of the model that filled it (the collection
        property ``milvus_ingest.model``), else None.
      fields: Its schema.
      indexes: Its indexes.
      aliases: Its aliases; None when the server does not report them.
      last_run: The last ingestion run recorded on it (the collection
        property ``milvus_ingest.last_run``), else None.
      properties: Its other collection properties, as stored.
      sync_scopes: For a collection kept by sync runs, the entries of its
        manifest (``<name>__sync``) per scope, as ``{scope: [entries,
        pending]}``: pending entries are documents a sync was changing when
        it stopped (the next sync finishes them). None without a manifest.
      sync_note: Why ``sync_scopes`` is None though a manifest exists.
    """

    uri: str
    server_version: str
    name: str
    rows: int | None
    rows_in_statistics: int | None
    documents: int | None
    documents_note: str
    load_state: str
    embedded: bool
    loaded_by_inspect: bool
    dim: int | None
    model: Mapping[str, Any] | None
    fields: tuple[FieldInfo, ...]
    indexes: tuple[IndexInfo, ...]
    aliases: tuple[str, ...] | None
    last_run: RunRecord | None
    properties: Mapping[str, str]
    sync_scopes: Mapping[str, tuple[int, int]] | None = None
    sync_note: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: what ``--json`` prints."""
        return _json_ready(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class CollectionSummary:
    """One line of a listing: a collection, counted without loading it.

    Attributes:
      name: The collection's name.
      rows: Rows, exactly, if it is loaded; else None.
      rows_in_statistics: Rows as the server's statistics count them (see
        :class:`CollectionInfo`).
      load_state: ``Loaded``, ``Loading`` or ``NotLoad``.
      model: The ``model`` of its stored fingerprint, else None.
      dim: The dimension of its first float vector field, else None.
      last_run: The last ingestion run recorded on it, else None.
    """

    name: str
    rows: int | None
    rows_in_statistics: int | None
    load_state: str
    model: str | None
    dim: int | None
    last_run: RunRecord | None = None


@dataclasses.dataclass(frozen=True)
class Listing:
    """The collections of one Milvus.

    Attributes:
      uri: The Milvus.
      server_version: What it says it is.
      collections: Its collections, by name.
    """

    uri: str
    server_version: str
    collections: tuple[CollectionSummary, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: what ``--json`` prints."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, all the way down."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _name(value: Any) -> str:
    """An enum's name (pymilvus' DataType, LoadState), or the value as text."""
    return str(getattr(value, "name", value))


def _load_state(client: Any, collection: str) -> str:
    return _name(client.get_load_state(collection).get("state"))


def _statistics_rows(client: Any, collection: str) -> int | None:
    row_count = client.get_collection_stats(collection).get("row_count")
    return None if row_count is None else int(row_count)


def _exact_rows(client: Any, collection: str) -> int:
    """``count(*)`` under strong consistency; the collection must be loaded."""
    found = client.query(
        collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
    )
    return int(found[0]["count(*)"])


class _DropMessage(logging.Filter):
    """Drops, and keeps, the records whose message starts with ``start``."""

    def __init__(self, start: str) -> None:
        super().__init__()
        self._start = start
        self.dropped: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self._start):
            self.dropped.append(record)
            return False
        return True

    def error(self) -> BaseException | None:
        """The exception the first dropped record carried, if any."""
        return next((r.exc_info[1] for r in self.dropped if r.exc_info), None)


@contextlib.contextmanager
def _without_message(logger: str, start: str) -> Iterator[_DropMessage]:
    """Drops one message of one logger, during this block only; yields what it dropped."""
    dropped = _DropMessage(start)
    logging.getLogger(logger).addFilter(dropped)
    try:
        yield dropped
    finally:
        logging.getLogger(logger).removeFilter(dropped)


def _count_documents(client: Any, collection: str) -> int:
    """Distinct ``document_id`` values, read in pages of :data:`PAGE_ROWS` rows.

    One pass with a query iterator, which pages by primary key over one
    snapshot of the collection: each page is one query of ``PAGE_ROWS``
    document ids, and only the set of distinct ids is kept.
    """
    with _without_message(_ITERATOR_LOGGER, _CLIENT_CLOCK_WARNING):
        iterator = client.query_iterator(
            collection, batch_size=PAGE_ROWS, filter="", output_fields=[FIELD_DOCUMENT_ID]
        )
    seen: set[str] = set()
    try:
        while page := iterator.next():
            seen.update(row[FIELD_DOCUMENT_ID] for row in page)
    finally:
        iterator.close()
    return len(seen)


def _sync_scopes(
    client: Any, target: MilvusTarget, collection: str, *, load: bool
) -> tuple[dict[str, tuple[int, int]] | None, str]:
    """The collection's sync manifest, per scope: entries and pending entries.

    One pass over the manifest in pages of :data:`PAGE_ROWS` entries, keeping
    two counts per scope. Loaded as the collection is (:func:`_ready`).
    """
    manifest = manifest_target(dataclasses.replace(target, collection=collection)).collection
    if not client.has_collection(manifest):
        return None, ""
    state, loaded = _ready(client, target, manifest, load=load)
    if state != LOADED and not loaded:
        return None, f"manifest {manifest} not read: it is not loaded (--load loads it)"
    with _without_message(_ITERATOR_LOGGER, _CLIENT_CLOCK_WARNING):
        iterator = client.query_iterator(
            manifest,
            batch_size=PAGE_ROWS,
            filter="",
            output_fields=[FIELD_SCOPE, FIELD_CONTENT_HASH],
        )
    scopes: dict[str, tuple[int, int]] = {}
    try:
        while page := iterator.next():
            for entry in page:
                entries, pending = scopes.get(entry[FIELD_SCOPE], (0, 0))
                scopes[entry[FIELD_SCOPE]] = (
                    entries + 1,
                    pending + (not entry[FIELD_CONTENT_HASH]),
                )
    finally:
        iterator.close()
    return dict(sorted(scopes.items())), ""


def _fields(description: Mapping[str, Any]) -> tuple[FieldInfo, ...]:
    return tuple(
        FieldInfo(
            name=str(field["name"]),
            type=_name(field.get("type")),
            primary=bool(field.get("is_primary")),
            params=dict(field.get("params") or {}),
        )
        for field in description.get("fields", [])
    )


def _dim(fields: Sequence[FieldInfo]) -> int | None:
    for field in fields:
        if field.type == "FLOAT_VECTOR" and "dim" in field.params:
            return int(field.params["dim"])
    return None


def _fingerprint(properties: Mapping[str, Any]) -> dict[str, Any] | None:
    stored = properties.get(FINGERPRINT_PROPERTY)
    if not stored:
        return None
    try:
        loaded = json.loads(stored)
    except ValueError:
        return {"unparsed": str(stored)}
    return loaded if isinstance(loaded, dict) else {"unparsed": str(stored)}


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _indexes(client: Any, collection: str) -> tuple[IndexInfo, ...]:
    found = []
    for name in client.list_indexes(collection):
        described = dict(client.describe_index(collection, index_name=name) or {})
        params = {k: v for k, v in described.items() if k not in _INDEX_KEYS + _INDEX_PROGRESS_KEYS}
        nested = params.pop("params", None)  # some servers send the build params as one JSON
        if isinstance(nested, Mapping):
            params.update(nested)
        found.append(
            IndexInfo(
                field=str(described.get("field_name", "")),
                name=str(described.get("index_name", name)),
                index_type=str(described.get("index_type", "")),
                metric_type=str(described.get("metric_type", "")),
                params=params,
                indexed_rows=_optional_int(described.get("indexed_rows")),
                total_rows=_optional_int(described.get("total_rows")),
                state=None if described.get("state") is None else str(described["state"]),
            )
        )
    return tuple(found)


def _ready(client: Any, target: MilvusTarget, name: str, *, load: bool) -> tuple[str, bool]:
    """The collection's load state, after loading it where that is asked or harmless.

    An embedded Milvus Lite store (a ``*.db`` file) is served by this
    process alone, and a collection loaded there is loaded for this process
    only (each process that opens the file finds it not loaded): it is
    loaded to be counted, which changes nothing for anyone else. On a
    server, a collection is loaded only with ``load`` (``--load``), since
    loading takes the server's memory for every client.

    Returns:
      The load state found, and whether this call loaded the collection.
    """
    state = _load_state(client, name)
    if state == LOADED or (target.is_remote and not load):
        return state, False
    _LOGGER.debug("Loading collection %r at %s to count it", name, target.uri)
    client.load_collection(name)
    return state, True


def _aliases(client: Any, collection: str) -> tuple[str, ...] | None:
    """The collection's aliases; None if the server cannot list them.

    ``list_aliases`` answers a dict (Milvus Lite adds the collection's name),
    although pymilvus declares a list; a server without the call answers an
    error, which pymilvus logs with a traceback before raising: that log
    line is dropped, since the answer is "not reported".
    """
    from pymilvus.exceptions import MilvusException

    with _without_message(_RPC_LOGGER, "RPC error: [list_aliases]"):
        try:
            found = client.list_aliases(collection_name=collection)
        except MilvusException as e:
            _LOGGER.debug("No aliases from this server: %s", e)
            return None
    if isinstance(found, Mapping):
        found = found.get("aliases")
    return None if found is None else tuple(sorted(str(a) for a in found))


def _unknown_collection(target: MilvusTarget, name: str, existing: Sequence[str]) -> NoReturn:
    if not existing:
        raise UnknownCollectionError(
            f"no collection {name!r} at {target.uri}: it holds no collections yet "
            "(python -m pipelines.ingest makes them)."
        )
    close = difflib.get_close_matches(name, existing, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}? " if close else ""
    shown = sorted(existing)[:_NAMES_IN_ERRORS]
    more = f", and {len(existing) - len(shown)} more" if len(existing) > len(shown) else ""
    raise UnknownCollectionError(
        f"no collection {name!r} at {target.uri}; {hint}"
        f"It holds {len(existing)}: {', '.join(shown)}{more}."
    )


def _open(target: MilvusTarget) -> Any:
    """A client for the target; never creates a Milvus Lite file.

    Raises:
      MilvusConnectionError: the Lite file does not exist or cannot be
        opened, or the server does not answer.
      MilvusAuthError: the server refused the credentials.
    """
    if not target.is_remote and not os.path.exists(target.uri):
        raise MilvusConnectionError(
            f"no Milvus Lite store at {target.uri}: the file does not exist (inspect never "
            "creates one). Check the path, or ingest into it first."
        )
    if target.is_remote:
        return connect(target)
    with _without_message(_LITE_LOGGER, _LITE_START_FAILED) as failed:
        try:
            return connect(target)
        except MilvusConnectionError as e:
            cause = failed.error()
            raise MilvusConnectionError(
                f"cannot open the Milvus Lite store at {target.uri}: "
                f"{cause if cause is not None else e} (a Lite store is opened by one process at "
                "a time: is a run still writing to it?)"
            ) from None


def list_collections(target: MilvusTarget) -> Listing:
    """The collections of the Milvus at ``target.uri`` (its collection is ignored).

    Costs a few calls per collection. On a server it loads none: the row
    count is exact (``count(*)``) for a loaded collection, and only the
    statistics' for others. An embedded Lite store's collections are loaded,
    for this process alone, and counted exactly.

    Raises:
      MilvusConnectionError, MilvusAuthError: Milvus cannot be used.
    """
    client = _open(target)
    try:
        summaries = []
        for name in sorted(client.list_collections()):
            state, loaded = _ready(client, target, name, load=False)
            description = client.describe_collection(name)
            fingerprint = _fingerprint(description.get("properties") or {})
            model = fingerprint.get("model") if fingerprint else None
            summaries.append(
                CollectionSummary(
                    name=name,
                    rows=_exact_rows(client, name) if state == LOADED or loaded else None,
                    rows_in_statistics=_statistics_rows(client, name),
                    load_state=state,
                    model=None if model is None else str(model),
                    dim=_dim(_fields(description)),
                    last_run=last_run(description.get("properties") or {}),
                )
            )
        return Listing(target.uri, str(client.get_server_version()), tuple(summaries))
    finally:
        client.close()


def inspect_collection(
    target: MilvusTarget, *, load: bool = False, count_documents: bool = True
) -> CollectionInfo:
    """What ``target.collection`` holds.

    Args:
      target: The collection (a name or an alias).
      load: Load the collection if it is not loaded, so that its rows and
        documents can be counted; it stays loaded. Without it, a collection
        that is not loaded is left so, and only its statistics' row count
        is known.
      count_documents: Count the distinct ``document_id`` values: one pass
        over the collection in pages of :data:`PAGE_ROWS` ids.

    Raises:
      UnknownCollectionError: no such collection; the message names the
        closest one.
      MilvusConnectionError, MilvusAuthError: Milvus cannot be used.
    """
    client = _open(target)
    try:
        if not client.has_collection(target.collection):
            _unknown_collection(target, target.collection, client.list_collections())
        description = client.describe_collection(target.collection)
        name = str(description.get("collection_name") or target.collection)
        state, loaded_now = _ready(client, target, name, load=load)
        countable = state == LOADED or loaded_now
        fields = _fields(description)
        properties = {str(k): str(v) for k, v in (description.get("properties") or {}).items()}
        documents, note = None, ""
        if FIELD_DOCUMENT_ID not in {f.name for f in fields}:
            note = f"no {FIELD_DOCUMENT_ID} field"
        elif not count_documents:
            note = "not counted (--no_documents)"
        elif not countable:
            note = "not counted: the collection is not loaded (--load loads it)"
        else:
            documents = _count_documents(client, name)
        aliases = _aliases(client, name)
        sync_scopes, sync_note = _sync_scopes(client, target, name, load=load)
        return CollectionInfo(
            uri=target.uri,
            server_version=str(client.get_server_version()),
            name=name,
            rows=_exact_rows(client, name) if countable else None,
            rows_in_statistics=_statistics_rows(client, name),
            documents=documents,
            documents_note=note,
            load_state=state,
            embedded=not target.is_remote,
            loaded_by_inspect=loaded_now,
            dim=_dim(fields),
            model=_fingerprint(properties),
            fields=fields,
            indexes=_indexes(client, name),
            aliases=aliases,
            last_run=last_run(properties),
            properties={
                k: v for k, v in properties.items() if k not in (FINGERPRINT_PROPERTY, RUN_PROPERTY)
            },
            sync_scopes=sync_scopes,
            sync_note=sync_note,
        )
    finally:
        client.close()


def _rows_text(rows: int | None, statistics: int | None) -> str:
    if rows is not None:
        return str(rows)
    counted = "" if statistics is None else f"; the server's statistics say {statistics}"
    return f"not counted: the collection is not loaded (--load loads it){counted}"


def _field_text(field: FieldInfo) -> str:
    params = ", ".join(f"{k} {v}" if k != "max_length" else str(v) for k, v in field.params.items())
    text = f"{field.name} {field.type}" + (f"({params})" if params else "")
    return text + (" primary key" if field.primary else "")


def _index_text(index: IndexInfo) -> str:
    params = json.dumps(dict(index.params), sort_keys=True) if index.params else "none"
    text = f"{index.field}: {index.index_type}"
    if index.metric_type:
        text += f", metric {index.metric_type}"
    text += f", params {params}"
    if index.indexed_rows is not None and index.total_rows is not None:
        text += f"; {index.indexed_rows} of {index.total_rows} rows indexed"
    if index.state:
        text += f" ({index.state})"
    return text


def _model_text(model: Mapping[str, Any] | None) -> str:
    if model is None:
        return "none stored (not filled by milvus-ingest, or by vectors from elsewhere)"
    details = ", ".join(f"{k} {json.dumps(v)}" for k, v in sorted(model.items()) if k != "model")
    return f"{model.get('model', '?')} ({details})" if details else str(model.get("model", "?"))


def _load_text(info: CollectionInfo) -> str:
    if info.embedded and info.loaded_by_inspect:
        return (
            f"{info.load_state} (each process that opens an embedded Lite store loads it for "
            "itself: inspect did, to count)"
        )
    if info.loaded_by_inspect:
        return f"{info.load_state}, loaded now by --load (it stays loaded)"
    return info.load_state


def last_run_text(run: RunRecord | None) -> str:
    """A run record for people: its id, when, and whether it completed."""
    if run is None:
        return "none recorded"
    if not run.completed:
        return (
            f"{run.run_id}, started {run.started}: INCOMPLETE (interrupted or failed; the "
            "collection holds part of it: re-run its command to finish)"
        )
    order = ("documents_read", "chunks", "written", "dead_lettered")
    named = sorted(
        run.counts.items(),
        key=lambda kv: (kv[0] not in order, order.index(kv[0]) if kv[0] in order else 0, kv[0]),
    )
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in named)
    outcome = "" if run.outcome in ("", "ok") else f", failed: {run.outcome.replace('_', ' ')}"
    return f"{run.run_id}, started {run.started}, completed {run.finished}{outcome} ({counts})"


def format_collection(info: CollectionInfo) -> str:
    """The human-readable text of :func:`inspect_collection`, one item a line."""
    lines = [
        ("rows", _rows_text(info.rows, info.rows_in_statistics)),
        (
            "documents",
            str(info.documents) if info.documents is not None else info.documents_note,
        ),
        ("model", _model_text(info.model)),
        ("dimension", "none (no float vector field)" if info.dim is None else str(info.dim)),
        ("index", "; ".join(_index_text(i) for i in info.indexes) or "none"),
        ("load state", _load_text(info)),
        (
            "aliases",
            "not reported by this server"
            if info.aliases is None
            else ", ".join(info.aliases) or "none",
        ),
        ("fields", ", ".join(_field_text(f) for f in info.fields)),
        ("last run", last_run_text(info.last_run)),
    ]
    if info.sync_scopes is not None or info.sync_note:
        lines.append(("sync", info.sync_note or _sync_text(info.sync_scopes or {})))
    lines += [(f"property {k}", v) for k, v in sorted(info.properties.items())]
    head = f"collection {info.name} at {info.uri} (Milvus {info.server_version})"
    width = max(len(label) for label, _ in lines) + 2
    return "\n".join([head, *(f"  {label + ':':<{width}}{value}" for label, value in lines)])


def _sync_text(scopes: Mapping[str, tuple[int, int]]) -> str:
    """Each scope: its documents, and how many a stopped sync left pending."""
    if not scopes:
        return "no documents in its manifest"
    said = []
    for scope, (entries, pending) in scopes.items():
        left = (
            f", {pending} PENDING (a sync stopped: the next one finishes them)" if pending else ""
        )
        said.append(f"scope {scope!r}: {entries} documents{left}")
    return "; ".join(said)


def format_listing(listing: Listing) -> str:
    """The human-readable text of :func:`list_collections`: a table, one collection a row."""
    where = f"at {listing.uri} (Milvus {listing.server_version})"
    if not listing.collections:
        return f"no collections {where}"
    count = len(listing.collections)
    table = [("NAME", "ROWS", "LOAD STATE", "DIM", "LAST RUN", "MODEL")]
    for c in listing.collections:
        rows = str(c.rows) if c.rows is not None else f"~{c.rows_in_statistics}"
        dim = "" if c.dim is None else str(c.dim)
        run = "" if c.last_run is None else "completed" if c.last_run.completed else "INCOMPLETE"
        table.append((c.name, rows, c.load_state, dim, run, c.model or ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [f"{count} collection{'s' if count != 1 else ''} {where}:"]
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])]
        cells += [cell.ljust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    if any(c.last_run is not None and not c.last_run.completed for c in listing.collections):
        lines.append(
            "INCOMPLETE: its last run was interrupted or failed; re-run its command to finish "
            "(--collection NAME shows the run)."
        )
    if any(c.rows is None for c in listing.collections):
        lines.append(
            "~: the server's statistics, for a collection that is not loaded: they count rows "
            "replaced by upserts until compaction."
        )
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, raising :class:`_UsageError` instead of exiting, and no abbreviations."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


class _UsageError(ValueError):
    """The command line cannot be run as written."""


def _parser(prog: str) -> _Parser:
    description = (__doc__ or "").strip().split("\n\n", 1)[0]
    parser = _Parser(
        prog=prog,
        description=description,
        usage="%(prog)s (--milvus_uri URI | --config FILE) [--collection NAME] [FLAG ...]",
        epilog=f"Counting documents reads every row's {FIELD_DOCUMENT_ID} in pages of "
        f"{PAGE_ROWS:,} rows: one pass over the collection, whose distinct ids are kept in "
        "memory (--no_documents skips it). Nothing is written: a server's collection that is "
        "not loaded stays so unless --load (an embedded Lite store is loaded by each process "
        "that opens it, for itself), and a Lite file that does not exist is not created. Exit "
        "status: 0 done, 1 Milvus cannot be reached or the config is wrong, 2 an unknown flag "
        "or collection.",
    )
    parser.add_argument(
        "--milvus_uri",
        metavar="URI",
        help="Milvus server (http://host:19530), Zilliz Cloud (https://...) or a local *.db "
        "file of Milvus Lite (default: milvus.uri of the config)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of a run (see configs/): its milvus: section says where Milvus is and "
        "how to connect (default: none)",
    )
    parser.add_argument(
        "--collection",
        metavar="NAME",
        help="the collection (or alias) to show (default: none, list the collections; the "
        "config's milvus.collection is not used)",
    )
    parser.add_argument(
        "--milvus_token_file",
        metavar="FILE",
        help="file holding the Milvus token (default: the environment variable named by "
        "milvus.token_env, MILVUS_TOKEN)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--load",
        action="store_true",
        help="load the collection if it is not loaded, to count its rows and documents; it "
        "stays loaded",
    )
    parser.add_argument(
        "--no_documents",
        action="store_true",
        help=f"do not count distinct documents (a pass over every row's {FIELD_DOCUMENT_ID})",
    )
    add_log_level_flag(parser)
    return parser


def target_from_flags(
    *,
    milvus_uri: str | None = None,
    config: str | None = None,
    collection: str | None = None,
    milvus_token_file: str | None = None,
) -> MilvusTarget:
    """The target these flags name, as the pipelines read it.

    With ``config``, the config's ``milvus:`` section is read as the pipelines
    read it (``pipelines.options``), the flags winning over it. Without, the
    URI makes a :meth:`MilvusTarget.lite` or :meth:`MilvusTarget.server`
    target (token from ``MILVUS_TOKEN`` or ``milvus_token_file``). Without
    ``collection``, the target's collection is a placeholder, for listing.

    Raises:
      ConfigError: neither a URI nor a config, or a bad value in them.
    """
    name = collection or _NO_COLLECTION
    if config:
        flags = [f"--config={config}", f"--collection={name}"]
        if milvus_uri:
            flags.append(f"--milvus_uri={milvus_uri}")
        if milvus_token_file:
            flags.append(f"--milvus_token_file={milvus_token_file}")
        view = PipelineOptions(flags).view_as(MilvusOptions)
        return run_options._target(run_options._load_yaml(config), view)
    if not milvus_uri:
        raise ConfigError(
            "no Milvus to inspect: pass --milvus_uri URI (a server or a *.db file) or --config "
            "FILE."
        )
    lite = MilvusTarget.lite(milvus_uri, name)
    if not lite.is_remote:
        return lite
    return MilvusTarget.server(milvus_uri, name, token_file=milvus_token_file)


def run(argv: Sequence[str] | None = None) -> Listing | CollectionInfo:
    """Inspects what the flags name and prints it on stdout.

    Args:
      argv: The flags (``--help`` lists them); the process's when None.

    Returns:
      What was printed: the listing, or the collection.

    Raises:
      UnknownCollectionError: no such collection.
      ConfigError, MilvusConnectionError, MilvusAuthError: see
        :func:`target_from_flags` and :func:`inspect_collection`.
    """
    args = _parser(_prog()).parse_args(sys.argv[1:] if argv is None else list(argv))
    if not (args.milvus_uri or args.config):
        raise _UsageError("give --milvus_uri URI (a server or a *.db file) or --config FILE")
    target = target_from_flags(
        milvus_uri=args.milvus_uri,
        config=args.config,
        collection=args.collection,
        milvus_token_file=args.milvus_token_file,
    )
    found: Listing | CollectionInfo
    if args.collection:
        found = inspect_collection(target, load=args.load, count_documents=not args.no_documents)
        text = format_collection(found)
    else:
        found = list_collections(target)
        text = format_listing(found)
    print(json.dumps(found.to_json(), ensure_ascii=False) if args.json else text, flush=True)
    return found


def _prog() -> str:
    return Command(_MODULE, __doc__, ()).prog


def _fail(message: str, status: int) -> NoReturn:
    _LOGGER.debug("Inspection stopped", exc_info=True)
    print(f"{_prog()}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m pipelines.inspect`` and ``milvus-inspect``: :func:`run`, with one-line errors.

    Exits with status 0 when it showed what was asked, 1 when Milvus cannot
    be used or the config is wrong, 2 for an unknown flag or collection, 130
    on Ctrl-C.
    """
    from pymilvus.exceptions import MilvusException

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        known, _ = _parser(_prog()).parse_known_args(argv)  # --help prints and exits here
        level = known.log_level
    except _UsageError:
        level = "INFO"
    configure_logging(level)
    try:
        run(argv)
    except _UsageError as e:
        _fail(_usage_message(str(e)), USAGE_STATUS)
    except UnknownCollectionError as e:
        _fail(str(e), USAGE_STATUS)
    except USER_ERRORS as e:
        _fail(str(e), 1)
    except MilvusException as e:
        _fail(f"Milvus answered with an error: {e.message} (code {e.code}).", 1)
    except KeyboardInterrupt:
        _fail("interrupted.", _INTERRUPTED_STATUS)


def _usage_message(message: str) -> str:
    """argparse's message, with the closest known flag for an unknown one."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return f"{message} (--help lists the flags)"
    token = message.removeprefix(prefix).split()[0]
    if not token.startswith("-"):
        return f"unexpected argument {token!r}: flags are --name VALUE or --name=VALUE"
    name = token.split("=", 1)[0]
    known = sorted(
        {s for a in _parser(_prog())._actions for s in a.option_strings if s.startswith("--")}
    )
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown flag {name}{hint} (--help lists the flags)"


if __name__ == "__main__":
    main()
