"""The parts of a sync, one by one: content hashes, scopes, manifest reads, bad ids.

The end-to-end behaviour on every kind of Milvus is in tests/test_sync.py,
crashes in tests/test_sync_crash.py; here, what each of those relies on:
a hash that changes with everything that makes a document's rows and with
nothing else, a scope named by the inputs, bucket ranges that cover every
bucket once, a manifest read that splits a range Milvus would truncate, a
plan that compares each document with its stored entry (looked up by id,
in batches, as of the launcher's timestamp) and finds the gone ones, and a
document id too long to store, dead-lettered once with the counts adding
up. Seconds, mostly on embedded Milvus Lite.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.conftest import write_jsonl
from tests.test_exit_codes import ingest
from transforms import MilvusTarget, metrics
from transforms.config import ChunkingConfig, TextOverflow, WriteConfig
from transforms.milvus.client import close_embedded, connect
from transforms.milvus.collection import manifest_target
from transforms.milvus.sync import (
    BUCKETS,
    PlanSync,
    ReadManifest,
    content_hash,
    count_scope,
    default_scope,
    ensure_manifest,
    manifest_ranges,
    read_timestamp,
    sync_salt,
)
from transforms.milvus.sync import _entry as manifest_entry
from transforms.types import Document

SALT = sync_salt(model_fingerprint={"dim": 8}, chunking=ChunkingConfig(), write=WriteConfig())


def test_the_content_hash_changes_with_text_metadata_and_settings_only() -> None:
    document = Document("d1", "some text", {"lang": "en", "tags": ["a"]}, source="a.jsonl:1")
    digest = content_hash(document, SALT)
    assert len(digest) == 32
    # Where a document was read, and the order of its metadata keys, make no other rows.
    moved = Document("d1", "some text", {"tags": ["a"], "lang": "en"}, source="b.jsonl:9")
    assert content_hash(moved, SALT) == digest
    changed = [
        dataclasses.replace(document, text="some text."),
        dataclasses.replace(document, metadata={"lang": "fr", "tags": ["a"]}),
    ]
    salts = [
        sync_salt(model_fingerprint={"dim": 16}, chunking=ChunkingConfig(), write=WriteConfig()),
        sync_salt(
            model_fingerprint={"dim": 8},
            chunking=ChunkingConfig(max_tokens=64, overlap_tokens=8),
            write=WriteConfig(),
        ),
        sync_salt(
            model_fingerprint={"dim": 8},
            chunking=ChunkingConfig(),
            write=WriteConfig(text_overflow=TextOverflow.TRUNCATE),
        ),
    ]
    digests = [content_hash(d, SALT) for d in changed] + [content_hash(document, s) for s in salts]
    assert len({digest, *digests}) == 1 + len(digests)


def test_a_default_scope_is_named_by_its_inputs_in_any_order() -> None:
    assert default_scope(["/b/*.md", "/a.jsonl"]) == "inputs:/a.jsonl,/b/*.md"
    assert default_scope(["/a.jsonl", "/b/*.md"]) == default_scope(["/b/*.md", "/a.jsonl"])
    many = [f"/corpus/part-{i:05d}.jsonl" for i in range(100)]
    named = default_scope(many)
    assert named.startswith("inputs:sha256:") and len(named) <= 512
    assert named != default_scope(many[:-1])


@pytest.mark.parametrize("entries", [0, 1, 4096, 4097, 100_000, 50_000_000])
def test_manifest_ranges_cover_every_bucket_once(entries: int) -> None:
    ranges = manifest_ranges(entries)
    assert ranges[0][0] == 0 and ranges[-1][1] == BUCKETS
    assert all(lo < hi for lo, hi in ranges)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert len(ranges) == max(1, -(-entries // 4096))


def test_a_manifest_read_splits_a_range_that_milvus_would_truncate(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of more entries than one query returns reads both halves instead: with the
    limit lowered to 50, one range over 300 entries still yields each of them once; and a
    manifest found not loaded is loaded first."""
    from transforms.milvus import sync

    monkeypatch.setattr(sync, "_QUERY_LIMIT", 50)
    target = MilvusTarget.lite(str(tmp_path / "milvus.db"), "docs")
    manifest = manifest_target(target)
    ensure_manifest(manifest)
    client = connect(manifest)
    try:
        entries = [manifest_entry(f"d{i}", "mine", f"h{i}", i % 7) for i in range(300)]
        entries += [manifest_entry(f"other{i}", "theirs", "h", 1) for i in range(20)]
        client.upsert(manifest.collection, entries)
        # As a server that restarted has it for a while: the read loads it, then reads.
        client.release_collection(manifest.collection)
    finally:
        client.close()
    expected = [(f"d{i}", i % 7) for i in range(300)]

    with TestPipeline(runner="FnApiRunner") as pipeline:
        read = pipeline | ReadManifest(manifest, "mine", [(0, BUCKETS)])
        assert_that(read, equal_to(expected))
    close_embedded(target)


def test_a_plan_compares_each_document_with_its_stored_entry(
    milvus_kind: str, milvus_target: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchanged documents are dropped, edited and new ones kept with the rows stored, an
    entry of another scope or one left pending counts as a change, and an entry whose
    document was not read is gone. The entries are looked up three documents a query,
    so a bundle takes several; every read waits for the launcher's timestamp, so the
    entries written just before it are seen (the server gives one, Milvus Lite none)."""
    from transforms.milvus import sync

    monkeypatch.setattr(sync, "_DOCUMENTS_PER_LOOKUP", 3)
    target = milvus_target("plan")
    manifest = manifest_target(target)
    ensure_manifest(manifest)
    same = [Document(f"same{i}", f"text {i}") for i in range(7)]
    edited = Document("edited", "new text")
    theirs = Document("theirs", "their text")
    pending = Document("pending", "pending text")
    added = Document("added", "a new document")
    client = connect(manifest)
    try:
        client.upsert(
            manifest.collection,
            [manifest_entry(d.id, "mine", content_hash(d, SALT), 2) for d in same]
            + [
                manifest_entry("edited", "mine", content_hash(Document("edited", "old"), SALT), 5),
                manifest_entry("theirs", "theirs", content_hash(theirs, SALT), 1),
                manifest_entry("pending", "mine", "", 0),
                manifest_entry("gone", "mine", "h", 4),
            ],
        )
    finally:
        client.close()
    read_at = read_timestamp(manifest)
    assert (read_at is None) == (milvus_kind != "milvus_server")
    entries = count_scope(manifest, "mine")
    assert entries == 10

    pipeline = TestPipeline(runner="FnApiRunner")
    plan = (
        pipeline
        | beam.Create([*same, edited, theirs, pending, added])
        | PlanSync(
            target,
            manifest,
            scope="mine",
            salt=SALT,
            ranges=manifest_ranges(entries),
            read_at=read_at,
            dry_run=True,
        )
    )
    changed = plan["changed"] | beam.Map(
        lambda p: (p[0].id, p[1] == content_hash(p[0], SALT), p[2])
    )
    assert_that(
        changed,
        equal_to(
            [("edited", True, 5), ("theirs", True, 0), ("pending", True, 0), ("added", True, 0)]
        ),
        label="Changed",
    )
    assert_that(plan["gone"], equal_to([("gone", 4)]), label="Gone")
    result = pipeline.run()
    result.wait_until_finish()
    counted = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))[
            "counters"
        ]
    }
    assert counted[metrics.DOCUMENTS_UNCHANGED] == 7
    assert counted[metrics.DOCUMENTS_UPDATED] == 2  # edited, pending
    assert counted[metrics.DOCUMENTS_ADDED] == 2  # theirs (now this scope's), added
    if milvus_kind == "lite":
        close_embedded(target)


def test_a_document_id_too_long_to_store_is_dead_lettered_once_and_counted(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    long_id = "x" * 1100
    write_jsonl(
        tmp_path / "data.jsonl",
        [{"id": "short", "text": "a short document"}, {"id": long_id, "text": "too long an id"}],
    )
    flags = ["--input", "data.jsonl", "--model", demo_model, "--milvus_uri", "milvus.db",
             "--collection", "docs", "--write_mode", "sync"]  # fmt: skip

    done = ingest(*flags, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["documents_read"] == 2
    assert report["dead_lettered"] == 1
    assert report["sync"]["documents_added"] == 2  # planned; one of them could not be written
    [letter_file] = (tmp_path / "work").rglob("dead_letters-*.jsonl")
    [letter] = [json.loads(line) for line in letter_file.read_text().splitlines()]
    assert letter["stage"] == "sync"
    assert "document id of 1100 bytes" in letter["reason"]
    again = ingest(*flags, cwd=tmp_path)  # the good document is unchanged, the bad one said again
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert (report["sync"]["documents_unchanged"], report["dead_lettered"]) == (1, 1)


def test_a_collection_dropped_by_hand_is_filled_again_by_the_next_sync(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    """Its manifest, left behind, would say every document is there: the sync that makes the
    collection again drops it first, and writes every document."""
    write_jsonl(
        tmp_path / "data.jsonl", [{"id": f"d{i}", "text": f"text {i} " * 9} for i in range(5)]
    )
    flags = ["--input", "data.jsonl", "--model", demo_model, "--milvus_uri", "milvus.db",
             "--collection", "docs", "--write_mode", "sync"]  # fmt: skip
    assert ingest(*flags, cwd=tmp_path).returncode == 0
    target = MilvusTarget.lite(str(tmp_path / "milvus.db"), "docs")
    client = connect(target)
    try:
        client.drop_collection("docs")
        assert client.has_collection("docs__sync")
    finally:
        client.close()
        close_embedded(target)

    again = ingest(*flags, cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["created"] is True
    assert report["sync"]["documents_added"] == 5
    assert report["rows_after"] == report["written"] == report["chunks"] > 0
