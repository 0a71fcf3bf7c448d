"""The command lines, run as a user runs them: help, strict flags, logging, exit codes.

Every test starts a real entry point in a process of its own (``python -m
pipelines.ingest``, the console scripts) and reads its exit status and its
stderr lines, since what is checked here (argparse exiting, the process's
logging set-up, what reaches stderr) only exists in a fresh process. Each
start costs about 2 s (Beam's import); the runs ingest three small Markdown
files with the demo model into a Lite store under tmp_path: about a minute
for the module on two cores.

The flag table of docs/configuration.md is checked against ``--help`` here,
and the README's flag table against the flags that exist.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Sequence

import pytest
import yaml

from tests.test_docs import README, REPO

CONFIGURATION = REPO / "docs" / "configuration.md"
TIMEOUT_S = 300.0
BIN = pathlib.Path(sys.executable).parent

COMMON_FLAGS = ["--config", "--milvus_uri", "--collection", "--model", "--milvus_token_file"]
INGEST_FLAGS = [
    "--input",
    "--format",
    "--text_field",
    "--id_field",
    "--metadata_fields",
    "--dead_letter_path",
    "--report_path",
    "--progress_interval_s",
    "--progress_host",
    "--max_dead_letters",
    "--write_mode",
    "--scope",
    "--allow_empty_scope",
    "--dry_run",
]
SEARCH_FLAGS = [
    "--query",
    "--queries_file",
    "--top_k",
    "--filter",
    "--search_params",
    "--output_format",
    "--output",
]
LAST_FLAGS = ["--log_level"]
FLAGS = {
    "pipelines.ingest": COMMON_FLAGS + INGEST_FLAGS + LAST_FLAGS,
    "pipelines.search": COMMON_FLAGS + SEARCH_FLAGS + LAST_FLAGS,
    "pipelines.demo": COMMON_FLAGS + INGEST_FLAGS + SEARCH_FLAGS + LAST_FLAGS,
}
SCRIPTS = {
    "milvus-ingest": "pipelines.ingest",
    "milvus-search": "pipelines.search",
    "milvus-ingest-demo": "pipelines.demo",
}
ENTRY_POINTS = [*FLAGS, *SCRIPTS]
UNKNOWN_FLAG_HINT = "(--help lists this command's flags, --help_beam Beam's)"

_HELP_ENTRY = re.compile(r"^  (?:-\w, )?(?P<flag>--\w+)(?: [A-Z_]+)?(?:\s{2,}(?P<help>\S.*))?$")
_DEFAULT = re.compile(r"\(default: (?P<default>.*)\)$")


def _environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "1000"  # one line per flag: argparse wraps at hyphens
    env.update(extra)
    return env


def run_entry(
    entry: str, args: Sequence[str], cwd: pathlib.Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs an entry point (a module or a console script) as a user would."""
    if entry in SCRIPTS:
        script = BIN / entry
        assert script.exists(), f"{script} is missing: pip install -e . installs it"
        command = [str(script), *args]
    else:
        command = [sys.executable, "-m", entry, *args]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=_environment(**env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{command} did not end within {TIMEOUT_S:.0f} s") from e


@functools.cache
def help_text(entry: str) -> str:
    """What ``ENTRY --help`` prints, once per test session."""
    done = run_entry(entry, ["--help"], REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


def help_entries(text: str) -> dict[str, str]:
    """Each flag of an argparse help text, and its help (wrapped lines joined)."""
    entries: dict[str, str] = {}
    flag = None
    for line in text.splitlines():
        match = _HELP_ENTRY.match(line)
        if match:
            flag = match["flag"]
            entries[flag] = match["help"] or ""
        elif flag and line.startswith(" " * 4) and line.strip():
            entries[flag] = f"{entries[flag]} {line.strip()}".strip()
        else:
            flag = None
    return entries


def help_default(help_line: str) -> str | None:
    match = _DEFAULT.search(help_line)
    return match["default"] if match else None


def _stderr_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


# --help


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_lists_the_commands_flags_with_their_defaults(entry: str) -> None:
    text = help_text(entry)
    module = SCRIPTS.get(entry, entry)
    prog = entry if entry in SCRIPTS else f"python -m {entry}"
    assert text.startswith(f"usage: {prog} "), text
    entries = help_entries(text)
    assert list(entries) == ["--help", "--help_beam", *FLAGS[module]], text
    for flag in FLAGS[module]:
        assert help_default(entries[flag]), f"{entry} --help: {flag} states no default"
    assert help_default(entries["--log_level"]) == "INFO"
    assert help_default(entries["--config"]) == (
        "configs/local.yaml" if module == "pipelines.demo" else "none"
    )
    # Beam's flags: said to pass through, and how to list them.
    assert "pass through to Beam" in text and "--help_beam lists them" in text, text


def test_every_console_script_of_the_pipelines_is_checked() -> None:
    scripts = {
        ep.name: ep.value.split(":")[0]
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.value.split(":")[0] in FLAGS
    }
    assert scripts == SCRIPTS


def test_help_beam_lists_beams_flags_and_those_of_the_runner_named() -> None:
    plain = run_entry("pipelines.ingest", ["--help_beam"], REPO)
    assert plain.returncode == 0, plain.stderr
    flags = help_entries(plain.stdout)
    for flag in ("--runner", "--direct_num_workers", "--environment_type", "--prism_location"):
        assert flag in flags, plain.stdout
    assert "--dask_client_address" not in flags
    assert "--collection" not in flags  # the command's own are in --help
    dask = run_entry(
        "pipelines.ingest", ["--help_beam", "--runner=pipelines.runners.dask.DaskRunner"], REPO
    )
    assert dask.returncode == 0, dask.stderr
    assert "--dask_client_address" in help_entries(dask.stdout)
    assert "DaskOptions (apache_beam.runners.dask.dask_runner):" in dask.stdout


# Strict flags


def _config(folder: pathlib.Path, model: str, **pipeline: object) -> pathlib.Path:
    """A run's config: Markdown files in folder/docs, a Lite store folder/milvus.db."""
    config = {
        "pipeline": {"runner": "DirectRunner", "direct_num_workers": 1, **pipeline},
        "source": {"patterns": [str(folder / "docs" / "*.md")]},
        "model": model,
        "milvus": {"uri": str(folder / "milvus.db"), "collection": "notes"},
        "dead_letter_path": str(folder / "dead_letters" / "dl"),
        "search": {"output": str(folder / "search" / "results"), "top_k": 2},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "entry, args, status, message",
    [
        (
            "pipelines.ingest",
            ["--colection", "x"],
            2,
            f"error: unknown flag --colection; did you mean --collection? {UNKNOWN_FLAG_HINT}",
        ),
        (
            "pipelines.ingest",
            ["--direct_num_workrs=2"],
            2,
            "error: unknown flag --direct_num_workrs; did you mean --direct_num_workers? "
            + UNKNOWN_FLAG_HINT,
        ),
        (
            "pipelines.ingest",  # a flag of the search, not of the ingestion
            ["--top_k", "3"],
            2,
            "error: unknown flag --top_k: a flag of pipelines.search, not of this command "
            + UNKNOWN_FLAG_HINT,
        ),
        ("pipelines.ingest", ["--progress_interval_s", "soon"], 2, "error: argument --progress"),
        ("pipelines.ingest", ["notes/"], 2, "error: unexpected argument 'notes/'"),
        (
            "pipelines.search",
            ["--qurey", "x"],
            2,
            "error: unknown flag --qurey; did you mean --query?",
        ),
        ("milvus-ingest-demo", ["--log_level", "loud"], 2, "error: argument --log_level: invalid"),
        (
            "pipelines.ingest",
            ["--runner", "Flnk"],
            1,
            "error: --runner=Flnk is not a runner Beam knows (did you mean FlinkRunner?)",
        ),
    ],
)
def test_an_unknown_flag_stops_the_command_before_anything_runs(
    entry: str,
    args: list[str],
    status: int,
    message: str,
    tmp_path: pathlib.Path,
    demo_model: str,
) -> None:
    config = _config(tmp_path, demo_model)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text.\n", encoding="utf-8")
    done = run_entry(entry, ["--config", str(config), *args], tmp_path)
    assert done.returncode == status, done.stderr
    lines = _stderr_lines(done)
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert not (tmp_path / "milvus.db").exists()  # no store opened, no collection made
    assert done.stdout == ""


def test_a_config_key_that_is_no_beam_flag_stops_the_command(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    config = _config(tmp_path, demo_model, direct_num_workrs=2)
    done = run_entry("pipelines.ingest", ["--config", str(config)], tmp_path)
    assert done.returncode == 1, done.stderr
    assert _stderr_lines(done) == [
        f"error: --config {str(config)!r}: pipeline: 'direct_num_workrs' is no Beam flag; did "
        "you mean direct_num_workers? (--help_beam lists them)"
    ]
    assert not (tmp_path / "milvus.db").exists()


@pytest.mark.parametrize(
    "flags",
    [
        [
            "--runner=DirectRunner",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
            "--environment_type=LOOPBACK",
            "--prism_location=/nowhere/prism",
            "--flink_master=[local]",
            "--project=a-project",
            "--experiments=a",
            "--experiments=b",
            "--no_pipeline_type_check",
        ],
        ["--runner=pipelines.runners.dask.DaskRunner", "--dask_client_address=tcp://127.0.0.1:9"],
        ["--", "--an_option_only_a_job_server_knows=1"],
    ],
    ids=["beam", "the-runners-own", "after-a-lone-double-dash"],
)
def test_beams_flags_pass_the_check(flags: list[str], tmp_path: pathlib.Path) -> None:
    # No input: the run itself stops at once, on the settings, after the check.
    done = run_entry("pipelines.ingest", ["--collection", "notes", *flags], tmp_path)
    assert done.returncode == 1, done.stderr
    assert _stderr_lines(done) == [
        "error: no input: pass --input PATH_OR_GLOB or set source.patterns in the config."
    ]


# Runs: logging, and no error on success


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory, demo_model: str) -> pathlib.Path:
    """A folder with three Markdown notes and a config that ingests them."""
    folder = tmp_path_factory.mktemp("notes")
    (folder / "docs").mkdir()
    for name, text in {
        "runners.md": "# Runners\n\nHow do I run on Dask? Pass the runner and the scheduler.\n",
        "models.md": "# Models\n\nA static model turns words into vectors, offline.\n",
        "errors.md": "# Errors\n\nA wrong flag stops the command with the closest known one.\n",
    }.items():
        (folder / "docs" / name).write_text(text, encoding="utf-8")
    _config(folder, demo_model)
    return folder


@pytest.fixture(scope="module")
def ingested(notes: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """A successful ingestion with Beam's flags and the default log level."""
    return run_entry(
        "pipelines.ingest",
        [
            "--config",
            str(notes / "run.yaml"),
            "--runner=DirectRunner",
            "--direct_num_workers=1",
            "--direct_running_mode=in_memory",
        ],
        notes,
    )


def test_a_successful_run_logs_this_projects_info_lines_and_no_error(
    ingested: subprocess.CompletedProcess[str],
) -> None:
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout.splitlines()[-1])
    assert report["documents_read"] == 3 and report["dead_lettered"] == 0
    assert report["written"] == report["chunks"] > 0 and report["created"] is True
    lines = _stderr_lines(ingested)
    assert "INFO transforms.milvus.collection: Created collection 'notes' at " in ingested.stderr
    assert any(line.startswith("INFO transforms.embedding.model: Loaded") for line in lines)
    assert "ERROR" not in ingested.stderr and "Traceback" not in ingested.stderr
    # Other libraries' INFO lines (Beam's type hints, Milvus Lite's server) are not shown.
    assert not [line for line in lines if re.match(r"INFO (apache_beam|milvus_lite|faiss)", line)]
    assert not [line for line in lines if line.startswith("DEBUG ")]


def test_a_run_with_worker_processes_shows_none_of_beams_worker_noise(
    tmp_path: pathlib.Path, demo_model: str
) -> None:
    """Each worker process of a multi-process run logged two long WARNING lines through
    Beam's job service (our flags "discarded", a missing directory): none is shown now."""
    (tmp_path / "d.jsonl").write_text(
        '{"id": "a", "text": "one short text"}\n{"id": "b", "text": "another"}\n'
    )
    done = run_entry(
        "pipelines.ingest",
        ["--input", "d.jsonl", "--model", demo_model, "--milvus_uri", "x.db",
         "--collection", "c", "--direct_num_workers", "2",
         "--direct_running_mode", "multi_processing"],
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["model_loads"] == 2
    for noise in ("Discarding unparseable args", "semi_persistent_directory"):
        assert noise not in done.stderr, done.stderr
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr


def test_log_level_warning_shows_no_info_line(
    ingested: subprocess.CompletedProcess[str], notes: pathlib.Path
) -> None:
    assert ingested.returncode == 0, ingested.stderr
    done = run_entry(
        "milvus-search",
        [
            "--config",
            str(notes / "run.yaml"),
            "--query",
            "how do I run on Dask",
            "--log_level",
            "warning",
        ],
        notes,
    )
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout.splitlines()[-1])
    assert hits["query"] == "how do I run on Dask" and hits["hits"][0]["document_id"]
    assert not [line for line in _stderr_lines(done) if line.startswith("INFO ")], done.stderr
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr


def test_log_level_debug_adds_the_traceback_of_a_users_error(notes: pathlib.Path) -> None:
    args = ["--config", str(notes / "run.yaml"), "--input", str(notes / "nothing" / "*.md")]
    plain = run_entry("pipelines.ingest", args, notes)
    debug = run_entry("pipelines.ingest", [*args, "--log_level=DEBUG"], notes)
    message = f"error: input {str(notes / 'nothing' / '*.md')!r} matches no file"
    for done in (plain, debug):
        assert done.returncode == 1, done.stderr
        assert _stderr_lines(done)[-1].startswith(message), done.stderr
    assert len(_stderr_lines(plain)) == 1, plain.stderr
    assert "Traceback" in debug.stderr and "DEBUG pipelines.cli: The run stopped" in debug.stderr


def test_logging_does_not_depend_on_what_configured_it_first(
    notes: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A package that configures logging when the interpreter starts, before
    # any of ours is imported (as Beam does when options are first made).
    (tmp_path / "sitecustomize.py").write_text(
        "import logging\n"
        "logging.basicConfig(level=logging.ERROR, format='EARLY %(levelname)s %(message)s')\n",
        encoding="utf-8",
    )
    done = run_entry(
        "pipelines.ingest",
        ["--config", str(notes / "run.yaml"), "--collection", "notes_again"],
        notes,
        PYTHONPATH=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    created = [line for line in _stderr_lines(done) if "Created collection 'notes_again'" in line]
    assert created == [
        f"INFO transforms.milvus.collection: Created collection 'notes_again' at "
        f"{notes / 'milvus.db'} (dim 256, COSINE)"
    ], done.stderr
    assert not [line for line in _stderr_lines(done) if line.startswith("EARLY")], done.stderr


# The documentation's flag tables


def _table_rows(page: pathlib.Path, heading: str) -> list[list[str]]:
    """The cells of the first table under a heading, without backticks."""
    text = page.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip().replace("`", "") for cell in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header row


def _all_help_flags() -> dict[str, set[str]]:
    """Every flag of the three commands' --help, with the defaults it shows."""
    found: dict[str, set[str]] = {}
    for module in FLAGS:
        for flag, line in help_entries(help_text(module)).items():
            default = help_default(line)
            found.setdefault(flag, set()).update([default] if default else [])
    found.pop("--help")
    return found


def test_the_configuration_flag_table_is_what_help_says() -> None:
    flags = _all_help_flags()
    rows = {row[0]: row[1] for row in _table_rows(CONFIGURATION, "## Flags\n")}
    assert set(rows) == set(flags), (
        f"docs/configuration.md's flag table has {sorted(set(rows) - set(flags))} that --help "
        f"does not list, and lacks {sorted(set(flags) - set(rows))}"
    )
    for flag, defaults in flags.items():
        for default in defaults:
            assert default in rows[flag], (
                f"docs/configuration.md: {flag}'s default is {default!r} in --help, "
                f"the table says {rows[flag]!r}"
            )


def test_the_readme_flag_table_names_only_flags_that_exist() -> None:
    flags = _all_help_flags()
    rows = _table_rows(README, "## The pipelines\n")
    named = {flag for row in rows for flag in re.findall(r"--\w+", row[0])}
    assert named and named <= set(flags), sorted(named - set(flags))
