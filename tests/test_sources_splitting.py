"""Large files are read as byte ranges by many workers: no record is lost or read
twice at a boundary, and ids and places do not depend on the split."""

from __future__ import annotations

import io
import json
import random
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.test_sources import read_all
from transforms import SourceConfig
from transforms.io.formats import ReadTask, read_task
from transforms.io.splitting import count_range, iter_frames, number_ranges, plan_ranges
from transforms.types import DeadLetter

MIB = 1024 * 1024


def _random_csv(rnd: random.Random, rows: int) -> bytes:
    texts = [
        "plain",
        'has "quotes" inside',
        "multi\nline\ntext",
        "",
        "comma, here",
        "crlf\r\ninside",
        "\n\n",
    ]
    out = ["id,text\n"]
    for i in range(rows):
        text = rnd.choice(texts) + "x" * rnd.randint(0, 30)
        out.append(f'{i},"{text.replace(chr(34), chr(34) * 2)}"' + rnd.choice(["\n", "\r\n"]))
        if rnd.random() < 0.1:
            out.append("\n")
    return "".join(out).encode()


def _frames(data: bytes, quote: bytes | None, **kwargs) -> list[tuple[int, int, bytes | None]]:
    frames = iter_frames(io.BytesIO(data), max_record_bytes=MIB, quote=quote, **kwargs)
    return [(f.offset, f.line, f.data) for f in frames]


@pytest.mark.parametrize("quoted", [True, False])
def test_ranges_read_every_record_once_wherever_the_boundaries_fall(quoted) -> None:
    rnd = random.Random(7)
    quote = b'"' if quoted else None
    for _ in range(150):
        data = _random_csv(rnd, rnd.randint(0, 25))
        if not quoted:
            data = data.replace(b'"', b"")
        whole = _frames(data, quote, block_bytes=rnd.randint(1, 64))
        assert b"".join(d or b"" for _, _, d in whole) == data
        counted = []
        for start, end in plan_ranges(len(data), rnd.randint(1, 80)):
            counted.append((start, end, *count_range(io.BytesIO(data), start, end, quote)))
        split = []
        for start, end, lines_before, in_quotes in number_ranges(reversed(counted)):
            split += _frames(
                data,
                quote,
                start=start,
                end=end,
                lines_before=lines_before,
                in_quotes=in_quotes,
                block_bytes=rnd.randint(1, 64),
            )
        assert split == whole


def test_plan_ranges_cover_the_file() -> None:
    assert plan_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert plan_ranges(8, 4) == [(0, 4), (4, 8)]
    assert plan_ranges(0, 4) == [(0, 0)]


def test_a_huge_line_across_many_ranges_is_skipped_in_bounded_memory() -> None:
    head, tail = b"short one\n", b"\nshort two"
    size = len(head) + 50 * MIB - 1 + len(tail)

    class Stream(io.RawIOBase):
        """A 50 MiB line between two short ones, made as it is read."""

        pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            start, n = self.pos, min(len(buffer), size - self.pos)
            chunk = bytearray(b"x") * n
            for offset, part in ((0, head), (size - len(tail), tail)):
                lo, hi = max(offset, start), min(offset + len(part), start + n)
                if lo < hi:
                    chunk[lo - start : hi - start] = part[lo - offset : hi - offset]
            buffer[:n] = chunk
            self.pos += n
            return n

    tracemalloc.start()
    try:
        frames = list(iter_frames(io.BufferedReader(Stream()), max_record_bytes=MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(f.line, f.data, f.size) for f in frames] == [
        (1, b"short one\n", 10),
        (2, None, 50 * MIB),
        (3, b"short two", 9),
    ]
    assert peak < 6 * MIB


def _jsonl_corpus(path, lines: int) -> None:
    rnd = random.Random(3)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            roll = rnd.random()
            if roll < 0.05:
                f.write('{"text": broken\n')
            elif roll < 0.1:
                f.write("\r\n")
            elif roll < 0.15:
                f.write(json.dumps({"text": "y" * rnd.randint(500, 3000)}) + "\n")
            elif roll < 0.5:
                f.write(json.dumps({"id": f"id-{i}", "text": f"record {i} ü 漢字"}) + "\n")
            else:
                f.write(json.dumps({"text": f"record {i} without an id"}) + "\r\n")


def test_a_large_jsonl_file_is_split_and_reads_the_same(tmp_path) -> None:
    path = tmp_path / "big.jsonl"
    _jsonl_corpus(path, 3000)
    size = path.stat().st_size
    whole = read_all(SourceConfig(patterns=(str(path),)))
    split = read_all(SourceConfig(patterns=(str(path),), split_bytes=size // 13))
    assert split[0] == whole[0] and split[1] == whole[1]  # documents and dead letters
    assert len(whole[0]) > 2000 and any(":" in d[0] for d in whole[0])
    assert whole[2].get("split_ranges", 0) == 0
    assert split[2]["split_ranges"] == 14
    assert split[2]["documents_read"] == whole[2]["documents_read"] == len(whole[0])


def test_a_large_csv_with_quoted_newlines_is_split_and_reads_the_same(tmp_path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(_random_csv(random.Random(11), 1500))
    whole = read_all(SourceConfig(patterns=(str(path),), id_field=None))
    split = read_all(SourceConfig(patterns=(str(path),), id_field=None, split_bytes="4KiB"))  # type: ignore[arg-type]
    assert split[:2] == whole[:2]
    assert split[2]["split_ranges"] > 5
    lines = [int(d[0].rsplit(":", 1)[1]) for d in whole[0]]
    assert len(lines) + len(whole[1]) == 1500 and min(lines) == 2


def test_split_reading_of_a_tsv_without_quoting(tmp_path) -> None:
    path = tmp_path / "big.tsv"
    rows = ["id\ttext"] + [f'{i}\tsays "hi {i}' for i in range(2000)]
    path.write_text("\n".join(rows) + "\n")
    config = {"patterns": (str(path),), "csv_quote": None}
    whole = read_all(SourceConfig(**config))  # type: ignore[arg-type]
    split = read_all(SourceConfig(**config, split_bytes=2000))  # type: ignore[arg-type]
    assert split[:2] == whole[:2] and whole[1] == []
    assert len(whole[0]) == 2000 and whole[0][0][1] == 'says "hi 0'


def test_a_large_parquet_file_is_split_by_row_groups(tmp_path) -> None:
    path = tmp_path / "big.parquet"
    table = pa.table(
        {
            "id": [f"p{i}" if i % 3 else None for i in range(5000)],
            "text": [f"row {i} " + "z" * (i % 50) for i in range(5000)],
            "unused": [i for i in range(5000)],
        }
    )
    pq.write_table(table, path, row_group_size=500)
    size = path.stat().st_size
    config = {"patterns": (str(path),), "metadata_fields": ()}
    whole = read_all(SourceConfig(**config))  # type: ignore[arg-type]
    split = read_all(SourceConfig(**config, split_bytes=size // 4))  # type: ignore[arg-type]
    assert split[:2] == whole[:2] and len(whole[0]) == 5000
    assert split[2]["split_ranges"] == 5
    assert (f"{path}#3", "row 3 zzz", {}, f"{path}#3") in whole[0]


def test_each_range_reads_only_what_starts_in_it(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [json.dumps({"text": f"line {i}"}) for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    config = SourceConfig(patterns=(str(path),))
    data = path.read_bytes()
    boundary = data.index(b"line 5") - 3  # inside line 6
    first = ReadTask(str(path), config.format.JSONL, 0, boundary)
    second = ReadTask(str(path), config.format.JSONL, boundary, len(data), lines_before=5)
    ids = [
        [r[1].id for r in read_task(task, config) if not isinstance(r, DeadLetter)]
        for task in (first, second)
    ]
    assert ids == [
        [f"{path}:{i}" for i in range(1, 7)],
        [f"{path}:{i}" for i in range(7, 11)],
    ]
