"""Sources from flags, paths from where they are written, outputs that never clobber.

The issue's new user, as a user runs the commands: a folder of Markdown notes
and a JSONL file whose text is in ``body``, ingested with flags only;
``--config`` given from another folder; a mistyped model folder; two runs in a
row. Each of those starts the real entry point in a process of its own (see
tests/test_cli.py, whose helpers these use), with the demo model from
``models/`` and a Milvus Lite store under tmp_path: about 20 s on two cores.
The rules themselves (which model values are paths, which folder a relative
path is relative to, what each source flag sets) are checked in this process
first, a few milliseconds each.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import ingest_settings, new_run_id, search_settings
from tests.test_cli import run_entry
from transforms import ConfigError, MilvusTarget, SourceFormat
from transforms.milvus.client import connect
from transforms.model_files import ModelLoadError, local_model_path, resolve_model_source

NOTES = {
    "alpha.md": "# Alpha\n\nHow do I catch an exception raised in a function?\n",
    "beta.md": "# Beta\n\nA loop over the items of a list, one item at a time.\n",
}
RECORDS = [
    {"title": "Imports", "body": "Import a module from a package, then use its functions."},
    {"title": "Defaults", "body": "Define a function whose arguments have default values."},
    {"title": "Files", "body": "Open a file, read its text and close it again."},
]
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def _report(done: subprocess.CompletedProcess[str]) -> dict:
    """The run's JSON report: the last line of stdout that is one."""
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def _rows(uri: pathlib.Path, collection: str) -> list[dict]:
    """Every row of a Lite collection: its document id and metadata."""
    target = MilvusTarget.lite(str(uri), collection)
    client = connect(target)
    try:
        client.load_collection(collection)
        return list(
            client.query(
                collection, filter="chunk_index >= 0", output_fields=["document_id", "metadata"]
            )
        )
    finally:
        client.close()


def _write_notes(folder: pathlib.Path) -> None:
    """notes/*.md and data.jsonl (title, body, no id) in ``folder``."""
    (folder / "notes").mkdir(parents=True)
    for name, text in NOTES.items():
        (folder / "notes" / name).write_text(text, encoding="utf-8")
    with open(folder / "data.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in RECORDS)


# The rules, in this process


def test_a_model_value_is_a_path_when_it_looks_like_one(tmp_path: pathlib.Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "here").mkdir()
    base = str(tmp_path)
    paths = {
        # Shaped like a Hugging Face id (name, owner/name), named nothing here: an id.
        "minishlab/potion-base-8M": None,
        "bert-base-uncased": None,
        "gs://bucket/models/potion": None,  # a URL, staged by resolve_model_source
        # An id's shape, but something by that name is here, or its owner is a folder.
        "here": tmp_path / "here",
        "models/potion-typo": tmp_path / "models" / "potion-typo",
        # Shapes no id has.
        "./potion": tmp_path / "potion",
        "../potion": tmp_path.parent / "potion",
        "/opt/models/potion": pathlib.Path("/opt/models/potion"),
        "file:///opt/models/potion": pathlib.Path("/opt/models/potion"),
        "~/models/potion": pathlib.Path.home() / "models" / "potion",
        "a/b/potion": tmp_path / "a" / "b" / "potion",
        "my models/potion": tmp_path / "my models" / "potion",
    }
    for source, path in paths.items():
        assert local_model_path(source, base) == (None if path is None else str(path)), source


def test_a_missing_model_folder_is_named_never_looked_up(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError) as raised:
        resolve_model_source(str(missing))
    assert str(raised.value) == f"no such model folder: {missing}"
    (tmp_path / "file").write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="is a file: give the folder"):
        resolve_model_source(str(tmp_path / "file"))


def _config(path: pathlib.Path, config: dict) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _settings(*flags: str):
    return ingest_settings(PipelineOptions(list(flags)))


def test_source_flags_win_over_the_config(tmp_path: pathlib.Path, demo_model: str) -> None:
    config = _config(
        tmp_path / "run.yaml",
        {
            "source": {
                "patterns": ["docs/*.jsonl"],
                "format": "jsonl",
                "id_field": "doc_id",
                "text_field": "text",
                "metadata_fields": ["url"],
            },
            "model": demo_model,
            "milvus": {"uri": "milvus.db", "collection": "notes"},
        },
    )
    plain = _settings("--config", str(config)).source
    assert (plain.format, plain.id_field, plain.text_field, plain.metadata_fields) == (
        SourceFormat.JSONL,
        "doc_id",
        "text",
        ("url",),
    )
    flagged = _settings(
        "--config",
        str(config),
        "--format=AUTO",
        "--text_field",
        "title, body",
        "--id_field",
        "",
        "--metadata_fields",
        "*",
    ).source
    assert (flagged.format, flagged.id_field, flagged.text_fields, flagged.metadata_fields) == (
        SourceFormat.AUTO,
        None,  # ids from places: path:line
        ("title", "body"),
        None,  # every field but the id and text ones
    )
    one = _settings("--config", str(config), "--text_field=body", "--metadata_fields=").source
    assert one.text_field == "body" and one.metadata_fields == ()
    with pytest.raises(ConfigError, match=r"^--text_field=' , ': name the field"):
        _settings("--config", str(config), "--text_field", " , ")


def test_config_paths_are_relative_to_its_folder_and_flags_to_the_current_one(
    tmp_path: pathlib.Path, demo_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "demo").symlink_to(demo_model)
    config = _config(
        project / "configs" / "run.yaml",
        {
            "source": {"patterns": ["../docs/*.md", "s3://bucket/corpus/*.jsonl"]},
            "model": "../models/demo",
            "milvus": {
                "uri": "../work/milvus.db",
                "collection": "notes",
                "token_file": "token.txt",
                "client_options": {"server_pem_path": "tls/server.pem", "secure": True},
            },
            "dead_letter_path": "../work/dead_letters",
            "search": {"output": "../work/search", "queries": ["a question"]},
        },
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = os.path.relpath(config, elsewhere)  # ../project/configs/run.yaml
    settings = _settings("--config", relative)
    assert settings.source.patterns == (
        str(project / "docs" / "*.md"),
        "s3://bucket/corpus/*.jsonl",
    )
    assert settings.model == str(project / "models" / "demo")
    assert settings.target.uri == str(project / "work" / "milvus.db")
    assert settings.target.token_file == str(project / "configs" / "token.txt")
    assert dict(settings.target.client_options) == {
        "server_pem_path": str(project / "configs" / "tls" / "server.pem"),
        "secure": True,
    }
    assert _RUN_ID.match(settings.run_id)
    assert settings.dead_letter_path == str(
        project / "work" / "dead_letters" / "notes" / settings.run_id / "dead_letters"
    )
    search = search_settings(PipelineOptions(["--config", relative]))
    assert search.output == str(project / "work" / "search" / "notes" / search.run_id / "results")
    # Flags: from the current folder.
    flagged = _settings(
        "--config",
        relative,
        "--input=in/*.md",
        "--milvus_uri=here.db",
        "--dead_letter_path=dl",
        "--milvus_token_file=t.txt",
    )
    assert flagged.source.patterns == (str(elsewhere / "in" / "*.md"),)
    assert flagged.target.uri == str(elsewhere / "here.db")
    assert flagged.target.token_file == str(elsewhere / "t.txt")
    assert flagged.dead_letter_path.startswith(str(elsewhere / "dl" / "notes") + os.sep)
    # A config reached through a link: ".." as written, beside the link, as a shell's cd.
    (tmp_path / "sandbox").mkdir()
    for name in ("configs", "models"):
        (tmp_path / "sandbox" / name).symlink_to(project / name)
    linked = _settings("--config", str(tmp_path / "sandbox" / "configs" / "run.yaml"))
    assert linked.target.uri == str(tmp_path / "sandbox" / "work" / "milvus.db")


def test_a_configs_model_id_stays_an_id_wherever_the_command_runs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "minishlab").mkdir()  # here, minishlab/... would be a path
    monkeypatch.chdir(tmp_path)
    config = _config(
        tmp_path / "configs" / "run.yaml",
        {
            "source": {"patterns": ["../docs"]},
            "model": "minishlab/potion-base-8M",  # no minishlab/ beside the config
            "milvus": {"uri": "milvus.db", "collection": "notes"},
        },
    )
    assert _settings("--config", str(config)).model == "minishlab/potion-base-8M"
    folder = tmp_path / "minishlab" / "potion-base-8M"
    with pytest.raises(ModelLoadError, match=f"^{re.escape(f'no such model folder: {folder}')}$"):
        _settings("--config", str(config), "--model", "minishlab/potion-base-8M")


def test_run_ids_sort_by_start_time_and_never_repeat() -> None:
    ids = [new_run_id() for _ in range(50)]
    assert all(_RUN_ID.match(run_id) for run_id in ids)
    assert len(set(ids)) == len(ids)


# The commands, as a user runs them


def test_a_folder_of_markdown_and_a_jsonl_ingest_with_flags_only(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    _write_notes(tmp_path)
    done = run_entry(
        "pipelines.ingest",
        [
            "--input",
            "notes/*.md,data.jsonl",
            "--text_field",
            "body",
            "--metadata_fields",
            "title",
            "--model",
            demo_model,
            "--milvus_uri",
            "notes.db",
            "--collection",
            "notes",
        ],
        tmp_path,
    )
    report = _report(done)
    assert report["documents_read"] == len(NOTES) + len(RECORDS)
    assert report["dead_lettered"] == 0 and report["written"] == report["chunks"] > 0
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr
    rows = _rows(tmp_path / "notes.db", "notes")
    assert len(rows) == report["written"] == report["rows_after"]
    data = str(tmp_path / "data.jsonl")
    metadata = {row["document_id"]: row["metadata"] for row in rows}
    # JSONL records without an id field: path:line, and the title as metadata.
    for line, record in enumerate(RECORDS, start=1):
        assert metadata[f"{data}:{line}"] == {"title": record["title"]}
    # A Markdown file is one document, whatever --text_field says: its path is its id.
    for name in NOTES:
        path = str(tmp_path / "notes" / name)
        assert metadata[path] == {"path": path}
    assert report["dead_letter_path"].startswith(str(tmp_path / "work" / "dead_letters" / "notes"))


def test_format_id_and_several_text_fields_from_flags_only(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    """A JSONL export named ``.txt`` (read as one text file unless ``--format jsonl``), ids in
    ``key`` and the text in ``title`` and ``body``: each record one document, its id the key,
    its text both fields, the rest of its fields its metadata (``--metadata_fields '*'``)."""
    records = [{"key": f"k{i}", "lang": "en", **record} for i, record in enumerate(RECORDS)]
    with open(tmp_path / "export.txt", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    done = run_entry(
        "pipelines.ingest",
        ["--input", "export.txt", "--format", "jsonl", "--id_field", "key",
         "--text_field", "title,body", "--metadata_fields", "*", "--model", demo_model,
         "--milvus_uri", "export.db", "--collection", "export"],
        tmp_path,
    )  # fmt: skip
    report = _report(done)
    assert report["documents_read"] == len(records) and report["dead_lettered"] == 0
    client = connect(MilvusTarget.lite(str(tmp_path / "export.db"), "export"))
    try:
        client.load_collection("export")
        rows = client.query(
            "export", filter="chunk_index >= 0", output_fields=["document_id", "text", "metadata"]
        )
    finally:
        client.close()
    by_id = {row["document_id"]: row for row in rows}
    assert sorted(by_id) == ["k0", "k1", "k2"] and len(rows) == 3
    for record in records:
        row = by_id[record["key"]]
        assert record["title"] in row["text"] and record["body"] in row["text"]
        assert row["metadata"] == {"lang": "en"}


def test_a_config_works_from_any_folder(tmp_path: pathlib.Path, demo_model: str) -> None:
    project = tmp_path / "project"
    _write_notes(project)
    (project / "models").mkdir()
    (project / "models" / "demo").symlink_to(demo_model)
    _config(
        project / "configs" / "run.yaml",
        {
            "pipeline": {"runner": "FnApiRunner"},
            "source": {"patterns": ["../notes"], "text_field": "body"},
            "model": "../models/demo",
            "milvus": {"uri": "../notes.db", "collection": "notes"},
            "dead_letter_path": "../work/dead_letters",
            "search": {"output": "../work/search", "top_k": 1},
        },
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = os.path.join("..", "project", "configs", "run.yaml")
    report = _report(run_entry("pipelines.ingest", ["--config", config], elsewhere))
    assert report["documents_read"] == len(NOTES) and report["dead_lettered"] == 0
    assert report["uri"] == str(project / "notes.db")
    (letters,) = (project / "work" / "dead_letters" / "notes").glob("*/dead_letters-*.jsonl")
    assert letters.parent.name == report["run_id"]
    found = run_entry(
        "milvus-search", ["--config", config, "--query", "catch an exception"], elsewhere
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout.splitlines()[-1])["hits"]
    assert hits[0]["document_id"] == str(project / "notes" / "alpha.md")
    assert not (project / "work" / "search").exists()  # an instant search writes no file
    # A named runner searches on Beam, which writes its results under the config's search.output.
    found = run_entry(
        "milvus-search",
        ["--config", config, "--query", "catch an exception", "--runner", "FnApiRunner"],
        elsewhere,
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout.splitlines()[-1])["hits"]
    assert hits[0]["document_id"] == str(project / "notes" / "alpha.md")
    (results,) = (project / "work" / "search" / "notes").glob("*/results-*.jsonl")
    assert _RUN_ID.match(results.parent.name)
    assert list(elsewhere.iterdir()) == []  # nothing written where the commands ran


@pytest.mark.parametrize(
    "entry, model_flag, model_in_config, missing",
    [
        ("pipelines.ingest", "./no_such_model", None, "no_such_model"),
        ("pipelines.ingest", "models/minilm-typo", None, "models/minilm-typo"),
        ("pipelines.ingest", None, "../models/minilm-typo", "models/minilm-typo"),
        ("milvus-search", "models/minilm-typo", None, "models/minilm-typo"),
    ],
    ids=["ingest-dot-slash", "ingest-owner-is-a-folder", "config", "search"],
)
def test_a_missing_model_folder_is_one_line_and_never_a_download(
    entry: str,
    model_flag: str | None,
    model_in_config: str | None,
    missing: str,
    tmp_path: pathlib.Path,
) -> None:
    _write_notes(tmp_path)
    (tmp_path / "models").mkdir()  # a typo in a folder that exists
    config: dict = {
        "source": {"patterns": ["../notes/*.md"]},
        "milvus": {"uri": "../milvus.db", "collection": "notes"},
        "search": {"queries": ["a question"]},
    }
    if model_in_config:
        config["model"] = model_in_config
    path = _config(tmp_path / "configs" / "run.yaml", config)
    flags = ["--model", model_flag] if model_flag else []
    done = run_entry(entry, ["--config", str(path), *flags], tmp_path)
    assert done.returncode == 1, done.stderr
    assert _one_line(done) == f"error: no such model folder: {tmp_path / missing}"
    assert "Traceback" not in done.stderr and "internet" not in done.stderr
    assert not (tmp_path / "milvus.db").exists() and done.stdout == ""


def test_two_runs_keep_both_runs_dead_letters(tmp_path: pathlib.Path, demo_model: str) -> None:
    _write_notes(tmp_path)
    with open(tmp_path / "data.jsonl", "a", encoding="utf-8") as f:
        f.write('{"title": "No body"}\n')
    args = [
        "--input=data.jsonl",
        "--text_field=body",
        f"--model={demo_model}",
        "--milvus_uri=notes.db",
        "--collection=notes",
    ]
    reports = [_report(run_entry("pipelines.ingest", args, tmp_path)) for _ in range(2)]
    assert [r["dead_lettered"] for r in reports] == [1, 1]
    assert reports[0]["run_id"] != reports[1]["run_id"]
    folder = tmp_path / "work" / "dead_letters" / "notes"
    assert sorted(p.name for p in folder.iterdir()) == sorted(r["run_id"] for r in reports)
    for report in reports:
        assert report["dead_letter_path"] == str(folder / report["run_id"] / "dead_letters")
        (written,) = pathlib.Path(report["dead_letter_path"]).parent.glob("dead_letters-*.jsonl")
        (letter,) = [json.loads(line) for line in written.read_text().splitlines()]
        assert letter["source"] == f"{tmp_path / 'data.jsonl'}:{len(RECORDS) + 1}"
        assert "text field 'body' is missing" in letter["reason"]
