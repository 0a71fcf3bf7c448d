"""What decides the search's path and what it prints, without a store.

Which command lines are instant (``pipelines.instant.parse``), the search
settings of ``--search_params`` and ``search.params``, and how hits are shown
(``pipelines.hits``). The commands themselves, against real stores, are in
tests/test_search_cli.py.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml

from pipelines import hits, instant
from pipelines.settings import read_search_settings
from tests.conftest import DEMO_MODEL
from transforms.config import ConfigError
from transforms.milvus.searcher import score_name

RESULT = {
    "query": "catch an exception",
    "hits": [
        {
            "id": "a1",
            "distance": 0.8123,
            "fields": {
                "document_id": "errors.md",
                "chunk_index": 2,
                "text": "Catch   an exception\nwith try.",
                "metadata": {"title": "Errors", "lang": "en"},
            },
        },
        {
            "id": "b1",
            "distance": 0.5,
            "fields": {"document_id": "misc", "chunk_index": 0, "text": "x", "metadata": {}},
        },
    ],
}
BASE = ["--milvus_uri", "x.db", "--collection", "c", "--query", "q"]


@pytest.mark.parametrize(
    ("argv", "instant_path"),
    [
        (BASE, True),
        (
            [*BASE, "--top_k", "3", "--filter", 'document_id == "a"', "--output_format", "jsonl"],
            True,
        ),
        ([*BASE, "--search_params", '{"ef": 64}', "--log_level", "WARNING"], True),
        ([*BASE, "--queries_file", "queries.txt"], False),  # a file: Beam
        ([*BASE, "--runner", "FnApiRunner"], False),  # a runner named: Beam
        ([*BASE, "--direct_num_workers", "2"], False),  # any Beam flag: Beam
        ([*BASE, "--help"], False),  # the help is the Beam path's, with Beam's flags
        ([*BASE, "--top_k", "many"], False),  # a wrong value: reported as every command does
        ([*BASE, "--", "--anything"], False),
    ],
)
def test_which_command_lines_are_instant(argv: list[str], instant_path: bool) -> None:
    assert (instant.parse(argv) is not None) is instant_path


def test_search_params_come_from_the_flag_over_the_config(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": DEMO_MODEL,
                "milvus": {"uri": "x.db", "collection": "c"},
                "search": {"params": {"ef": 512}, "top_k": 4, "filter": 'document_id == "a"'},
            }
        )
    )
    given = instant.parse(["--config", str(config), "--query", "q"])
    assert given is not None
    settings = read_search_settings(given, given)
    assert settings.search_params == {"ef": 512}
    assert (settings.top_k, settings.filter_expression) == (4, 'document_id == "a"')
    flag = instant.parse(["--config", str(config), "--query", "q", "--search_params", "{}"])
    assert flag is not None and read_search_settings(flag, flag).search_params == {}
    none = instant.parse([*BASE, "--model", DEMO_MODEL])
    assert none is not None and read_search_settings(none, none).search_params is None
    bad = instant.parse([*BASE, "--model", DEMO_MODEL, "--search_params", "ef=64"])
    assert bad is not None
    with pytest.raises(ConfigError, match=r"^--search_params 'ef=64' is not JSON"):
        read_search_settings(bad, bad)


def test_the_score_is_named_for_the_metric() -> None:
    assert [score_name(m) for m in ("COSINE", "ip", "L2", None)] == [
        "similarity",
        "similarity",
        "distance",
        "distance",
    ]
    shown = hits.readable(RESULT, "L2")
    assert shown["metric"] == "L2" and shown["hits"][0]["distance"] == 0.8123
    assert "similarity" not in shown["hits"][0]


def test_a_json_line_has_every_hits_metadata_and_its_rank() -> None:
    stream = io.StringIO()
    hits.write_hits([RESULT, RESULT], "COSINE", "auto", stream)  # not a terminal: JSON lines
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]["hits"][0]
    assert first == {
        "rank": 1,
        "similarity": 0.8123,
        "document_id": "errors.md",
        "chunk_index": 2,
        "id": "a1",
        "metadata": {"title": "Errors", "lang": "en"},
        "text": "Catch   an exception\nwith try.",
    }
    assert lines[0]["hits"][1]["rank"] == 2 and lines[0]["hits"][1]["metadata"] == {}


def test_the_table_fits_the_width_and_shows_title_or_metadata() -> None:
    shown = hits.readable(RESULT, "COSINE")
    text = hits.table(shown, width=60)
    lines = text.splitlines()
    assert lines[0] == "query: catch an exception"
    assert all(len(line) <= 60 for line in lines[3:]), text
    assert lines[3].split()[:4] == ["1", "0.8123", "errors.md…", "Errors"]  # cut to fit
    wide = hits.table(shown, width=100).splitlines()
    assert wide[3].split()[:4] == ["1", "0.8123", "errors.md#2", "Errors"]
    assert "Catch an exception with try." in wide[3]  # whitespace folded
    no_title = hits.readable(
        {"query": "q", "hits": [{"id": "z", "distance": 0.1, "fields": {"metadata": {"k": 1}}}]},
        "COSINE",
    )
    assert "k=1" in hits.table(no_title, width=100).splitlines()[3]
    assert hits.table(hits.readable({"query": "q", "hits": []}, "COSINE")).splitlines() == [
        "query: q",
        "  no hits",
    ]
