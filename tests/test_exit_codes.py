"""Exit codes that tell the truth, and the store as the run leaves it.

``python -m pipelines.ingest`` is run as a user runs it, in a process of its
own, on an embedded Lite store under tmp_path with the tiny test model: a run
that reads records and writes none, or dead-letters more than
``--max_dead_letters``, ends with its report on stdout, one line on stderr and
status 3; a collection the run made and left empty is dropped, one that was
there is kept; binary input is said not to be text. And the process ends when
its report says it ended: the embedded store is closed before the report.
About a minute on two cores (each run starts Beam, about 3 s).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from pipelines.outcome import RUN_FAILED_STATUS, DeadLetterLimit
from tests.conftest import write_jsonl
from transforms.config import ConfigError
from transforms.io.formats import binary_kind

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_S = 300.0
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(64)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00\x01\x02\x03" * 16
GOOD = [
    {"id": "one", "text": "read the text and write the vector"},
    {"id": "two", "text": "search milvus for the number"},
]


def ingest(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def inspect_json(uri: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.inspect", "--milvus_uri", uri, "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def report_of(done: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def store(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "milvus.db")


def flags(model: str, store: str, *inputs: pathlib.Path, collection: str = "notes") -> list[str]:
    return [
        "--input", ",".join(str(p) for p in inputs),
        "--model", model,
        "--milvus_uri", store,
        "--collection", collection,
    ]  # fmt: skip


def test_binary_files_are_not_text_and_a_run_that_writes_nothing_fails(
    tmp_path: pathlib.Path, tiny_model: str, store: str
) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "a.png").write_bytes(PNG)
    (folder / "lib.so").write_bytes(ELF)

    done = ingest(*flags(tiny_model, store, folder), cwd=tmp_path)

    assert done.returncode == RUN_FAILED_STATUS, done.stderr
    line = last_line(done)
    assert line.startswith("error: read 2 records and wrote none: 2 dead-lettered (first: "), line
    assert "a.png: file is not text: a PNG image" in line
    assert "decode_errors" not in done.stderr  # no advice to "replace" a picture into text
    report = report_of(done)  # the report is still printed, and says what happened
    assert (report["documents_read"], report["written"], report["dead_lettered"]) == (0, 0, 2)
    assert report["dropped"] is True
    letters = [
        json.loads(line)
        for path in pathlib.Path(report["dead_letter_path"]).parent.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    reasons = {pathlib.Path(d["source"]).name: d["reason"] for d in letters}
    assert reasons["a.png"].startswith("file is not text: a PNG image;")
    assert reasons["lib.so"].startswith("file is not text: an ELF executable or shared library;")
    # No new empty collection is left behind.
    assert inspect_json(store)["collections"] == []


def test_a_collection_that_was_there_is_kept_when_a_run_writes_nothing(
    tmp_path: pathlib.Path, tiny_model: str, store: str
) -> None:
    good = pathlib.Path(write_jsonl(tmp_path / "good.jsonl", GOOD))
    first = ingest(*flags(tiny_model, store, good), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    bad = pathlib.Path(write_jsonl(tmp_path / "bad.jsonl", [{"body": "no text field"}]))

    done = ingest(*flags(tiny_model, store, bad), cwd=tmp_path)

    assert done.returncode == RUN_FAILED_STATUS
    assert last_line(done).startswith("error: read 1 record and wrote none: 1 dead-lettered")
    assert "text field 'text' is missing" in last_line(done)
    assert "its fields of text: 'body'; name one with --text_field" in last_line(done)
    shown = inspect_json(store, "--collection", "notes")
    assert shown["rows"] == 2  # kept, with the first run's rows
    run = shown["last_run"]
    assert (run["run_id"], run["completed"]) == (report_of(done)["run_id"], True)
    assert run["outcome"] == "nothing_written"


def test_max_dead_letters_fails_a_run_past_it_as_a_count_or_a_fraction(
    tmp_path: pathlib.Path, tiny_model: str, store: str
) -> None:
    mixed = pathlib.Path(
        write_jsonl(tmp_path / "mixed.jsonl", [*GOOD, {"id": "x"}, {"id": "y", "text": 3}])
    )
    over = ingest(*flags(tiny_model, store, mixed), "--max_dead_letters", "1", cwd=tmp_path)
    assert over.returncode == RUN_FAILED_STATUS, over.stderr
    line = last_line(over)
    assert line.startswith(
        "error: 2 dead letters of 4 records read, over --max_dead_letters=1 (allowed: 1); "
        "2 rows were written (first: "
    ), line
    assert report_of(over)["written"] == 2  # what could be written was

    fraction = ingest(*flags(tiny_model, store, mixed), "--max_dead_letters", "0.5", cwd=tmp_path)
    assert fraction.returncode == 0, fraction.stderr  # 2 of 4: at the limit, not past it
    percent = ingest(*flags(tiny_model, store, mixed), "--max_dead_letters", "25%", cwd=tmp_path)
    assert percent.returncode == RUN_FAILED_STATUS
    assert "over --max_dead_letters=0.25 of the records read (allowed: 1)" in last_line(percent)

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"write": {"max_dead_letters": 1}}))
    configured = ingest(*flags(tiny_model, store, mixed), "--config", str(config), cwd=tmp_path)
    assert configured.returncode == RUN_FAILED_STATUS
    assert "over --max_dead_letters=1 " in last_line(configured)
    flag_wins = ingest(
        *flags(tiny_model, store, mixed), "--config", str(config), "--max_dead_letters", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert flag_wins.returncode == 0, flag_wins.stderr

    wrong = ingest(*flags(tiny_model, store, mixed), "--max_dead_letters", "many", cwd=tmp_path)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (
        "error: --max_dead_letters='many': give a count of dead letters (100), or a fraction of "
        "the records read, from 0 to 1 (0.05) or as a percentage (5%)."
    )


def test_the_embedded_store_is_closed_before_the_report(
    tmp_path: pathlib.Path, tiny_model: str, store: str
) -> None:
    good = pathlib.Path(write_jsonl(tmp_path / "good.jsonl", GOOD))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", *flags(tiny_model, store, good)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream: the order in which things happened
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    closed = [i for i, line in enumerate(lines) if "Closed the Milvus Lite store" in line]
    reported = [i for i, line in enumerate(lines) if line.startswith("{")]
    assert len(closed) == 1 and len(reported) == 1, done.stdout
    assert closed[0] < reported[0]  # closed, then reported
    assert reported[0] == len(lines) - 1  # and nothing after the report
    report = json.loads(lines[reported[0]])
    assert 0 <= report["close_seconds"] <= report["seconds"]


@pytest.mark.parametrize(
    "value, count, fraction",
    [("100", 100, None), (7, 7, None), ("0.05", None, 0.05), ("5%", None, 0.05), (0.5, None, 0.5)],
)
def test_dead_letter_limits_parse(value: object, count: int | None, fraction: float | None) -> None:
    limit = DeadLetterLimit.parse(value)
    assert (limit.count, limit.fraction) == (count, fraction)


@pytest.mark.parametrize("value", ["", "lots", "1.5", "-1", "150%", True, "nan"])
def test_wrong_dead_letter_limits_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="give a count of dead letters"):
        DeadLetterLimit.parse(value)


def test_a_fraction_allows_dead_letters_of_the_records_read() -> None:
    assert DeadLetterLimit(fraction=0.05).allowed(100) == 5
    assert DeadLetterLimit(fraction=0.05).allowed(19) == 0
    assert DeadLetterLimit(count=3).allowed(1000) == 3


@pytest.mark.parametrize(
    "data, kind",
    [
        (PNG, "a PNG image"),
        (ELF, "an ELF executable or shared library"),
        (b"%PDF-1.7\n", "a PDF document"),
        (b"\xff\xfeh\x00i\x00", "UTF-16 text"),
        (b"text, then \x00", "binary data, or UTF-16 text (a NUL character at offset 11)"),
        (b"# Notes\n\nplain text", None),
        ("naïve UTF-8 text".encode(), None),
        (b"MZ are initials", None),  # a text that happens to start like an .exe
    ],
)
def test_binary_files_are_told_by_their_first_bytes(data: bytes, kind: str | None) -> None:
    assert binary_kind(data) == kind
