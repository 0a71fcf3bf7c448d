"""Bad input: every kind becomes a dead letter with its place and reason, and the
rest of the file is read. Most tests call the pure reader; the last one runs the
pipeline, through chunking, and checks that the counts add up."""

from __future__ import annotations

import bz2
import gzip
import pathlib
import tracemalloc

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from tests.beam_util import collect
from transforms import (
    ChunkDocuments,
    ChunkingConfig,
    Document,
    ReadDocuments,
    SourceConfig,
    metrics,
)
from transforms.io.formats import ReadTask, format_of, read_task
from transforms.types import DeadLetter

MIB = 1024 * 1024


def read_file(path: pathlib.Path | str, **settings) -> tuple[list[Document], dict[str, str]]:
    """Reads one file with the pure reader: documents, and dead letters by source."""
    config = SourceConfig(patterns=(str(path),), **settings)
    docs, dead = [], {}
    for read in read_task(ReadTask(str(path), format_of(str(path), config.format)), config):
        if isinstance(read, DeadLetter):
            assert read.stage == "read" and read.reason
            dead[read.source] = read.reason
        else:
            docs.append(read[1])
    return docs, dead


def test_invalid_utf8_is_dead_lettered_or_replaced_as_configured(tmp_path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'{"id": "ok", "text": "fine"}\n{"id": "bad", "text": "caf\xe9"}\n')
    csv = tmp_path / "a.csv"
    csv.write_bytes(b"id,text\nok,fine\nbad,caf\xe9 au lait\n")
    txt = tmp_path / "a.txt"
    txt.write_bytes(b"\xef\xbb\xbfna\xefve")
    json_array = tmp_path / "a.json"
    json_array.write_bytes(b'[{"id": "bad", "text": "caf\xe9"}, {"id": "ok", "text": "fine"}]')

    docs, dead = read_file(jsonl)
    assert [d.id for d in docs] == ["ok"]
    assert dead[f"{jsonl}:2"].startswith("invalid UTF-8 at byte 26 of the line")
    docs, dead = read_file(csv)
    assert [d.id for d in docs] == ["ok"]
    assert dead[f"{csv}:3"].startswith("invalid UTF-8 at byte 7 of the row")
    assert read_file(txt)[1][str(txt)].startswith("invalid UTF-8 at byte 5")
    docs, dead = read_file(json_array)
    assert [d.id for d in docs] == ["ok"] and "invalid UTF-8" in dead[f"{json_array}#0"]

    for path in (jsonl, csv, txt, json_array):
        docs, dead = read_file(path, decode_errors="replace")
        assert dead == {} and any("\ufffd" in d.text for d in docs)


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + b'{"id": "j", "text": "bom"}\r\n')
    (tmp_path / "a.csv").write_bytes(bom + b"id,text\r\nc,bom\r\n")
    (tmp_path / "a.json").write_bytes(bom + b' [{"id": "a", "text": "bom"}]')
    for name, doc_id in (("a.jsonl", "j"), ("a.csv", "c"), ("a.json", "a")):
        docs, dead = read_file(tmp_path / name)
        assert dead == {} and [(d.id, d.text) for d in docs] == [(doc_id, "bom")]


def test_crlf_line_endings(tmp_path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"id": "1", "text": "one"}\r\n\r\n{"id": "2", "text": "two"}\r\n')
    docs, dead = read_file(path)
    assert dead == {} and [(d.id, d.source) for d in docs] == [
        ("1", f"{path}:1"),
        ("2", f"{path}:3"),
    ]


def test_nul_characters_are_dead_lettered_or_replaced(tmp_path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("hello".encode("utf-16-le"))
    jsonl = tmp_path / "nul.jsonl"
    jsonl.write_bytes(
        b'{"id": "escaped", "text": "a\\u0000b"}\n{"id": "raw", "text": "a\x00b"}\n'
        b'{"id": "ok", "text": "fine"}\n'
    )
    csv = tmp_path / "nul.csv"
    csv.write_bytes(b"id,text\nn,a\x00b\n")
    _, dead = read_file(utf16)
    assert "NUL character at offset 1" in dead[str(utf16)] and "UTF-16" in dead[str(utf16)]
    docs, dead = read_file(jsonl)
    assert [d.id for d in docs] == ["ok"] and set(dead) == {f"{jsonl}:1", f"{jsonl}:2"}
    assert "NUL" in dead[f"{csv}:2"] if (dead := read_file(csv)[1]) else False
    docs, dead = read_file(jsonl, decode_errors="replace")
    assert dead == {} and {d.text for d in docs} == {"a\ufffdb", "fine"}


def test_malformed_json_array_elements_are_skipped_one_by_one(tmp_path) -> None:
    path = tmp_path / "a.json"
    path.write_text(
        '[{"id": "1", "text": "one"},\n {"id": "2", "text": },\n'
        ' {"id": "3", "text": "brace } and bracket ] and \\"quote\\" in a string"},\n'
        ' 42, {"id": "5", "text": ["a", "list"]}, , {"id": "7", "text": "seven"}] trailing'
    )
    docs, dead = read_file(path)
    assert [d.id for d in docs] == ["1", "3", "7"]
    assert docs[1].text == 'brace } and bracket ] and "quote" in a string'
    assert dead[f"{path}#1"].startswith("malformed JSON")
    assert dead[f"{path}#3"] == "expected a JSON object, got a int"
    assert dead[f"{path}#4"] == "text field 'text' is a list; it must be non-empty text"
    assert dead[f"{path}#5"] == "empty element: a comma too many?"
    assert dead[f"{path}#7"] == "unexpected data after the array's closing ']'"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('[{"id": "1", "text": "one"}, {"id": "2", "te', "inside element 1"),
        ('[{"id": "1", "text": "one"},', "before the array's closing"),
        ('"just a string"', "expected a JSON object, got a str"),
        ("[]", None),
    ],
)
def test_truncated_and_odd_json_files(tmp_path, content, reason) -> None:
    path = tmp_path / "a.json"
    path.write_text(content)
    docs, dead = read_file(path)
    if reason is None:
        assert docs == [] and list(dead.values()) == [
            "file has no records (empty or only blank lines)"
        ]
    else:
        assert any(reason in r for r in dead.values()), dead
        assert len(docs) == content.count('"one"')


def test_text_fields_of_the_wrong_type(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"id": "n", "text": 3.5}\n{"id": "z", "text": null}\n{"id": "l", "text": ["x"]}\n'
        '{"id": "o", "text": {"t": "x"}}\n{"id": "b", "text": true}\n'
    )
    _, dead = read_file(path)
    assert [dead[f"{path}:{i}"].split(";")[0] for i in range(1, 6)] == [
        "text field 'text' is a float",
        "text field 'text' is missing",
        "text field 'text' is a list",
        "text field 'text' is a dict",
        "text field 'text' is a bool",
    ]
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": ["1"], "text": [7]}), parquet)
    assert read_file(parquet)[1] == {
        f"{parquet}#0": "text field 'text' is a int; it must be non-empty text"
    }


def test_csv_rows_with_the_wrong_number_of_fields_and_an_unclosed_quote(tmp_path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id,text\n1,ok\n2,too,many\n3\n4,"fine"\n5,"never closed\n6,lost\n')
    docs, dead = read_file(path)
    assert [d.id for d in docs] == ["1", "4"]
    assert dead[f"{path}:3"] == "row has 3 fields, the header has 2"
    assert dead[f"{path}:4"] == "row has 1 fields, the header has 2"
    assert dead[f"{path}:6"].startswith("the file ends inside a quoted field")


def test_headers_without_the_text_column_or_rows(tmp_path) -> None:
    (tmp_path / "a.csv").write_text("id,body\n1,text\n")
    (tmp_path / "b.csv").write_text("id,text\n")
    (tmp_path / "c.tsv").write_text("\n\n")
    pq.write_table(pa.table({"id": ["1"], "body": ["x"]}), tmp_path / "d.parquet")
    assert read_file(tmp_path / "a.csv")[1] == {
        f"{tmp_path}/a.csv:1": "the header has no text column 'text' (columns: id, body); "
        "set source.text_field"
    }
    assert read_file(tmp_path / "b.csv")[1] == {
        f"{tmp_path}/b.csv": "file has no records (empty or only blank lines)"
    }
    assert "needs a header row" in read_file(tmp_path / "c.tsv")[1][f"{tmp_path}/c.tsv:1"]
    assert read_file(tmp_path / "d.parquet")[1] == {
        f"{tmp_path}/d.parquet": "Parquet file has no text column 'text' (columns: id, body); "
        "set source.text_field"
    }


@pytest.mark.parametrize(
    "name", ["empty.txt", "blank.md", "empty.jsonl", "blank.jsonl", "empty.csv", "empty.json"]
)
def test_empty_and_blank_files_are_one_dead_letter_each(tmp_path, name) -> None:
    path = tmp_path / name
    path.write_text(" \n\t\n" if name.startswith("blank") else "")
    docs, dead = read_file(path)
    assert docs == [] and len(dead) == 1
    assert any(w in next(iter(dead.values())) for w in ("no text", "no records", "is empty"))


def test_an_empty_parquet_file_is_a_dead_letter(tmp_path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), path
    )
    assert read_file(path) == ([], {str(path): "file has no records (empty or only blank lines)"})


def _fifty_mib_line_file(path: pathlib.Path) -> pathlib.Path:
    with open(path, "wb") as f:
        f.write(b'{"id": "before", "text": "short"}\n{"id": "huge", "text": "')
        f.write(b"x" * (50 * MIB))
        f.write(b'"}\n{"id": "after", "text": "short too"}\n')
    return path


def test_a_50_mib_line_is_dead_lettered_in_bounded_memory(tmp_path) -> None:
    path = _fifty_mib_line_file(tmp_path / "huge.jsonl")
    size = 50 * MIB + len(b'{"id": "huge", "text": ""}\n')
    docs, dead = read_file(path)  # default limit: 16 MiB
    assert [d.id for d in docs] == ["before", "after"]
    assert dead == {
        f"{path}:2": f"record is {size} bytes, over source.max_record_bytes={16 * MIB}; "
        "raise the limit or fix the record"
    }
    tracemalloc.start()
    try:
        docs, dead = read_file(path, max_record_bytes="1MiB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [d.id for d in docs] == ["before", "after"] and len(dead) == 1
    assert peak < 6 * MIB, f"peak {peak} bytes while skipping a 50 MiB line"


def test_a_50_mib_line_is_a_document_when_the_limit_allows(tmp_path) -> None:
    path = _fifty_mib_line_file(tmp_path / "huge.jsonl")
    docs, dead = read_file(path, max_record_bytes="64MiB")
    assert dead == {} and [len(d.text) for d in docs] == [5, 50 * MIB, 9]


def test_a_text_file_over_the_limit_is_dead_lettered(tmp_path) -> None:
    path = tmp_path / "big.md"
    path.write_bytes(b"word " * 300_000)
    assert read_file(path, max_record_bytes="1MB") == (
        [],
        {
            str(path): "file is 1500000 bytes, over source.max_record_bytes=1000000; raise the "
            "limit or split the file"
        },
    )


def test_truncated_and_corrupt_compressed_files(tmp_path) -> None:
    # Large enough that the first half holds more than one block of lines.
    count = 100_000
    lines = b"".join(b'{"id": "%d", "text": "line %d"}\n' % (i, i) for i in range(count))
    cut = {
        "cut.jsonl.gz": gzip.compress(lines),
        "cut.jsonl.bz2": bz2.compress(lines),
        "cut.jsonl.zst": zstandard.ZstdCompressor().compress(lines),
    }
    for name, data in cut.items():
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.jsonl.gz").write_bytes(b"\x1f\x8b" + b"not gzip at all" * 10)
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    for name in [*cut, "corrupt.jsonl.gz", "corrupt.parquet"]:
        docs, dead = read_file(tmp_path / name)
        assert len(dead) == 1, (name, dead)
        assert next(iter(dead.values())).startswith("cannot read file past"), (name, dead)
        # The records read before the break are kept (how many depends on where
        # the decompressor stops); the letter says where it broke.
        ((where, reason),) = dead.items()
        path = f"{tmp_path}/{name}"
        assert len(docs) < count
        if docs:
            assert where == f"{path}:{len(docs) + 1}" and f"past line {len(docs)}:" in reason
        else:
            assert where == path and "past its start:" in reason
    assert len(read_file(tmp_path / "cut.jsonl.gz")[0]) > 0


def test_counts_add_up_end_to_end(tmp_path, tiny_model) -> None:
    (tmp_path / "a.jsonl").write_bytes(
        b'{"id": "1", "text": "one"}\n{"id": 2, "text": \n{"id": "3", "text": null}\n'
        b'{"id": "1", "text": "one again"}\n'
    )
    (tmp_path / "b.csv").write_text("id,text\n4,four\n5,five,extra\n")
    (tmp_path / "c.txt").write_text("")
    (tmp_path / "d.json").write_text('[{"id": "6", "text": "six"}, 7]')
    records = 4 + 2 + 1 + 2
    p = TestPipeline()
    read = p | ReadDocuments(SourceConfig(patterns=(str(tmp_path / "*"),)))
    chunked = read.documents | ChunkDocuments(tiny_model, ChunkingConfig(8, 2))
    docs = collect(read.documents | "Ids" >> beam.Map(lambda d: d.id), "Docs")
    dead = collect(read.dead_letters | "Stages" >> beam.Map(lambda d: d.stage), "Dead")
    chunked_ids = collect(chunked.chunks | "DocIds" >> beam.Map(lambda c: c.document_id), "Chunks")
    result = p.run()
    result.wait_until_finish()
    counters: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))[
        "counters"
    ]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + int(counter.committed or 0)
    assert sorted(docs) == ["1", "4", "6"]
    assert sorted(dead) == ["dedupe"] + ["read"] * 5
    # Every record is a document read or a dead letter of the read step ...
    assert counters["documents_read"] + dead.count("read") == records
    # ... every document read is one out of ReadDocuments or a dropped duplicate ...
    assert counters["documents_read"] == len(docs) + counters["duplicate_ids"]
    # ... and every document out is chunked (or a dead letter of the chunk step).
    assert set(chunked_ids) == set(docs) and counters["dead_lettered"] == len(dead)
