"""``python -m pipelines.ingest --dry_run``: what a run would do, and nothing written.

The entry point is run as a user runs it, in a process of its own, on
Markdown notes and a JSONL file, against embedded Lite stores under
tmp_path: the files and sizes it lists, the documents and chunks it counts
(exactly when it reads every byte; the estimate from a sample is checked
in-process, with a small sample), what it says of the collection (create,
append, overwrite, refused), and that nothing is made: no store, no
collection, no dead-letter file, no report. About 30 s on two cores.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import dry_run
from pipelines.options import ingest_settings
from tests.conftest import write_jsonl
from tests.test_exit_codes import ingest
from transforms.embedding import describe_model

TIMEOUT_S = 300.0
NOTES = {
    "a.md": "# Vectors\n\nMilvus stores the vector of each chunk of text.\n",
    "b.md": "# Search\n\nA query is embedded, then the nearest chunks are found.\n",
}
RECORDS = [
    {"title": "one", "body": "read the text and write the vector " * 3},
    {"title": "two", "body": "search milvus for the number " * 3},
    {"title": "three", "body": ""},  # dead-lettered: empty text
]


@pytest.fixture
def inputs(tmp_path: pathlib.Path) -> list[str]:
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text, encoding="utf-8")
    write_jsonl(tmp_path / "data.jsonl", RECORDS)
    return [
        "--input",
        "notes/*.md,data.jsonl",
        "--text_field",
        "body",
        "--metadata_fields",
        "title",
    ]


def plan_lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The plan's ``key: value`` lines, by key (the file lines are indented)."""
    return {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in done.stdout.splitlines()
        if ":" in line and not line.startswith(" ")
    }


def test_a_dry_run_lists_counts_and_plans_and_writes_nothing(
    tmp_path: pathlib.Path, demo_model: str, inputs: list[str]
) -> None:
    store = tmp_path / "store" / "milvus.db"
    report = tmp_path / "report.json"
    flags = [*inputs, "--model", demo_model, "--milvus_uri", str(store), "--collection", "notes"]

    done = ingest(*flags, "--dry_run", "--report_path", str(report), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    plan = plan_lines(done)
    assert plan["dry run"].startswith("nothing is written")
    sizes = {name: len(text.encode()) for name, text in NOTES.items()}
    sizes["data.jsonl"] = (tmp_path / "data.jsonl").stat().st_size
    assert plan["files"] == f"3 matched, {sum(sizes.values())} B"
    listed = [line.split() for line in done.stdout.splitlines() if line.startswith("  ")]
    assert {pathlib.Path(row[-1]).name: (int(row[0]), row[1]) for row in listed} == {
        name: (size, "B") for name, size in sizes.items()
    }
    # Every byte was read: the counts are exact, and the run then finds the same.
    assert plan["documents"].startswith("4, chunks: ")
    assert plan["documents"].endswith("dead letters: 1 (exact: every file was read and chunked)")
    chunks = int(plan["documents"].split("chunks: ")[1].split(",")[0])
    assert plan["collection"].startswith(f"create: a new Lite store at {store}")
    # Nothing was made: no store (not even its folder), no dead letters, no report.
    assert not (tmp_path / "store").exists()
    assert not (tmp_path / "work").exists()
    assert not report.exists()

    ran = ingest(*flags, "--report_path", str(report), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    found = json.loads(report.read_text())
    assert (found["documents_read"], found["chunks"], found["dead_lettered"]) == (4, chunks, 1)

    again = ingest(*flags, "--dry_run", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    plan = plan_lines(again)
    assert plan["collection"] == (
        f"append: collection 'notes' at {store} holds about {chunks} rows (not loaded); rows of "
        "the same chunks are replaced (upsert)"
    )
    assert plan["last run"].startswith(f"{found['run_id']}, started ")
    assert plan["last run"].endswith(", completed")

    config = tmp_path / "overwrite.yaml"
    config.write_text(yaml.safe_dump({"write": {"mode": "overwrite"}}))
    overwrite = ingest(*flags, "--config", str(config), "--dry_run", cwd=tmp_path)
    assert overwrite.returncode == 0, overwrite.stderr
    assert plan_lines(overwrite)["collection"].startswith(
        f"overwrite: collection 'notes' at {store} (about {chunks} rows (not loaded)) would be "
        "dropped"
    )


def test_a_dry_run_that_would_be_refused_says_why_and_fails(
    tmp_path: pathlib.Path, demo_model: str, tiny_model: str, inputs: list[str]
) -> None:
    store = str(tmp_path / "milvus.db")
    flags = [*inputs, "--milvus_uri", store, "--collection", "notes"]
    first = ingest(*flags, "--model", tiny_model, cwd=tmp_path)  # 16-dimensional vectors
    assert first.returncode == 0, first.stderr
    listing = sorted((tmp_path / "work").rglob("*"))

    done = ingest(*flags, "--model", demo_model, "--dry_run", cwd=tmp_path)  # 256

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: --dry_run: the run would be refused: collection 'notes' at ")
    assert "holds 16-dimensional vectors, this run writes 256-dimensional ones" in line
    assert plan_lines(done)["collection"].startswith("refused: collection 'notes' at ")
    assert sorted((tmp_path / "work").rglob("*")) == listing  # no new dead-letter folder

    append = tmp_path / "append.yaml"
    append.write_text(yaml.safe_dump({"write": {"mode": "append"}}))
    missing = ingest(
        *flags, "--model", demo_model, "--collection", "other", "--config", str(append),
        "--dry_run", cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "does not exist and write.mode is append" in missing.stderr.strip().splitlines()[-1]


def test_a_large_input_is_estimated_from_a_sample(
    tmp_path: pathlib.Path, demo_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [
        {"id": str(i), "text": f"record {i} says " + "words " * (i % 50)} for i in range(3000)
    ]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    argv = ["--input", path, "--model", demo_model, "--collection", "big"]
    settings = ingest_settings(PipelineOptions([*argv, "--milvus_uri", str(tmp_path / "m.db")]))
    model = describe_model(settings.model)
    size = pathlib.Path(path).stat().st_size
    monkeypatch.setattr(dry_run, "SAMPLE_BYTES", size // 5)

    plan = dry_run.plan_ingest(settings, dim=model.dim, fingerprint=dict(model.fingerprint))

    assert not plan.exact and plan.sampled_files == 1
    assert plan.sampled_bytes == size // 5 and plan.total_bytes == size
    assert abs(plan.estimate("documents") - len(records)) <= 0.1 * len(records)
    text = dry_run.format_plan(plan, settings)
    assert f"estimated from 1 of 1 files ({size // 5 / 1024:.1f} KB of " in text
    assert "documents: ~" in text
    assert not (tmp_path / "m.db").exists()


def _rows_and_entries(store: pathlib.Path, collection: str) -> tuple[int, int]:
    """Rows of the collection and entries of its manifest; the store closed after."""
    from transforms.config import MilvusTarget
    from transforms.milvus.client import close_embedded
    from transforms.milvus.collection import count_rows, manifest_target

    target = MilvusTarget.lite(str(store), collection)
    try:
        return count_rows(target), count_rows(manifest_target(target))
    finally:
        close_embedded(target)


def test_a_sync_dry_run_counts_what_the_sync_would_do_and_writes_nothing(
    tmp_path: pathlib.Path, demo_model: str, inputs: list[str]
) -> None:
    """The plan of a sync is exact: documents added, updated, unchanged and deleted, rows
    upserted and deleted, as the sync that follows reports them; the dry run changes nothing."""
    store = tmp_path / "milvus.db"
    flags = [*inputs, "--model", demo_model, "--milvus_uri", str(store), "--collection", "notes",
             "--write_mode", "sync"]  # fmt: skip

    fresh = ingest(*flags, "--dry_run", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert not store.exists()  # a dry run makes no store
    assert sync_line(fresh, tmp_path) == (
        "documents 4 added, 0 updated, 0 unchanged, 0 deleted; rows 4 upserted, about 0 deleted"
    )
    first = ingest(*flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr

    (tmp_path / "notes" / "a.md").write_text("# Vectors\n\n" + "word " * 900, encoding="utf-8")
    (tmp_path / "notes" / "b.md").unlink()
    write_jsonl(tmp_path / "data.jsonl", [*RECORDS, {"title": "four", "body": "new text " * 5}])
    before = _rows_and_entries(store, "notes")

    planned = ingest(*flags, "--dry_run", cwd=tmp_path)

    assert planned.returncode == 0, planned.stderr
    assert _rows_and_entries(store, "notes") == before  # nothing written or deleted
    said = sync_line(planned, tmp_path)
    synced = ingest(*flags, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    sync = json.loads(synced.stdout.strip().splitlines()[-1])["sync"]
    assert (sync["documents_added"], sync["documents_updated"]) == (1, 1)
    assert (sync["documents_unchanged"], sync["documents_deleted"]) == (2, 1)
    assert said == (
        f"documents 1 added, 1 updated, 2 unchanged, 1 deleted; rows {sync['chunks_upserted']} "
        f"upserted, about {sync['chunks_deleted']} deleted"
    )


def sync_line(done: subprocess.CompletedProcess[str], folder: pathlib.Path) -> str:
    """What the plan says of the sync of the ``inputs`` fixture's scope, run in ``folder``."""
    scope = "inputs:" + ",".join(sorted([str(folder / "data.jsonl"), str(folder / "notes/*.md")]))
    prefix = f"sync of scope {scope!r}: "
    [line] = [line for line in done.stdout.splitlines() if line.startswith("sync of scope")]
    assert line.startswith(prefix), line
    return line.removeprefix(prefix)
