"""The benchmark's parts: a deterministic corpus, the peers' chunks, the measurements, the report.

These check that ``make bench`` measures what it says; they time nothing.
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from bench import chunking, corpus, measure, run
from transforms import ChunkDocuments, ChunkingConfig, Document


def test_the_corpus_is_deterministic_mixed_and_streamed(tmp_path) -> None:
    first = list(corpus.documents(300, seed=1))
    assert first == list(corpus.documents(300, seed=1))
    assert first[:100] == list(
        corpus.documents(100, seed=1)
    )  # document i depends on (seed, i) only
    assert first != list(corpus.documents(300, seed=2))
    lengths = sorted(len(d["text"]) for d in first)
    assert lengths[0] < 900 and lengths[-1] > 2_600  # short and long documents
    assert len({d["text"] for d in first}) == len(first)
    stats = corpus.write_corpus(str(tmp_path / "c.jsonl"), 300, seed=1)
    assert stats.documents == 300 and stats.characters == sum(lengths)
    with open(stats.path, encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == first
    again = corpus.write_corpus(str(tmp_path / "c.jsonl"), 300, seed=1)  # reused, not rewritten
    assert again == stats


def test_the_peers_cut_the_chunks_our_pipeline_cuts(tmp_path, demo_model) -> None:
    path = corpus.write_corpus(str(tmp_path / "c.jsonl"), 12, seed=3).path
    config = ChunkingConfig(64, 8)
    cut = chunking.chunker(demo_model, config.max_tokens, config.overlap_tokens)
    expected = [
        (c.id, c.document_id, c.index, c.text, dict(c.metadata))
        for d in chunking.documents(path)
        for c in cut(d)
    ]
    assert len(expected) > 12  # some documents are several windows
    documents = [
        Document(r["id"], r["text"], {"title": r["title"]}, path) for r in corpus.read_corpus(path)
    ]
    with TestPipeline() as p:
        chunks = (p | beam.Create(documents) | ChunkDocuments(demo_model, config)).chunks
        assert_that(
            chunks | beam.Map(lambda c: (c.id, c.document_id, c.index, c.text, dict(c.metadata))),
            equal_to(expected),
        )


def test_every_part_of_the_corpus_goes_to_exactly_one_pool_worker(tmp_path) -> None:
    path = corpus.write_corpus(str(tmp_path / "c.jsonl"), 25, seed=0).path
    parts = [[d.id for d in chunking.documents(path, part=i, parts=3)] for i in range(3)]
    assert sorted(i for part in parts for i in part) == sorted(
        d.id for d in chunking.documents(path)
    )
    assert all(parts)


def test_measure_reports_time_cpu_and_memory_of_the_whole_process_tree(tmp_path) -> None:
    child = "import time; x = bytearray(64 * 2**20); time.sleep(0.3)"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "y = bytearray(32 * 2**20); sum(range(3_000_000)); p.wait()"
    )
    done = measure.measure([sys.executable, "-c", script], log_path=str(tmp_path / "log"))
    assert done.returncode == 0
    assert 0.3 < done.wall_s < 30 and done.cpu_s > 0.0
    assert done.max_process_rss_mb >= 64  # the child's, by the kernel's accounting
    assert done.peak_tree_rss_mb >= 64 + 32  # both at once, sampled
    failed = measure.measure([sys.executable, "-c", "raise SystemExit(3)"])
    assert failed.returncode == 3


def _row(key: str, target: str, seconds: float) -> run.Run:
    m = measure.Measurement(0, seconds, seconds, 100.0, 200.0, 0.0)
    inside = {"max_abs_diff_vs_encode": 0.0} if key == "encode_ours" else {}
    return run.Run(key, target, 0, m, seconds, None, None, inside)


def test_the_report_gives_rates_and_ratios_to_each_peer() -> None:
    expected = {"documents": 1000, "chunks": 2500, "corpus_tokens": 500_000, "characters": 9}
    runs = [
        _row("docs", "server", 10.0),
        _row("beam_rag_1", "server", 12.5),
        _row("beam_rag_2", "server", 8.0),
        _row("pool", "server", 5.0),
        _row("ours_2", "server", 4.0),
        _row("ours_2", "server", 6.0),
        _row("ours_2", "server", 5.0),
        _row("encode_m2v_mp", "server", 1.3),
        _row("encode_ours", "server", 1.0),
    ]
    rows = {r["contender"]: r for r in run.summarize(runs, expected)}
    ours = rows["ours_2"]
    assert ours["seconds"] == 5.0 and ours["seconds_min"] == 4.0 and ours["runs"] == 3
    assert ours["documents_per_s"] == 200.0 and ours["chunks_per_s"] == 500.0
    assert ours["x_docs"] == 2.0 and ours["x_beam_rag"] == 2.5 and ours["x_pool"] == 1.0
    assert ours["x_beam_rag_2w"] == 1.6
    step = run.embedding_step(runs)
    assert step["x_fastest_encode"] == 1.3 and step["max_abs_diff_vs_encode"] == 0.0
    report = {
        "corpus": expected,
        "settings": {"max_tokens": 256, "overlap_tokens": 32, "model": "m", "repeat": 3},
        "machine": {"cpus": 2},
        "results": list(rows.values()),
        "embedding_step": step,
    }
    table = run.markdown(report)
    assert "| (f) our pipeline, DirectRunner, 2 worker processes | 200 | 500 |" in table
    assert "5.0 (4.0-6.0)" in table and "x 1.30 the fastest" in table


def test_the_contenders_and_their_flags_are_known(tmp_path) -> None:
    keys = [c.key for c in run.CONTENDERS]
    assert len(keys) == len(set(keys))
    assert {base for _, base in run.RATIO_BASES} <= set(keys)
    work = tmp_path / "work"
    with pytest.raises(SystemExit, match="unknown contender"):
        run.main(["--contenders", "nope", "--work", str(work)])
    with pytest.raises(SystemExit, match="--targets"):
        run.main(["--targets", "cloud", "--work", str(work)])
    assert not work.exists()  # nothing started, nothing written


def test_the_benchmark_runs_end_to_end_and_checks_every_row(tmp_path, tiny_model) -> None:
    # A tiny corpus into embedded Milvus Lite; the peers that need pymilvus-model
    # (the bench extra) are left out, as CI installs the test extra only.
    report = run.main(
        [
            "--docs", "40", "--targets", "lite", "--model", tiny_model,
            "--max_tokens", "64", "--overlap_tokens", "8", "--encode_passes", "1",
            "--contenders", "encode_ours,beam_rag_1,ours_1",
            "--work", str(tmp_path / "work"), "--json", str(tmp_path / "report.json"),
            "--markdown", str(tmp_path / "table.md"),
        ]
    )  # fmt: skip
    results = {r["contender"]: r for r in report["results"]}
    assert set(results) == {"encode_ours", "beam_rag_1", "ours_1"}
    chunks = report["corpus"]["chunks"]
    assert report["corpus"]["documents"] == 40 and chunks >= 40
    for key in ("beam_rag_1", "ours_1"):
        assert results[key]["rows_checked"] and results[key]["documents_per_s"] > 0
    written = [r for r in report["runs"] if r["rows"] is not None]
    assert all(r["rows"] == r["rows_expected"] == chunks for r in written)
    assert results["ours_1"]["x_beam_rag"] is not None and results["ours_1"]["x_docs"] is None
    assert report["embedding_step"]["max_abs_diff_vs_encode"] < 1e-5
    assert json.loads((tmp_path / "report.json").read_text())["corpus"]["chunks"] == chunks
    assert "(f) our pipeline, DirectRunner, 1 worker" in (tmp_path / "table.md").read_text()
