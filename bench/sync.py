"""The sync rows of the benchmark: a daily re-sync against the first ingest.

Run it with ``python -m bench.sync`` (``make bench`` runs it after
:mod:`bench.run`). For each size (``--sizes``, default 100,000 and 20,000
documents) it writes the benchmark corpus (:mod:`bench.corpus`: mixed short
and long documents) as one JSONL export with an ``id`` field, the form a
help-center or wiki dump takes, at a path that stays the same from day to day
(the sync's scope is named after its inputs). Then, each run a separate
``python -m pipelines.ingest --write_mode sync`` process timed from outside,
start to exit, into a Milvus 2.3.5 server it starts (unless ``--milvus_uri``
names one):

(a) ``first``: the first sync, into an empty collection: every document added;
(b) ``unchanged``: the same export again: every document unchanged;
(c) ``edited``: the export with 1 % of the documents edited (half grown by a
    paragraph, half cut to a third, so that some chunks go) and 1 % removed;
(d) ``full``: what a refresh cost without sync: ``--write_mode overwrite`` of
    (c)'s export into another collection, whose row count (c) must equal.

A ``floor`` of ``--floor_docs`` documents (a first sync, then an unchanged
one) gives the fixed cost of any sync run: interpreter, model, runner, the
manifest's count, the flush and the final row count.

Every run is checked against what it must have done (documents added, updated,
unchanged and deleted, manifest entries read, rows after) and the benchmark
fails if one is not. It reports whole-process wall and CPU seconds, the
report's own ``seconds`` and counts, and the peak memory (``VmHWM``) of the
launcher and of the largest worker process, medians over ``--repeat``
cycles, as a Markdown table (printed, and ``--markdown``) and JSON
(``--json``), with date, commit and machine. The targets: (b) at least 5x,
(c) at least 4x faster than (a) at 100,000 documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench.corpus import read_corpus, write_corpus, write_ingest_config
from bench.measure import (
    REPO,
    Measurement,
    add_run_arguments,
    code_commit,
    measure,
    write_report,
)

__all__ = ["RUNS", "TARGETS", "edit_corpus", "main", "markdown", "summarize", "targets"]

PORT_OFFSET = 900

FIRST, UNCHANGED, EDITED, FULL = "first", "unchanged", "edited", "full"
RUNS = {
    FIRST: "(a) first sync, empty collection",
    UNCHANGED: "(b) re-sync, nothing changed",
    EDITED: "(c) re-sync, 1 % edited + 1 % deleted",
    FULL: "(d) full re-ingest of (c)'s export (overwrite)",
}
"""The runs of one cycle, in order, and their labels."""
TARGETS = {UNCHANGED: 5.0, EDITED: 4.0}
"""How many times faster than (a) each run must be at the largest size."""
TARGET_DOCS = 100_000

_SYNC_COUNTS = (
    "documents_added",
    "documents_updated",
    "documents_unchanged",
    "documents_deleted",
    "chunks_upserted",
    "chunks_deleted",
    "manifest_entries_read",
)


# --- the corpus and its edits -------------------------------------------------------------


def edit_corpus(source: str, out: str, *, edit_share: float, delete_share: float) -> dict[str, int]:
    """Writes ``source`` to ``out`` with a share of its documents edited and another removed.

    Document ``i`` (in file order) is edited when ``i`` is a multiple of
    ``1 / edit_share``, removed when ``i - stride // 2`` is a multiple of
    ``1 / delete_share``. Edits alternate: a paragraph added (the document
    grows), and the text cut to its first third (it loses chunks).

    Returns:
      ``documents`` (in ``out``), ``edited`` and ``deleted``.
    """
    edit_every = max(1, round(1 / edit_share)) if edit_share > 0 else 0
    delete_every = max(1, round(1 / delete_share)) if delete_share > 0 else 0
    counts = {"documents": 0, "edited": 0, "deleted": 0}
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for i, record in enumerate(read_corpus(source)):
            if delete_every and (i - delete_every // 2) % delete_every == 0:
                counts["deleted"] += 1
                continue
            if edit_every and i % edit_every == 0:
                text = record["text"]
                if counts["edited"] % 2 == 0:
                    text += (
                        f"\n\nEdited on the second day: {record['id']} gained this paragraph, "
                        "which its first ingestion did not see."
                    )
                else:
                    text = text[: max(40, len(text) // 3)]
                record = {**record, "text": text}
                counts["edited"] += 1
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["documents"] += 1
    os.replace(out + ".tmp", out)
    return counts


# --- the memory of each process ------------------------------------------------------------


_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: its parent and the CPU seconds it has used (``/proc/<pid>/stat``)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()  # comm may hold spaces
            found[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
    return found


def _peak_mb(pid: int) -> tuple[float, str]:
    """A process's peak resident memory (``VmHWM``) and its command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, command
    except (OSError, ValueError):
        pass
    return 0.0, ""


def _is_shell(command: str) -> bool:
    """A ``sh -c`` that starts a process (the FnApiRunner starts its workers so)."""
    return os.path.basename(command.split(" ", 1)[0]) in ("sh", "bash", "dash")


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (0 if it is gone)."""
    return _processes().get(pid, (0, 0.0))[1]


@dataclasses.dataclass
class ByProcess:
    """What the launcher and its workers used: peak memory and CPU, each sampled."""

    launcher_mb: float = 0.0
    worker_mb: float = 0.0
    """The largest worker's peak."""
    workers: int = 0
    launcher_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0
    """All workers together."""


class WatchProcesses:
    """Samples every process this one starts, but those it leaves out, until the block ends.

    ``VmHWM`` is the kernel's high-water mark of a process's resident memory,
    and its CPU time only grows: read every ``interval_s`` until the process
    ends, the last values are its peak and (within ``interval_s``) its total.

    Args:
      leave_out: Processes (and their children) not watched: the servers.
    """

    def __init__(self, leave_out: Sequence[int] = (), interval_s: float = 0.1) -> None:
        self._leave_out = set(leave_out)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._seen: dict[int, tuple[float, float, str]] = {}

    def __enter__(self) -> WatchProcesses:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            children: dict[int, list[int]] = {}
            used = {}
            for pid, (ppid, cpu) in _processes().items():
                children.setdefault(ppid, []).append(pid)
                used[pid] = cpu
            tree = [p for p in children.get(os.getpid(), []) if p not in self._leave_out]
            for pid in tree:
                tree.extend(p for p in children.get(pid, []) if p not in self._leave_out)
            for pid in tree:
                peak, command = _peak_mb(pid)
                if command:
                    before = self._seen.get(pid, (0.0, 0.0, ""))
                    self._seen[pid] = (max(peak, before[0]), max(used[pid], before[1]), command)
            self._stop.wait(self._interval_s)

    def by_process(self) -> ByProcess:
        """The launcher's (``pipelines.ingest``) and the workers' (``sdk_worker_main``)."""
        seen = [(mb, cpu, c) for mb, cpu, c in self._seen.values() if not _is_shell(c)]
        launcher = [(mb, cpu) for mb, cpu, c in seen if "pipelines.ingest" in c]
        workers = [(mb, cpu) for mb, cpu, c in seen if "sdk_worker_main" in c]
        return ByProcess(
            launcher_mb=max((mb for mb, _ in launcher), default=0.0),
            worker_mb=max((mb for mb, _ in workers), default=0.0),
            workers=len(workers),
            launcher_cpu_s=sum(cpu for _, cpu in launcher),
            workers_cpu_s=sum(cpu for _, cpu in workers),
        )


# --- one run --------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One ``python -m pipelines.ingest`` process."""

    documents: int
    """Documents of the cycle's corpus (before the edits)."""
    run: str
    repeat: int
    measurement: Measurement
    processes: ByProcess
    report: dict[str, Any]
    server_cpu_s: float | None = None
    """CPU seconds the Milvus server we started used during the run."""
    floor: bool = False
    """A run of the floor: a few documents, for the fixed cost."""

    @property
    def sync(self) -> dict[str, Any]:
        return dict(self.report.get("sync") or {})


class Settings:
    """What every run needs, from the command line."""

    def __init__(self, args: argparse.Namespace, uri: str, server_pid: int | None) -> None:
        self.args = args
        self.work = os.path.abspath(args.work)
        self.model = os.path.abspath(args.model)
        self.uri = uri
        self.server_pid = server_pid
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)

    @property
    def lite(self) -> bool:
        return self.uri.endswith(".db")

    def uri_for(self, collection: str) -> str:
        """Embedded Milvus Lite: one store a collection, so that it can be thrown away."""
        if not self.lite:
            return self.uri
        folder = os.path.join(os.path.dirname(os.path.abspath(self.uri)), "sync-lite")
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, f"{collection}.db")


def _config(settings: Settings, export: str, collection: str, mode: str) -> str:
    return write_ingest_config(
        os.path.join(settings.work, "configs", f"{collection}.yaml"),
        corpus=export,
        model=settings.model,
        uri=settings.uri_for(collection),
        collection=collection,
        mode=mode,
        dead_letter_path=os.path.join(settings.work, "dead_letters"),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def ingest(
    settings: Settings, export: str, collection: str, mode: str, *, documents: int, run: str,
    repeat: int, is_floor: bool = False,
) -> Run:  # fmt: skip
    """Runs one ingestion process on ``export`` and measures it from outside."""
    config = _config(settings, export, collection, mode)
    out = os.path.join(settings.work, "reports", f"{collection}-{run}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if os.path.exists(out):
        os.remove(out)
    command = [sys.executable, "-m", "pipelines.ingest", "--config", config]
    command += ["--report_path", out, "--progress_interval_s", "0", "--write_mode", mode]
    if settings.args.workers > 1:
        command += [
            f"--direct_num_workers={settings.args.workers}",
            "--direct_running_mode=multi_processing",
        ]
    log = os.path.join(settings.logs, f"{collection}-{run}.log")
    leave_out = [settings.server_pid] if settings.server_pid else []
    server_before = cpu_s(settings.server_pid) if settings.server_pid else None
    with WatchProcesses(leave_out) as watched:
        measured = measure(
            command, cwd=REPO, env=_env(), log_path=log, timeout_s=settings.args.timeout_s
        )
    server = None
    if settings.server_pid and server_before is not None:
        server = round(cpu_s(settings.server_pid) - server_before, 2)
    if measured.returncode != 0:
        raise RuntimeError(f"{run} of {collection} exited with {measured.returncode}; see {log}")
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    done = Run(documents, run, repeat, measured, watched.by_process(), report, server, is_floor)
    with open(os.path.join(settings.work, "runs.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(_as_json(done)) + "\n")  # as it goes: a long run can be followed
    return done


def _as_json(run: Run) -> dict[str, Any]:
    return dataclasses.asdict(run)


def _drop(settings: Settings, collections: Sequence[str]) -> None:
    """Drops the collections and their manifests (a server), or removes their stores (Lite)."""
    if settings.lite:
        for collection in collections:
            for path in (settings.uri_for(collection), settings.uri_for(collection) + ".lock"):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        return
    from transforms.config import MilvusTarget
    from transforms.milvus.client import connect

    client = connect(MilvusTarget.server(settings.uri, "unused", token_env=None))
    try:
        for collection in collections:
            for name in (collection, collection + "__sync"):
                if client.has_collection(name):
                    client.drop_collection(name)
    finally:
        client.close()


def _settle(settings: Settings) -> None:
    """Waits for the server we started to go idle (it builds indexes after a flush)."""
    if settings.server_pid is None:
        return
    from bench.run import _settle as settle

    settle(type("Server", (), {"pid": settings.server_pid})())


def _check(run: Run, want: dict[str, int]) -> None:
    """Fails the benchmark if a run did not do what it must have."""
    found = {**run.sync, **{k: run.report.get(k) for k in ("rows_after", "documents_read")}}
    wrong = {k: (found.get(k), v) for k, v in want.items() if found.get(k) != v}
    if wrong:
        raise RuntimeError(
            f"{run.run} at {run.documents:,} documents: (found, expected) {wrong}; "
            f"report: {json.dumps(run.report)[:2000]}"
        )


def _print(run: Run) -> None:
    sync = run.sync
    print(
        f"  {run.documents:>7,} {run.run:9s} {run.measurement.wall_s:7.1f} s wall "
        f"{run.report.get('seconds', 0):7.1f} s report  cpu {run.measurement.cpu_s:6.1f} s "
        f"(server {_fmt(run.server_cpu_s, '.1f')} s)  "
        f"launcher {run.processes.launcher_mb:5.0f} MB  worker {run.processes.worker_mb:5.0f} MB  "
        f"+{sync.get('documents_added', '-')} ~{sync.get('documents_updated', '-')} "
        f"={sync.get('documents_unchanged', '-')} -{sync.get('documents_deleted', '-')} "
        f"rows {run.report.get('rows_after')}",
        flush=True,
    )


def cycle(settings: Settings, documents: int, repeat: int) -> Iterator[Run]:
    """The runs (a)-(d) on a corpus of ``documents``, checked."""
    args = settings.args
    corpus = os.path.join(settings.work, "corpus", f"corpus-{documents}-{args.seed}.jsonl")
    write_corpus(corpus, documents, seed=args.seed)
    edited = corpus.removesuffix(".jsonl") + f"-edited-{args.edit_share}-{args.delete_share}.jsonl"
    changes = edit_corpus(
        corpus, edited, edit_share=args.edit_share, delete_share=args.delete_share
    )
    # The export a user refreshes every day: one path, so one scope.
    export = os.path.join(settings.work, "export", f"docs-{documents}", "documents.jsonl")
    os.makedirs(os.path.dirname(export), exist_ok=True)
    synced = f"bench_sync_{documents}_{repeat}"
    full = f"bench_sync_{documents}_{repeat}_full"
    _drop(settings, [synced, full])
    try:
        shutil.copyfile(corpus, export)
        first = ingest(settings, export, synced, "sync", documents=documents, run=FIRST,
                       repeat=repeat)  # fmt: skip
        _print(first)
        _check(first, {"documents_added": documents, "rows_after": first.report["written"]})
        yield first
        _settle(settings)
        same = ingest(settings, export, synced, "sync", documents=documents, run=UNCHANGED,
                      repeat=repeat)  # fmt: skip
        _print(same)
        _check(
            same,
            {
                "documents_unchanged": documents, "documents_added": 0, "documents_updated": 0,
                "documents_deleted": 0, "chunks_upserted": 0, "chunks_deleted": 0,
                "manifest_entries_read": documents, "rows_after": first.report["rows_after"],
            },
        )  # fmt: skip
        yield same
        _settle(settings)
        shutil.copyfile(edited, export)
        changed = ingest(settings, export, synced, "sync", documents=documents, run=EDITED,
                         repeat=repeat)  # fmt: skip
        _print(changed)
        unchanged = documents - changes["edited"] - changes["deleted"]
        _check(
            changed,
            {
                "documents_updated": changes["edited"], "documents_deleted": changes["deleted"],
                "documents_unchanged": unchanged, "documents_added": 0,
                "manifest_entries_read": documents, "documents_read": changes["documents"],
            },
        )  # fmt: skip
        if args.full:
            _settle(settings)
            again = ingest(settings, export, full, "overwrite", documents=documents, run=FULL,
                           repeat=repeat)  # fmt: skip
            _print(again)
            _check(again, {"documents_read": changes["documents"]})
            # The sync ends where a fresh ingest of the same export does.
            _check(changed, {"rows_after": again.report["rows_after"]})
            yield changed
            yield again
        else:
            yield changed
    finally:
        _drop(settings, [synced, full])
        _settle(settings)


def floor(settings: Settings, repeat: int) -> Iterator[Run]:
    """A first and an unchanged sync of a few documents: what any sync run costs."""
    documents = settings.args.floor_docs
    corpus = os.path.join(settings.work, "corpus", f"corpus-{documents}-{settings.args.seed}.jsonl")
    write_corpus(corpus, documents, seed=settings.args.seed)
    export = os.path.join(settings.work, "export", f"docs-{documents}", "documents.jsonl")
    os.makedirs(os.path.dirname(export), exist_ok=True)
    shutil.copyfile(corpus, export)
    synced = f"bench_sync_floor_{repeat}"
    _drop(settings, [synced])
    try:
        for run in (FIRST, UNCHANGED):
            done = ingest(settings, export, synced, "sync", documents=documents, run=run,
                          repeat=repeat, is_floor=True)  # fmt: skip
            _print(done)
            yield done
        _check(done, {"documents_unchanged": documents})
    finally:
        _drop(settings, [synced])
        _settle(settings)


# --- the report ------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarize(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per size and run: medians (and ranges) over the repeats, ratios to (a).

    A ratio is the median of the ratios of each cycle (each measured in the
    same session as its own (a)), so that a slow cycle does not skew another's.
    """
    by_key: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.documents, run.run), []).append(run)
    firsts = {(r.documents, r.repeat): r.measurement.wall_s for r in runs if r.run == FIRST}
    fulls = {(r.documents, r.repeat): r.measurement.wall_s for r in runs if r.run == FULL}
    rows: list[dict[str, Any]] = []
    for (documents, name), group in by_key.items():
        wall = [r.measurement.wall_s for r in group]
        ratios = [
            firsts[(r.documents, r.repeat)] / r.measurement.wall_s
            for r in group
            if (r.documents, r.repeat) in firsts
        ]
        to_full = [
            fulls[(r.documents, r.repeat)] / r.measurement.wall_s
            for r in group
            if (r.documents, r.repeat) in fulls
        ]
        sync_counts = {
            key: int(_median([r.sync.get(key, 0) for r in group])) for key in _SYNC_COUNTS
        }
        rows.append(
            {
                "documents": documents,
                "run": name,
                "label": RUNS[name],
                "runs": len(group),
                "wall_s": round(_median(wall), 2),
                "wall_s_min": round(min(wall), 2),
                "wall_s_max": round(max(wall), 2),
                "x_first": round(_median(ratios), 2) if ratios and name != FIRST else None,
                "x_full": round(_median(to_full), 2) if to_full and name != FULL else None,
                "cpu_s": round(_median([r.measurement.cpu_s for r in group]), 1),
                "launcher_cpu_s": round(_median([r.processes.launcher_cpu_s for r in group]), 1),
                "workers_cpu_s": round(_median([r.processes.workers_cpu_s for r in group]), 1),
                "server_cpu_s": (
                    round(_median([r.server_cpu_s for r in group if r.server_cpu_s is not None]), 1)
                    if all(r.server_cpu_s is not None for r in group)
                    else None
                ),
                "report_s": round(_median([r.report.get("seconds", 0.0) for r in group]), 2),
                "close_s": round(_median([r.report.get("close_seconds", 0.0) for r in group]), 2),
                "launcher_mb": round(_median([r.processes.launcher_mb for r in group])),
                "worker_mb": round(_median([r.processes.worker_mb for r in group])),
                "workers": max(r.processes.workers for r in group),
                "documents_read": int(_median([r.report.get("documents_read", 0) for r in group])),
                "chunks": int(_median([r.report.get("chunks", 0) for r in group])),
                "rows_after": int(_median([r.report.get("rows_after", 0) for r in group])),
                **({"sync": sync_counts} if name != FULL else {}),
            }
        )
    order = list(RUNS)
    rows.sort(key=lambda r: (-r["documents"], order.index(r["run"])))
    return rows


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets, at the largest size measured if it has 100,000 documents or more."""
    sizes = sorted({r["documents"] for r in rows if r["run"] == EDITED})
    if not sizes or sizes[-1] < TARGET_DOCS:
        return []
    largest = sizes[-1]
    found = []
    for name, wanted in TARGETS.items():
        row = next((r for r in rows if r["documents"] == largest and r["run"] == name), None)
        if row and row["x_first"] is not None:
            found.append(
                {
                    "documents": largest,
                    "run": name,
                    "target_x": wanted,
                    "x_first": row["x_first"],
                    "met": row["x_first"] >= wanted,
                }
            )
    return found


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the machine, the table and the targets."""
    machine = report["machine"]
    settings = report["settings"]
    load = [(machine[k] or ["-"])[0] for k in ("load_average_before", "load_average_after")]
    lines = [
        f"Date {report['date']}, commit `{report['commit']}`; {machine['cpus']} cores, "
        f"{machine['memory_gib']} GiB RAM ({machine['platform']}), load average (1 min) "
        f"{load[0]} before, {load[1]} after; "
        f"Milvus {settings['target']}; DirectRunner, {settings['workers']} worker process(es); "
        f"{settings['repeat']} cycle(s), medians (min-max). Whole process: each run a "
        "`python -m pipelines.ingest` process, timed from outside, start to exit.",
        "",
        "| documents | run | wall s | x (a) | x (d) | report s | CPU s: launcher, workers, "
        "server | MB: launcher, worker | added | updated | unchanged | deleted "
        "| chunks upserted | chunks deleted | manifest read | rows after |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        wall = f"{r['wall_s']:.1f}"
        if r["runs"] > 1:
            wall += f" ({r['wall_s_min']:.1f}-{r['wall_s_max']:.1f})"
        sync = r.get("sync") or {}
        counts = " | ".join(_fmt(sync.get(k), ",") for k in _SYNC_COUNTS)
        label = f"floor: {r['label']}" if r.get("floor") else r["label"]
        workers_cpu = _fmt(r["workers_cpu_s"] if r["workers"] else None, ".0f")
        lines.append(
            f"| {r['documents']:,} | {label} | {wall} | {_fmt(r['x_first'], '.2f')} "
            f"| {_fmt(r['x_full'], '.2f')} | {r['report_s']:.1f} "
            f"| {r['launcher_cpu_s']:.0f}, {workers_cpu}, {_fmt(r['server_cpu_s'], '.0f')} "
            f"| {r['launcher_mb']:,}, {_fmt(r['worker_mb'] if r['workers'] else None, ',')} "
            f"| {counts} | {r['rows_after']:,} |"
        )
    lines += [
        "",
        "x (a), x (d): times faster than the same cycle's (a) and (d) (the median of the "
        "cycles' ratios). Report s: the run's own `seconds`, from after its inputs are "
        "matched to after the store is closed; the rest of the wall time is the interpreter's "
        "start, the imports and the exit. CPU s: of the launcher process, of its worker "
        "processes together, and of the Milvus server during the run. MB: peak resident "
        "memory (VmHWM) of the launcher process and of the largest worker process.",
        "",
    ]
    for t in report["targets"]:
        verdict = "met" if t["met"] else f"missed by {t['target_x'] - t['x_first']:.2f}x"
        lines.append(
            f"* {t['documents']:,} documents, {RUNS[t['run']]}: {t['x_first']:.2f}x faster than "
            f"(a) (target {t['target_x']:.0f}x: {verdict})."
        )
    return "\n".join(lines) + "\n"


# --- the command ---------------------------------------------------------------------------


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 0.0


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes", default="100000,20000", help="Corpus sizes in documents, comma-separated."
    )
    parser.add_argument("--repeat", type=int, default=1, help="Cycles (a)-(d) of each size.")
    parser.add_argument("--workers", type=int, default=2, help="DirectRunner worker processes.")
    parser.add_argument("--edit_share", type=float, default=0.01, help="Documents edited in (c).")
    parser.add_argument(
        "--delete_share", type=float, default=0.01, help="Documents removed in (c)."
    )
    parser.add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Run (d), the full re-ingest, and check (c)'s rows against it.",
    )
    parser.add_argument(
        "--floor_docs", type=int, default=10, help="Documents of the floor runs (0: none)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the corpus.")
    parser.add_argument(
        "--milvus_uri",
        help="A Milvus server to use, or a *.db path for embedded Milvus Lite (default: start "
        "a Milvus 2.3.5 server).",
    )
    add_run_arguments(
        parser, name="sync", work_help="Folder of the corpora, configs, reports and logs."
    )
    parser.add_argument("--timeout_s", type=float, default=3600.0, help="Longest run.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        raise SystemExit(
            f"--sizes={args.sizes!r}: give document counts, e.g. 100000,20000"
        ) from None
    if not sizes or min(sizes) < 1 or args.repeat < 1 or args.workers < 1:
        raise SystemExit("--sizes, --repeat and --workers must be positive")
    from transforms.testing import servers

    started = time.monotonic()
    load_before = _load_average()
    server = None
    uri = args.milvus_uri
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    runs: list[Run] = []
    try:
        if not uri:
            print("Starting a Milvus 2.3.5 server…", flush=True)
            server, uri = servers.start_milvus_server(
                tempfile.mkdtemp(prefix="server-", dir=work),
                bin_dir=os.path.join(os.path.dirname(work), "milvus-bin"),
                port_offset=PORT_OFFSET,
            )
        settings = Settings(args, uri, server.pid if server is not None else None)
        _settle(settings)
        for repeat in range(args.repeat):
            for documents in sizes:
                runs += cycle(settings, documents, repeat)
            if args.floor_docs:
                runs += floor(settings, repeat)
    finally:
        if server is not None:
            servers.stop(server)
            # Its data: gigabytes of segments and logs of dropped collections at 100,000 documents.
            shutil.rmtree(server.milvus["data_dir"], ignore_errors=True)
    results = summarize([r for r in runs if not r.floor])
    floor_rows = summarize([r for r in runs if r.floor])
    for row in floor_rows:
        row["floor"] = True
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "commit": code_commit(),
        "settings": {
            "sizes": sizes,
            "repeat": args.repeat,
            "workers": args.workers,
            "edit_share": args.edit_share,
            "delete_share": args.delete_share,
            "floor_docs": args.floor_docs,
            "model": os.path.abspath(args.model),
            "target": (
                "Lite (embedded)"
                if uri.endswith(".db")
                else ("2.3.5 server" if server is not None else f"server {uri}")
            ),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "platform": platform.platform(terse=True),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
        },
        "results": results + floor_rows,
        "targets": targets(results),
        "runs": [_as_json(r) for r in runs],
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    write_report(report, markdown(report), args.json, args.markdown)
    return report


if __name__ == "__main__":
    main()
