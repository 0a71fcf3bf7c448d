"""The collection contract against a real Milvus: modes, checks, counts, end of run, retries,
and what each Milvus refuses that the client lets through."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from transforms import (
    Chunk,
    CollectionMismatchError,
    IndexConfig,
    RowCountMismatchError,
    TextOverflow,
    WriteConfig,
    WriteMode,
    count_rows,
    finish_collection,
    prepare_collection,
)
from transforms.milvus.client import DATA, CheckedStr, connect, error_kind
from transforms.milvus.collection import (
    FINGERPRINT_PROPERTY,
    physical_target,
    plan_collection,
)
from transforms.milvus.rows import RowError, build_row

FINGERPRINT = {
    "model": "m",
    "dim": 8,
    "normalize": True,
    "vectors_sha256": "a",
    "tokenizer_sha256": "t",
}


def _insert(target, n: int, dim: int = 8) -> None:
    client = connect(target)
    try:
        rows = [
            build_row(
                Chunk(
                    f"r{i}", "doc", i, f"text {i}", 0, 6, {"i": i}, np.full(dim, i + 1, np.float32)
                ),
                dim,
                WriteConfig(),
            )[0]
            for i in range(n)
        ]
        client.upsert(target.collection, rows)
    finally:
        client.close()


def test_create_if_missing_creates_then_checks(milvus_target) -> None:
    target = milvus_target("create_then_check")
    state = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    assert state.created and state.rows_before == 0
    _insert(target, 3)
    again = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    assert not again.created and again.rows_before == 3


def test_append_never_creates(milvus_target) -> None:
    target = milvus_target("append_only")
    with pytest.raises(CollectionMismatchError, match=r"does not exist and write\.mode is append"):
        prepare_collection(
            target, dim=8, fingerprint=FINGERPRINT, config=WriteConfig(mode=WriteMode.APPEND)
        )
    prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    state = prepare_collection(
        target, dim=8, fingerprint=FINGERPRINT, config=WriteConfig(mode=WriteMode.APPEND)
    )
    assert not state.created


def test_overwrite_drops_and_fail_if_exists_stops(milvus_target) -> None:
    target = milvus_target("overwrite")
    prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    _insert(target, 4)
    state = prepare_collection(
        target, dim=8, fingerprint=FINGERPRINT, config=WriteConfig(mode=WriteMode.OVERWRITE)
    )
    assert state.created and count_rows(target) == 0
    with pytest.raises(CollectionMismatchError, match="already exists"):
        prepare_collection(
            target,
            dim=8,
            fingerprint=FINGERPRINT,
            config=WriteConfig(mode=WriteMode.FAIL_IF_EXISTS),
        )


def test_a_collection_that_does_not_fit_says_what_differs(milvus_target) -> None:
    target = milvus_target("mismatch")
    prepare_collection(
        target, dim=8, fingerprint=FINGERPRINT, config=WriteConfig(text_max_length=1000)
    )
    other_model = {**FINGERPRINT, "model": "other", "dim": 16, "vectors_sha256": "b"}
    with pytest.raises(CollectionMismatchError) as raised:
        prepare_collection(
            target,
            dim=16,
            fingerprint=other_model,
            config=WriteConfig(index=IndexConfig(metric_type="L2")),
        )
    message = str(raised.value)
    assert "8-dimensional vectors, this run writes 16" in message
    assert "VARCHAR(1000), shorter than the run's 65535" in message
    assert "metric COSINE, the run's is L2" in message
    assert "filled by model 'm'" in message and "dim, vectors_sha256" in message
    assert "write.mode: overwrite" in message


def test_a_foreign_collection_is_refused(milvus_target) -> None:
    target = milvus_target("foreign")
    client = connect(target)
    try:
        client.create_collection(target.collection, dimension=8)  # quick setup: id INT64, vector
    finally:
        client.close()
    with pytest.raises(CollectionMismatchError, match="not made by this framework"):
        prepare_collection(target, dim=8, fingerprint=FINGERPRINT)


def test_finish_flushes_counts_and_catches_missing_rows(milvus_target, monkeypatch) -> None:
    from transforms.milvus import collection

    monkeypatch.setattr(collection, "_RECOUNT_WAITS_S", (0.01, 0.01))
    target = milvus_target("finish")
    state = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    _insert(target, 5)
    report = finish_collection(
        target, state, rows_upserted=5, config=WriteConfig(wait_for_index=True)
    )
    assert report["rows_before"] == 0 and report["rows_after"] == 5
    with pytest.raises(
        RowCountMismatchError, match="holds 5 rows after the run, but 6 were upserted"
    ):
        finish_collection(target, state, rows_upserted=6)
    later = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    assert finish_collection(target, later, rows_upserted=0)["rows_after"] == 5


def test_a_count_that_does_not_fit_is_counted_again_before_it_is_believed(
    milvus_target, monkeypatch
) -> None:
    """Milvus 2.3 may count a compacted segment twice for a moment (milvus-io/milvus#24171):
    a count that does not fit the run is taken again, and the run fails only when it stays
    off. Here the first count is made to say 18 more rows than the collection holds."""
    from transforms.milvus import collection

    monkeypatch.setattr(collection, "_RECOUNT_WAITS_S", (0.01, 0.01))
    real_count = collection._count
    counts: list[int] = []

    def off_once(client, name):
        rows = real_count(client, name) + (18 if not counts else 0)
        counts.append(rows)
        return rows

    monkeypatch.setattr(collection, "_count", off_once)
    target = milvus_target("recount")
    state = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    _insert(target, 5)
    assert finish_collection(target, state, rows_upserted=5)["rows_after"] == 5
    assert counts == [23, 5]


def test_a_name_that_is_an_alias_is_written_through_and_never_overwritten(milvus_target) -> None:
    """An alias names the collection a run writes (``alias_of``); overwrite through it is
    refused, planned or run, and the collection keeps its rows."""
    real = milvus_target("real")
    alias = dataclasses.replace(real, collection=real.collection + "_alias")
    prepare_collection(real, dim=8, fingerprint=FINGERPRINT)
    _insert(real, 3)
    client = connect(real)
    try:
        client.create_alias(real.collection, alias.collection)
    finally:
        client.close()
    assert physical_target(alias) == real and physical_target(real) == real
    state = prepare_collection(alias, dim=8, fingerprint=FINGERPRINT)
    assert (state.created, state.rows_before, state.alias_of) == (False, 3, real.collection)
    assert prepare_collection(real, dim=8, fingerprint=FINGERPRINT).alias_of is None
    overwrite = WriteConfig(mode=WriteMode.OVERWRITE)
    plan = plan_collection(alias, dim=8, fingerprint=FINGERPRINT, config=overwrite)
    assert plan.action == "refused" and f"is an alias of '{real.collection}'" in plan.detail
    with pytest.raises(CollectionMismatchError, match="overwrite would drop"):
        prepare_collection(alias, dim=8, fingerprint=FINGERPRINT, config=overwrite)
    assert count_rows(real) == 3


def test_text_over_the_field_is_truncated_or_dead_lettered() -> None:
    chunk = Chunk("c", "d", 0, "é" * 10, 0, 10, {}, np.ones(8, np.float32))
    row, _ = build_row(
        chunk, 8, WriteConfig(text_max_length=5, text_overflow=TextOverflow.TRUNCATE)
    )
    assert row["text"] == "éé"  # 4 bytes: a third é would cut a character
    with pytest.raises(RowError, match="20 bytes, over the text field's 5") as raised:
        build_row(chunk, 8, WriteConfig(text_max_length=5))
    assert raised.value.kind == "text_too_long"
    too_big = Chunk("c", "d", 0, "t", 0, 1, {"blob": "x" * 70_000}, np.ones(8, np.float32))
    with pytest.raises(RowError, match="over Milvus's 65536"):
        build_row(too_big, 8, WriteConfig())


def test_each_milvus_refuses_long_text_that_the_client_lets_through(
    milvus_target, milvus_kind
) -> None:
    """The server is the last check of a text's length: pymilvus' own check of a row walks a
    plain string's characters and never fails, and checks a CheckedStr's length in characters.
    What gets through and is too long is refused as a data error (a dead letter). Milvus counts
    UTF-8 bytes, Milvus Lite characters; build_row checks bytes, so our rows fit both."""
    target = milvus_target("long_text")
    config = WriteConfig(text_max_length=16)
    prepare_collection(target, dim=8, fingerprint=FINGERPRINT, config=config)
    chunk = Chunk("c", "d", 0, "t" * 16, 0, 16, {}, np.ones(8, np.float32))
    fits, _ = build_row(chunk, 8, config)
    client = connect(target)
    try:
        client.upsert(target.collection, [{**fits, "text": CheckedStr(fits["text"])}])
        for row_id, text in (
            ("plain_str", "t" * 17),  # pymilvus walks its characters: lets it through
            ("checked_str", CheckedStr("t" * 17)),  # refused by pymilvus itself
        ):
            with pytest.raises(MilvusException) as refused:
                client.upsert(target.collection, [{**fits, "id": row_id, "text": text}])
            assert error_kind(refused.value) == DATA, (row_id, refused.value)
        multi_byte = {**fits, "id": "multi_byte", "text": CheckedStr("é" * 10)}  # 20 bytes
        if milvus_kind == "milvus_server":  # counts bytes
            with pytest.raises(MilvusException) as refused:
                client.upsert(target.collection, [multi_byte])
            assert error_kind(refused.value) == DATA, refused.value
        else:  # Milvus Lite counts characters
            client.upsert(target.collection, [multi_byte])
    finally:
        client.close()
    assert count_rows(target) == (1 if milvus_kind == "milvus_server" else 2)
    with pytest.raises(RowError, match="20 bytes, over the text field's 16"):
        build_row(Chunk("m", "d", 0, "é" * 10, 0, 10, {}, np.ones(8, np.float32)), 8, config)


def test_no_fingerprint_stores_none_and_compares_none(milvus_target) -> None:
    bare = milvus_target("no_fingerprint")
    prepare_collection(bare, dim=8, fingerprint=None)
    client = connect(bare)
    try:
        properties = client.describe_collection(bare.collection).get("properties", {})
    finally:
        client.close()
    assert FINGERPRINT_PROPERTY not in properties
    assert not prepare_collection(bare, dim=8, fingerprint=FINGERPRINT).created
    filled = milvus_target("fingerprinted")
    prepare_collection(filled, dim=8, fingerprint=FINGERPRINT)
    assert not prepare_collection(filled, dim=8, fingerprint=None).created
    with pytest.raises(CollectionMismatchError, match="8-dimensional vectors, this run writes 4"):
        prepare_collection(filled, dim=4, fingerprint=None)  # the dimension is still checked


@pytest.mark.parametrize("milvus_kind", ["lite"], indirect=True)
def test_finish_retries_a_transient_flush_under_the_run_policy(
    milvus_target, monkeypatch, caplog
) -> None:
    target = milvus_target("finish_retry")
    state = prepare_collection(target, dim=8, fingerprint=FINGERPRINT)
    _insert(target, 2)
    flush = MilvusClient.flush
    failures = [MilvusUnavailableException(message="injected: unavailable")]

    def flaky_flush(self, *args, **kwargs):
        if failures:
            raise failures.pop()
        return flush(self, *args, **kwargs)

    monkeypatch.setattr(MilvusClient, "flush", flaky_flush)
    config = WriteConfig(initial_backoff_s=0.01, max_backoff_s=0.01)
    with caplog.at_level(logging.WARNING):
        assert finish_collection(target, state, rows_upserted=2, config=config)["rows_after"] == 2
    assert "failed (unavailable, attempt 1 of 8), retrying" in caplog.text
    failures.append(MilvusException(code=1100, message="injected: not transient"))
    with pytest.raises(MilvusException, match="not transient"):
        finish_collection(target, state, rows_upserted=2, config=config)
    assert not failures  # tried once, not retried
