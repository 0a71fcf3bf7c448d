"""WriteToMilvus's DoFn driven by hand with a fake client: batching, retries, dead letters."""

from __future__ import annotations

import numpy as np
import pytest
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from transforms import Chunk, MilvusTarget, WriteConfig
from transforms import sink as sink_module
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
