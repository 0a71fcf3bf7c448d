"""WriteToMilvus's DoFn driven by hand with a fake client: batching, retries, dead letters,
ChunkBatch elements and the write in flight."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from transforms import Chunk, MilvusTarget, WriteConfig
from transforms import sink as sink_module
from transforms.batch import ChunkBatch
from transforms.client import DATA, FATAL, TRANSIENT, error_kind
from transforms.rows import build_row

DIM = 4
WINDOW = GlobalWindow()


class FakeClient:
    """Records upserts; fails as told: a list of exceptions to raise in turn,
    or a set of row ids that make any batch holding them fail for its data."""

    def __init__(self, failures=(), bad_ids=()):
        self.batches: list[list[str]] = []
        self.failures = list(failures)
        self.bad_ids = set(bad_ids)
        self.closed = False

    def upsert(self, collection, rows, timeout=None):
        if self.failures:
            raise self.failures.pop(0)
        bad = self.bad_ids & {r["id"] for r in rows}
        if bad:
            raise MilvusException(code=1100, message=f"invalid row(s) {sorted(bad)}")
        self.batches.append([r["id"] for r in rows])
        return {"upsert_count": len(rows)}

    def close(self):
        self.closed = True


def chunk(i: int, *, text: str = "text", dim: int = DIM, chunk_id: str | None = None) -> Chunk:
    return Chunk(
        id=chunk_id or f"c{i}",
        document_id="d",
        index=i,
        text=text,
        start=0,
        end=len(text),
        embedding=np.full(dim, i + 1, dtype=np.float32),
    )


@pytest.fixture
def make_fn(monkeypatch):
    def make(client: FakeClient, **config):
        monkeypatch.setattr(sink_module, "connect", lambda target: client)
        monkeypatch.setattr(sink_module.time, "sleep", lambda s: None)
        target = MilvusTarget.lite("unused.db", "docs")
        fn = sink_module._WriteToMilvusFn(target, WriteConfig(**config), DIM)
        fn.setup()
        fn.start_bundle()
        return fn

    return make


def run_bundle(fn, chunks):
    """Processes chunks and finishes the bundle; returns (written ids, dead letters)."""
    outputs = []
    for c in chunks:
        outputs += list(fn.process(c, Timestamp(1), WINDOW))
    outputs += list(fn.finish_bundle() or [])
    written, dead = [], []
    for out in outputs:
        if isinstance(out, pvalue.TaggedOutput):
            value = out.value  # windowed when emitted after a write, plain from process()
            dead.append(value.value if isinstance(value, WindowedValue) else value)
        else:
            assert isinstance(out, WindowedValue) and out.timestamp == Timestamp(1)
            written.append(out.value)
    return written, dead


def test_batches_by_rows_and_emits_only_after_the_write(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=3)
    first = list(fn.process(chunk(0), Timestamp(1), WINDOW)) + list(
        fn.process(chunk(1), Timestamp(1), WINDOW)
    )
    assert first == [] and client.batches == []  # nothing written, nothing emitted
    written, dead = run_bundle(fn, [chunk(i) for i in range(2, 7)])
    assert client.batches == [["c0", "c1", "c2"], ["c3", "c4", "c5"], ["c6"]]
    assert sorted(written) == [f"c{i}" for i in range(7)] and dead == []
    fn.teardown()
    assert client.closed


def test_batches_by_bytes(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=1000, max_batch_bytes=3000)
    run_bundle(fn, [chunk(i, text="x" * 1000) for i in range(7)])
    assert [len(b) for b in client.batches] == [3, 3, 1]


def test_a_new_bundle_starts_with_an_empty_buffer(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=100)
    run_bundle(fn, [chunk(0), chunk(1)])
    fn.start_bundle()
    run_bundle(fn, [chunk(2)])
    assert client.batches == [["c0", "c1"], ["c2"]]


def test_duplicate_ids_in_a_batch_collapse_to_the_last_row(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=100)
    written, _ = run_bundle(fn, [chunk(0), chunk(1), chunk(2, chunk_id="c0")])
    assert client.batches == [["c1", "c0"]]
    assert sorted(written) == ["c0", "c0", "c1"]  # both elements accounted for


def test_transient_errors_are_retried_then_written(make_fn) -> None:
    client = FakeClient(failures=[MilvusUnavailableException(message="server unavailable")] * 2)
    fn = make_fn(client, max_attempts=3)
    written, dead = run_bundle(fn, [chunk(0), chunk(1)])
    assert client.batches == [["c0", "c1"]] and sorted(written) == ["c0", "c1"] and dead == []


def test_transient_errors_past_the_attempts_fail_the_bundle(make_fn) -> None:
    client = FakeClient(failures=[MilvusUnavailableException(message="server unavailable")] * 3)
    fn = make_fn(client, max_attempts=3)
    with pytest.raises(MilvusUnavailableException):
        run_bundle(fn, [chunk(0)])
    assert client.batches == []


def test_rows_refused_for_their_data_are_isolated_and_dead_lettered(make_fn) -> None:
    client = FakeClient(bad_ids={"c3", "c5"})
    fn = make_fn(client, max_batch_rows=100)
    written, dead = run_bundle(fn, [chunk(i) for i in range(8)])
    assert sorted(written) == ["c0", "c1", "c2", "c4", "c6", "c7"]
    assert sorted(d.source for d in dead) == ["c3", "c5"]
    assert all(d.stage == "write" and "invalid row" in d.reason for d in dead)
    assert sorted(row for batch in client.batches for row in batch) == sorted(written)


def test_a_missing_collection_stops_the_run(make_fn) -> None:
    client = FakeClient(failures=[MilvusException(code=100, message="collection not found[docs]")])
    fn = make_fn(client)
    with pytest.raises(MilvusException, match="collection not found"):
        run_bundle(fn, [chunk(0)])


def test_rows_that_cannot_fit_the_schema_never_reach_the_server(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, text_max_length=10)
    nan = chunk(2)
    nan = Chunk(**{**nan.__dict__, "embedding": np.array([np.nan] * DIM, np.float32)})
    written, dead = run_bundle(fn, [chunk(0), chunk(1, dim=DIM + 1), nan, chunk(3, text="é" * 6)])
    assert written == ["c0"]
    reasons = {d.source: d.reason for d in dead}
    assert "shape (5,)" in reasons["c1"]
    assert "NaN" in reasons["c2"]
    assert "12 bytes" in reasons["c3"]


def test_error_classes() -> None:
    assert error_kind(MilvusUnavailableException(message="x")) == TRANSIENT
    assert error_kind(MilvusException(code=8, message="rate limit exceeded")) == TRANSIENT
    assert error_kind(TimeoutError()) == TRANSIENT
    assert error_kind(MilvusException(code=100, message="collection not found")) == FATAL
    assert error_kind(MilvusException(code=1100, message="invalid parameter")) == DATA
    assert error_kind(ValueError("a bug")) is None


def test_build_row_sizes_the_row() -> None:
    row, size = build_row(chunk(0, text="abc"), DIM, WriteConfig())
    assert row["vector"].dtype == np.float32 and row["text"] == "abc"
    assert size >= 4 * DIM + 3


# ---- ChunkBatch elements (EmbedChunks(..., output=EmbedOutput.BATCHES)) ----


def batch_of(first: int, n: int, *, dim: int = DIM, text: str = "text") -> ChunkBatch:
    chunks = [chunk(i, text=text, dim=dim) for i in range(first, first + n)]
    return ChunkBatch.of(
        [dataclasses.replace(c, embedding=None) for c in chunks],
        np.stack([np.asarray(c.embedding) for c in chunks]),
    )


def test_batches_are_written_by_rows_across_element_boundaries(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=4)
    written, dead = run_bundle(fn, [batch_of(0, 3), chunk(3), batch_of(4, 3)])
    assert client.batches == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6"]]
    assert sorted(written) == [f"c{i}" for i in range(7)] and dead == []


def test_bad_chunks_of_a_batch_are_dead_lettered_one_by_one(make_fn) -> None:
    client = FakeClient(bad_ids={"c2"})
    fn = make_fn(client, max_batch_rows=100, text_max_length=10)
    good = batch_of(0, 3)
    vectors = np.array(good.embeddings)
    vectors[1, 0] = np.nan
    texts = ["ok", "ok", "ok"]
    chunks = [dataclasses.replace(c, text=t) for c, t in zip(good.chunks, texts, strict=True)]
    chunks.append(Chunk("c3", "d", 3, "é" * 6, 0, 6))
    mixed = ChunkBatch.of(chunks, np.vstack([vectors, np.ones((1, DIM), np.float32)]))
    written, dead = run_bundle(fn, [mixed, batch_of(4, 2, dim=DIM + 1)])
    assert written == ["c0"]
    reasons = {d.source: d.reason for d in dead}
    assert "NaN" in reasons["c1"]
    assert "invalid row" in reasons["c2"]  # refused by the server, isolated
    assert "12 bytes" in reasons["c3"]
    assert "shape (5,)" in reasons["c4"] and "shape (5,)" in reasons["c5"]
    assert len(written) + len(dead) == 6  # every chunk is written or dead-lettered


def test_the_next_rows_are_buffered_while_a_write_is_in_flight(make_fn) -> None:
    release = threading.Event()
    started = threading.Event()

    class SlowClient(FakeClient):
        def upsert(self, collection, rows, timeout=None):
            started.set()
            assert release.wait(10)
            return super().upsert(collection, rows, timeout)

    client = SlowClient()
    fn = make_fn(client, max_batch_rows=2)
    first = list(
        fn.process(batch_of(0, 2), Timestamp(1), WINDOW)
    )  # fills the buffer: a write starts
    assert first == [] and started.wait(10)
    more = list(fn.process(chunk(2), Timestamp(1), WINDOW))  # goes on while the write waits
    assert more == [] and client.batches == []
    release.set()
    written, _ = run_bundle(fn, [chunk(3)])  # waits for the first write, then writes the rest
    assert client.batches == [["c0", "c1"], ["c2", "c3"]]
    assert sorted(written) == ["c0", "c1", "c2", "c3"]


def test_a_write_that_fails_for_good_fails_the_bundle_when_awaited(make_fn) -> None:
    client = FakeClient(failures=[MilvusException(code=100, message="collection not found")])
    fn = make_fn(client, max_batch_rows=2)
    assert list(fn.process(batch_of(0, 2), Timestamp(1), WINDOW)) == []
    with pytest.raises(MilvusException, match="collection not found"):
        run_bundle(fn, [])
    fn.teardown()
