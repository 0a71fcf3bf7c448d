"""The sync rows of ``make bench`` (``bench.sync``): what they measure and check, not how fast.

A tiny corpus runs the sync cycle (first sync, unchanged, edited; the full
re-ingest is left out to save a process) into embedded Milvus Lite with one
worker; the bench itself fails if a run did not do what it must (documents by
fate, manifest entries read, documents read). The table and the targets are
checked on made-up figures.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import corpus, measure, sync


def test_the_edits_touch_the_shares_asked_and_keep_the_rest(tmp_path) -> None:
    source = corpus.write_corpus(str(tmp_path / "c.jsonl"), 300, seed=2).path
    out = str(tmp_path / "edited.jsonl")
    counts = sync.edit_corpus(source, out, edit_share=0.01, delete_share=0.01)
    assert counts == {"documents": 297, "edited": 3, "deleted": 3}
    before = {r["id"]: r for r in corpus.read_corpus(source)}
    after = {r["id"]: r for r in corpus.read_corpus(out)}
    assert set(after) < set(before) and len(before) - len(after) == 3
    changed = [i for i in after if after[i] != before[i]]
    assert len(changed) == 3
    lengths = [len(after[i]["text"]) - len(before[i]["text"]) for i in changed]
    assert any(d > 0 for d in lengths) and any(d < 0 for d in lengths)  # grown and cut
    assert all(after[i]["title"] == before[i]["title"] for i in changed)


def _run(documents: int, name: str, repeat: int, wall: float) -> sync.Run:
    m = measure.Measurement(0, wall, wall / 2, 300.0, 600.0, 0.0)
    report: dict[str, Any] = {
        "seconds": wall - 3,
        "documents_read": documents,
        "rows_after": 2 * documents,
    }
    if name != sync.FULL:
        report["sync"] = {"documents_unchanged": documents, "manifest_entries_read": documents}
    processes = sync.ByProcess(250.0, 320.0, 2, 4.0, wall / 3)
    return sync.Run(documents, name, repeat, m, processes, report, server_cpu_s=wall / 5)


def test_the_table_gives_medians_ratios_to_the_first_sync_and_the_targets() -> None:
    runs = [
        _run(n, name, repeat, wall * n / 20_000 + 10)
        for repeat in range(3)
        for n in (100_000, 20_000)
        for name, wall in ((sync.FIRST, 100.0), (sync.UNCHANGED, 8.0), (sync.EDITED, 12.0))
    ]
    rows = sync.summarize(runs)
    assert [(r["documents"], r["run"]) for r in rows] == [
        (100_000, sync.FIRST), (100_000, sync.UNCHANGED), (100_000, sync.EDITED),
        (20_000, sync.FIRST), (20_000, sync.UNCHANGED), (20_000, sync.EDITED),
    ]  # fmt: skip
    first, unchanged, edited = rows[:3]
    assert first["x_first"] is None and first["wall_s"] == 510.0 and first["runs"] == 3
    assert unchanged["x_first"] == round(510 / 50, 2) and edited["x_first"] == round(510 / 70, 2)
    assert unchanged["sync"]["manifest_entries_read"] == 100_000
    assert unchanged["launcher_mb"] == 250 and unchanged["worker_mb"] == 320
    assert unchanged["launcher_cpu_s"] == 4.0 and unchanged["server_cpu_s"] == 10.0
    found = {t["run"]: t for t in sync.targets(rows)}
    assert found[sync.UNCHANGED]["met"] and found[sync.EDITED]["met"]
    assert found[sync.UNCHANGED]["target_x"] == 5.0 and found[sync.EDITED]["target_x"] == 4.0
    small = [r for r in rows if r["documents"] == 20_000]
    assert sync.targets(small) == []  # the targets are for 100,000 documents
    report = {
        "date": "2026-12-01",
        "commit": "abc1234",
        "settings": {"target": "2.3.5 server", "workers": 2, "repeat": 3},
        "machine": {
            "cpus": 2,
            "memory_gib": 23.5,
            "platform": "Linux",
            "load_average_before": [2.5, 2.0, 1.0],
            "load_average_after": [],
        },
        "results": rows,
        "targets": sync.targets(rows),
    }
    table = sync.markdown(report)
    assert "Date 2026-12-01, commit `abc1234`; 2 cores, 23.5 GiB RAM" in table
    assert "| 100,000 | (b) re-sync, nothing changed | 50.0 (50.0-50.0) | 10.20 | - |" in table
    assert "| 47.0 | 4, 17, 10 | 250, 320 | 0 | 0 | 100,000 |" in table
    assert "(target 5x: met)" in table and "(target 4x: met)" in table


def test_sync_runs_the_cycle_and_checks_every_run(tmp_path, tiny_model) -> None:
    report = sync.main(
        [
            "--sizes", "200", "--workers", "1", "--no-full", "--floor_docs", "0",
            "--model", tiny_model,
            "--milvus_uri", str(tmp_path / "lite.db"), "--work", str(tmp_path / "work"),
            "--json", str(tmp_path / "sync.json"), "--markdown", str(tmp_path / "sync.md"),
        ]
    )  # fmt: skip
    rows = {r["run"]: r for r in report["results"]}
    assert list(rows) == [sync.FIRST, sync.UNCHANGED, sync.EDITED]
    assert all(r["documents"] == 200 and r["runs"] == 1 for r in rows.values())
    assert rows[sync.FIRST]["sync"]["documents_added"] == 200
    assert rows[sync.UNCHANGED]["sync"]["documents_unchanged"] == 200
    assert rows[sync.UNCHANGED]["sync"]["manifest_entries_read"] == 200
    edited = rows[sync.EDITED]["sync"]
    assert (edited["documents_updated"], edited["documents_deleted"]) == (2, 2)
    assert edited["documents_unchanged"] == 196 and edited["chunks_deleted"] > 0
    assert rows[sync.EDITED]["rows_after"] < rows[sync.FIRST]["rows_after"]
    for row in rows.values():
        assert row["wall_s"] > 0 and row["report_s"] > 0 and row["launcher_mb"] > 0
        assert row["workers"] == 0 and row["server_cpu_s"] is None  # one process, Lite
        assert (row["x_first"] is None) == (row["run"] == sync.FIRST)
    assert report["targets"] == [] and report["machine"]["cpus"] >= 1
    assert report["settings"]["target"] == "Lite (embedded)" and report["commit"]
    saved = json.loads((tmp_path / "sync.json").read_text())
    assert len(saved["runs"]) == 3 and saved["runs"][0]["report"]["sync"]["documents_added"] == 200
    table = (tmp_path / "sync.md").read_text()
    assert "| 200 | (c) re-sync, 1 % edited + 1 % deleted |" in table


def test_bad_sizes_stop_before_anything_starts(tmp_path) -> None:
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match="--sizes"):
        sync.main(["--sizes", "many", "--work", str(work)])
    with pytest.raises(SystemExit, match="positive"):
        sync.main(["--sizes", "0", "--work", str(work)])
    assert not work.exists()
