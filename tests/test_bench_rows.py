"""The search and Ctrl-C rows of ``make bench``: they run, and check what they measure.

How fast is the benchmark's business (docs/performance.md, docs/search.md);
here, on small inputs, that each runs end to end and refuses a wrong outcome:
``bench.interrupt`` interrupts real ingest runs (one and two worker processes)
and fails on anything but the command line's promise (exit status 130, the one
line, no traceback); ``bench.search`` answers the same query with the ten-line
script, the instant command and the Beam path, and reports each one's ratio.
About a minute on two cores.
"""

from __future__ import annotations

import pathlib

from bench import interrupt, search


def test_the_ctrl_c_row_interrupts_real_runs_and_checks_how_they_end(
    tmp_path: pathlib.Path,
) -> None:
    report = interrupt.main(
        ["--docs", "6000", "--repeat", "1", "--work", str(tmp_path),
         "--markdown", str(tmp_path / "interrupt.md")]
    )  # fmt: skip
    assert [row["workers"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["runs"] == 1 and row["max_s"] > 0
        assert row["max_lines"] >= 1  # the line that says what was written, and no more noise
    table = (tmp_path / "interrupt.md").read_text()
    assert "| worker processes |" in table and "goal: stopped within 5 s" in table


def test_the_search_row_times_the_script_the_instant_command_and_beam(
    tmp_path: pathlib.Path,
) -> None:
    rows = search.main(
        ["--targets", "lite", "--chunks", "300", "--repeat", "1", "--work", str(tmp_path),
         "--markdown", str(tmp_path / "search.md")]
    )  # fmt: skip
    assert {(row.store, row.contender) for row in rows} == {
        ("lite", "script"),
        ("lite", "instant"),
        ("lite", "beam"),
    }
    assert all(len(row.runs) == 1 and row.wall[0] > 0 for row in rows)
    assert "instant" in (tmp_path / "search.md").read_text()
