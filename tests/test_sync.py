"""Sync mode end to end (``--write_mode sync``), on embedded Milvus Lite, the Lite
server and a Milvus 2.3.5 server.

Each sync must leave the collection equal to a fresh ingest of the current
corpus into another collection: same ids, texts, document ids, chunk indexes,
metadata and vectors (every row compared, the vectors as float32 bytes), and a
manifest entry per document, complete, owned by the run's scope and counting
the document's rows. Around that: the report's counts, two scopes in one
collection, and the guards (a scope that reads nothing, a collection written
before by a plain ingest, a changed model, duplicate ids, ``--scope`` without
sync, ``overwrite`` dropping the manifest).

Runs are in-process (``ingest.run``, about 2-3 s each on the tiny model)
except where the exit status is the point. Chunks are 16 tokens without
overlap, and the tiny model's tokenizer makes one token of each word, so a
text of ``16 * n`` words is ``n`` chunks.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pathlib
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines import ingest
from pipelines.outcome import EMPTY_SCOPE, RUN_FAILED_STATUS, RunFailedError
from tests.conftest import WORDS, write_jsonl
from tests.test_exit_codes import ingest as ingest_process
from transforms.config import MilvusTarget
from transforms.milvus.client import close_embedded, connect
from transforms.milvus.collection import CollectionMismatchError, manifest_target
from transforms.milvus.sync import default_scope

REPO = pathlib.Path(__file__).resolve().parents[1]
TOKENS_PER_CHUNK = 16
_QUERY_LIMIT = 16384


def text(seed: int, chunks: int = 1, words: int | None = None) -> str:
    """A text of the tiny model's words: ``chunks`` chunks of 16 tokens, distinct per seed."""
    count = words if words is not None else TOKENS_PER_CHUNK * chunks
    return " ".join(WORDS[(seed * 7 + k * 3 + k // 5) % len(WORDS)] for k in range(count))


@dataclasses.dataclass(frozen=True)
class Row:
    """A collection row as compared: every field, the vector as a digest of its float32 bytes."""

    text: str
    document_id: str
    chunk_index: int
    metadata: str
    vector: str


Snapshot = dict[str, Row]
"""A collection's rows by id."""


def query_all(target: MilvusTarget, collection: str, fields: list[str], key: str) -> list[dict]:
    """Every row of ``collection`` (none if it is missing), with ``fields``; the store closed."""
    client = connect(target)
    try:
        if not client.has_collection(collection):
            return []
        client.load_collection(collection)
        rows = client.query(
            collection,
            filter=f'{key} != ""',
            output_fields=fields,
            limit=_QUERY_LIMIT,
            consistency_level="Strong",
        )
    finally:
        client.close()
        close_embedded(target)  # a later run, or another process, opens the store again
    assert len(rows) < _QUERY_LIMIT  # all of them: the corpora here are small
    return list(rows)


def snapshot(target: MilvusTarget) -> Snapshot:
    """Every row of the target's collection."""
    rows = query_all(
        target,
        target.collection,
        ["id", "text", "document_id", "chunk_index", "metadata", "vector"],
        "id",
    )
    found = {
        str(r["id"]): Row(
            text=str(r["text"]),
            document_id=str(r["document_id"]),
            chunk_index=int(r["chunk_index"]),
            metadata=json.dumps(r["metadata"], sort_keys=True),
            vector=hashlib.sha256(np.asarray(r["vector"], dtype=np.float32).tobytes()).hexdigest(),
        )
        for r in rows
    }
    assert len(found) == len(rows)
    return found


def checksum(rows: Snapshot) -> str:
    """One digest of a snapshot: its rows sorted by id."""
    digest = hashlib.sha256()
    for row_id in sorted(rows):
        digest.update(json.dumps([row_id, *dataclasses.astuple(rows[row_id])]).encode())
    return digest.hexdigest()


def manifest(target: MilvusTarget) -> dict[str, tuple[str, str, int]]:
    """The sync manifest of the target: document id -> (scope, content hash, chunk count)."""
    entries = query_all(
        target,
        manifest_target(target).collection,
        ["document_id", "scope", "content_hash", "chunk_count"],
        "document_id",
    )
    return {
        str(e["document_id"]): (str(e["scope"]), str(e["content_hash"]), int(e["chunk_count"]))
        for e in entries
    }


def manifest_exists(target: MilvusTarget) -> bool:
    client = connect(target)
    try:
        return bool(client.has_collection(manifest_target(target).collection))
    finally:
        client.close()
        close_embedded(target)


def rows_per_document(rows: Snapshot) -> dict[str, int]:
    return dict(collections.Counter(row.document_id for row in rows.values()))


def assert_manifest_matches(
    entries: Mapping[str, tuple[str, str, int]], rows: Snapshot, scope: str
) -> None:
    """The scope's entries are those of the rows' documents, each complete, with their counts."""
    mine = {d: e for d, e in entries.items() if e[0] == scope}
    assert {d: n for d, (_, _, n) in mine.items()} == rows_per_document(rows)
    pending = sorted(d for d, (_, digest, _) in mine.items() if len(digest) != 32)
    assert pending == []


def of_documents(rows: Snapshot, prefix: str) -> Snapshot:
    return {i: r for i, r in rows.items() if r.document_id.startswith(prefix)}


class Ingest:
    """Runs ``pipelines.ingest`` on one Milvus, in this process or in another."""

    def __init__(self, tmp_path: pathlib.Path, uri: str, collection: str, model: str) -> None:
        self.tmp_path = tmp_path
        self.uri = uri
        self.collection = collection
        self.model = model
        self._runs = 0

    def target(self, collection: str | None = None) -> MilvusTarget:
        name = collection or self.collection
        if self.uri.endswith(".db"):
            return MilvusTarget.lite(self.uri, name)
        return MilvusTarget.server(self.uri, name, token_env=None)

    def argv(
        self,
        inputs: Sequence[pathlib.Path],
        *flags: str,
        collection: str | None = None,
        model: str | None = None,
        mode: str | None = "sync",
        source: Mapping[str, Any] | None = None,
    ) -> tuple[list[str], pathlib.Path]:
        self._runs += 1
        config = self.tmp_path / f"run-{self._runs}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "milvus": {"token_env": None},
                    "chunking": {"max_tokens": TOKENS_PER_CHUNK, "overlap_tokens": 0},
                    "source": dict(source or {}),
                    "dead_letter_path": str(self.tmp_path / "dead"),
                }
            )
        )
        report = self.tmp_path / f"report-{self._runs}.json"
        argv = [
            "--config", str(config),
            "--input", ",".join(str(p) for p in inputs),
            "--model", model or self.model,
            "--milvus_uri", self.uri,
            "--collection", collection or self.collection,
            "--report_path", str(report),
            "--progress_interval_s", "0",
        ]  # fmt: skip
        if mode is not None:
            argv += ["--write_mode", mode]
        return argv + list(flags), report

    def run(self, inputs: Sequence[pathlib.Path], *flags: str, **kwargs: Any) -> dict[str, Any]:
        """An in-process run; its report."""
        argv, report = self.argv(inputs, *flags, **kwargs)
        ingest.run(argv)
        return dict(json.loads(report.read_text()))

    def fails(
        self, inputs: Sequence[pathlib.Path], *flags: str, **kwargs: Any
    ) -> tuple[RunFailedError, dict[str, Any]]:
        """An in-process run that ends failed; the failure and the report."""
        argv, report = self.argv(inputs, *flags, **kwargs)
        with pytest.raises(RunFailedError) as raised:
            ingest.run(argv)
        return raised.value, dict(json.loads(report.read_text()))

    def process(
        self, inputs: Sequence[pathlib.Path], *flags: str, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """``python -m pipelines.ingest`` in a process of its own, as a user runs it."""
        argv, _ = self.argv(inputs, *flags, **kwargs)
        return ingest_process(*argv, cwd=REPO)

    def fresh(self, inputs: Sequence[pathlib.Path], name: str, **kwargs: Any) -> Snapshot:
        """The rows of a plain ingest of ``inputs`` into a new collection."""
        collection = f"{self.collection}_{name}"
        report = self.run(inputs, collection=collection, mode=None, **kwargs)
        assert report["created"] is True and "sync" not in report
        return snapshot(self.target(collection))


@pytest.fixture
def runs(tmp_path: pathlib.Path, milvus_uri: str, collection_name: str, tiny_model: str) -> Ingest:
    return Ingest(tmp_path, milvus_uri, collection_name, tiny_model)


def sync_counts(report: Mapping[str, Any]) -> dict[str, int]:
    sync = report["sync"]
    names = ("added", "updated", "unchanged", "deleted")
    counts = {name: int(sync[f"documents_{name}"]) for name in names}
    counts["upserted"] = int(sync["chunks_upserted"])
    counts["chunks_deleted"] = int(sync["chunks_deleted"])
    return counts


def counts(
    added: int = 0,
    updated: int = 0,
    unchanged: int = 0,
    deleted: int = 0,
    upserted: int = 0,
    chunks_deleted: int = 0,
) -> dict[str, int]:
    return {
        "added": added,
        "updated": updated,
        "unchanged": unchanged,
        "deleted": deleted,
        "upserted": upserted,
        "chunks_deleted": chunks_deleted,
    }


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]))


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


# -- A corpus of notes (markdown files) and records (one JSONL file) -------------------------


def write_notes(folder: pathlib.Path, notes: Mapping[str, str]) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in notes.items():
        (folder / name).write_text(body, encoding="utf-8")
    return folder


NOTES = {
    "long.md": text(1, chunks=8),
    "short.md": text(2),
    "gone.md": text(3, chunks=2),
    **{f"keep{i}.md": text(10 + i, chunks=2 if i == 2 else 1) for i in range(6)},
}
RECORDS = [
    {"id": f"r{i:02d}", "text": text(30 + i, words=12), "topic": f"t{i % 3}"} for i in range(12)
]


def test_edits_deletions_and_new_documents_leave_what_a_fresh_ingest_makes(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    notes = write_notes(tmp_path / "notes", NOTES)
    records = tmp_path / "data" / "records.jsonl"
    records.parent.mkdir()
    write_jsonl(records, RECORDS)
    inputs = [notes, records]
    scope = default_scope([str(notes), str(records)])

    first = runs.run(inputs)
    assert first["created"] is True
    assert first["sync"]["scope"] == scope
    # notes: 8 + 1 + 2 + (1 + 1 + 2 + 1 + 1 + 1); records: 12 of 1 chunk
    assert sync_counts(first) == counts(added=21, upserted=30)
    assert first["documents_read"] == 21 and first["written"] == 30 == first["rows_after"]
    synced = snapshot(runs.target())
    assert synced == runs.fresh(inputs, "fresh1")
    assert rows_per_document(synced)[str(notes / "long.md")] == 8
    assert_manifest_matches(manifest(runs.target()), synced, scope)

    # Nothing changed: nothing written, every document unchanged, status 0.
    again = runs.process(inputs)
    assert again.returncode == 0, again.stderr
    report = report_of(again)
    assert sync_counts(report) == counts(unchanged=21)
    assert (report["chunks"], report["written"], report["rows_after"]) == (0, 0, 30)
    assert report["sync"]["manifest_entries_read"] == 21
    assert checksum(snapshot(runs.target())) == checksum(synced)

    # Shrink one note (8 chunks -> 1), grow another (1 -> 3), delete a file, add one; delete
    # a record, edit one's text (1 chunk -> 2) and another's metadata only.
    (notes / "long.md").write_text(text(1), encoding="utf-8")
    (notes / "short.md").write_text(text(2, chunks=3), encoding="utf-8")
    (notes / "gone.md").unlink()
    (notes / "new.md").write_text(text(4, chunks=2), encoding="utf-8")
    edited = [dict(r) for r in RECORDS if r["id"] != "r03"]
    edited[4] = {**edited[4], "text": text(99, chunks=2)}  # r05
    edited[6] = {**edited[6], "topic": "moved"}  # r07
    assert (edited[4]["id"], edited[6]["id"]) == ("r05", "r07")
    write_jsonl(records, edited)

    second = runs.run(inputs)
    # upserted: long 1, short 3, new 2, r05 2, r07 1; deleted: 7 of long, gone's 2, r03's 1
    assert sync_counts(second) == counts(
        added=1, updated=4, unchanged=15, deleted=2, upserted=9, chunks_deleted=10
    )
    assert (second["documents_read"], second["chunks"], second["written"]) == (20, 9, 9)
    assert (second["rows_before"], second["rows_after"]) == (30, 25)
    after = snapshot(runs.target())
    fresh = runs.fresh(inputs, "fresh2")
    assert after == fresh
    assert checksum(after) == checksum(fresh)
    assert len(set(synced) - set(after)) == second["sync"]["chunks_deleted"]
    per_document = rows_per_document(after)
    assert per_document[str(notes / "long.md")] == 1
    assert per_document[str(notes / "short.md")] == 3
    assert str(notes / "gone.md") not in per_document and "r03" not in per_document
    assert_manifest_matches(manifest(runs.target()), after, scope)
    assert set(manifest(runs.target())) == set(per_document)

    # And unchanged again: the new hashes are the ones compared.
    third = runs.run(inputs)
    assert sync_counts(third) == counts(unchanged=20)
    assert third["written"] == 0 and checksum(snapshot(runs.target())) == checksum(after)


def test_two_scopes_share_a_collection_and_never_touch_each_others_rows(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    team_a = write_notes(
        tmp_path / "a", {f"a{i}.md": text(40 + i, chunks=1 + i % 2) for i in range(4)}
    )
    team_b = write_notes(
        tmp_path / "b", {f"b{i}.md": text(50 + i, chunks=1 + i % 3) for i in range(5)}
    )
    scope_a = default_scope([str(team_a)])
    assert scope_a == f"inputs:{team_a}"

    first_a = runs.run([team_a])
    assert first_a["sync"]["scope"] == scope_a
    assert sync_counts(first_a) == counts(added=4, upserted=6)
    first_b = runs.run([team_b], "--scope", "team-b")
    assert first_b["sync"]["scope"] == "team-b"
    # Scope team-b starts empty: a's documents are not its own, so none is deleted.
    assert sync_counts(first_b) == counts(added=5, upserted=9)
    assert first_b["sync"]["manifest_entries_read"] == 0
    rows = snapshot(runs.target())
    rows_b = of_documents(rows, str(team_b))
    assert len(rows) == 15 and len(rows_b) == 9
    entries = manifest(runs.target())
    assert_manifest_matches(entries, of_documents(rows, str(team_a)), scope_a)
    assert_manifest_matches(entries, rows_b, "team-b")
    entries_b = {d: e for d, e in entries.items() if e[0] == "team-b"}

    # A loses two notes and edits one: only a's rows change.
    (team_a / "a0.md").unlink()
    (team_a / "a1.md").unlink()
    (team_a / "a2.md").write_text(text(60, chunks=3), encoding="utf-8")
    second_a = runs.run([team_a])
    assert sync_counts(second_a) == counts(
        updated=1, unchanged=1, deleted=2, upserted=3, chunks_deleted=3
    )
    assert second_a["sync"]["manifest_entries_read"] == 4  # a's entries only
    rows = snapshot(runs.target())
    assert of_documents(rows, str(team_b)) == rows_b
    assert of_documents(rows, str(team_a)) == runs.fresh([team_a], "fresh_a")
    assert_manifest_matches(manifest(runs.target()), rows_b, "team-b")

    # A loses every note: a run that reads nothing deletes nothing unless told.
    for path in team_a.iterdir():
        path.unlink()
    allow_nothing = {"empty_match": "allow"}
    failure, refused = runs.fails([team_a], source=allow_nothing)
    assert failure.outcome == EMPTY_SCOPE
    assert refused["sync"]["deletes_refused"] == 2 and refused["sync"]["documents_deleted"] == 0
    assert snapshot(runs.target()) == rows
    emptied = runs.run([team_a], "--allow_empty_scope", source=allow_nothing)
    assert sync_counts(emptied) == counts(deleted=2, chunks_deleted=5)
    rows = snapshot(runs.target())
    assert rows == rows_b
    entries = manifest(runs.target())
    assert entries == entries_b  # b's entries, hashes included, as b's first sync left them


def test_a_file_that_yields_no_document_deletes_nothing_unless_allowed(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    records = tmp_path / "export.jsonl"
    write_jsonl(records, RECORDS[:6])
    first = runs.run([records])
    assert sync_counts(first) == counts(added=6, upserted=6)
    before = snapshot(runs.target())
    scope = first["sync"]["scope"]

    records.write_text("", encoding="utf-8")  # the export came out empty
    done = runs.process([records])
    assert done.returncode == RUN_FAILED_STATUS, done.stderr
    line = last_line(done)
    assert line.startswith("error: read no document, so the 6 documents of scope "), line
    assert repr(scope) in line and "--allow_empty_scope" in line
    report = report_of(done)
    assert report["documents_read"] == 0 and report["sync"]["deletes_refused"] == 6
    assert report["sync"]["documents_deleted"] == 0 and report["rows_after"] == 6
    assert snapshot(runs.target()) == before
    assert_manifest_matches(manifest(runs.target()), before, scope)

    emptied = runs.run([records], "--allow_empty_scope")
    assert sync_counts(emptied) == counts(deleted=6, chunks_deleted=6)
    assert emptied["rows_after"] == 0 and emptied["dropped"] is False
    assert emptied["dead_letters_by_stage"] == {"read": 1}  # the empty file, said, not fatal
    assert snapshot(runs.target()) == {}
    assert manifest(runs.target()) == {}


def test_a_collection_ingested_before_gets_one_full_pass_then_syncs_incrementally(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    notes = write_notes(tmp_path / "notes", NOTES)
    plain = runs.run([notes], mode=None)
    assert "sync" not in plain and plain["written"] == 18
    assert not manifest_exists(runs.target())

    (notes / "long.md").write_text(text(1), encoding="utf-8")  # 8 chunks -> 1
    first = runs.run([notes])
    # No entry yet: every document is added, and long.md's 7 old chunks are found and deleted.
    assert sync_counts(first) == counts(added=9, upserted=11, chunks_deleted=7)
    assert (first["created"], first["rows_before"], first["rows_after"]) == (False, 18, 11)
    rows = snapshot(runs.target())
    assert rows == runs.fresh([notes], "fresh")
    assert_manifest_matches(manifest(runs.target()), rows, first["sync"]["scope"])

    (notes / "keep0.md").write_text(text(70, chunks=2), encoding="utf-8")
    second = runs.run([notes])
    assert sync_counts(second) == counts(updated=1, unchanged=8, upserted=2)
    assert snapshot(runs.target()) == runs.fresh([notes], "fresh2")


def test_a_changed_model_is_refused_and_points_to_a_rebuild(
    runs: Ingest, tmp_path: pathlib.Path, demo_model: str
) -> None:
    notes = write_notes(tmp_path / "notes", {"one.md": text(1), "two.md": text(2, chunks=2)})
    runs.run([notes])
    before = snapshot(runs.target())
    entries = manifest(runs.target())

    done = runs.process([notes], model=demo_model)
    assert done.returncode == 1, done.stderr
    line = last_line(done)
    assert line.startswith("error: ") and "does not fit this run" in line, line
    assert "rebuild it (write.mode: overwrite, or a new collection)" in line, line
    assert snapshot(runs.target()) == before and manifest(runs.target()) == entries


DUPLICATED = [
    {"id": "d1", "text": text(80), "copy": "first"},
    {"id": "d2", "text": text(81)},
    {"id": "d1", "text": text(82, chunks=2), "copy": "last"},
    {"id": "d3", "text": text(83)},
]


def test_duplicate_ids_in_one_run_follow_the_duplicate_id_policy(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    records = tmp_path / "dups.jsonl"
    write_jsonl(records, DUPLICATED)

    # keep_last (the default): the last copy is the document, the other a dead letter.
    first = runs.run([records])
    assert sync_counts(first) == counts(added=3, upserted=4)
    assert first["dead_letters_by_stage"] == {"dedupe": 1}
    rows = snapshot(runs.target())
    assert rows == runs.fresh([records], "fresh_last")
    assert {r.metadata for r in rows.values() if r.document_id == "d1"} == {'{"copy": "last"}'}
    entries = manifest(runs.target())
    assert_manifest_matches(entries, rows, first["sync"]["scope"])

    # The same file again: the kept copy's hash is the one stored, so nothing changes.
    again = runs.run([records])
    assert sync_counts(again) == counts(unchanged=3)
    assert again["written"] == 0 and again["dead_letters_by_stage"] == {"dedupe": 1}
    assert manifest(runs.target()) == entries

    # keep_first: the first copy replaces the last one's rows, extra chunk included.
    keep_first = {"duplicate_ids": "keep_first"}
    first_copy = runs.run([records], source=keep_first)
    assert sync_counts(first_copy) == counts(updated=1, unchanged=2, upserted=1, chunks_deleted=1)
    rows = snapshot(runs.target())
    assert rows == runs.fresh([records], "fresh_first", source=keep_first)
    assert {r.metadata for r in rows.values() if r.document_id == "d1"} == {'{"copy": "first"}'}

    # dead_letter: an id used twice is no document, so its rows go as a deleted one's do.
    dead_letter = {"duplicate_ids": "dead_letter"}
    none_kept = runs.run([records], source=dead_letter)
    assert sync_counts(none_kept) == counts(unchanged=2, deleted=1, chunks_deleted=1)
    assert none_kept["dead_letters_by_stage"] == {"dedupe": 2}
    rows = snapshot(runs.target())
    assert rows == runs.fresh([records], "fresh_none", source=dead_letter)
    assert set(rows_per_document(rows)) == {"d2", "d3"}
    assert set(manifest(runs.target())) == {"d2", "d3"}


def test_overwrite_drops_the_manifest_and_a_later_sync_adds_everything(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    notes = write_notes(
        tmp_path / "notes", {f"n{i}.md": text(90 + i, chunks=1 + i % 2) for i in range(5)}
    )
    first = runs.run([notes])
    assert sync_counts(first) == counts(added=5, upserted=7)
    synced = snapshot(runs.target())
    assert manifest_exists(runs.target())

    rebuilt = runs.run([notes], mode="overwrite")
    assert rebuilt["created"] is True and rebuilt["written"] == 7
    assert not manifest_exists(runs.target())
    assert snapshot(runs.target()) == synced

    again = runs.run([notes])
    assert sync_counts(again) == counts(added=5, upserted=7)
    assert again["sync"]["manifest_entries_read"] == 0
    rows = snapshot(runs.target())
    assert rows == synced
    assert_manifest_matches(manifest(runs.target()), rows, again["sync"]["scope"])


def test_scope_without_sync_mode_is_a_one_line_error(
    tmp_path: pathlib.Path, tiny_model: str
) -> None:
    notes = write_notes(tmp_path / "notes", {"one.md": text(1)})
    runs = Ingest(tmp_path, str(tmp_path / "milvus.db"), "notes", tiny_model)
    done = runs.process([notes], "--scope", "team-a", mode=None)
    assert done.returncode == 1, done.stderr
    assert last_line(done) == (
        "error: --scope='team-a' is for sync runs: add --write_mode sync (or set "
        "write.mode: sync), or leave --scope out."
    )
    assert done.stdout.strip() == ""  # no report: nothing ran
    assert not (tmp_path / "milvus.db").exists()


def test_through_an_alias_a_sync_writes_the_collection_it_names_and_overwrite_is_refused(
    runs: Ingest, tmp_path: pathlib.Path
) -> None:
    """Readers may use a collection through an alias (``create_alias``). A run given the
    alias writes the collection it names, and a sync keeps that collection's manifest, not
    one named after the alias; ``overwrite`` through an alias is refused (Milvus Lite would
    drop the aliased collection), and the collection keeps its rows."""
    notes = write_notes(
        tmp_path / "notes", {f"a{i}.md": text(40 + i, chunks=1 + i % 2) for i in range(4)}
    )
    real = f"{runs.collection}_g1"
    first = runs.run([notes], collection=real)
    assert sync_counts(first) == counts(added=4, upserted=6)
    client = connect(runs.target(real))
    try:
        client.create_alias(real, runs.collection)
    finally:
        client.close()
    (notes / "a1.md").write_text(text(77), encoding="utf-8")  # 2 chunks -> 1

    through = runs.run([notes])

    assert (through["collection"], through["alias_of"]) == (runs.collection, real)
    assert sync_counts(through) == counts(updated=1, unchanged=3, upserted=1, chunks_deleted=1)
    assert manifest_exists(runs.target(real)) and not manifest_exists(runs.target())
    rows = snapshot(runs.target(real))
    assert rows == runs.fresh([notes], "fresh")
    assert_manifest_matches(manifest(runs.target(real)), rows, through["sync"]["scope"])
    with pytest.raises(CollectionMismatchError, match=f"is an alias of '{real}': write.mode"):
        runs.run([notes], mode="overwrite")
    assert snapshot(runs.target(real)) == rows
