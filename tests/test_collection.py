"""The collection contract against a real Milvus: modes, checks, counts, end of run."""

from __future__ import annotations

import numpy as np
import pytest

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
from transforms.client import DATA, connect, error_kind, skip_client_string_checks
from transforms.rows import RowError, build_row

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
    assert "8-dimensional vectors, the model makes 16" in message
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


def test_finish_flushes_counts_and_catches_missing_rows(milvus_target) -> None:
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


def test_without_the_client_string_check_the_server_still_refuses_long_text(
    milvus_target,
) -> None:
    skip_client_string_checks()  # what the sink does: rows are checked by build_row
    target = milvus_target("long_text")
    config = WriteConfig(text_max_length=16)
    prepare_collection(target, dim=8, fingerprint=FINGERPRINT, config=config)
    chunk = Chunk("c", "d", 0, "t" * 16, 0, 16, {}, np.ones(8, np.float32))
    fits, _ = build_row(chunk, 8, config)
    too_long = {**fits, "id": "c2", "text": "t" * 17}  # what build_row would refuse
    client = connect(target)
    try:
        client.upsert(target.collection, [fits])
        with pytest.raises(Exception) as refused:
            client.upsert(target.collection, [too_long])
        assert error_kind(refused.value) == DATA, refused.value
    finally:
        client.close()
