"""WriteToMilvus: its DoFn driven by hand with a fake client (batching, retries, dead letters,
ChunkBatch elements, the write in flight), and the transform in pipelines against a real
Milvus Lite: vectors from plain numpy, no model; applying it touches no collection."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import threading

import apache_beam as beam
import numpy as np
import pytest
from apache_beam import pvalue
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue
from pymilvus.client import entity_helper
from pymilvus.exceptions import MilvusException, MilvusUnavailableException

from transforms.batch import ChunkBatch
from transforms.config import ConfigError, MilvusTarget, WriteConfig, WriteMode
from transforms.milvus import client as client_module
from transforms.milvus import sink as sink_module
from transforms.milvus.client import DATA, FATAL, TRANSIENT, CheckedStr, connect, error_kind
from transforms.milvus.collection import CollectionMismatchError, count_rows, prepare_collection
from transforms.milvus.retry import RetryPolicy, retry_reason
from transforms.milvus.rows import build_row
from transforms.milvus.sink import WRITTEN, WriteToMilvus
from transforms.types import DEAD_LETTERS, Chunk

DIM = 4
WINDOW = GlobalWindow()


class FakeClient:
    """Records upserts; fails as told: a list of exceptions to raise in turn,
    or a set of row ids that make any batch holding them fail for its data."""

    def __init__(self, failures=(), bad_ids=(), exists=True):
        self.batches: list[list[str]] = []
        self.sent: list[dict] = []
        self.failures = list(failures)
        self.bad_ids = set(bad_ids)
        self.exists = exists
        self.closed = False

    def has_collection(self, collection):
        return self.exists

    def upsert(self, collection, rows, timeout=None):
        if self.failures:
            raise self.failures.pop(0)
        bad = self.bad_ids & {r["id"] for r in rows}
        if bad:
            raise MilvusException(code=1100, message=f"invalid row(s) {sorted(bad)}")
        self.batches.append([r["id"] for r in rows])
        self.sent.extend(rows)
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
    """Makes a set-up DoFn in a bundle, writing to ``client``. Retries wait 0 s unless the
    test sets the backoff; ``connects`` counts the clients made."""
    connects = []

    def fake_connect(target):
        connects.append(target)
        return client_of["client"]

    client_of: dict = {}
    monkeypatch.setattr(sink_module, "connect", fake_connect)

    def make(client: FakeClient, **config):
        client_of["client"] = client
        config = {"initial_backoff_s": 0.0, "max_backoff_s": 0.0, **config}
        target = MilvusTarget.lite("unused.db", "docs")
        fn = sink_module._WriteToMilvusFn(target, WriteConfig(**config), DIM)
        fn.setup()
        fn.start_bundle()
        return fn

    make.connects = connects  # type: ignore[attr-defined]
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


# ---- setup: the collection must exist; pymilvus is not changed for the process ----


def test_setup_fails_with_the_fix_when_the_collection_is_missing(make_fn) -> None:
    with pytest.raises(CollectionMismatchError, match=r"does not exist: prepare it before the run"):
        make_fn(FakeClient(exists=False))


def test_setup_changes_no_pymilvus_setting_and_sends_checked_strings(make_fn) -> None:
    client = FakeClient()
    fn = make_fn(client, max_batch_rows=100)
    assert entity_helper.CHECK_STR_ARRAY is True  # every other pymilvus user keeps its check
    pending = [chunk(0, text="one"), chunk(1, text="two")]
    written, _ = run_bundle(fn, pending)
    assert sorted(written) == ["c0", "c1"]
    assert [type(row["text"]) for row in client.sent] == [CheckedStr, CheckedStr]
    assert [row["text"] for row in client.sent] == ["one", "two"]
    assert all(type(w) is str for w in written)  # ids leave the sink as plain strings


def test_transient_errors_are_counted_by_reason_and_each_retry_reconnects(make_fn) -> None:
    client = FakeClient(
        failures=[
            MilvusUnavailableException(message="server unavailable"),
            MilvusException(code=8, message="rate limit exceeded"),
        ]
    )
    fn = make_fn(client, max_attempts=3)
    rows = [build_row(chunk(0), DIM, WriteConfig())[0]]
    outcome = fn._write(rows)
    assert dict(outcome.retries) == {"unavailable": 1, "rate_limited": 1}
    assert outcome.rows == 1 and outcome.batches == 1
    assert len(make_fn.connects) == 3  # setup, then a new client after each failure


# ---- the transform, in pipelines, against a real Milvus Lite ----


def numpy_vectors(n: int, dim: int) -> np.ndarray:
    """Vectors made by no model at all."""
    return np.random.default_rng(7).standard_normal((n, dim)).astype("float32")


def test_writes_vectors_made_by_numpy_without_any_model(lite_uri, collection_name) -> None:
    target = MilvusTarget.lite(lite_uri, collection_name)
    n, dim = 11, 8
    vectors = numpy_vectors(n, dim)
    chunks = [Chunk(f"c{i}", f"d{i // 4}", i % 4, f"text {i}", 0, 6, {"i": i}) for i in range(n)]
    nan = Chunk("bad", "d9", 0, "nan", 0, 3, {}, np.full(dim, np.nan, np.float32))
    state = prepare_collection(target, dim=dim, fingerprint=None)
    assert state.created
    elements = [
        ChunkBatch.of(chunks[:6], vectors[:6]),
        *ChunkBatch.of(chunks[6:], vectors[6:]).to_chunks(),  # single chunks too
        nan,
    ]
    with TestPipeline() as p:
        written = (
            p
            | beam.Create(elements)
            | WriteToMilvus(target, dim=dim, fingerprint=None, config=WriteConfig(max_batch_rows=4))
        )
        assert_that(written[WRITTEN], equal_to([c.id for c in chunks]), label="ids")
        assert_that(
            written[DEAD_LETTERS] | beam.Map(lambda d: (d.source, "NaN" in d.reason)),
            equal_to([("bad", True)]),
            label="dead letters",
        )
    assert count_rows(target) == n  # flushed by the transform's last step
    client = connect(target)
    try:
        rows = client.query(
            target.collection,
            filter='id != ""',
            output_fields=["id", "vector", "text", "document_id", "chunk_index", "metadata"],
            consistency_level="Strong",
        )
    finally:
        client.close()
    by_id = {row["id"]: row for row in rows}
    assert sorted(by_id) == sorted(c.id for c in chunks)
    for i, c in enumerate(chunks):
        row = by_id[c.id]
        assert (row["text"], row["document_id"], row["chunk_index"]) == (
            c.text,
            c.document_id,
            c.index,
        )
        assert row["metadata"] == {"i": i}
        assert np.allclose(np.asarray(row["vector"], np.float32), vectors[i], atol=1e-6)


def test_applying_the_transform_creates_and_drops_nothing(lite_uri, collection_name) -> None:
    present = MilvusTarget.lite(lite_uri, f"{collection_name}_present")
    absent = MilvusTarget.lite(lite_uri, f"{collection_name}_absent")
    prepare_collection(present, dim=DIM, fingerprint=None)
    client = connect(present)
    try:
        client.upsert(present.collection, [build_row(chunk(0), DIM, WriteConfig())[0]])
    finally:
        client.close()
    overwrite = WriteConfig(mode=WriteMode.OVERWRITE)
    pipeline = beam.Pipeline()  # built, never run
    for target in (present, absent):
        _ = (
            pipeline
            | f"Create {target.collection}" >> beam.Create([chunk(1)])
            | f"Write {target.collection}"
            >> WriteToMilvus(target, dim=DIM, fingerprint=None, config=overwrite)
        )
    client = connect(present)
    try:
        assert client.has_collection(present.collection)
        assert not client.has_collection(absent.collection)
    finally:
        client.close()
    assert count_rows(present) == 1  # not dropped, despite write.mode: overwrite


def test_a_missing_collection_fails_the_run_with_the_fix(lite_uri, collection_name) -> None:
    target = MilvusTarget.lite(lite_uri, collection_name)
    pipeline = TestPipeline()
    _ = pipeline | beam.Create([chunk(0)]) | WriteToMilvus(target, dim=DIM, fingerprint=None)
    with pytest.raises(Exception, match=r"does not exist: prepare it before the run with prepare_"):
        pipeline.run().wait_until_finish()
    client = connect(target)
    try:
        assert not client.has_collection(target.collection)
    finally:
        client.close()


def test_dim_and_fingerprint_are_explicit_and_shown(monkeypatch) -> None:
    target = MilvusTarget.lite("unused.db", "docs")
    with pytest.raises(TypeError, match="fingerprint"):
        WriteToMilvus(target, dim=8)  # type: ignore[call-arg]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=f"dim={bad!r}: must be a positive integer"):
            WriteToMilvus(target, dim=bad, fingerprint=None)  # type: ignore[arg-type]
    fingerprint = {"model": "m", "dim": 8}
    shown = WriteToMilvus(target, dim=8, fingerprint=fingerprint, flush=False).display_data()
    assert shown["dim"] == 8 and json.loads(shown["fingerprint"]) == fingerprint
    assert shown["flush"] is False
    assert WriteToMilvus(target, dim=8, fingerprint=None).display_data()["fingerprint"] == "none"
    pickle.dumps(WriteToMilvus(target, dim=8, fingerprint=fingerprint))


# ---- CheckedStr: pymilvus' row check walks one value, not its characters ----


@pytest.fixture
def fresh_probe():
    client_module.checked_strings_help.cache_clear()
    yield client_module.checked_strings_help
    client_module.checked_strings_help.cache_clear()


def test_checked_strings_help_this_pymilvus(fresh_probe) -> None:
    assert fresh_probe() is True
    assert list(CheckedStr("abc")) == ["abc"] and CheckedStr("abc") == "abc"


def test_a_pymilvus_without_the_row_builder_is_said_and_plain_strings_are_written(
    fresh_probe, monkeypatch, caplog
) -> None:
    from pymilvus.client import prepare

    def gone(*args, **kwargs):
        raise AttributeError("row_upsert_param")

    monkeypatch.setattr(prepare.Prepare, "row_upsert_param", gone)
    with caplog.at_level(logging.WARNING, logger=client_module.__name__):
        assert fresh_probe() is False
        assert fresh_probe() is False  # probed and said once per process
    assert len(caplog.records) == 1
    assert "cannot be probed" in caplog.text and "writing plain strings" in caplog.text


def test_a_pymilvus_that_no_longer_walks_strings_is_said(fresh_probe, monkeypatch, caplog) -> None:
    monkeypatch.setattr(
        entity_helper, "convert_to_str_array", lambda value, info, check=True: value
    )
    with caplog.at_level(logging.INFO, logger=client_module.__name__):
        assert fresh_probe() is False
    assert "no longer walks VARCHAR values" in caplog.text


def test_without_the_probe_the_sink_writes_plain_strings(make_fn, monkeypatch) -> None:
    monkeypatch.setattr(sink_module, "checked_strings_help", lambda: False)
    client = FakeClient()
    run_bundle(make_fn(client), [chunk(0)])
    assert type(client.sent[0]["text"]) is str


# ---- RetryPolicy: the one policy of the sink and the collection code (fake time) ----


class FakeTime:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "done"):
    """A call that raises ``errors`` in turn, then returns ``result``; counts its calls."""

    def call() -> str:
        call.calls += 1  # type: ignore[attr-defined]
        if errors:
            raise errors.pop(0)
        return result

    call.calls = 0  # type: ignore[attr-defined]
    return call


def unavailable() -> MilvusUnavailableException:
    return MilvusUnavailableException(message="server unavailable")


def test_delays_double_up_to_the_cap_and_jitter_stays_in_range() -> None:
    policy = RetryPolicy(max_attempts=7, initial_backoff_s=1.0, max_backoff_s=5.0, jitter=0.5)
    bounds = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert list(policy.delays(uniform=lambda low, high: high)) == bounds
    assert list(policy.delays(uniform=lambda low, high: low)) == [b / 2 for b in bounds]
    for _ in range(200):  # the real random draws
        for delay, bound in zip(policy.delays(), bounds, strict=True):
            assert bound / 2 <= delay <= bound
    assert list(dataclasses.replace(policy, jitter=0.0).delays()) == bounds
    assert list(dataclasses.replace(policy, max_attempts=1).delays()) == []


def test_a_call_is_retried_until_it_succeeds() -> None:
    time = FakeTime()
    seen = []
    call = failing([unavailable(), TimeoutError("deadline exceeded")])
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=1.0, max_backoff_s=10.0, jitter=0.0)
    result = policy.call(
        "Test call",
        call,
        on_retry=lambda error, reason, delay: seen.append((reason, delay)),
        clock=time.clock,
        sleep=time.sleep,
    )
    assert result == "done" and call.calls == 3
    assert seen == [("unavailable", 1.0), ("timeout", 2.0)] and time.slept == [1.0, 2.0]


def test_retries_stop_after_the_attempts() -> None:
    time = FakeTime()
    call = failing([unavailable() for _ in range(10)])
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=1.0, jitter=0.0)
    with pytest.raises(MilvusUnavailableException):
        policy.call("Test call", call, clock=time.clock, sleep=time.sleep)
    assert call.calls == 3 and time.slept == [1.0, 2.0]


def test_retries_stop_before_a_wait_that_would_pass_the_deadline() -> None:
    time = FakeTime()
    call = failing([unavailable() for _ in range(10)])
    policy = RetryPolicy(
        max_attempts=100, initial_backoff_s=4.0, max_backoff_s=100.0, deadline_s=10.0, jitter=0.0
    )
    with pytest.raises(MilvusUnavailableException):
        policy.call("Test call", call, clock=time.clock, sleep=time.sleep)
    assert time.slept == [4.0] and call.calls == 2  # 4 s + 8 s would end past 10 s


@pytest.mark.parametrize(
    "error",
    [
        MilvusException(code=1100, message="invalid parameter"),  # the data: dead-letter it
        MilvusException(code=100, message="collection not found"),  # fatal
        ValueError("a bug"),
    ],
)
def test_errors_that_are_not_transient_are_raised_at_once(error) -> None:
    time = FakeTime()
    call = failing([error])
    with pytest.raises(type(error)):
        RetryPolicy().call("Test call", call, clock=time.clock, sleep=time.sleep)
    assert call.calls == 1 and time.slept == []


def test_the_policy_comes_from_the_write_config_and_checks_itself() -> None:
    config = WriteConfig(
        max_attempts=4, initial_backoff_s=0.25, max_backoff_s=2.0, retry_deadline_s=9.0
    )
    assert RetryPolicy.from_config(config) == RetryPolicy(
        max_attempts=4, initial_backoff_s=0.25, max_backoff_s=2.0, deadline_s=9.0
    )
    with pytest.raises(ConfigError, match=r"max_attempts=0 must be at least 1.*jitter=2"):
        RetryPolicy(max_attempts=0, jitter=2)
    assert retry_reason(MilvusException(code=8, message="rate limit exceeded")) == "rate_limited"
