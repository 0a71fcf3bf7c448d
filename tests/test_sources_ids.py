"""Document ids and the shuffle by id: which settings group documents by id, that
skipping the grouping changes no output, and that the counts add up for every
duplicate-id policy."""

from __future__ import annotations

import json
import pathlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.pipeline import PipelineVisitor
from apache_beam.transforms.core import GroupByKey

from tests.conftest import write_jsonl
from tests.test_sources import read_all
from transforms import ConfigError, ReadDocuments, SourceConfig
from transforms.config import DuplicateIds
from transforms.io import sources
from transforms.io.sources import groups_by_id


class _ShufflesAfterReading(PipelineVisitor):
    """Finds the GroupByKeys that documents go through: those downstream of ReadFiles."""

    def __init__(self) -> None:
        self.read: set[int] = set()
        self.groups: list[str] = []

    def visit_transform(self, node) -> None:
        # ReadFiles has two outputs: a composite around one ParDo (ReadFiles/ParDo(...)).
        downstream = "/ReadFiles/" in f"{node.full_label}/" or any(
            id(pcoll) in self.read for pcoll in node.inputs
        )
        if not downstream:
            return
        self.read.update(id(pcoll) for pcoll in node.outputs.values())
        if isinstance(node.transform, GroupByKey):
            self.groups.append(node.full_label)


def _groups_after_reading(config: SourceConfig) -> list[str]:
    p = beam.Pipeline()
    read = p | ReadDocuments(config)
    _ = read.documents | "Ids" >> beam.Map(lambda d: d.id)
    _ = read.dead_letters | "Stages" >> beam.Map(lambda d: d.stage)
    visitor = _ShufflesAfterReading()
    p.visit(visitor)
    return visitor.groups


@pytest.mark.parametrize(
    ("settings", "grouped"),
    [
        ({}, True),
        ({"duplicate_ids": "keep_first"}, True),
        ({"duplicate_ids": "dead_letter"}, True),
        ({"duplicate_ids": "assume_unique"}, False),
        ({"id_field": None}, False),
        ({"id_field": None, "duplicate_ids": "dead_letter"}, False),
    ],
)
def test_documents_are_shuffled_by_id_only_when_duplicates_are_checked(settings, grouped) -> None:
    config = SourceConfig(patterns=("corpus/*.jsonl",), **settings)
    assert groups_by_id(config) is grouped
    assert ReadDocuments(config).display_data()["groups_by_id"] is grouped
    assert _groups_after_reading(config) == (["ReadDocuments/GroupById"] if grouped else [])


def test_assume_unique_passes_on_exactly_the_documents_read(tmp_path) -> None:
    records = [{"id": f"d{i}", "text": f"document {i} " * (i % 7 + 1), "n": i} for i in range(300)]
    path = write_jsonl(tmp_path / "unique.jsonl", records)
    expected = sorted(
        (r["id"], r["text"], {"n": r["n"]}, f"{path}:{line}")
        for line, r in enumerate(records, start=1)
    )
    for split_bytes in (16 * 1024 * 1024, 2000):
        config = SourceConfig(
            patterns=(path,), duplicate_ids=DuplicateIds.ASSUME_UNIQUE, split_bytes=split_bytes
        )
        docs, dead, counters = read_all(config)
        assert docs == expected and dead == []
        assert counters["documents_read"] == len(records)
        assert "duplicate_ids" not in counters and "dead_lettered" not in counters
        assert (counters.get("split_ranges", 0) > 1) is (split_bytes == 2000)
    # The same documents as the default, which groups and checks them.
    assert read_all(SourceConfig(patterns=(path,)))[:2] == (expected, [])


def test_assume_unique_does_not_detect_duplicates(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [{"id": "x", "text": "first copy"}, {"id": "x", "text": "second copy"}],
    )
    docs, dead, counters = read_all(
        SourceConfig(patterns=(path,), duplicate_ids=DuplicateIds.ASSUME_UNIQUE)
    )
    assert [(d[0], d[1]) for d in docs] == [("x", "first copy"), ("x", "second copy")]
    assert dead == [] and counters["documents_read"] == 2 and "duplicate_ids" not in counters


def _mixed_corpus(root: pathlib.Path) -> str:
    (root / "a.txt").write_text("a text file")
    (root / "b.md").write_text("# B\n\nmarkdown")
    write_jsonl(
        root / "c.jsonl",
        [{"id": f"c{i}", "text": f"line {i} " * 20} for i in range(200)]
        + ['{"id": "broken", "text": ', {"text": "no id"}, {"id": "c3", "text": "same id"}],
    )
    (root / "d.json").write_text(json.dumps([{"text": "one"}, {"id": "c5", "text": "two"}, 3]))
    (root / "e.csv").write_text("id,text\nc7,seven\n,no id\nc8,eight,extra\n")
    pq.write_table(
        pa.Table.from_pylist([{"id": f"p{i % 50}", "text": f"row {i}"} for i in range(120)]),
        root / "f.parquet",
        row_group_size=10,
    )
    (root / "g.txt").write_text("")
    return str(root / "*")


@pytest.mark.parametrize("split_bytes", [16 * 1024 * 1024, 1500])
def test_ids_from_places_give_the_same_output_without_the_shuffle(
    tmp_path, monkeypatch, split_bytes
) -> None:
    config = SourceConfig(
        patterns=(_mixed_corpus(tmp_path),), id_field=None, split_bytes=split_bytes
    )
    streamed = read_all(config)
    monkeypatch.setattr(sources, "groups_by_id", lambda _: True)
    assert _groups_after_reading(config) == ["ReadDocuments/GroupById"]
    grouped = read_all(config)
    assert streamed == grouped
    docs, dead, counters = streamed
    assert (
        len({d[0] for d in docs})
        == len(docs)
        == counters["documents_read"]
        == 2 + 202 + 2 + 2 + 120
    )
    assert {d[0] for d in docs} == {d[3] for d in docs}  # ids are places
    assert all(stage == "read" for stage, _, _ in dead) and counters["dead_lettered"] == len(dead)
    assert "duplicate_ids" not in counters


def test_a_file_matched_twice_is_read_once_also_without_the_shuffle(tmp_path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "once"}, {"text": "twice?"}])
    patterns = (path, str(tmp_path / "*.jsonl"), str(tmp_path))
    docs, dead, counters = read_all(SourceConfig(patterns=patterns, id_field=None))
    assert [d[0] for d in docs] == [f"{path}:1", f"{path}:2"]
    assert dead == [] and counters["documents_read"] == 2


@pytest.mark.parametrize("policy", [p.value for p in DuplicateIds])
@pytest.mark.parametrize("id_field", ["id", None])
def test_counts_add_up_for_every_policy(tmp_path, policy, id_field) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    pattern = _mixed_corpus(root)
    records = 2 + 203 + 3 + 3 + 120 + 1  # the empty text file is one dead letter
    docs, dead, counters = read_all(
        SourceConfig(patterns=(pattern,), id_field=id_field, duplicate_ids=policy)
    )
    read_dead = sum(1 for stage, _, _ in dead if stage == "read")
    duplicates = counters.get("duplicate_ids", 0)
    # Every record is a document read or a dead letter of the read step ...
    assert counters["documents_read"] + read_dead == records
    # ... every document read leaves ReadDocuments or is a counted duplicate ...
    assert counters["documents_read"] == len(docs) + duplicates
    # ... and every dead letter, of either step, is counted.
    assert counters["dead_lettered"] == len(dead) == read_dead + duplicates
    if id_field is None or policy == "assume_unique":
        assert duplicates == 0
    else:
        # c3, c5 and c7 twice; p0..p49 are 120 rows for 50 ids.
        copies = {"c3": 2, "c5": 2, "c7": 2, **{f"p{i}": len(range(i, 120, 50)) for i in range(50)}}
        dropped = sum(n if policy == "dead_letter" else n - 1 for n in copies.values())
        assert duplicates == dropped
        assert len({d[0] for d in docs}) == len(docs)


def test_assume_unique_is_a_yaml_value_and_wrong_values_list_it() -> None:
    config = SourceConfig(**yaml.safe_load("patterns: a.jsonl\nduplicate_ids: assume_unique"))
    assert config.duplicate_ids is DuplicateIds.ASSUME_UNIQUE
    with pytest.raises(ConfigError, match=r"source\.duplicate_ids='unique'.*assume_unique"):
        SourceConfig(patterns=("a.jsonl",), duplicate_ids="unique")  # type: ignore[arg-type]


def test_default_split_is_small_enough_to_spread_a_file_over_workers() -> None:
    config = SourceConfig(patterns=("a.jsonl",))
    assert config.duplicate_ids is DuplicateIds.KEEP_LAST  # the default still checks
    assert config.split_bytes == 4 * 1024 * 1024
