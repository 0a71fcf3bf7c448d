"""The documentation's commands, run: README.md and docs/*.md cannot go stale.

Use it to keep every command a reader may copy working; docs/testing.md states
the convention for writers. In the Markdown source, a fenced block whose info
string is

* ``sh runnable`` (optionally ``exit=N``) is run with ``bash -euo pipefail``
  and must end with status 0 (or N); ``python runnable`` is run with the
  virtual environment's Python;
* ``sh ci`` holds commands CI runs (``make demo``, ``make test``,
  ``make lint``): each must be invoked by ``.ci/run``, and none runs here;
* ``text output``, as the next fenced block after a ``runnable`` or ``ci``
  block, is what that block prints: each of its lines must match a line of
  the output (stdout and stderr together), in order, where ``…`` stands for
  any text; a line that is only ``…`` marks skipped lines;
* anything else (``sh``, ``yaml``, ``console``, …) is illustrative and not run.

GitHub renders the first word of the info string as the language and
ignores the rest, so the tags cost the reader nothing.

The runnable blocks of one file run in order (a search may follow an
ingestion), in a scratch copy of the repository root: every top-level entry
is a symbolic link to the real one, except ``work/``, which starts empty.
The commands write to ``work/`` as a user's would, and neither a developer's
own ``work/`` nor a concurrent ``make demo`` sees them. The virtual
environment's ``bin/`` comes first on ``PATH``, as after ``source
.venv/bin/activate``, and ``HF_HUB_OFFLINE=1`` keeps a command from reaching
the Hugging Face hub (every documented run uses the demo model in
``models/``).

The demo's sample output in README.md is checked against a real demo run:
``make demo`` is a ``ci`` block, so the test runs the command ``make -n demo``
shows (without the install step, which must not touch a shared virtual
environment) once, and checks the README's sample lines against it, the
answers included. That costs one demo run, 10-15 s here (``make demo``
took 24 s, its install step included); checking only that the answer
lines appear somewhere would cost the same run and prove less, and CI's own
``make demo`` prints to a log that no test reads. The other runnable blocks
use tiny inputs (the Markdown files of docs/), ``--help`` and ``make -n``:
with the demo, the whole module takes 85-95 s on two cores.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
CI_SCRIPT = REPO / ".ci" / "run"
README_MAX_BYTES = 12_000
TIMEOUT_S = 300.0

# The command each `make` target with a documented sample output runs (checked
# against `make -n`), so that the test can run it without the install step.
CI_COMMANDS = {"make demo": "python -m pipelines.demo --config configs/local.yaml"}

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,})(?P<info>[^`]*)$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_ELLIPSIS = "…"


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a Markdown page."""

    page: pathlib.Path
    line: int  # of the opening fence, from 1
    info: tuple[str, ...]
    text: str
    output: Block | None = None

    @property
    def kind(self) -> str:
        """``runnable``, ``ci``, ``output`` or ``illustrative``."""
        tags = set(self.info[1:])
        for kind in ("runnable", "ci", "output"):
            if kind in tags:
                return kind
        return "illustrative"

    @property
    def language(self) -> str:
        return self.info[0] if self.info else ""

    @property
    def expected_exit(self) -> int:
        for word in self.info[1:]:
            if word.startswith("exit="):
                return int(word.removeprefix("exit="))
        return 0

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def fenced_blocks(page: pathlib.Path) -> list[Block]:
    """Every fenced block of a page, each command block with its output block."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and not lines[i].strip().strip("`")
        ):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.relative_to(REPO)}:{start + 1}: unclosed code block")
        i += 1
        block = Block(page, start + 1, tuple(opening["info"].split()), "\n".join(body) + "\n")
        if block.kind == "output" and blocks and blocks[-1].kind in ("runnable", "ci"):
            blocks[-1] = dataclasses.replace(blocks[-1], output=block)
        blocks.append(block)
    return blocks


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page)]


def _attached_outputs() -> set[tuple[pathlib.Path, int]]:
    return {(b.output.page, b.output.line) for b in all_blocks() if b.output is not None}


RUNNABLE = [b for b in all_blocks() if b.kind == "runnable"]
CI_BLOCKS = [b for b in all_blocks() if b.kind == "ci"]


def missing_output(expected: str, actual: str) -> str | None:
    """The first expected line that no later line of ``actual`` matches, or None.

    An expected line matches an output line that contains its parts, split at
    ``…``, in order; expected lines match output lines in order. An output line
    that ends with a backslash goes on in the next (as ``make -n`` shows long
    commands).
    """
    remaining = iter(re.sub(r"[ \t]*\\\n\s*", " ", actual).splitlines())
    for line in expected.splitlines():
        parts = [p.strip() for p in line.split(_ELLIPSIS)]
        if not any(parts):
            continue
        pattern = re.compile(".*?".join(re.escape(p) for p in parts if p))
        if not any(pattern.search(candidate) for candidate in remaining):
            return line.strip()
    return None


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(pathlib.Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(pathlib.Path(sys.executable).parent.parent)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def make_sandbox(folder: pathlib.Path) -> pathlib.Path:
    """A scratch repository root: links to every top-level entry, a fresh work/."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in REPO.iterdir():
        if entry.name not in ("work", ".git"):
            (folder / entry.name).symlink_to(entry)
    (folder / "work").mkdir()
    return folder


def run_in(sandbox: pathlib.Path, command: list[str], stdin: str | None = None) -> tuple[int, str]:
    """Runs a command in the sandbox; returns its status and its output (both streams)."""
    try:
        done = subprocess.run(
            command,
            cwd=sandbox,
            env=_environment(),
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{command} did not end within {TIMEOUT_S:.0f} s") from e
    return done.returncode, done.stdout


def check_output(block: Block, status: int, output: str) -> None:
    tail = "\n".join(output.splitlines()[-40:])
    assert status == block.expected_exit, (
        f"{block.where}: exit status {status}, expected {block.expected_exit}:\n"
        f"{block.text}\n--- output (last lines) ---\n{tail}"
    )
    if block.output is not None:
        missing = missing_output(block.output.text, output)
        assert missing is None, (
            f"{block.where}: the output has no line matching {missing!r} "
            f"(the sample at {block.output.where}):\n--- output (last lines) ---\n{tail}"
        )


class _Sandboxes(dict[pathlib.Path, pathlib.Path]):
    """One scratch repository root per page, made on first use."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self._factory = factory

    def __missing__(self, page: pathlib.Path) -> pathlib.Path:
        self[page] = make_sandbox(self._factory.mktemp(page.stem) / "repo")
        return self[page]


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> _Sandboxes:
    return _Sandboxes(tmp_path_factory)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_a_runnable_block_runs_and_prints_its_sample(block: Block, sandboxes: _Sandboxes) -> None:
    if block.language == "python":
        command = [sys.executable, "-"]
        stdin: str | None = block.text
    else:
        assert block.language in ("sh", "bash"), f"{block.where}: cannot run {block.language!r}"
        command, stdin = ["bash", "-euo", "pipefail", "-c", block.text], None
    status, output = run_in(sandboxes[block.page], command, stdin)
    check_output(block, status, output)


def _commands(block: Block) -> list[str]:
    """The commands of a shell block, without comments."""
    found = []
    for line in block.text.splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            found.append(command)
    return found


@pytest.mark.parametrize("block", CI_BLOCKS, ids=[b.where for b in CI_BLOCKS])
def test_a_ci_block_is_what_ci_runs(block: Block) -> None:
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    for command in _commands(block):
        words = shlex.split(command)
        assert words[0] == "make" and len(words) > 1, (
            f"{block.where}: {command!r}: a ci block holds only make targets CI runs"
        )
        target = f"make {words[1]}"
        assert any(line == target or line.startswith(target + " ") for line in ci_lines), (
            f"{block.where}: {command!r} is marked as run by CI, but .ci/run never runs "
            f"{target!r}; run it there, or tag the block runnable"
        )
        if block.output is not None:
            assert command in CI_COMMANDS, (
                f"{block.where}: {command!r} has a sample output; add the command it runs "
                "to CI_COMMANDS so that the sample is checked"
            )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """What ``make demo`` prints, from the command it runs, once."""
    sandbox = make_sandbox(tmp_path_factory.mktemp("demo") / "repo")
    status, shown = run_in(sandbox, ["make", "-n", "demo"])
    assert status == 0, shown
    recipe = [line.split() for line in shown.splitlines()]
    expected = CI_COMMANDS["make demo"].split()
    assert any(words[1:] == expected[1:] and words[0].endswith("python") for words in recipe), (
        f"make demo no longer runs {CI_COMMANDS['make demo']!r}; make -n demo shows:\n{shown}"
    )
    return run_in(sandbox, expected)


def test_the_readme_sample_is_what_make_demo_prints(demo_run: tuple[int, str]) -> None:
    (block,) = [b for b in CI_BLOCKS if b.output is not None and "make demo" in _commands(b)]
    status, output = demo_run
    check_output(block, status, output)


def test_every_output_block_follows_a_command() -> None:
    attached = _attached_outputs()
    for block in all_blocks():
        if block.kind == "output":
            assert (block.page, block.line) in attached, (
                f"{block.where}: an output block must be the next code block after a "
                "runnable or ci block"
            )


def test_the_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes, over {README_MAX_BYTES:,}: move reference to docs/"
    )


def _without_fences(text: str) -> str:
    """The text without its fenced blocks."""
    return re.sub(r"^ {0,3}(`{3,})[^\n]*\n.*?^ {0,3}\1[ \t]*$", "", text, flags=re.M | re.S)


def _anchors(page: pathlib.Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    anchors = set()
    for line in _without_fences(page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            title = heading[1].replace("`", "").lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_names_an_existing_file(page: pathlib.Path) -> None:
    text = _without_fences(page.read_text(encoding="utf-8"))
    for match in _LINK.finditer(re.sub(r"`[^`\n]*`", "", text)):  # not links in code
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.relative_to(REPO)}: {target!r} names no file"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), (
                f"{page.relative_to(REPO)}: {target!r}: {resolved.name} has no heading #{anchor}"
            )
