"""ReadDocuments: formats, paths, ids, metadata, and bad input as dead letters."""

from __future__ import annotations

import gzip
import os

import apache_beam as beam
import fsspec
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.beam_util import collect
from tests.conftest import write_jsonl
from transforms import (
    EmptyMatchTreatment,
    ReadDocuments,
    SourceConfig,
    SourceFormat,
    match_files,
    metrics,
)
from transforms.io.sources import NoMatchError


def read_all(config: SourceConfig) -> tuple[list[tuple], list[tuple], dict[str, int]]:
    """Runs ReadDocuments on the DirectRunner.

    Returns:
      Documents as ``(id, text, metadata, source)`` and dead letters as
      ``(stage, source, reason)``, both sorted, and the run's counters.
    """
    p = TestPipeline()
    result = p | ReadDocuments(config)
    docs = collect(
        result.documents | beam.Map(lambda d: (d.id, d.text, dict(d.metadata), d.source)), "Docs"
    )
    dead = collect(result.dead_letters | beam.Map(lambda d: (d.stage, d.source, d.reason)), "Dead")
    run = p.run()
    run.wait_until_finish()
    counters: dict[str, int] = {}
    query = run.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    for counter in query["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + int(counter.committed or 0)
    return sorted(docs), sorted(dead), counters


def _read(config: SourceConfig) -> tuple[list[tuple], list[tuple]]:
    docs, dead, _ = read_all(config)
    return docs, dead


def test_text_and_markdown_files_are_one_document_each(tmp_path, monkeypatch) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("# Title\n\nBody of a.", encoding="utf-8")
    (tmp_path / "docs" / "sub" / "b.txt").write_bytes(b"\xef\xbb\xbfB with a BOM\r\n")
    monkeypatch.chdir(tmp_path)
    docs, dead = _read(SourceConfig(patterns=("docs",)))
    assert dead == []
    assert docs == [
        ("docs/a.md", "# Title\n\nBody of a.", {"path": "docs/a.md"}, "docs/a.md"),
        ("docs/sub/b.txt", "B with a BOM\r\n", {"path": "docs/sub/b.txt"}, "docs/sub/b.txt"),
    ]


def test_jsonl_ids_from_field_else_path_and_line_and_metadata(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "x1", "text": "first", "title": "T1", "lang": "en"},
            {"text": "no id here", "title": "T2"},
            {"id": 7, "text": "numeric id"},
        ],
    )
    docs, dead = _read(SourceConfig(patterns=(path,), metadata_fields=("title",)))
    assert dead == []
    assert docs == sorted(
        [
            ("x1", "first", {"title": "T1"}, f"{path}:1"),
            (f"{path}:2", "no id here", {"title": "T2"}, f"{path}:2"),
            ("7", "numeric id", {}, f"{path}:3"),
        ]
    )
    all_meta, _ = _read(SourceConfig(patterns=(path,)))
    assert {d[0]: d[2] for d in all_meta}["x1"] == {"title": "T1", "lang": "en"}


def test_bad_records_are_dead_lettered_with_file_and_line_and_the_rest_flows(tmp_path) -> None:
    path = str(tmp_path / "bad.jsonl")
    with open(path, "wb") as f:
        f.write(b'{"id": "ok1", "text": "good"}\n')
        f.write(b'{"id": "broken", "text": \n')  # malformed JSON
        f.write(b'{"id": "bytes", "text": "caf\xe9"}\n')  # not UTF-8
        f.write(b'{"id": "none", "text": null}\n')
        f.write(b'{"id": "num", "text": 42}\n')
        f.write(b'{"id": "blank", "text": "   "}\n')
        f.write(b'["not", "an", "object"]\n')
        f.write(b'{"id": true, "text": "bool id"}\n')
        f.write(b"\n")  # blank lines are not records
        f.write(b'{"id": "ok2", "text": "also good"}\n')
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes(b"na\xefve")
    docs, dead = _read(SourceConfig(patterns=(path, str(tmp_path / "*.txt"))))
    assert [d[0] for d in docs] == ["ok1", "ok2"]
    reasons = {source: reason for _, source, reason in dead}
    assert set(reasons) == {
        f"{path}:2",
        f"{path}:3",
        f"{path}:4",
        f"{path}:5",
        f"{path}:6",
        f"{path}:7",
        f"{path}:8",
        str(tmp_path / "empty.txt"),
        str(tmp_path / "latin1.txt"),
    }
    assert "malformed JSON" in reasons[f"{path}:2"]
    assert "invalid UTF-8" in reasons[f"{path}:3"]
    assert "is missing" in reasons[f"{path}:4"]
    assert "is a int" in reasons[f"{path}:5"]
    assert "is empty" in reasons[f"{path}:6"]
    assert "expected a JSON object" in reasons[f"{path}:7"]
    assert "id field" in reasons[f"{path}:8"]
    assert "no text" in reasons[str(tmp_path / "empty.txt")]
    assert "invalid UTF-8 at byte 2" in reasons[str(tmp_path / "latin1.txt")]
    assert {stage for stage, _, _ in dead} == {"read"}


def test_gzip_and_truncated_gzip(tmp_path) -> None:
    good = tmp_path / "c.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as f:
        f.write('{"id": "g1", "text": "zipped"}\n{"id": "g2", "text": "zipped too"}\n')
    data = good.read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) - 12])
    docs, dead = _read(SourceConfig(patterns=(str(good),)))
    assert [d[0] for d in docs] == ["g1", "g2"] and dead == []
    _, dead = _read(SourceConfig(patterns=(str(tmp_path / "cut.jsonl.gz"),)))
    assert len(dead) == 1 and "cannot read file" in dead[0][2]


def test_memory_filesystem_globs() -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe("/corpus/one.jsonl", b'{"id": "m1", "text": "in memory"}\n')
    memory.pipe("/corpus/deep/two.md", b"markdown in memory")
    assert match_files("memory://corpus/**") == [
        "memory:///corpus/deep/two.md",
        "memory:///corpus/one.jsonl",
    ]
    docs, dead = _read(
        SourceConfig(patterns=("memory://corpus/*.jsonl", "memory://corpus/deep/*.md"))
    )
    assert dead == []
    assert [d[0] for d in docs] == ["m1", "memory:///corpus/deep/two.md"]


def test_a_file_matched_twice_is_read_once(tmp_path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "only", "text": "once"}])
    docs, _ = _read(SourceConfig(patterns=(path, str(tmp_path / "*.jsonl"))))
    assert [d[0] for d in docs] == ["only"]


def test_a_pattern_that_matches_nothing_fails_unless_allowed(tmp_path) -> None:
    missing = str(tmp_path / "nothing-*.jsonl")
    with pytest.raises(Exception, match="matches no file"):
        _read(SourceConfig(patterns=(missing,)))
    docs, dead = _read(SourceConfig(patterns=(missing,), empty_match=EmptyMatchTreatment.ALLOW))
    assert docs == [] and dead == []
    assert issubclass(NoMatchError, FileNotFoundError)


def test_local_relative_patterns_stay_relative(tmp_path, monkeypatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert match_files("d/*.txt") == [os.path.join("d", "x.txt")]
    assert match_files(str(tmp_path / "d" / "*.txt")) == [str(tmp_path / "d" / "x.txt")]


def test_format_can_be_forced(tmp_path) -> None:
    path = write_jsonl(tmp_path / "data.log", [{"id": "f", "text": "forced"}])
    docs, _ = _read(SourceConfig(patterns=(path,), format=SourceFormat.JSONL))
    assert [d[0] for d in docs] == ["f"]
    with TestPipeline() as p:
        texts = p | ReadDocuments(SourceConfig(patterns=(path,)))
        assert_that(texts.documents | beam.Map(lambda d: d.id), equal_to([path]))
