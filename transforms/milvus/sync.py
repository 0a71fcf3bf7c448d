"""Sync: a collection kept equal to its corpus, with its state in Milvus only.

A sync run (``write.mode: sync``) writes what changed since the last one and
deletes what is gone, so that the collection always ends equal to a fresh
ingest of the current corpus: same ids, texts, metadata and vectors, no row
left over. Its state is a *manifest*, one row per document in a companion
collection ``<collection>__sync`` (:func:`~transforms.milvus.collection.manifest_target`):
the document id (its primary key), the *scope* that owns it, the hash of its
content and how many rows it has. No other database is needed.

Per run, as Beam steps (see :class:`PlanSync` and :class:`CompleteSync`):

1. Each document read gets a content hash: its text and metadata, the
   chunking settings and the model fingerprint (:func:`content_hash`), so a
   change of any of them changes it.
2. Each document's stored entry is looked up by its id (the manifest's
   primary key), a batch of documents per query, on the worker that read
   it: equal hashes are *unchanged* and dropped before chunking and
   embedding; a document without an entry of the scope is *added*, one with
   another hash *updated*. No text is shuffled.
3. The entries of the run's scope are read in parallel, ids and row counts
   only, by ranges of a bucket number stored with each entry
   (:class:`ReadManifest`), and grouped by id with the ids of the documents
   read (``CoGroupByKey``, which the runner spreads over workers): an entry
   whose document was not read is *deleted*. No worker, and not the
   launcher, holds the whole manifest; a worker holds one query's answer at
   a time (at most 16,384 entries of about 100 bytes).

4. Before any row of a document is written or deleted, its entry is marked
   *pending* (an empty hash); the rows are upserted (ids are deterministic);
   then the document's rows that this run did not write are deleted, and
   only then is the entry's hash written (*complete*). A deleted document's
   rows go first, then its entry.

Every read of the manifest waits for one server timestamp taken by the
launcher before the run (:func:`read_timestamp`): it sees every write made
before the run, and costs what a bounded read costs, where a ``Strong`` read
waits for the server's next time tick (about 200 ms on Milvus 2.3.5) on every
query.

Why this converges: an entry with a hash means the document's rows are exactly
those of that content, because the hash is written last and cleared first. A
pending entry, or a hash that differs, makes the next run rewrite the
document and delete whatever of its rows it does not write; an entry never
disappears before its rows, so no row is left that no entry owns. A crash
(a worker, the launcher, the server killed) at any point leaves pending or
old entries, never a wrong hash, and the next sync finishes the work.

Scope: the documents a run is responsible for, by default named after its
inputs (:func:`default_scope`). A run reads only its own scope's entries, so
it never deletes another scope's documents. A document id belongs to one
scope at a time: the last scope that wrote it.

Guard: a run that read no document at all does not delete its scope's
documents (an input that moved, a mount that failed) unless
``allow_empty_scope`` is set; the deletions it held back are counted
(``sync_deletes_refused``), and ``pipelines.ingest`` fails such a run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.config import ChunkingConfig, MilvusTarget, WriteConfig
from transforms.milvus.client import connect
from transforms.milvus.collection import is_milvus_lite
from transforms.milvus.retry import RetryPolicy
from transforms.milvus.rows import DOCUMENT_ID_MAX_LENGTH, FIELD_DOCUMENT_ID, FIELD_ID
from transforms.types import DEAD_LETTERS, DeadLetter, Document

__all__ = [
    "FIELD_BUCKET",
    "FIELD_CHUNK_COUNT",
    "FIELD_CONTENT_HASH",
    "FIELD_SCOPE",
    "SCOPE_MAX_LENGTH",
    "CompleteSync",
    "PlanSync",
    "ReadManifest",
    "content_hash",
    "count_scope",
    "default_scope",
    "ensure_manifest",
    "manifest_ranges",
    "read_timestamp",
    "sync_salt",
]

_LOGGER = logging.getLogger(__name__)

FIELD_SCOPE = "scope"
FIELD_CONTENT_HASH = "content_hash"
FIELD_CHUNK_COUNT = "chunk_count"
FIELD_BUCKET = "bucket"
_FIELD_PLACEHOLDER = "placeholder"  # Milvus wants a vector field in every collection
SCOPE_MAX_LENGTH = 512
_HASH_LENGTH = 32
_PENDING = ""
"""The hash of an entry whose document's rows are being changed."""
BUCKETS = 1 << 20
"""Bucket numbers of manifest entries: ``0 <= bucket < BUCKETS``, from the document id."""
_QUERY_LIMIT = 16384  # Milvus answers at most this many rows per query
_ENTRIES_PER_READ = 4096  # planned entries per manifest read; a read splits if it hits the limit
_DOCUMENTS_PER_CALL = 256  # documents per manifest upsert and per delete
_DOCUMENTS_PER_LOOKUP = 1024  # documents whose entries one query looks up, at most
_ID_BYTES_PER_LOOKUP = 256 * 1024  # bytes of ids in one look-up expression, at most
_TEXT_BYTES_PER_LOOKUP = 64 * 1024 * 1024  # text a look-up holds back while it waits, at most
_IDS_PER_DELETE = 4096  # chunk ids kept per delete expression at most


def default_scope(patterns: Sequence[str]) -> str:
    """The scope of a run named by its inputs: ``inputs:`` and its patterns, sorted.

    Runs over the same inputs share a scope, and a run over other inputs
    never touches theirs. Inputs longer than :data:`SCOPE_MAX_LENGTH` are
    named by their hash.
    """
    named = "inputs:" + ",".join(sorted(patterns))
    if len(named.encode("utf-8")) <= SCOPE_MAX_LENGTH:
        return named
    return "inputs:sha256:" + hashlib.sha256(named.encode("utf-8")).hexdigest()


def sync_salt(
    *, model_fingerprint: Mapping[str, Any] | None, chunking: ChunkingConfig, write: WriteConfig
) -> str:
    """What, besides a document, decides its rows: the model, chunking and text field.

    Part of every :func:`content_hash`: a run with other settings rewrites
    every document (a changed model fails before, on the collection's
    fingerprint: that is a rebuild, not a sync).
    """
    settings = {
        "model": dict(model_fingerprint or {}),
        "chunking": {"max_tokens": chunking.max_tokens, "overlap_tokens": chunking.overlap_tokens},
        "text": [write.text_max_length, str(write.text_overflow.value)],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def content_hash(document: Document, salt: str) -> str:
    """The hash of what makes a document's rows: its text, its metadata and ``salt``."""
    digest = hashlib.sha256(salt.encode("utf-8"))
    digest.update(b"\x1f")
    digest.update(document.text.encode("utf-8", "surrogatepass"))
    digest.update(b"\x1f")
    metadata = json.dumps(document.metadata, sort_keys=True, ensure_ascii=False, default=str)
    digest.update(metadata.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:_HASH_LENGTH]


def _bucket(document_id: str) -> int:
    digest = hashlib.sha256(document_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def _quoted(value: str) -> str:
    """A string literal of a Milvus expression (JSON's escapes are Milvus's)."""
    return json.dumps(value, ensure_ascii=False)


def _in(field: str, values: Iterable[str], negate: bool = False) -> str:
    return f"{field} {'not in' if negate else 'in'} [{', '.join(_quoted(v) for v in values)}]"


def _scope_filter(scope: str) -> str:
    return f"{FIELD_SCOPE} == {_quoted(scope)}"


def _manifest_schema(client: Any) -> Any:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(
        FIELD_DOCUMENT_ID, DataType.VARCHAR, is_primary=True, max_length=DOCUMENT_ID_MAX_LENGTH
    )
    schema.add_field(FIELD_SCOPE, DataType.VARCHAR, max_length=SCOPE_MAX_LENGTH)
    schema.add_field(FIELD_CONTENT_HASH, DataType.VARCHAR, max_length=_HASH_LENGTH)
    schema.add_field(FIELD_CHUNK_COUNT, DataType.INT64)
    schema.add_field(FIELD_BUCKET, DataType.INT64)
    schema.add_field(_FIELD_PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)
    return schema


def ensure_manifest(manifest: MilvusTarget) -> bool:
    """Creates the manifest collection if missing, and loads it; whether it was made.

    Call it on the launcher before a sync runs. The bucket field gets a
    scalar index (``STL_SORT`` on a server, ``INVERTED`` on Milvus Lite,
    which has only that one), so that each parallel read finds its range
    without scanning the manifest.
    """
    client = connect(manifest)
    try:
        if client.has_collection(manifest.collection):
            client.load_collection(manifest.collection)
            return False
        lite = is_milvus_lite(client, manifest)
        client.create_collection(
            manifest.collection, schema=_manifest_schema(client), consistency_level="Strong"
        )
        placeholder = client.prepare_index_params()
        placeholder.add_index(_FIELD_PLACEHOLDER, index_type="FLAT", metric_type="L2")
        client.create_index(manifest.collection, placeholder, sync=not lite)
        bucket = client.prepare_index_params()
        bucket.add_index(FIELD_BUCKET, index_type="INVERTED" if lite else "STL_SORT")
        client.create_index(manifest.collection, bucket, sync=not lite)
        client.load_collection(manifest.collection)
        _LOGGER.info("Created the sync manifest %s", manifest.describe())
        return True
    finally:
        client.close()


def count_scope(manifest: MilvusTarget, scope: str) -> int:
    """Entries of ``scope`` in the manifest (one ``count(*)``); 0 without a manifest.

    Loads the manifest if it is not loaded (queries need it; nothing is written).
    """
    client = connect(manifest)
    try:
        if not client.has_collection(manifest.collection):
            return 0
        client.load_collection(manifest.collection)
        result = client.query(
            manifest.collection,
            filter=_scope_filter(scope),
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(result[0]["count(*)"]) if result else 0
    finally:
        client.close()


def read_timestamp(manifest: MilvusTarget) -> int | None:
    """A server timestamp for a run's manifest reads to wait for; None on Milvus Lite.

    Call it on the launcher before the run. A read given it (``Customized``
    consistency with this ``guarantee_timestamp``) sees every write made
    before the call, as a ``Strong`` read would, without waiting for the
    server's next time tick on every query. Milvus Lite has no timestamps to
    give (the call is not implemented there and logs an error), and its
    reads need no wait: None, and the reads are ``Strong``.
    """
    client = connect(manifest)
    try:
        if is_milvus_lite(client, manifest):
            return None
        # pymilvus has no public call for the server's AllocTimestamp; its gRPC handler does.
        handler = getattr(client, "_get_connection", None)
        timestamp = int(handler().alloc_timestamp()) if handler is not None else 0
        return timestamp or None  # 0: the server does not implement the call
    finally:
        client.close()


def _consistency(read_at: int | None) -> dict[str, Any]:
    """The query arguments of a read that sees every write before ``read_at``."""
    if read_at is None:
        return {"consistency_level": "Strong"}
    return {"consistency_level": "Customized", "guarantee_timestamp": read_at}


def manifest_ranges(entries: int) -> list[tuple[int, int]]:
    """Bucket ranges ``[lo, hi)`` that split a scope of ``entries`` entries for parallel reads."""
    reads = max(1, math.ceil(entries / _ENTRIES_PER_READ))
    bounds = [BUCKETS * i // reads for i in range(reads + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


def _entry(document_id: str, scope: str, digest: str, chunk_count: int) -> dict[str, Any]:
    return {
        FIELD_DOCUMENT_ID: document_id,
        FIELD_SCOPE: scope,
        FIELD_CONTENT_HASH: digest,
        FIELD_CHUNK_COUNT: chunk_count,
        FIELD_BUCKET: _bucket(document_id),
        _FIELD_PLACEHOLDER: [0.0, 0.0],
    }


class _MilvusFn(beam.DoFn):
    """A DoFn with one client per instance and the run's retry policy."""

    def __init__(self, target: MilvusTarget, config: WriteConfig) -> None:
        self._target = target
        self._config = config
        self._retries = RetryPolicy.from_config(config)
        self._client: Any = None

    def setup(self) -> None:
        self._client = connect(self._target)

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, what: str, call: Any, *, reads: str | None = None) -> Any:
        """``call()`` under the retry policy.

        A call that reads collection ``reads`` (a query, a delete by filter)
        and finds it not loaded loads it, then tries again: a server that
        restarted loads its collections again only a while after it serves.
        """

        def attempt() -> Any:
            try:
                return call()
            except Exception as e:
                if reads is None or not _not_loaded(e):
                    raise
                _LOGGER.warning("%s: %r is not loaded (a server restart?): loading it", what, reads)
                self._client.load_collection(reads)
                return call()

        return self._retries.call(f"{what} ({self._target.describe()})", attempt)


def _not_loaded(error: BaseException) -> bool:
    """Milvus refused a read of a collection that is not loaded (code 101)."""
    message = str(getattr(error, "message", error)).lower()
    return getattr(error, "code", None) == 101 or "not loaded" in message or "released" in message


class _ManifestReaderFn(_MilvusFn):
    """A DoFn that queries the manifest for a scope, each read as of ``read_at``."""

    def __init__(
        self, manifest: MilvusTarget, scope: str, config: WriteConfig, read_at: int | None
    ) -> None:
        super().__init__(manifest, config)
        self._scope = scope
        self._read_at = read_at

    def _query(self, what: str, expression: str, fields: list[str], limit: int) -> Any:
        """The entries matching ``expression``, under the retry policy."""
        return self._call(
            what,
            lambda: self._client.query(
                self._target.collection,
                filter=expression,
                output_fields=fields,
                limit=limit,
                **_consistency(self._read_at),
            ),
            reads=self._target.collection,
        )


class _ReadManifestFn(_ManifestReaderFn):
    """Reads the scope's entries of one bucket range: ``(document id, rows stored)``."""

    def __init__(
        self, manifest: MilvusTarget, scope: str, config: WriteConfig, read_at: int | None
    ) -> None:
        super().__init__(manifest, scope, config, read_at)
        self._read = metrics.counter(metrics.MANIFEST_ENTRIES_READ)

    def process(self, bounds: tuple[int, int]) -> Iterator[tuple[str, int]]:
        lo, hi = bounds
        expression = (
            f"{_scope_filter(self._scope)} and {FIELD_BUCKET} >= {lo} and {FIELD_BUCKET} < {hi}"
        )
        entries = self._query(
            "Reading the sync manifest",
            expression,
            [FIELD_DOCUMENT_ID, FIELD_CHUNK_COUNT],
            _QUERY_LIMIT,
        )
        if len(entries) >= _QUERY_LIMIT:  # maybe more: read both halves instead
            if hi - lo < 2:
                raise RuntimeError(
                    f"manifest bucket {lo} of {self._target.describe()} holds over "
                    f"{_QUERY_LIMIT} entries: not a bucket of a hash"
                )
            middle = (lo + hi) // 2
            yield from self.process((lo, middle))
            yield from self.process((middle, hi))
            return
        self._read.inc(len(entries))
        for entry in entries:
            yield str(entry[FIELD_DOCUMENT_ID]), int(entry[FIELD_CHUNK_COUNT])


class ReadManifest(beam.PTransform):
    """The manifest entries of a scope, read in parallel: ``(document id, rows stored)``.

    Args:
      manifest: The manifest collection.
      scope: The scope whose entries to read.
      ranges: Bucket ranges to read one by one (:func:`manifest_ranges`).
      config: The retry policy of the reads.
      read_at: The server timestamp the reads wait for (:func:`read_timestamp`);
        None: ``Strong`` reads.
    """

    def __init__(
        self,
        manifest: MilvusTarget,
        scope: str,
        ranges: Sequence[tuple[int, int]],
        config: WriteConfig = WriteConfig(),
        read_at: int | None = None,
    ) -> None:
        super().__init__()
        self._manifest = manifest
        self._scope = scope
        self._ranges = list(ranges)
        self._config = config
        self._read_at = read_at

    def expand(self, pbegin: pvalue.PBegin) -> beam.PCollection[tuple[str, int]]:
        return (
            pbegin
            | "BucketRanges" >> beam.Create(self._ranges)
            | "SpreadRanges" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(_ReadManifestFn(self._manifest, self._scope, self._config, self._read_at))
        )


_READ = "read"
_STORED = "stored"
_GONE = "gone"
_HASHES = "hashes"


class _CompareStoredFn(_ManifestReaderFn):
    """Compares documents with their stored entries, looked up by id a batch at a time.

    Drops the unchanged; emits ``(document, hash, rows stored)`` of each
    added or updated. An entry of another scope counts as none: the
    document is written again, and its entry becomes this scope's.
    """

    def __init__(
        self, manifest: MilvusTarget, scope: str, config: WriteConfig, read_at: int | None
    ) -> None:
        super().__init__(manifest, scope, config, read_at)
        self._buffer: list[tuple[Document, str, Any, Any]] = []
        self._id_bytes = 0
        self._text_bytes = 0
        self._added = metrics.counter(metrics.DOCUMENTS_ADDED)
        self._updated = metrics.counter(metrics.DOCUMENTS_UPDATED)
        self._unchanged = metrics.counter(metrics.DOCUMENTS_UNCHANGED)

    def start_bundle(self) -> None:
        self._buffer, self._id_bytes, self._text_bytes = [], 0, 0

    def process(
        self,
        hashed: tuple[Document, str],
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[WindowedValue]:
        document, digest = hashed
        self._buffer.append((document, digest, timestamp, window))
        self._id_bytes += len(document.id.encode("utf-8", "surrogatepass")) + 4
        self._text_bytes += len(document.text)
        if (
            len(self._buffer) >= _DOCUMENTS_PER_LOOKUP
            or self._id_bytes >= _ID_BYTES_PER_LOOKUP
            or self._text_bytes >= _TEXT_BYTES_PER_LOOKUP
        ):
            yield from self._compare()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        yield from self._compare()

    def _compare(self) -> Iterator[WindowedValue]:
        batch, self._buffer, self._id_bytes, self._text_bytes = self._buffer, [], 0, 0
        if not batch:
            return
        ids = list(dict.fromkeys(document.id for document, _, _, _ in batch))
        found = self._query(
            "Looking up stored hashes",
            _in(FIELD_DOCUMENT_ID, ids),
            [FIELD_DOCUMENT_ID, FIELD_SCOPE, FIELD_CONTENT_HASH, FIELD_CHUNK_COUNT],
            len(ids),
        )
        stored = {
            str(entry[FIELD_DOCUMENT_ID]): (
                str(entry[FIELD_CONTENT_HASH]),
                int(entry[FIELD_CHUNK_COUNT]),
            )
            for entry in found
            if entry[FIELD_SCOPE] == self._scope
        }
        for document, digest, timestamp, window in batch:
            stored_digest, rows = stored.get(document.id, (None, 0))
            if digest == stored_digest:
                self._unchanged.inc()
                continue
            (self._updated if stored_digest is not None else self._added).inc()
            yield WindowedValue((document, digest, rows), timestamp, (window,))


def _gone(grouped: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[tuple[str, int]]:
    """``(document id, rows stored)`` of an entry whose document the run did not read."""
    document_id, sides = grouped
    if not any(True for _ in sides[_READ]):
        for rows in sides[_STORED]:
            yield document_id, rows


class _AddedFn(beam.DoFn):
    """What :class:`_CompareStoredFn` makes of documents when the scope has no entry: all added."""

    def __init__(self) -> None:
        self._added = metrics.counter(metrics.DOCUMENTS_ADDED)

    def process(self, hashed: tuple[Document, str]) -> Iterator[tuple[Document, str, int]]:
        document, digest = hashed
        self._added.inc()
        yield document, digest, 0


class _MarkPendingFn(_MilvusFn):
    """Marks documents pending in the manifest, then passes them on to be written.

    Documents are marked in batches; a document is emitted only after its
    entry is pending, so none of its rows can be written before that.
    """

    def __init__(self, manifest: MilvusTarget, scope: str, config: WriteConfig) -> None:
        super().__init__(manifest, config)
        self._scope = scope
        self._buffer: list[tuple[Document, str, Any, Any]] = []
        self._dead_lettered = metrics.counter(metrics.DEAD_LETTERED)

    def start_bundle(self) -> None:
        self._buffer = []

    def process(
        self,
        element: tuple[Document, str, int],
        timestamp: Any = beam.DoFn.TimestampParam,
        window: Any = beam.DoFn.WindowParam,
    ) -> Iterator[Any]:
        document, digest, _ = element
        if len(document.id.encode("utf-8", "surrogatepass")) > DOCUMENT_ID_MAX_LENGTH:
            # Neither its rows nor its entry could be written: said once, here.
            self._dead_lettered.inc()
            letter = DeadLetter.of(
                "sync",
                document.source or document.id[:100],
                f"document id of {len(document.id.encode('utf-8', 'surrogatepass'))} bytes, over "
                f"the {DOCUMENT_ID_MAX_LENGTH} of the document_id field: shorten the ids",
                document.id,
            )
            yield pvalue.TaggedOutput(DEAD_LETTERS, WindowedValue(letter, timestamp, (window,)))
            return
        self._buffer.append((document, digest, timestamp, window))
        if len(self._buffer) >= _DOCUMENTS_PER_CALL:
            yield from self._mark()

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._mark()

    def _mark(self) -> Iterator[Any]:
        marked, self._buffer = self._buffer, []
        if not marked:
            return
        entries = {d.id: _entry(d.id, self._scope, _PENDING, 0) for d, _, _, _ in marked}
        self._call(
            "Marking documents pending",
            lambda: self._client.upsert(self._target.collection, list(entries.values())),
        )
        for document, digest, timestamp, window in marked:
            yield WindowedValue(document, timestamp, (window,))
            yield pvalue.TaggedOutput(
                _HASHES, WindowedValue((document.id, digest), timestamp, (window,))
            )


def _deleted_count(result: Any) -> int:
    """Rows a delete removed: servers say ``delete_count``, Milvus Lite lists the ids."""
    if isinstance(result, Mapping):
        return int(result.get("delete_count", 0))
    return len(result) if isinstance(result, Sequence) else 0


class _DeleteGoneFn(_MilvusFn):
    """Deletes the rows, then the entries, of documents gone from the scope."""

    def __init__(
        self,
        target: MilvusTarget,
        manifest: MilvusTarget,
        scope: str,
        config: WriteConfig,
        allow_empty_scope: bool,
    ) -> None:
        super().__init__(target, config)
        self._manifest = manifest
        self._scope = scope
        self._allow_empty_scope = allow_empty_scope
        self._buffer: list[str] = []
        self._deleted = metrics.counter(metrics.DOCUMENTS_DELETED)
        self._chunks_deleted = metrics.counter(metrics.CHUNKS_DELETED)
        self._refused = metrics.counter(metrics.SYNC_DELETES_REFUSED)

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, gone: tuple[str, int], documents_read: int) -> None:
        document_id, _ = gone
        if documents_read == 0 and not self._allow_empty_scope:
            self._refused.inc()
            return
        self._buffer.append(document_id)
        if len(self._buffer) >= _DOCUMENTS_PER_CALL:
            self._delete()

    def finish_bundle(self) -> None:
        self._delete()

    def _delete(self) -> None:
        gone, self._buffer = self._buffer, []
        if not gone:
            return
        manifest = self._manifest.collection
        pending = [_entry(d, self._scope, _PENDING, 0) for d in gone]
        self._call("Marking documents pending", lambda: self._client.upsert(manifest, pending))
        result = self._call(
            "Deleting the rows of documents gone",
            lambda: self._client.delete(
                self._target.collection, filter=_in(FIELD_DOCUMENT_ID, gone)
            ),
            reads=self._target.collection,
        )
        self._chunks_deleted.inc(_deleted_count(result))
        self._call("Deleting manifest entries", lambda: self._client.delete(manifest, ids=gone))
        self._deleted.inc(len(gone))


_EXPECTED = "expected"
_WRITTEN = "written"


class _CompleteFn(_MilvusFn):
    """Per written document: deletes its rows this run did not write, then completes its entry.

    An entry is completed (its hash written) only if every chunk of the
    document was written; otherwise it stays pending, and the next sync
    writes the document again.
    """

    def __init__(
        self,
        target: MilvusTarget,
        manifest: MilvusTarget,
        scope: str,
        config: WriteConfig,
        new_collection: bool = False,
    ) -> None:
        super().__init__(target, config)
        self._manifest = manifest
        self._scope = scope
        self._new_collection = new_collection
        self._buffer: list[tuple[str, str | None, set[str]]] = []
        self._buffered_ids = 0
        self._chunks_deleted = metrics.counter(metrics.CHUNKS_DELETED)
        self._incomplete = metrics.counter(metrics.DOCUMENTS_INCOMPLETE)

    def start_bundle(self) -> None:
        self._buffer = []
        self._buffered_ids = 0

    def process(self, grouped: tuple[str, Mapping[str, Iterable[str]]]) -> None:
        document_id, sides = grouped
        digests = set(sides[_HASHES])
        written = set(sides[_WRITTEN])
        complete = len(digests) == 1 and written == set(sides[_EXPECTED])
        if not complete:
            self._incomplete.inc()
        self._buffer.append((document_id, digests.pop() if complete else None, written))
        self._buffered_ids += len(written)
        if len(self._buffer) >= _DOCUMENTS_PER_CALL or self._buffered_ids >= _IDS_PER_DELETE:
            self._complete()

    def finish_bundle(self) -> None:
        self._complete()

    def _complete(self) -> None:
        done, self._buffer, self._buffered_ids = self._buffer, [], 0
        if not done:
            return
        if not self._new_collection:  # a collection this run made holds only its rows
            documents = [document_id for document_id, _, _ in done]
            kept = [chunk for _, _, written in done for chunk in written]
            stale = _in(FIELD_DOCUMENT_ID, documents)
            if kept:
                stale += " and " + _in(FIELD_ID, kept, negate=True)
            result = self._call(
                "Deleting rows the documents no longer have",
                lambda: self._client.delete(self._target.collection, filter=stale),
                reads=self._target.collection,
            )
            self._chunks_deleted.inc(_deleted_count(result))
        entries = [
            _entry(document_id, self._scope, digest, len(written))
            for document_id, digest, written in done
            if digest is not None
        ]
        if entries:
            self._call(
                "Completing manifest entries",
                lambda: self._client.upsert(self._manifest.collection, entries),
            )


class _SyncStep(beam.PTransform):
    """What both halves of a sync are given: the collection, its manifest, the scope, the
    retry policy."""

    def __init__(
        self, target: MilvusTarget, manifest: MilvusTarget, scope: str, config: WriteConfig
    ) -> None:
        super().__init__()
        self._target = target
        self._manifest = manifest
        self._scope = scope
        self._config = config


class PlanSync(_SyncStep):
    """Documents → the ones to write, marked pending; deletes those gone from the scope.

    Apply it to the documents read; chunk, embed and write its main output
    (``WriteToMilvus(..., with_document_ids=True)``), then give
    :class:`CompleteSync` its ``hashes``, the chunk ids expected and the ids
    written.

    Returns:
      A ``DoOutputsTuple``: the main output, the documents to write;
      ``hashes``, ``(document id, content hash)`` of each; ``dead_letters``,
      documents whose id is too long for the ``document_id`` field.

    Args:
      target: The collection.
      manifest: Its manifest (``manifest_target(target)``), ready
        (:func:`ensure_manifest`).
      scope: The run's scope.
      salt: :func:`sync_salt` of the run.
      ranges: The bucket ranges to read the scope's entries by
        (:func:`manifest_ranges` of :func:`count_scope`); none when the scope
        has no entry: every document is then added, without looking up,
        reading or grouping anything.
      read_at: The server timestamp every read of the manifest waits for
        (:func:`read_timestamp`, taken before the run); None: ``Strong``
        reads, each waiting for the server's next time tick.
      config: The retry policy.
      allow_empty_scope: Delete the scope's documents even when no document
        was read.
      dry_run: Only plan: write and delete nothing, and return the plan, a
        dict whose ``changed`` is ``(document, hash, rows stored)`` of each
        document to write and whose ``gone`` is ``(document id, rows
        stored)`` of each to delete (``documents_added``,
        ``documents_updated`` and ``documents_unchanged`` are counted).
    """

    def __init__(
        self,
        target: MilvusTarget,
        manifest: MilvusTarget,
        *,
        scope: str,
        salt: str,
        ranges: Sequence[tuple[int, int]],
        read_at: int | None = None,
        config: WriteConfig = WriteConfig(),
        allow_empty_scope: bool = False,
        dry_run: bool = False,
    ) -> None:
        super().__init__(target, manifest, scope, config)
        self._salt = salt
        self._ranges = list(ranges)
        self._read_at = read_at
        self._allow_empty_scope = allow_empty_scope
        self._dry_run = dry_run

    def expand(
        self, documents: beam.PCollection[Document]
    ) -> pvalue.DoOutputsTuple | dict[str, beam.PCollection]:
        salt = self._salt
        hashed = documents | "Hash" >> beam.Map(lambda d: (d, content_hash(d, salt)))
        if self._ranges:
            changed = hashed | "CompareWithStored" >> beam.ParDo(
                _CompareStoredFn(self._manifest, self._scope, self._config, self._read_at)
            )
            gone = (
                {
                    _READ: documents | "DocumentIds" >> beam.Map(lambda d: (d.id, None)),
                    _STORED: documents.pipeline
                    | "ReadManifest"
                    >> ReadManifest(
                        self._manifest, self._scope, self._ranges, self._config, self._read_at
                    ),
                }
                | "ByDocumentId" >> beam.CoGroupByKey()
                | "NotRead" >> beam.FlatMap(_gone)
            )
        else:
            # No entry in the scope (a first sync): every document is added and none is
            # gone, with nothing looked up, read or grouped (not even a connection, so
            # that a dry run makes no Lite store).
            changed = hashed | "AllAdded" >> beam.ParDo(_AddedFn())
            gone = documents.pipeline | "NoneGone" >> beam.Create([])
        if self._dry_run:
            return {"changed": changed, _GONE: gone}
        if self._ranges:
            documents_read = beam.pvalue.AsSingleton(
                documents | "CountRead" >> beam.combiners.Count.Globally()
            )
            _ = gone | "DeleteGone" >> beam.ParDo(
                _DeleteGoneFn(
                    self._target,
                    self._manifest,
                    self._scope,
                    self._config,
                    self._allow_empty_scope,
                ),
                documents_read,
            )
        return changed | "MarkPending" >> beam.ParDo(
            _MarkPendingFn(self._manifest, self._scope, self._config)
        ).with_outputs(_HASHES, DEAD_LETTERS, main="documents")


class CompleteSync(_SyncStep):
    """Ends a sync per document: stale rows deleted, then its manifest entry completed.

    Apply it to a dict of three PCollections keyed by document id:
    ``hashes`` (``PlanSync``'s), ``expected`` (``(document id, chunk id)``
    of every chunk cut) and ``written`` (``(document id, chunk id)`` of
    every row written, ``WriteToMilvus(..., with_document_ids=True)``).
    The grouping waits for every write of a document, so a document's
    stale rows are deleted, and its entry completed, only after its new
    rows are in. ``new_collection``: the run made the collection, so no
    document has rows it did not write, and no delete is sent.
    """

    def __init__(
        self,
        target: MilvusTarget,
        manifest: MilvusTarget,
        *,
        scope: str,
        config: WriteConfig = WriteConfig(),
        new_collection: bool = False,
    ) -> None:
        super().__init__(target, manifest, scope, config)
        self._new_collection = new_collection

    def expand(self, sides: Mapping[str, beam.PCollection[tuple[str, str]]]) -> pvalue.PCollection:
        return (
            {name: sides[name] for name in (_HASHES, _EXPECTED, _WRITTEN)}
            | "ByDocumentId" >> beam.CoGroupByKey()
            | "DeleteStaleThenComplete"
            >> beam.ParDo(
                _CompleteFn(
                    self._target, self._manifest, self._scope, self._config, self._new_collection
                )
            )
        )
