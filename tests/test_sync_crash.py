"""Kill -9 in the middle of a sync; the next sync ends equal to a fresh ingest (#14, point 4).

A sync (``--write_mode sync``, :mod:`transforms.milvus.sync`) marks a
document's manifest entry pending before its rows change, deletes its stale
rows, then writes its hash; a document gone from the corpus is marked pending,
its rows deleted, then its entry. So a crash anywhere should leave pending or
old entries, never a wrong hash, and the next sync finish the work. These
tests kill a real ``python -m pipelines.ingest`` (SIGKILL to its process
group), one of its worker processes, or the Milvus 2.3.5 server, at points
found by watching Milvus itself (the manifest ``<collection>__sync`` and the
rows, polled; see :class:`Watch`), never by a sleep:

* ``pending``: entries of changed documents are being marked pending (some
  are, not all), none complete;
* ``writing``: rows of changed documents are coming in, no entry complete;
* ``completing``: some changed documents complete, some still pending;
* ``deleting``: documents gone from the corpus are being deleted: some
  pending, or some entries gone and some left;
* ``worker``: one SDK worker process of a two-process run (FnApiRunner,
  multi_processing), while rows come in; the run may then fail (it does:
  "Channel closed prematurely") or run the lost work again and end;
* ``server``: the Milvus 2.3.5 server while rows come in, restarted on its
  data directory; the run may then end, or give up (it does: the collection
  is not loaded yet when its calls come back).

Then a sync runs to completion, and the collection must hold exactly the rows
of a fresh ingest (``create_if_missing``, not a sync) of the corpus into
another collection: same ids, texts, document ids, chunk indexes, metadata
and vectors (one checksum over the rows sorted by id; on a difference, which
rows and fields), no row left over; and its manifest exactly one entry per
document of the corpus, none pending, each with its document's row count.

The corpus (:func:`corpus`) has three versions of about 1,600 documents in
JSONL files: ``A``; ``B`` shrinks, grows, edits and re-titles documents,
deletes records and whole files and adds a file; ``C`` takes some of ``B``'s
documents back to ``A`` (the tricky case: a document pending with ``B``'s
rows, then back to the content whose hash it had), restores a deleted file and
records, edits others anew and adds another file. On the Lite server the kill
points run in turn on one collection (a test run alone starts from ``A``):
``A``, a sync to ``B`` killed, then ``C``; a sync to ``B`` killed, then ``B``
again, unedited (so any entry the killed run completed must be right, a sync
would not rewrite it); to ``C`` killed, then ``C``; to ``B`` killed, then
``C``; to ``B`` with a worker killed, then ``B``. On the 2.3.5 server: ``A``,
a sync to ``B`` with the server killed, then ``B``. Compared with fresh
ingests of ``B`` and ``C`` on the Lite server (rows do not depend on the
server). About 2 minutes of CPU: 3.5 to 6 minutes on two cores shared with other jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import yaml
from pymilvus import MilvusClient

from tests.conftest import DEMO_MODEL, WORDS
from transforms.testing import servers

REPO = pathlib.Path(__file__).resolve().parents[1]
PORT_OFFSET_LITE = 850  # servers of this module: 800-899
PORT_OFFSET_MILVUS = 800
RUN_TIMEOUT_S = 300.0  # a sync to completion, on a busy machine
KILL_POINT_TIMEOUT_S = 240.0  # from the start of a sync to its kill point
POLL_S = 0.1
QUERY_LIMIT = 16384  # Milvus answers at most this many rows per query

Records = dict[str, list[dict[str, Any]]]  # file name -> its JSONL records


# --------------------------------------------------------------------------
# The corpus: three versions of about 1,600 documents in JSONL files
# --------------------------------------------------------------------------
FILES = 8
PER_FILE = 200
SIZES = (40, 120, 250, 400, 600)  # words: 1 to 4 chunks of 256 tokens


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _version_a() -> dict[str, dict[str, dict[str, Any]]]:
    rng = random.Random(14)
    return {
        f"p{f}.jsonl": {
            f"p{f}-{i}": {
                "id": f"p{f}-{i}",
                "text": _words(rng, rng.choice(SIZES)),
                "title": f"note {f}.{i}",
                "tags": [f"t{i % 3}", f"f{f}"],
            }
            for i in range(PER_FILE)
        }
        for f in range(FILES)
    }


def corpus(version: str) -> Records:
    """Version ``A``, ``B`` or ``C`` of the corpus, file by file.

    ``B`` from ``A``, in files p0-p5, by ``i % 8``: 0 shrinks, 1 grows, 2 gets
    a new title, 3 a new text of the same length, 4 is deleted; p6 and p7 are
    deleted, n.jsonl (250 documents) added. ``C`` from ``B``: 0 and 4 and half
    of 1 are back to ``A``, the other half of 1 shrinks to a few words, 2 is
    back to its ``A`` title, 5 gets a new text; p7 is back as in ``A``; half
    of n.jsonl is deleted, m.jsonl (300 documents, and 2,500 of a few words)
    added. A sync from ``C`` to ``B`` deletes about 3,100 documents: 13 batches,
    a window the ``deleting`` kill point can be seen in (the deletes come last).
    """
    assert version in ("A", "B", "C"), version
    files = _version_a()
    if version == "A":
        return {name: list(docs.values()) for name, docs in files.items()}
    rng = random.Random(2)
    out: Records = {}
    for name, docs in files.items():
        f = int(name[1:-6])
        if f >= 6:
            if version == "C" and f == 7:
                out[name] = list(docs.values())  # a deleted file back
            continue
        records = []
        for i, original in enumerate(docs.values()):
            doc = dict(original)
            k = i % 8
            if k == 0:
                doc["text"] = " ".join(doc["text"].split()[: max(8, len(doc["text"].split()) // 6)])
            elif k == 1:
                doc["text"] += " " + _words(rng, 500)
            elif k == 2:
                doc["title"] += " (edited)"
            elif k == 3:
                doc["text"] = _words(rng, len(doc["text"].split()))
            elif k == 4:
                if version == "C":
                    records.append(dict(original))  # a deleted record back
                continue
            if version == "C":
                if k in (0, 2) or (k == 1 and i % 16 == 1):
                    doc = dict(original)  # back to what it was before B
                elif k == 1:
                    doc["text"] = _words(rng, 12)
                elif k == 5:
                    doc["text"] = _words(rng, len(doc["text"].split()) + 30)
            records.append(doc)
        out[name] = records
    new = [{"id": f"n-{i}", "text": _words(rng, 200), "title": f"new {i}"} for i in range(250)]
    out["n.jsonl"] = new if version == "B" else new[:125]
    if version == "C":
        out["m.jsonl"] = [
            {"id": f"m-{i}", "text": _words(rng, 300), "title": f"more {i}", "tags": []}
            for i in range(300)
        ] + [{"id": f"m-short-{i}", "text": _words(rng, 6)} for i in range(2500)]
    return out


def by_id(files: Records) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for records in files.values() for record in records}


def write_corpus(folder: pathlib.Path, files: Records) -> None:
    """Makes ``folder`` hold exactly ``files`` (each replaced whole, others removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.jsonl"):
        if path.name not in files:
            path.unlink()
    for name, records in files.items():
        part = folder / f".{name}.part"
        part.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        part.replace(folder / name)


@dataclasses.dataclass(frozen=True)
class Transition:
    """What a sync from one version to another must do: document ids by fate."""

    changed: frozenset[str]  # added or updated: marked pending, written, completed
    gone: frozenset[str]  # rows and entry deleted

    @classmethod
    def of(cls, old: Records, new: Records) -> Transition:
        before, after = by_id(old), by_id(new)
        changed = frozenset(d for d, r in after.items() if before.get(d) != r)
        return cls(changed, frozenset(before.keys() - after.keys()))


# --------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------
def config_file(folder: pathlib.Path, uri: str, collection: str, corpus_dir: pathlib.Path) -> str:
    config = {
        "source": {"patterns": [str(corpus_dir / "*.jsonl")]},
        "model": DEMO_MODEL,
        "milvus": {"uri": uri, "collection": collection, "connect_timeout_s": 5},
        # Small batches: rows come in over many upserts, so that a kill lands between them.
        # Documents are compared as they are read and marked pending 256 at a time between
        # the writes of the ones before, so slower writes also keep entries pending longer.
        "write": {"max_batch_rows": 32},
        "dead_letter_path": str(folder / "dead_letters"),
    }
    path = folder / f"{collection}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


TWO_WORKERS = ("--direct_num_workers", "2", "--direct_running_mode", "multi_processing")


def start(config: str, log: pathlib.Path, *flags: str, mode: str = "sync") -> subprocess.Popen:
    """``python -m pipelines.ingest`` in a process group of its own (its workers in it too)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.ingest", "--config", config,
             "--write_mode", mode, "--runner", "FnApiRunner", "--progress_interval_s", "2",
             *flags],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the run's process group (launcher and workers), then reaps the launcher."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def log_tail(log: pathlib.Path, n: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def run(config: str, log: pathlib.Path, *flags: str, mode: str = "sync") -> dict[str, Any]:
    """A run to completion; its JSON report."""
    log.write_text("")
    process = start(config, log, *flags, mode=mode)
    try:
        process.wait(RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise AssertionError(f"no end in {RUN_TIMEOUT_S:.0f} s:\n{log_tail(log)}") from None
    assert process.returncode == 0, f"exit status {process.returncode}:\n{log_tail(log)}"
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log_tail(log)
    return json.loads(lines[-1])


def descendants(pid: int) -> list[int]:
    """The processes under ``pid``, children first (Linux: /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        parents.setdefault(parent, []).append(int(stat.parent.name))
    found, level = [], parents.get(pid, [])
    while level:
        found += level
        level = [child for p in level for child in parents.get(p, [])]
    return found


def worker_processes(launcher: int) -> list[int]:
    """The Beam SDK worker processes of a multi-process DirectRunner run: the Python
    processes running ``-m apache_beam.runners.worker.sdk_worker_main`` (each started
    through a ``/bin/sh -c``, which is not one)."""
    workers = []
    for pid in descendants(launcher):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "apache_beam.runners.worker.sdk_worker_main" in argv:
            workers.append(pid)
    return workers


# --------------------------------------------------------------------------
# Watching a sync: what Milvus holds, polled
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class State:
    """What a sync has done so far, as Milvus shows it."""

    pending: int  # changed documents whose entry is pending
    completed: int  # changed documents whose entry has their new hash
    new_rows: int  # rows of changed documents, less those they had before the sync
    gone_left: int  # gone documents that still have an entry
    gone_pending: int  # of those, pending

    def __str__(self) -> str:
        return (
            f"pending={self.pending} completed={self.completed} new_rows={self.new_rows} "
            f"gone_left={self.gone_left} gone_pending={self.gone_pending}"
        )


class Watch:
    """Polls the manifest and the rows of a collection during a sync of ``transition``."""

    def __init__(self, uri: str, collection: str, transition: Transition) -> None:
        self.client = MilvusClient(uri=uri, timeout=30)
        self.collection = collection
        self.manifest = f"{collection}__sync"
        self.transition = transition
        self.changed_filter = f"document_id in {json.dumps(sorted(transition.changed))}"
        self.before = manifest_entries(self.client, self.manifest)
        self.rows_before = self._count(self.collection, self.changed_filter)
        self.seen: list[tuple[float, State]] = []

    def close(self) -> None:
        self.client.close()

    def _count(self, collection: str, expression: str) -> int:
        return int(
            self.client.query(
                collection,
                filter=expression,
                output_fields=["count(*)"],
                consistency_level="Strong",
            )[0]["count(*)"]
        )

    def started(self) -> bool:
        """Whether the sync changed anything yet: an entry pending (the first thing it should
        change), an entry fewer, or rows of changed documents. Three counts."""
        return (
            self._count(self.manifest, 'content_hash == ""') > 0
            or self._count(self.manifest, 'document_id != ""') != len(self.before)
            or self._count(self.collection, self.changed_filter) != self.rows_before
        )

    def state(self) -> State:
        entries = manifest_entries(self.client, self.manifest)
        t = self.transition
        pending = sum(1 for d in t.changed if entries.get(d, (None,))[0] == "")
        completed = sum(
            1
            for d in t.changed
            if entries.get(d, ("",))[0] not in ("", self.before.get(d, (None,))[0])
        )
        gone = [entries[d][0] for d in t.gone if d in entries]
        new_rows = self._count(self.collection, self.changed_filter) - self.rows_before
        return State(pending, completed, new_rows, len(gone), gone.count(""))

    def until(
        self,
        process: subprocess.Popen,
        reached: Callable[[State], bool],
        what: str,
        log: pathlib.Path,
    ) -> State:
        """Polls until ``reached``; fails if the run ends first or the deadline passes.

        Until the sync changes something (:meth:`started`), a few counts per poll; then
        the whole manifest and a count of rows.
        """
        started = time.monotonic()
        deadline = started + KILL_POINT_TIMEOUT_S
        marking = False
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the sync ended (status {process.returncode}) before the kill point "
                    f"{what!r}; states seen: {self.history()}\n{log_tail(log)}"
                )
            if time.monotonic() > deadline:
                kill_group(process)
                raise AssertionError(
                    f"kill point {what!r} not reached in {KILL_POINT_TIMEOUT_S:.0f} s; states "
                    f"seen: {self.history()}\n{log_tail(log)}"
                )
            try:
                marking = marking or self.started()
                state = self.state() if marking else None
            except Exception:  # a collection being loaded, a busy server: poll again
                state = None
            if state is not None:
                if not self.seen or self.seen[-1][1] != state:
                    self.seen.append((time.monotonic() - started, state))
                if reached(state):
                    return state
            time.sleep(POLL_S if marking else 4 * POLL_S)

    def history(self) -> str:
        return "; ".join(f"{t:.1f}s {s}" for t, s in self.seen[-12:])


def manifest_entries(client: MilvusClient, manifest: str) -> dict[str, tuple[str, int]]:
    """``document id -> (content hash, chunk count)`` of every entry (one query)."""
    entries = client.query(
        manifest,
        filter='document_id != ""',
        output_fields=["document_id", "content_hash", "chunk_count"],
        limit=QUERY_LIMIT,
        consistency_level="Strong",
    )
    assert len(entries) < QUERY_LIMIT
    return {e["document_id"]: (e["content_hash"], int(e["chunk_count"])) for e in entries}


# The kill points: what must be seen before the kill.
def at_pending(transition: Transition) -> Callable[[State], bool]:
    """Entries are being marked pending: some are, not all yet, none is complete."""
    return lambda s: 0 < s.pending < len(transition.changed) and s.completed == 0


def at_writing(transition: Transition) -> Callable[[State], bool]:
    """Rows of changed documents are coming in; no entry is complete."""
    return lambda s: s.new_rows > 0 and s.completed == 0


def at_completing(transition: Transition) -> Callable[[State], bool]:
    """Some changed documents are complete, some still pending."""
    return lambda s: s.completed > 0 and s.pending > 0


def at_deleting(transition: Transition) -> Callable[[State], bool]:
    """Gone documents are being deleted: some pending, or some entries gone and some left."""
    gone = len(transition.gone)
    return lambda s: s.gone_pending > 0 or 0 < s.gone_left < gone


# --------------------------------------------------------------------------
# The property: equal to a fresh ingest, row by row
# --------------------------------------------------------------------------
FIELDS = ["id", "text", "document_id", "chunk_index", "metadata", "vector"]


def rows(uri: str, collection: str) -> dict[str, tuple]:
    """Every row, ``id -> (text, document id, chunk index, metadata JSON, vector bytes)``."""
    client = MilvusClient(uri=uri, timeout=60)
    try:
        found = client.query(
            collection,
            filter='id != ""',
            output_fields=FIELDS,
            limit=QUERY_LIMIT,
            consistency_level="Strong",
        )
    finally:
        client.close()
    assert len(found) < QUERY_LIMIT
    out = {}
    for row in found:
        out[row["id"]] = (
            row["text"],
            row["document_id"],
            int(row["chunk_index"]),
            json.dumps(row["metadata"], sort_keys=True, ensure_ascii=False),
            np.asarray(row["vector"], dtype=np.float32).tobytes(),
        )
    return out


def checksum(table: Mapping[str, tuple]) -> str:
    digest = hashlib.sha256()
    for row_id in sorted(table):
        text, document_id, chunk_index, metadata, vector = table[row_id]
        for part in (row_id, text, document_id, str(chunk_index), metadata):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x1f")
        digest.update(vector + b"\x1e")
    return digest.hexdigest()


def assert_equal_to_fresh_ingest(
    uri: str, collection: str, reference: Mapping[str, tuple], files: Records, what: str
) -> None:
    """The collection holds the reference's rows exactly; its manifest one complete entry
    per document of ``files``, with the document's row count."""
    found = rows(uri, collection)
    if checksum(found) != checksum(reference):
        missing = reference.keys() - found.keys()
        extra = found.keys() - reference.keys()
        differ = sorted(i for i in found.keys() & reference.keys() if found[i] != reference[i])
        fields = sorted(
            {FIELDS[1 + n] for i in differ for n in range(5) if found[i][n] != reference[i][n]}
        )
        raise AssertionError(
            f"{what}: {len(found)} rows, a fresh ingest has {len(reference)}; {len(missing)} "
            f"missing (e.g. {sorted(missing)[:5]}), {len(extra)} left over (e.g. "
            f"{sorted(extra)[:5]}), {len(differ)} differ in {fields} (e.g. {differ[:5]})"
        )
    client = MilvusClient(uri=uri, timeout=60)
    try:
        entries = manifest_entries(client, f"{collection}__sync")
    finally:
        client.close()
    documents = by_id(files)
    pending = sorted(d for d, (h, _) in entries.items() if h == "")
    assert not pending, f"{what}: {len(pending)} entries pending, e.g. {pending[:5]}"
    orphans = sorted(entries.keys() - documents.keys())
    unlisted = sorted(documents.keys() - entries.keys())
    assert not orphans and not unlisted, (
        f"{what}: {len(orphans)} manifest entries without a document (e.g. {orphans[:5]}), "
        f"{len(unlisted)} documents without an entry (e.g. {unlisted[:5]})"
    )
    per_document: dict[str, int] = {}
    for _, document_id, *_ in found.values():
        per_document[document_id] = per_document.get(document_id, 0) + 1
    wrong = sorted(d for d, (_, n) in entries.items() if per_document.get(d, 0) != n)
    assert not wrong, f"{what}: chunk counts differ from the rows for {wrong[:5]}"


# --------------------------------------------------------------------------
# Fixtures: a Lite server, fresh ingests to compare with, a collection kept in sync
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory):
    """A Milvus Lite server of this module's own: its clients are killed mid-call."""
    proc, uri = servers.start_lite_server(
        tmp_path_factory.mktemp("sync-crash-lite"), port_offset=PORT_OFFSET_LITE
    )
    try:
        yield uri
    finally:
        servers.stop(proc)


class FreshIngests:
    """Fresh ingests (``create_if_missing``, not a sync) of each version, made once each."""

    def __init__(self, uri: str, folder: pathlib.Path) -> None:
        self.uri = uri
        self.folder = folder
        self.tables: dict[str, dict[str, tuple]] = {}

    def __getitem__(self, version: str) -> dict[str, tuple]:
        if version not in self.tables:
            folder = self.folder / f"fresh-{version}"
            folder.mkdir()
            write_corpus(folder / "corpus", corpus(version))
            collection = f"fresh_{version}"
            config = config_file(folder, self.uri, collection, folder / "corpus")
            report = run(config, folder / "run.log", mode="create_if_missing")
            assert report["created"] and report["rows_after"] > 0, report
            self.tables[version] = rows(self.uri, collection)
        return self.tables[version]


@pytest.fixture(scope="module")
def fresh(lite: str, tmp_path_factory: pytest.TempPathFactory) -> FreshIngests:
    return FreshIngests(lite, tmp_path_factory.mktemp("sync-crash-fresh"))


class Synced:
    """A collection synced with a corpus folder; ``version`` is the corpus it was last
    synced to completion with (None: unknown, a sync failed)."""

    def __init__(self, uri: str, folder: pathlib.Path, collection: str) -> None:
        self.uri = uri
        self.folder = folder
        self.corpus = folder / "corpus"
        self.collection = collection
        self.config = config_file(folder, uri, collection, self.corpus)
        self.version: str | None = None
        self.sync_to("A", "first")

    def sync_to(self, version: str, name: str) -> dict[str, Any]:
        self.version = None
        write_corpus(self.corpus, corpus(version))
        report = run(self.config, self.folder / f"{name}.log")
        self.version = version
        return report


@pytest.fixture(scope="module")
def synced(lite: str, tmp_path_factory: pytest.TempPathFactory) -> Synced:
    """One collection on the Lite server, which the kill points there sync in turn."""
    return Synced(lite, tmp_path_factory.mktemp("sync-crash"), "crash")


Kill = Callable[[subprocess.Popen, Watch], str]


def kill_launcher(process: subprocess.Popen, watch: Watch) -> str:
    assert process.poll() is None, f"the run ended (status {process.returncode}) before the kill"
    kill_group(process)
    return "launcher killed"


def kill_a_worker(process: subprocess.Popen, watch: Watch) -> str:
    """SIGKILL to one SDK worker process; then waits for the run to end (Beam may fail it,
    or run the lost bundles again and end it), or kills it after a while."""
    workers = worker_processes(process.pid)
    assert workers, f"no SDK worker process under the launcher {process.pid}"
    os.kill(workers[0], signal.SIGKILL)
    try:
        status = process.wait(180)
    except subprocess.TimeoutExpired:
        return f"worker {workers[0]} of {workers} killed; the run still went on after 180 s"
    return f"worker {workers[0]} of {workers} killed; the run then exited with {status}"


def kill_then_sync(
    synced: Synced,
    fresh: FreshIngests,
    name: str,
    target: str,
    final: str,
    reached: Callable[[Transition], Callable[[State], bool]],
    kill: Kill = kill_launcher,
    flags: tuple[str, ...] = (),
) -> None:
    """A sync towards ``target`` killed once ``reached``, then a sync of ``final`` to
    completion, then the comparison with a fresh ingest of ``final``."""
    if synced.version is None:  # an earlier test failed: start from a known state
        synced.sync_to("A", f"{name}-before")
    started = time.monotonic()
    old = synced.version
    assert old is not None and old != target
    transition = Transition.of(corpus(old), corpus(target))
    reference = fresh[final]  # made before the killed run, not under its load
    synced.version = None
    write_corpus(synced.corpus, corpus(target))
    log = synced.folder / f"{name}.log"
    watch = Watch(synced.uri, synced.collection, transition)
    try:
        process = start(synced.config, log, *flags)
        try:
            state = watch.until(process, reached(transition), name, log)
            what = kill(process, watch)
        finally:
            kill_group(process)
        after = watch.state()
    finally:
        watch.close()
    report = synced.sync_to(final, f"{name}-then-{final}")
    print(
        f"\n{name}: {old}->{target} at {state}: {what}; left {after} (seen: {watch.history()}); "
        f"then {final}: {json.dumps(report['sync'])}; {time.monotonic() - started:.0f} s"
    )
    assert_equal_to_fresh_ingest(
        synced.uri, synced.collection, reference, corpus(final), f"{name}, then {final}"
    )


# --------------------------------------------------------------------------
# The Lite server: the launcher at four points, a worker
# --------------------------------------------------------------------------
# In turn, on one collection: A; to B killed, then C (documents back to A: the tricky case); to B
# killed, then B unedited (what the killed run completed must be right); to C killed, then C; to B
# killed, then C; to B killed (a worker), then B.
def test_launcher_killed_once_entries_are_pending(synced: Synced, fresh: FreshIngests) -> None:
    kill_then_sync(synced, fresh, "pending", "B", "C", at_pending)


def test_launcher_killed_while_rows_are_written(synced: Synced, fresh: FreshIngests) -> None:
    kill_then_sync(synced, fresh, "writing", "B", "B", at_writing)


def test_launcher_killed_while_entries_are_completed(synced: Synced, fresh: FreshIngests) -> None:
    kill_then_sync(synced, fresh, "completing", "C", "C", at_completing)


def test_launcher_killed_while_gone_documents_are_deleted(
    synced: Synced, fresh: FreshIngests
) -> None:
    kill_then_sync(synced, fresh, "deleting", "B", "C", at_deleting)


def test_a_worker_process_killed_while_rows_are_written(
    synced: Synced, fresh: FreshIngests
) -> None:
    kill_then_sync(synced, fresh, "worker", "B", "B", at_writing, kill_a_worker, TWO_WORKERS)


# --------------------------------------------------------------------------
# The Milvus 2.3.5 server, killed and restarted
# --------------------------------------------------------------------------
def test_the_milvus_server_killed_while_rows_are_written(
    tmp_path: pathlib.Path, milvus_bin: pathlib.Path, fresh: FreshIngests
) -> None:
    reference = fresh["B"]  # on the Lite server: rows do not depend on the server
    data_dir = tmp_path / "milvus"
    proc, uri = servers.start_milvus_server(
        data_dir, port_offset=PORT_OFFSET_MILVUS, bin_dir=milvus_bin
    )
    try:
        synced = Synced(uri, tmp_path, "crash")
        transition = Transition.of(corpus("A"), corpus("B"))
        write_corpus(synced.corpus, corpus("B"))
        log = tmp_path / "server.log"
        watch = Watch(uri, "crash", transition)
        try:
            process = start(synced.config, log)
            try:
                state = watch.until(process, at_writing(transition), "server", log)
                servers.kill9(proc)
                proc, _ = servers.start_milvus_server(data_dir, bin_dir=milvus_bin)
                try:  # the run retries its calls: it may end, or give up
                    status: object = process.wait(240)
                except subprocess.TimeoutExpired:
                    status = "still running 240 s after the restart: killed"
            finally:
                kill_group(process)
        finally:
            watch.close()
        report = synced.sync_to("B", "server-then-B")
        print(
            f"\nserver: A->B at {state}: server killed and restarted; the run: {status} "
            f"({log_tail(log, 1)}); then B: {json.dumps(report['sync'])}"
        )
        assert_equal_to_fresh_ingest(uri, "crash", reference, corpus("B"), "server, then B")
    finally:
        servers.stop(proc)


# --------------------------------------------------------------------------
# Embedded Milvus Lite: the store dies with the launcher
# --------------------------------------------------------------------------
def test_the_launcher_and_its_embedded_store_killed_mid_sync(
    tmp_path: pathlib.Path, fresh: FreshIngests
) -> None:
    """An embedded store lives in the launcher's process, so no other process can watch it:
    the kill comes 0.1 s after the model is loaded, once entries are marked pending and the
    first rows are on their way. The sync after it must do work the killed one left (it did
    not end), and end like a fresh ingest."""
    reference = fresh["B"]
    store = str(tmp_path / "milvus.db")
    synced = Synced(store, tmp_path, "crash")
    write_corpus(synced.corpus, corpus("B"))
    log = tmp_path / "embedded.log"
    process = start(synced.config, log)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while "Loaded Model2Vec model" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"the run ended before the kill:\n{log_tail(log)}"
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.05)
        time.sleep(0.1)
        assert process.poll() is None, f"the run ended before the kill:\n{log_tail(log)}"
    finally:
        kill_group(process)
    report = synced.sync_to("B", "embedded-then-B")
    done = report["sync"]
    assert done["documents_added"] + done["documents_updated"] + done["documents_deleted"], done
    client = MilvusClient(uri=store)
    try:  # a store opened again has its collections released
        client.load_collection("crash")
        client.load_collection("crash__sync")
    finally:
        client.close()
    assert_equal_to_fresh_ingest(store, "crash", reference, corpus("B"), "embedded, then B")
