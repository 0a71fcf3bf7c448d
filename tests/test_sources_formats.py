"""ReadDocuments on real files: every format, compression, path kind, field choice and
the duplicate-id policies."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import pathlib
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from tests.test_sources import read_all
from transforms import ConfigError, Document, SourceConfig, SourceFormat, match_files
from transforms.config import DecodeErrors, DuplicateIds
from transforms.io.formats import format_of, is_splittable
from transforms.io.sources import resolve_duplicates

CSV_TEXT = (
    'id,title,text\r\n1,First,"a line\r\nand a quoted ""newline"", kept"\r\n2,Second,plain text\r\n'
)


def write_parquet(path: pathlib.Path, rows: list[dict], row_group_size: int = 1000) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return str(path)


def test_every_format_is_read_by_its_extension(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("plain text file", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Title\n\nMarkdown body.", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(
        '{"id": "j1", "text": "json line", "title": "J"}\n', encoding="utf-8"
    )
    (tmp_path / "d.ndjson").write_text('{"id": "n1", "text": "nd json"}\n', encoding="utf-8")
    (tmp_path / "e.json").write_text(
        json.dumps([{"id": "a1", "text": "array one", "title": "A"}, {"text": "array two"}]),
        encoding="utf-8",
    )
    (tmp_path / "f.json").write_text('{"id": "o1", "text": "one object"}', encoding="utf-8")
    (tmp_path / "g.csv").write_bytes(CSV_TEXT.encode())
    (tmp_path / "h.tsv").write_text('id\ttext\ttitle\nt1\t"tab, ""quoted"""\tT\n', encoding="utf-8")
    write_parquet(
        tmp_path / "i.parquet",
        [{"id": 10, "text": "parquet row", "title": "P"}, {"id": None, "text": "no id"}],
    )
    docs, dead, counters = read_all(
        SourceConfig(patterns=(str(tmp_path / "*"),), metadata_fields=("title",))
    )
    assert dead == []
    p = str(tmp_path)
    assert docs == sorted(
        [
            (f"{p}/a.txt", "plain text file", {"path": f"{p}/a.txt"}, f"{p}/a.txt"),
            (f"{p}/b.md", "# Title\n\nMarkdown body.", {"path": f"{p}/b.md"}, f"{p}/b.md"),
            ("j1", "json line", {"title": "J"}, f"{p}/c.jsonl:1"),
            ("n1", "nd json", {}, f"{p}/d.ndjson:1"),
            ("a1", "array one", {"title": "A"}, f"{p}/e.json#0"),
            (f"{p}/e.json#1", "array two", {}, f"{p}/e.json#1"),
            ("o1", "one object", {}, f"{p}/f.json#0"),
            ("1", 'a line\r\nand a quoted "newline", kept', {"title": "First"}, f"{p}/g.csv:2"),
            ("2", "plain text", {"title": "Second"}, f"{p}/g.csv:4"),
            ("t1", 'tab, "quoted"', {"title": "T"}, f"{p}/h.tsv:2"),
            ("10", "parquet row", {"title": "P"}, f"{p}/i.parquet#0"),
            (f"{p}/i.parquet#1", "no id", {"title": None}, f"{p}/i.parquet#1"),
        ]
    )
    assert counters["documents_read"] == 12 and counters.get("dead_lettered", 0) == 0


def test_format_by_extension_and_what_can_be_split() -> None:
    auto = SourceFormat.AUTO
    assert format_of("x/corpus.JSONL.gz", auto) is SourceFormat.JSONL
    assert format_of("s3://b/k.tab", auto) is SourceFormat.TSV
    assert format_of("rows.pq", auto) is SourceFormat.PARQUET
    assert format_of("notes.rst.bz2", auto) is SourceFormat.TEXT
    assert format_of("data.log", SourceFormat.CSV) is SourceFormat.CSV
    assert is_splittable("big.jsonl", SourceFormat.JSONL)
    assert not is_splittable("big.jsonl.gz", SourceFormat.JSONL)
    assert not is_splittable("big.json", SourceFormat.JSON)
    assert not is_splittable("big.md", SourceFormat.TEXT)


def test_several_text_fields_are_joined_and_metadata_fields_chosen(tmp_path) -> None:
    rows: list[dict] = [
        {"id": "r1", "title": "Title", "body": "Body text.", "lang": "en", "extra": 1},
        {"id": "r2", "title": None, "body": "Only a body.", "lang": "de", "extra": 2},
        {"id": "r3", "title": "", "body": "  ", "lang": "fr", "extra": 3},
    ]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_parquet(tmp_path / "r.parquet", [{**r, "id": r["id"] + "p"} for r in rows])
    (tmp_path / "r.csv").write_text(
        "id,title,body,lang,extra\nr1c,Title,Body text.,en,1\nr2c,,Only a body.,de,2\n"
    )
    docs, dead, _ = read_all(
        SourceConfig(
            patterns=[str(tmp_path / "r.*")],  # type: ignore[arg-type]
            text_field=["title", "body"],  # type: ignore[arg-type]
            text_separator="\n",
            metadata_fields=["lang"],  # type: ignore[arg-type]
        )
    )
    by_id = {d[0]: (d[1], d[2]) for d in docs}
    for suffix in ("", "p", "c"):
        assert by_id["r1" + suffix] == ("Title\nBody text.", {"lang": "en"})
        assert by_id["r2" + suffix] == ("Only a body.", {"lang": "de"})
    reasons = {source.rsplit("/", 1)[-1]: reason for _, source, reason in dead}
    assert reasons == {
        "r.jsonl:3": "text fields 'title', 'body' are all missing or empty; one must be "
        "non-empty text",
        "r.parquet#2": "text fields 'title', 'body' are all missing or empty; one must be "
        "non-empty text",
    }


def test_compression_is_inferred_from_the_extension(tmp_path) -> None:
    line = b'{"id": "%s", "text": "compressed %s"}\n'
    with gzip.open(tmp_path / "a.jsonl.gz", "wb") as f:
        f.write(line % (b"gz", b"gz"))
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress(line % (b"bz2", b"bz2")))
    (tmp_path / "c.jsonl.xz").write_bytes(lzma.compress(line % (b"xz", b"xz")))
    (tmp_path / "d.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(line % (b"zst", b"zst"))
    )
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(CSV_TEXT.encode()))
    (tmp_path / "f.md.xz").write_bytes(lzma.compress(b"# xz markdown"))
    (tmp_path / "g.jsonl.lzma").write_bytes(
        lzma.compress(line % (b"lzma", b"lzma"), format=lzma.FORMAT_ALONE)
    )
    with zipfile.ZipFile(tmp_path / "h.jsonl.zip", "w") as archive:
        archive.writestr("h.jsonl", line % (b"zip", b"zip"))
    docs, dead, _ = read_all(SourceConfig(patterns=(str(tmp_path / "*"),)))
    assert dead == []
    assert [d[0] for d in docs] == sorted(
        ["gz", "bz2", "xz", "zst", "lzma", "zip", "1", "2", str(tmp_path / "f.md.xz")]
    )
    assert {d[1] for d in docs} >= {"compressed zst", "# xz markdown"}


def test_recursive_globs_lists_of_patterns_and_include_exclude(tmp_path, monkeypatch) -> None:
    for name in (
        "docs/a.md",
        "docs/README.md",
        "docs/sub/b.md",
        "docs/sub/deep/c.md",
        "docs/sub/deep/d.txt",
        "docs/drafts/e.md",
        "other/f.md",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"text of {name}")
    monkeypatch.chdir(tmp_path)
    assert match_files("docs/**/*.md") == [
        "docs/README.md",
        "docs/a.md",
        "docs/drafts/e.md",
        "docs/sub/b.md",
        "docs/sub/deep/c.md",
    ]
    assert match_files("docs", include=["*.txt"]) == ["docs/sub/deep/d.txt"]
    assert match_files("docs/**", exclude=["*/drafts/*", "README.md", "*.txt"]) == [
        "docs/a.md",
        "docs/sub/b.md",
        "docs/sub/deep/c.md",
    ]
    config = yaml.safe_load(
        """
        patterns: ["docs/**/*.md", "other"]
        exclude: ["*/drafts/*", "README.md"]
        """
    )
    docs, dead, _ = read_all(SourceConfig(**config))
    assert dead == []
    assert [d[0] for d in docs] == [
        "docs/a.md",
        "docs/sub/b.md",
        "docs/sub/deep/c.md",
        "other/f.md",
    ]


def test_all_files_left_out_by_the_globs_is_an_empty_match(tmp_path) -> None:
    (tmp_path / "a.md").write_text("text")
    config = SourceConfig(patterns=(str(tmp_path),), include=("*.jsonl",))
    with pytest.raises(Exception, match=r"all 1 of its files are left out by source.include"):
        read_all(config)
    allowed = SourceConfig(patterns=(str(tmp_path),), include=("*.jsonl",), empty_match="allow")  # type: ignore[arg-type]
    assert read_all(allowed)[:2] == ([], [])


def _doc(doc_id: str, source: str) -> Document:
    return Document(id=doc_id, text=f"text at {source}", source=source)


def test_duplicate_ids_are_resolved_by_path_and_position_not_arrival() -> None:
    copies = [_doc("x", "a.jsonl:9"), _doc("x", "a.jsonl:10"), _doc("x", "b.jsonl:1")]
    last = list(resolve_duplicates("x", copies, DuplicateIds.KEEP_LAST))
    assert last[0] == copies[2]
    assert [(d.stage, d.source) for d in last[1:]] == [  # type: ignore[union-attr]
        ("dedupe", "a.jsonl:9"),
        ("dedupe", "a.jsonl:10"),
    ]
    assert "used again at b.jsonl:1" in last[1].reason  # type: ignore[union-attr]
    first = list(resolve_duplicates("x", copies, DuplicateIds.KEEP_FIRST))
    assert first[0] == copies[0] and len(first) == 3
    none = list(resolve_duplicates("x", copies, DuplicateIds.DEAD_LETTER))
    assert len(none) == 3 and all(not isinstance(d, Document) for d in none)
    assert "is used by 3 records (a.jsonl:9, a.jsonl:10, b.jsonl:1)" in none[0].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("keep_last", "second file, line 10"), ("keep_first", "first file, line 9")],
)
def test_duplicate_ids_in_a_run_are_counted_and_resolved_deterministically(
    tmp_path, policy, kept
) -> None:
    # Line 10 sorts before line 9 as text; the order must be numeric.
    filler = [json.dumps({"id": f"f{i}", "text": "filler"}) for i in range(8)]
    first = [*filler, json.dumps({"id": "dup", "text": "first file, line 9"})]
    first.append(json.dumps({"id": "dup", "text": "first file, line 10"}))
    (tmp_path / "1.jsonl").write_text("\n".join(first) + "\n")
    (tmp_path / "2.jsonl").write_text(
        "\n" * 9 + json.dumps({"id": "dup", "text": "second file, line 10"}) + "\n"
    )
    source = SourceConfig(patterns=(str(tmp_path / "*.jsonl"),), duplicate_ids=policy)
    docs, dead, counters = read_all(source)
    assert {d[1] for d in docs if d[0] == "dup"} == {kept}
    assert len(docs) == 9 and len(dead) == 2
    assert {stage for stage, _, _ in dead} == {"dedupe"}
    assert counters["duplicate_ids"] == 2
    # Every document read is a document out, or a dead letter.
    assert counters["documents_read"] == len(docs) + len(dead) == 11
    assert counters["dead_lettered"] == 2


def test_source_config_takes_plain_yaml_values() -> None:
    config = SourceConfig(
        **yaml.safe_load(
            """
            patterns: gs://bucket/dump-*.csv
            format: csv
            id_field: ""
            text_field: [title, body]
            metadata_fields: lang
            include: "*.csv"
            decode_errors: replace
            duplicate_ids: keep_first
            max_record_bytes: 32MiB
            split_bytes: 128 MB
            csv_delimiter: ";"
            csv_quote: null
            storage_options: {anon: true}
            """
        )
    )
    assert config.patterns == ("gs://bucket/dump-*.csv",)
    assert config.format is SourceFormat.CSV and config.id_field is None
    assert config.text_field == ("title", "body") == config.text_fields
    assert config.metadata_fields == ("lang",) and config.include == ("*.csv",)
    assert config.decode_errors is DecodeErrors.REPLACE
    assert config.duplicate_ids is DuplicateIds.KEEP_FIRST
    assert config.max_record_bytes == 32 * 1024 * 1024 and config.split_bytes == 128_000_000
    assert config.csv_quote is None and config.storage_options == {"anon": True}
    assert SourceConfig(patterns="a").text_fields == ("text",)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"duplicate_ids": "keep_some"}, "source.duplicate_ids"),
        ({"decode_errors": "ignore"}, "source.decode_errors"),
        ({"max_record_bytes": "lots"}, "source.max_record_bytes"),
        ({"split_bytes": 0}, "source.split_bytes"),
        ({"text_field": ["title", 3]}, "source.text_field"),
        ({"csv_delimiter": "ab"}, "source.csv_delimiter"),
        ({"csv_delimiter": '"'}, "source.csv_delimiter"),
        ({"include": [""]}, "source.include"),
        ({"storage_options": {"key": "AKIA", "anon": False}}, "credentials"),
    ],
)
def test_bad_source_settings_name_the_value(values, names) -> None:
    with pytest.raises(ConfigError, match=names):
        SourceConfig(patterns=("a",), **values)


def test_long_csv_fields_and_integer_ids_in_float_columns(tmp_path) -> None:
    # Fields over the csv module's default limit (128 KiB) are read.
    (tmp_path / "long.csv").write_text('id,text\n1,"' + "x" * 200_000 + '"\n')
    # A Parquet id column with nulls is often float: 12.0 is the id "12".
    write_parquet(
        tmp_path / "f.parquet",
        [{"id": 12.0, "text": "float id"}, {"id": 1.5, "text": "not an integer"}],
    )
    docs, dead, _ = read_all(SourceConfig(patterns=(str(tmp_path / "*"),)))
    assert [(d[0], len(d[1])) for d in docs] == [("1", 200_000), ("12", 8)]
    assert [d[1:] for d in dead] == [
        (
            f"{tmp_path}/f.parquet#1",
            "id field 'id' must be a non-empty string or an integer, got 1.5",
        )
    ]
