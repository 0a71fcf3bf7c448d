"""The collection contract: set-up before a run, checks, and the end of a run.

These run once, on the launcher: :func:`prepare_collection` before any worker
starts (create, drop or check the collection as the write mode says; a
collection that does not fit the run stops it here, with a message that says
what differs and what to do), and :func:`finish_collection` after the last
write (one flush, the row count checked, optionally the index awaited and the
collection loaded). :func:`wait_for_index` waits until searches use the built
index over every row, for a caller that wants exact-as-measured recall right
after a run. Workers only write: ``WriteToMilvus`` never calls these,
so a pipeline must call :func:`prepare_collection` itself before it runs.
Calls that may meet a restarting server at the end of a run are retried under
the run's :class:`~transforms.milvus.retry.RetryPolicy`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from transforms.config import MilvusTarget, WriteConfig, WriteMode
from transforms.milvus.client import connect
from transforms.milvus.retry import RetryPolicy
from transforms.milvus.rows import (
    DOCUMENT_ID_MAX_LENGTH,
    FIELD_CHUNK_INDEX,
    FIELD_DOCUMENT_ID,
    FIELD_ID,
    FIELD_METADATA,
    FIELD_TEXT,
    FIELD_VECTOR,
    ID_MAX_LENGTH,
)

__all__ = [
    "RUN_PROPERTY",
    "CollectionMismatchError",
    "CollectionPlan",
    "CollectionState",
    "IndexNotReadyError",
    "IndexProgress",
    "RowCountMismatchError",
    "RunRecord",
    "count_rows",
    "drop_if_empty",
    "drop_manifest",
    "ensure_collection",
    "finish_collection",
    "is_milvus_lite",
    "last_run",
    "manifest_target",
    "mark_run",
    "physical_target",
    "plan_collection",
    "prepare_collection",
    "require_collection",
    "wait_for_index",
]

_LOGGER = logging.getLogger(__name__)

FINGERPRINT_PROPERTY = "milvus_ingest.model"
RUN_PROPERTY = "milvus_ingest.last_run"
"""The collection property that records the last ingestion run, as JSON (:class:`RunRecord`)."""
_COMPARED_FINGERPRINT_KEYS = ("dim", "normalize", "vectors_sha256", "tokenizer_sha256")
# Milvus builds no index for a sealed segment of fewer rows than this (its
# default minSegmentNumRowsToEnableIndex) and searches such a segment exactly.
_MIN_ROWS_TO_INDEX = 1024
# Index types whose segments a server searches exactly, with no index to build.
_UNBUILT_INDEXES = frozenset({"FLAT", "BIN_FLAT"})
MANIFEST_SUFFIX = "__sync"
"""The name of a collection's sync manifest is the collection's and this (see ``sync``)."""
_NEW_COLLECTION_HINT = "write to a new collection (--collection NAME) or set write.mode: overwrite"


class CollectionMismatchError(ValueError):
    """The collection does not fit this run; the message says what differs."""


class RowCountMismatchError(RuntimeError):
    """After the run the collection does not hold the rows that were written."""


class IndexNotReadyError(TimeoutError):
    """The index did not cover every row, or was not served, within the wait."""


@dataclasses.dataclass(frozen=True)
class IndexProgress:
    """How far the vector index of a collection is, as Milvus reports it.

    Attributes:
      indexed_rows: Rows of flushed segments that the index covers.
      total_rows: Rows of flushed segments.
      pending_rows: Rows waiting for an index build.
      served_rows: Rows of the sealed segments that query nodes have loaded
        with their built index (or, for segments too small to index, which
        are searched exactly, without); ``None`` where that is not asked: on
        Milvus Lite, which searches rows it has not indexed yet exactly, and
        for a collection that is not loaded.
    """

    indexed_rows: int
    total_rows: int
    pending_rows: int
    served_rows: int | None

    @property
    def ready(self) -> bool:
        """The index covers every flushed row and, where asked, is what searches use."""
        built = self.pending_rows == 0 and self.indexed_rows >= self.total_rows
        return built and (self.served_rows is None or self.served_rows >= self.total_rows)


@dataclasses.dataclass(frozen=True)
class CollectionState:
    """What the launcher found before the run.

    Attributes:
      created: The run made the collection (new, or dropped and made anew).
      rows_before: Rows in the collection before the run.
      existed: A collection of that name was there before the run (dropped
        and made anew when ``created`` too, in ``overwrite`` mode).
      alias_of: The collection the name given is an alias of, if it is one:
        the run writes that collection, the one the alias names when the run
        starts, whatever the alias names later.
    """

    created: bool
    rows_before: int
    existed: bool = False
    alias_of: str | None = None


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """An ingestion run, as the collection records it (property :data:`RUN_PROPERTY`).

    Written as ``completed: false`` before the run writes its first row, and
    as ``completed: true`` with its counts once it ended: a collection whose
    last run is not completed holds a part of that run's rows (it was
    interrupted, or failed). Re-running the same command completes it:
    chunk ids are deterministic and rows are upserted, so rows written twice
    are written once.

    Attributes:
      run_id: The run's id.
      started: When it started, UTC, ISO 8601.
      completed: Whether it ran to its end.
      finished: When it ended, UTC, ISO 8601; None while not completed.
      counts: Its counts when completed (``documents_read``, ``written``,
        ``dead_lettered``...).
      outcome: ``ok``, or why a run that ran to its end failed
        (``nothing_written``, ``too_many_dead_letters``); empty while not
        completed.
    """

    run_id: str
    started: str
    completed: bool = False
    finished: str | None = None
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    outcome: str = ""

    def to_json(self) -> str:
        """The property's value."""
        return json.dumps(dataclasses.asdict(self) | {"counts": dict(self.counts)}, sort_keys=True)

    @classmethod
    def from_json(cls, value: str) -> RunRecord | None:
        """The record in a property's value; None if it is not one."""
        try:
            fields = json.loads(value)
            return cls(
                run_id=str(fields["run_id"]),
                started=str(fields["started"]),
                completed=bool(fields.get("completed", False)),
                finished=fields.get("finished"),
                counts={str(k): int(v) for k, v in (fields.get("counts") or {}).items()},
                outcome=str(fields.get("outcome") or ""),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def manifest_target(target: MilvusTarget) -> MilvusTarget:
    """The companion collection that holds ``target``'s sync manifest
    (:mod:`transforms.milvus.sync`): same server, credentials and database."""
    return dataclasses.replace(target, collection=target.collection + MANIFEST_SUFFIX)


def drop_manifest(target: MilvusTarget) -> None:
    """Drops ``target``'s sync manifest, if it has one."""
    client = connect(target)
    try:
        _drop_manifest(client, target)
    finally:
        client.close()


def _drop_manifest(client: Any, target: MilvusTarget) -> None:
    """Drops the collection's sync manifest, if it has one: it describes rows now gone."""
    manifest = manifest_target(target).collection
    if client.has_collection(manifest):
        client.drop_collection(manifest)
        _LOGGER.info("Dropped the sync manifest %r of %s", manifest, target.describe())


def _schema(client: Any, dim: int, config: WriteConfig) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(FIELD_ID, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
    schema.add_field(FIELD_VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(FIELD_TEXT, DataType.VARCHAR, max_length=config.text_max_length)
    schema.add_field(FIELD_DOCUMENT_ID, DataType.VARCHAR, max_length=DOCUMENT_ID_MAX_LENGTH)
    schema.add_field(FIELD_CHUNK_INDEX, DataType.INT64)
    schema.add_field(FIELD_METADATA, DataType.JSON)
    return schema


def _create(
    client: Any,
    target: MilvusTarget,
    dim: int,
    fingerprint: Mapping[str, Any] | None,
    config: WriteConfig,
) -> None:
    lite = is_milvus_lite(client, target)
    build = dict(config.index.params)
    index_params = client.prepare_index_params()
    index_params.add_index(
        FIELD_VECTOR,
        index_type=config.index.index_type,
        metric_type=config.index.metric_type,
        # pymilvus 3 sends build parameters as top-level keys (M, efConstruction),
        # which Milvus servers read and Milvus Lite 3.2 ignores: Lite reads only
        # a "params" key holding them as JSON (the older request shape), and
        # without it builds HNSW with M 16, efConstruction 200 whatever was asked.
        params={"params": build} if lite and build else build,
    )
    properties = {}
    if fingerprint is not None:
        properties[FINGERPRINT_PROPERTY] = json.dumps(dict(fingerprint), sort_keys=True)
    client.create_collection(
        target.collection,
        schema=_schema(client, dim, config),
        consistency_level="Strong",
        properties=properties,
    )
    # pymilvus waits for a new index (sync=True) from a timestamp it asks the
    # server for (AllocTimestamp). Milvus Lite does not implement that call: its
    # gRPC server logs each attempt as an ERROR with a traceback, and pymilvus
    # then waits from timestamp 0. Lite has the index once create_index returns
    # and the collection is empty, so on Lite there is nothing to wait for.
    client.create_index(target.collection, index_params, sync=not lite)
    # Loading even an empty collection takes seconds on a server: it goes on
    # while the run writes, and counting the rows at the end waits for it.
    client.load_collection(target.collection, _async=True)
    _LOGGER.info("Created %s (dim %d, %s)", target.describe(), dim, config.index.metric_type)


def is_milvus_lite(client: Any, target: MilvusTarget) -> bool:
    """Whether the store is Milvus Lite: an embedded ``*.db`` file, or one served to workers.

    A served store has a server URI, so the server is asked (one ``GetVersion``
    call); Lite answers ``milvus_lite-<version>``.
    """
    if not target.is_remote:
        return True
    return str(client.get_server_version()).startswith("milvus_lite")


def _alias_of(client: Any, name: str) -> str | None:
    """The collection ``name`` is an alias of; None when it is a collection's own name.

    ``describe_collection`` of an alias describes the collection it names, on
    Milvus servers and on Milvus Lite alike.
    """
    physical = str(client.describe_collection(name).get("collection_name") or name)
    return physical if physical != name else None


def physical_target(target: MilvusTarget) -> MilvusTarget:
    """``target`` with the collection its name is an alias of, if it is one.

    Unchanged for a collection's own name, or a name no collection or alias has.
    """
    client = connect(target)
    try:
        if not client.has_collection(target.collection):
            return target
        alias_of = _alias_of(client, target.collection)
    finally:
        client.close()
    return target if alias_of is None else dataclasses.replace(target, collection=alias_of)


def _overwrite_through_alias(target: MilvusTarget, alias_of: str) -> str:
    return (
        f"{target.describe()} is an alias of {alias_of!r}: write.mode overwrite would drop "
        f"{alias_of!r} under the readers of the alias (and the alias with it); write to "
        f"{alias_of!r} by its own name, or to a new collection and move the alias to it."
    )


def prepare_collection(
    target: MilvusTarget,
    *,
    dim: int,
    fingerprint: Mapping[str, Any] | None,
    config: WriteConfig = WriteConfig(),
) -> CollectionState:
    """Makes the collection ready for the run, as ``config.mode`` says.

    Call it once on the launcher, before the pipeline runs, with the ``dim``
    and ``fingerprint`` given to :class:`~transforms.milvus.sink.WriteToMilvus`:
    the sink never creates, drops or checks the collection itself. It costs a
    few calls to Milvus (and, for a collection that exists, a ``count(*)``,
    which loads it if it is not loaded).

    Args:
      target: Where to write.
      dim: The vector dimension.
      fingerprint: What made the vectors (``StaticEmbedder.fingerprint()``):
        stored on a new collection, compared with an existing one's, so that
        vectors of two models never share a collection. ``None`` stores none
        and compares none, for vectors from elsewhere; only the dimension and
        schema are checked then.
      config: The write mode, field sizes and the index to create.

    Returns:
      Whether the collection was made, and how many rows it held.

    Raises:
      CollectionMismatchError: the collection is missing in ``append`` mode,
        present in ``fail_if_exists`` mode, or does not fit the run.
      MilvusConnectionError, MilvusAuthError: Milvus cannot be used.
    """
    client = connect(target)
    try:
        exists = client.has_collection(target.collection)
        if exists and config.mode is WriteMode.FAIL_IF_EXISTS:
            raise CollectionMismatchError(
                f"{target.describe()} already exists and write.mode is fail_if_exists: "
                "write to a new collection or choose another mode."
            )
        if not exists and config.mode is WriteMode.APPEND:
            raise CollectionMismatchError(
                f"{target.describe()} does not exist and write.mode is append, which never "
                "creates it: check the name, or use write.mode: create_if_missing."
            )
        existed = exists
        alias_of = _alias_of(client, target.collection) if exists else None
        if alias_of is not None and config.mode is WriteMode.OVERWRITE:
            raise CollectionMismatchError(_overwrite_through_alias(target, alias_of))
        if exists and config.mode is WriteMode.OVERWRITE:
            _LOGGER.warning("Dropping %s (write.mode: overwrite)", target.describe())
            client.drop_collection(target.collection)
            _drop_manifest(client, target)
            exists = False
        if not exists:
            _create(client, target, dim, fingerprint, config)
            return CollectionState(created=True, rows_before=0, existed=existed)
        check_collection(client, target, dim=dim, fingerprint=fingerprint, config=config)
        return CollectionState(
            created=False,
            rows_before=_count(client, target.collection),
            existed=True,
            alias_of=alias_of,
        )
    finally:
        client.close()


@dataclasses.dataclass(frozen=True)
class CollectionPlan:
    """What :func:`prepare_collection` would do, found without changing anything.

    Attributes:
      action: ``create``, ``append``, ``overwrite`` or ``refused``.
      detail: Why, in words: the rows there, or what does not fit.
      last_run: The last run recorded on the collection, if any.
    """

    action: str
    detail: str
    last_run: RunRecord | None = None


def plan_collection(
    target: MilvusTarget,
    *,
    dim: int,
    fingerprint: Mapping[str, Any] | None,
    config: WriteConfig = WriteConfig(),
) -> CollectionPlan:
    """What :func:`prepare_collection` would do with these arguments; changes nothing.

    Reads only: an embedded Lite store that does not exist yet is not
    opened (opening makes it), and an existing collection is counted only
    if it is loaded (from the server's statistics otherwise).

    Raises:
      MilvusConnectionError, MilvusAuthError: Milvus cannot be used.
    """
    if not target.is_remote and not os.path.exists(target.uri):
        if config.mode is WriteMode.APPEND:
            return CollectionPlan(
                "refused",
                f"{target.describe()} does not exist (no Lite store at {target.uri}) and "
                "write.mode is append, which never creates it.",
            )
        return CollectionPlan(
            "create", f"a new Lite store at {target.uri}, and {target.collection!r} in it"
        )
    client = connect(target)
    try:
        exists = client.has_collection(target.collection)
        if not exists:
            if config.mode is WriteMode.APPEND:
                return CollectionPlan(
                    "refused",
                    f"{target.describe()} does not exist and write.mode is append, which never "
                    "creates it: check the name, or use write.mode: create_if_missing.",
                )
            return CollectionPlan("create", f"{target.describe()} does not exist yet")
        description = client.describe_collection(target.collection)
        run = last_run(description.get("properties") or {})
        if _is_loaded(client, target.collection):
            rows = f"{_count(client, target.collection)} rows"
        else:
            stats = client.get_collection_stats(target.collection)
            rows = f"about {int(stats.get('row_count', 0))} rows (not loaded)"
        if config.mode is WriteMode.FAIL_IF_EXISTS:
            return CollectionPlan(
                "refused",
                f"{target.describe()} already exists ({rows}) and write.mode is fail_if_exists: "
                "write to a new collection or choose another mode.",
                run,
            )
        if config.mode is WriteMode.OVERWRITE:
            alias_of = _alias_of(client, target.collection)
            if alias_of is not None:
                return CollectionPlan("refused", _overwrite_through_alias(target, alias_of), run)
            return CollectionPlan(
                "overwrite", f"{target.describe()} ({rows}) would be dropped and made anew", run
            )
        try:
            check_collection(client, target, dim=dim, fingerprint=fingerprint, config=config)
        except CollectionMismatchError as e:
            return CollectionPlan("refused", str(e), run)
        if config.mode is WriteMode.SYNC:
            return CollectionPlan(
                "sync",
                f"{target.describe()} holds {rows}; documents that changed are rewritten, "
                "those gone from the scope deleted",
                run,
            )
        return CollectionPlan(
            "append",
            f"{target.describe()} holds {rows}; rows of the same chunks are replaced (upsert)",
            run,
        )
    finally:
        client.close()


def ensure_collection(target: MilvusTarget, **contract: Any) -> bool:
    """``prepare_collection(target, **contract).created``: the older name, kept for callers."""
    return prepare_collection(target, **contract).created


def _type_name(field: Mapping[str, Any]) -> str:
    kind = field.get("type")
    return getattr(kind, "name", str(kind))


def check_collection(
    client: Any,
    target: MilvusTarget,
    *,
    dim: int,
    fingerprint: Mapping[str, Any] | None,
    config: WriteConfig,
) -> None:
    """Raises :class:`CollectionMismatchError` saying how the collection differs.

    Checks the fields and their types, the vector dimension, the VARCHAR
    lengths, the index metric and, unless ``fingerprint`` is ``None``, the
    fingerprint stored on the collection (if it has one).
    """
    description = client.describe_collection(target.collection)
    fields = {f["name"]: f for f in description.get("fields", [])}
    problems = []
    expected_types = {
        FIELD_ID: "VARCHAR",
        FIELD_VECTOR: "FLOAT_VECTOR",
        FIELD_TEXT: "VARCHAR",
        FIELD_DOCUMENT_ID: "VARCHAR",
        FIELD_CHUNK_INDEX: "INT64",
        FIELD_METADATA: "JSON",
    }
    for name, kind in expected_types.items():
        if name not in fields:
            problems.append(f"has no field {name!r}")
        elif _type_name(fields[name]) != kind:
            problems.append(f"field {name!r} is {_type_name(fields[name])}, not {kind}")
    if FIELD_ID in fields and not fields[FIELD_ID].get("is_primary"):
        problems.append(f"field {FIELD_ID!r} is not the primary key")
    if problems:
        raise CollectionMismatchError(
            f"{target.describe()} was not made by this framework: it {'; '.join(problems)}. "
            f"To proceed, {_NEW_COLLECTION_HINT}."
        )
    params = {name: field.get("params", {}) for name, field in fields.items()}
    existing_dim = int(params[FIELD_VECTOR].get("dim", -1))
    if existing_dim != dim:
        problems.append(
            f"holds {existing_dim}-dimensional vectors, this run writes {dim}-dimensional ones"
        )
    for name, wanted in (
        (FIELD_TEXT, config.text_max_length),
        (FIELD_ID, ID_MAX_LENGTH),
        (FIELD_DOCUMENT_ID, DOCUMENT_ID_MAX_LENGTH),
    ):
        length = int(params[name].get("max_length", 0))
        if length < wanted:
            problems.append(
                f"field {name!r} is VARCHAR({length}), shorter than the run's {wanted}"
                + (" (set write.text_max_length to match)" if name == FIELD_TEXT else "")
            )
    metric = _metric_type(client, target.collection)
    if metric and metric != config.index.metric_type:
        problems.append(
            f"its index uses metric {metric}, the run's is {config.index.metric_type} "
            "(set write.index.metric_type to match)"
        )
    stored = description.get("properties", {}).get(FINGERPRINT_PROPERTY)
    if stored and fingerprint is not None:
        stored_fp = json.loads(stored)
        differs = [k for k in _COMPARED_FINGERPRINT_KEYS if stored_fp.get(k) != fingerprint.get(k)]
        if differs:
            problems.append(
                f"was filled by model {stored_fp.get('model')!r} and this run's model "
                f"{fingerprint.get('model')!r} differs in {', '.join(differs)}: vectors of two "
                "models in one collection cannot be compared"
            )
    if problems:
        hint = _NEW_COLLECTION_HINT
        if config.mode is WriteMode.SYNC:
            # A sync keeps a collection true to its corpus; new vectors for all of it is a rebuild.
            hint = "rebuild it (write.mode: overwrite, or a new collection): a sync cannot"
        raise CollectionMismatchError(
            f"{target.describe()} does not fit this run: it {'; '.join(problems)}. To proceed, use "
            f"the settings that filled it, or {hint}."
        )


def _metric_type(client: Any, collection: str) -> str | None:
    for name in client.list_indexes(collection):
        description = client.describe_index(collection, index_name=name)
        if description.get("field_name") == FIELD_VECTOR:
            return str(description.get("metric_type", "")).upper() or None
    return None


def _is_loaded(client: Any, collection: str) -> bool:
    state = client.get_load_state(collection).get("state")
    return getattr(state, "name", str(state)) == "Loaded"


def _count(client: Any, collection: str) -> int:
    """Rows in the collection, exactly (``count(*)`` with strong consistency).

    ``count(*)`` needs the collection loaded; it is loaded if it is not.
    """
    if not _is_loaded(client, collection):
        client.load_collection(collection)
    result = client.query(
        collection, filter="", output_fields=["count(*)"], consistency_level="Strong"
    )
    return int(result[0]["count(*)"])


def count_rows(target: MilvusTarget) -> int:
    """Rows in the target's collection, exactly; loads it if needed."""
    client = connect(target)
    try:
        return _count(client, target.collection)
    finally:
        client.close()


def require_collection(target: MilvusTarget) -> None:
    """Checks that the collection to search exists, and loads it for search.

    Loading happens once, on the launcher; workers only search.

    Raises:
      CollectionMismatchError: the collection is missing.
    """
    client = connect(target)
    try:
        if not client.has_collection(target.collection):
            raise CollectionMismatchError(
                f"{target.describe()} does not exist: ingest into it first "
                "(python -m pipelines.ingest), or name another one with --collection."
            )
        client.load_collection(target.collection)
    finally:
        client.close()


def last_run(properties: Mapping[str, Any]) -> RunRecord | None:
    """The last ingestion run recorded in a collection's properties (``describe_collection``)."""
    value = properties.get(RUN_PROPERTY)
    return RunRecord.from_json(str(value)) if value else None


def mark_run(target: MilvusTarget, record: RunRecord, config: WriteConfig = WriteConfig()) -> None:
    """Records ``record`` as the collection's last run (one ``alter_collection_properties``).

    Works on Milvus servers (2.3 and later) and Milvus Lite 3.x alike, on a
    loaded collection too; retried under the run's retry policy.
    """
    retries = RetryPolicy.from_config(config)
    client = retries.call(f"Connecting to {target.uri}", lambda: connect(target))
    try:
        retries.call(
            f"Recording the run on {target.describe()}",
            lambda: client.alter_collection_properties(
                target.collection, properties={RUN_PROPERTY: record.to_json()}
            ),
        )
    finally:
        client.close()


def drop_if_empty(target: MilvusTarget, state: CollectionState) -> bool:
    """Drops the collection if this run made it where none was, and it holds no row.

    A run that wrote nothing leaves no new empty collection behind. A
    collection that was there before the run is never dropped (in
    ``overwrite`` mode the run emptied it, as asked).

    Returns:
      Whether it was dropped.
    """
    if not state.created or state.existed:
        return False
    client = connect(target)
    try:
        if _count(client, target.collection):
            return False
        client.drop_collection(target.collection)
        _drop_manifest(client, target)
    finally:
        client.close()
    _LOGGER.info("Dropped %s, which this run made and wrote nothing into", target.describe())
    return True


def finish_collection(
    target: MilvusTarget,
    state: CollectionState,
    *,
    rows_upserted: int,
    rows_deleted: int = 0,
    config: WriteConfig = WriteConfig(),
    index_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Ends a run: one flush, the row count checked, the index and load awaited.

    Args:
      target: The collection written to.
      state: What :func:`prepare_collection` found before the run.
      rows_upserted: Distinct rows the run upserted (the sink's
        ``rows_upserted`` counter).
      rows_deleted: Rows the run deleted (a sync's ``chunks_deleted``).
      config: Whether to wait for the index, and the retry policy
        (``write.max_attempts``, ``write.*_backoff_s``,
        ``write.retry_deadline_s``) for connecting, flushing and counting,
        which may meet a server that restarts. The collection is left loaded
        (counting needs it), ready to be searched.
      index_timeout_s: Longest wait for the index.

    Returns:
      ``rows_before``, ``rows_after`` and, when awaited, ``indexed_rows``.

    Raises:
      RowCountMismatchError: a new collection does not hold exactly the rows
        upserted, or an existing one lost rows or gained more than upserted.
    """
    retries = RetryPolicy.from_config(config)
    client = retries.call(f"Connecting to {target.uri}", lambda: connect(target))
    try:
        started = time.monotonic()
        retries.call(f"Flush of {target.describe()}", lambda: client.flush(target.collection))
        _LOGGER.info("Flushed %s in %.1fs", target.describe(), time.monotonic() - started)
        report: dict[str, Any] = {"rows_before": state.rows_before}
        if config.wait_for_index:
            progress = _wait_for_index(client, target, index_timeout_s)
            if not progress.ready:
                _LOGGER.warning(
                    "The index of %s is not ready after %.0fs (%s): searches meanwhile use "
                    "the server's temporary index of new rows",
                    target.describe(),
                    index_timeout_s,
                    progress,
                )
            report["indexed_rows"] = progress.indexed_rows

        def count() -> int:
            return int(
                retries.call(
                    f"Counting the rows of {target.describe()}",
                    lambda: _count(client, target.collection),
                )
            )

        rows_after = count()
        mismatch = _count_mismatch(target, state, rows_after, rows_upserted, rows_deleted)
        for wait_s in _RECOUNT_WAITS_S:
            if mismatch is None:
                break
            # Milvus 2.3 counts a compacted segment twice while a query node swaps it for
            # the segments it was compacted into (milvus-io/milvus#24171, #27515): a count
            # off right after a flush or delete is counted again before it is believed.
            _LOGGER.info("%s; counting again in %.0fs", mismatch, wait_s)
            time.sleep(wait_s)
            rows_after = count()
            mismatch = _count_mismatch(target, state, rows_after, rows_upserted, rows_deleted)
        report["rows_after"] = rows_after
    finally:
        client.close()
    if mismatch is not None:
        raise RowCountMismatchError(mismatch)
    return report


_RECOUNT_WAITS_S = (1.0, 2.0, 4.0, 8.0)
"""Waits before counting again a count that does not fit the run (15 s in all)."""


def _count_mismatch(
    target: MilvusTarget,
    state: CollectionState,
    rows_after: int,
    rows_upserted: int,
    rows_deleted: int,
) -> str | None:
    """Why ``rows_after`` cannot be the count after the run; None when it can."""
    if state.created and not rows_deleted and rows_after != rows_upserted:
        return (
            f"{target.describe()} holds {rows_after} rows after the run, but {rows_upserted} "
            "were upserted into it."
        )
    if not state.rows_before - rows_deleted <= rows_after <= state.rows_before + rows_upserted:
        deleted = f" and {rows_deleted} deleted" if rows_deleted else ""
        return (
            f"{target.describe()} went from {state.rows_before} to {rows_after} rows, while "
            f"{rows_upserted} rows were upserted{deleted}: rows were lost or written by someone "
            "else."
        )
    return None


def _index_progress(client: Any, target: MilvusTarget, *, lite: bool) -> IndexProgress:
    """One look at the index (``describe_index``) and, on a server with the
    collection loaded, at the loaded segments (``list_loaded_segments``)."""
    collection = target.collection
    vector: dict[str, Any] = {}
    for name in client.list_indexes(collection):
        description = client.describe_index(collection, index_name=name) or {}
        if description.get("field_name") == FIELD_VECTOR:
            vector = description
    if str(vector.get("state", "")).lower() == "failed":
        raise IndexNotReadyError(
            f"building the index of {target.describe()} failed: "
            f"{vector.get('index_state_fail_reason') or 'no reason given'}."
        )
    indexed = int(vector.get("indexed_rows", 0))
    total = int(vector.get("total_rows", 0))
    pending = int(vector.get("pending_index_rows", max(total - indexed, 0)))
    served = None
    # Lite implements no GetQuerySegmentInfo (each call would log an ERROR):
    # it searches the rows it has not indexed yet exactly, so nothing to wait for.
    if not lite and _is_loaded(client, collection):
        # A 2.3.5 server lists only sealed segments here. It searches the rows
        # of growing segments through a temporary index, then loads the sealed
        # segments, first without their index (index_id 0, searched through a
        # temporary index too) and, once it is built, with it. Segments too
        # small to index, and those of a FLAT index, which has no index files,
        # keep index_id 0 and are searched exactly.
        built = str(vector.get("index_type", "")).upper() not in _UNBUILT_INDEXES
        served = sum(
            int(s.num_rows)
            for s in client.list_loaded_segments(collection)
            if getattr(s, "state_name", "") != "Growing"
            and (s.index_id or not built or int(s.num_rows) < _MIN_ROWS_TO_INDEX)
        )
    return IndexProgress(indexed, total, pending, served)


def _wait_for_index(
    client: Any, target: MilvusTarget, timeout_s: float, poll_s: float = 1.0
) -> IndexProgress:
    """Polls until the index is ready or ``timeout_s`` passed; the last progress seen."""
    lite = is_milvus_lite(client, target)
    deadline = time.monotonic() + timeout_s
    while True:
        progress = _index_progress(client, target, lite=lite)
        if progress.ready or time.monotonic() + poll_s > deadline:
            return progress
        time.sleep(poll_s)


def wait_for_index(
    target: MilvusTarget, *, timeout_s: float = 600.0, poll_s: float = 1.0
) -> IndexProgress:
    """Flushes the collection, then waits until searches use its built index over every row.

    Right after rows are written a Milvus server searches them where they
    are: growing segments, searched exactly for a FLAT index and through a
    temporary IVF index for any other (on a 2.3.5 server it found 0.89-0.90
    of the exact top 10 of an HNSW collection of 10,000-100,000 chunks, where
    the built graph found 0.995 on 10,000 with the search defaults), then
    sealed segments, loaded first without their index. The built index is
    searched 13-17 s after the flush for a FLAT index or up to 10,000 HNSW
    rows, later as an HNSW build grows (42-88 s for 100,000 chunks on two
    cores). Milvus Lite searches the rows it has not indexed yet exactly, so
    on Lite this returns after the flush.
    ``write.wait_for_index: true`` does the same wait at the end of an
    ingestion run.

    Args:
      target: The collection.
      timeout_s: Longest wait.
      poll_s: Time between looks at the index (each costs two or three calls).

    Returns:
      The progress seen last, which is ``ready``.

    Raises:
      IndexNotReadyError: not ready within ``timeout_s``, or the build failed.
    """
    client = connect(target)
    try:
        client.flush(target.collection)
        progress = _wait_for_index(client, target, timeout_s, poll_s)
    finally:
        client.close()
    if not progress.ready:
        raise IndexNotReadyError(
            f"the index of {target.describe()} is not ready after {timeout_s:.0f}s ({progress}): "
            "wait longer (timeout_s), or look at the server's index nodes."
        )
    return progress
