"""The benchmark: our ingestion against the limits and the peers, in one run.

Run it with ``make bench`` (or ``python -m bench.run``). It writes a
deterministic corpus (:mod:`bench.corpus`), cuts it once into the chunks
every contender writes, starts a Milvus 2.3.5 server (unless ``--milvus_uri``
names one) and then runs, each as a process of its own, on the same chunks,
model and collection schema:

(a) the encode limit: ``StaticModel.encode`` on the chunks' texts, with and
    without ``use_multiprocessing``, and our embedding step on the same texts;
(b) the write limit: ``MilvusClient.insert`` of the same vectors in batches of
    1,000 rows, and the final flush;
(c) the way Milvus's documentation shows (pymilvus-model + insert loop);
(d) Beam's own RAG path (``apache_beam.ml.rag``) on the DirectRunner, with one
    and with two worker processes;
(e) a hand-written pool of two processes doing (c);
(f) our pipeline (``python -m pipelines.ingest``) on the DirectRunner with one
    and with two worker processes;

into a Milvus server and into Milvus Lite. After every run the collection's
row count is checked against the chunks. It reports documents, chunks and
tokens per second, CPU time and peak memory, and each contender's ratio to
(c), (d) and (e), as JSON (``--json``) and as a Markdown table (printed, and
``--markdown``).

Times are whole processes, start to exit, the final flush included, except
for the limits, which time only their stage (encode, or insert + flush).
Figures from one run on a shared machine are noisy: ``--repeat N`` runs every
contender N times, interleaved, and reports medians with their range.

Milvus Lite runs inside the process that opens it (or as a server process that
a multi-process contender starts); its memory grows with the data, and is
counted apart where it is a process of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from bench.corpus import write_corpus, write_ingest_config
from bench.measure import DEFAULT_MODEL, REPO, Measurement, measure, write_report
from transforms.testing import servers

__all__ = ["CONTENDERS", "Contender", "main", "markdown"]

PYTHON = sys.executable

SERVER = "server"
LITE = "lite"

_CHUNKS_FORMAT = "v2"
"""Part of the stored chunks' file name: a new one when what a Chunk holds changes
(v2: chunks carry their token ids), so that a work folder's old chunks are not reused."""


@dataclasses.dataclass(frozen=True)
class Contender:
    """One thing the benchmark times.

    Attributes:
      key: Short name, used in the JSON and on the command line.
      label: What it is, for the table.
      group: ``limit`` (timed by stage), ``peer`` or ``ours``.
      targets: Which targets it runs against.
      workers: Worker processes it uses (1 or 2).
      writes: Whether it writes the corpus's chunks into a collection.
    """

    key: str
    label: str
    group: str
    targets: tuple[str, ...] = (SERVER, LITE)
    workers: int = 1
    writes: bool = True


_ENCODE = "(a) StaticModel.encode, use_multiprocessing="
_RAG = "(d) Beam ml.rag + MilvusVectorWriterConfig, DirectRunner,"
CONTENDERS: tuple[Contender, ...] = (
    Contender("encode_m2v_mp", f"{_ENCODE}True", "limit", writes=False),
    Contender("encode_m2v", f"{_ENCODE}False", "limit", writes=False),
    Contender(
        "encode_ours",
        "(a) our embedding step (StaticEmbedder.embed), texts not seen before",
        "limit",
        writes=False,
    ),
    Contender(
        "encode_ours_counted",
        "(a) our embedding step as in our pipeline (windows counted by chunking)",
        "limit",
        writes=False,
    ),
    Contender("write_insert", "(b) MilvusClient.insert, 1,000-row batches, + flush", "limit"),
    Contender("docs", "(c) Milvus docs: Model2VecEmbeddingFunction + insert loop", "peer"),
    Contender("beam_rag_1", f"{_RAG} 1 worker", "peer"),
    Contender("beam_rag_2", f"{_RAG} 2 workers", "peer", workers=2),
    Contender(
        "pool", "(e) hand-written multiprocessing pool of (c), 2 processes", "peer", workers=2
    ),
    Contender("ours_1", "(f) our pipeline, DirectRunner, 1 worker", "ours"),
    Contender("ours_2", "(f) our pipeline, DirectRunner, 2 worker processes", "ours", workers=2),
)

# What each ratio column divides by: the peer, and the variant of it.
RATIO_BASES = (
    ("docs", "docs"),
    ("beam_rag", "beam_rag_1"),
    ("beam_rag_2w", "beam_rag_2"),
    ("pool", "pool"),
)


@dataclasses.dataclass
class Run:
    """One run of one contender against one target."""

    contender: str
    target: str
    repeat: int
    measurement: Measurement
    seconds: float
    """Whole process, or the stage for limits."""
    rows: int | None
    rows_expected: int | None
    inside: dict[str, Any]


class Settings:
    """Everything a run needs to know, from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = os.path.abspath(args.work)
        self.model = os.path.abspath(args.model)
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _peer_command(settings: Settings, name: str, out: str, **flags: Any) -> list[str]:
    command = [PYTHON, "-m", "bench.peers", name, "--model", settings.model, "--out", out]
    command += ["--max_tokens", str(settings.args.max_tokens)]
    command += ["--overlap_tokens", str(settings.args.overlap_tokens)]
    for key, value in flags.items():
        command += [f"--{key}", str(value)]
    return command


def _ours_config(settings: Settings, corpus: str, uri: str, collection: str) -> str:
    return write_ingest_config(
        os.path.join(settings.work, f"{collection}.yaml"),
        corpus=corpus,
        model=settings.model,
        uri=uri,
        collection=collection,
        mode="overwrite",
        dead_letter_path=os.path.join(settings.work, "dead_letters", collection, "dl"),
        max_tokens=settings.args.max_tokens,
        overlap_tokens=settings.args.overlap_tokens,
    )


def _count_and_drop(uri: str, collection: str) -> int:
    """The collection's rows; then the collection is dropped, so that the server
    does not build its index while the next contender runs."""
    from bench.peers import target
    from transforms.milvus.client import connect
    from transforms.milvus.collection import count_rows

    rows = count_rows(target(uri, collection))
    client = connect(target(uri, collection))
    try:
        client.drop_collection(collection)
    finally:
        client.close()
    return rows


def _settle(server: Any, *, quiet_share: float = 0.15, longest_s: float = 60.0) -> None:
    """Waits until the Milvus server we started is idle (under ``quiet_share`` of a CPU)."""
    if server is None:
        time.sleep(3.0)  # someone else's server: no way to look at its CPU
        return
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        try:
            with open(f"/proc/{server.pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            return 0.0

    deadline = time.monotonic() + longest_s
    before = cpu_s()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_s()
        if now - before < quiet_share:
            return
        before = now


def _release_lite(uri: str) -> None:
    """Closes an embedded Milvus Lite store this process opened to count rows."""
    if not uri.endswith(".db"):
        return
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
    except Exception:  # a newer milvus-lite without this call: the store stays open
        pass


def run_contender(
    settings: Settings,
    contender: Contender,
    target_kind: str,
    repeat: int,
    corpus: str,
    chunks_file: str,
    expected: dict[str, int],
    server_uri: str,
) -> Run:
    """Runs one contender once, then checks what it wrote."""
    collection = f"bench_{contender.key}_{target_kind}_{repeat}"
    out = os.path.join(settings.work, f"{collection}.json")
    log = os.path.join(settings.logs, f"{collection}.log")
    lite_server = None
    apart: tuple[str, ...] = ()
    if target_kind == SERVER:
        uri = server_uri
    else:
        uri = os.path.join(settings.work, "lite", f"{collection}.db")
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        for stale in (uri, uri + ".lock"):
            if os.path.exists(stale):
                os.remove(stale)
        apart = ("milvus_lite",)
        if contender.workers > 1 and contender.group != "ours":
            # Embedded Lite is one process's: several processes share a Lite server,
            # as our pipeline does for itself.
            lite_server, uri = servers.start_lite_server(
                os.path.join(settings.work, "lite", f"{collection}-server")
            )
    key = contender.key
    try:
        if key.startswith("encode_"):
            command = _peer_command(
                settings, "encode", out, chunks=chunks_file, mode=key.removeprefix("encode_"),
                repeat=settings.args.encode_passes, corpus=corpus,
            )  # fmt: skip
        elif key == "write_insert":
            command = _peer_command(
                settings, "write", out, chunks=chunks_file, mode="insert", corpus=corpus,
                uri=uri, collection=collection,
            )  # fmt: skip
        elif key in ("docs", "pool") or key.startswith("beam_rag"):
            name = "beam_rag" if key.startswith("beam_rag") else key
            command = _peer_command(
                settings, name, out, corpus=corpus, uri=uri, collection=collection,
                workers=contender.workers,
            )  # fmt: skip
        else:
            config = _ours_config(settings, corpus, uri, collection)
            command = [PYTHON, "-m", "pipelines.ingest", "--config", config, "--report_path", out]
            if contender.workers > 1:
                command += [
                    f"--direct_num_workers={contender.workers}",
                    "--direct_running_mode=multi_processing",
                ]
        measurement = measure(
            command, cwd=REPO, env=_env(), log_path=log, timeout_s=settings.args.timeout_s,
            apart=apart,
        )  # fmt: skip
        if lite_server is not None:
            measurement.peak_apart_rss_mb = max(
                measurement.peak_apart_rss_mb, _process_rss_mb(lite_server.pid)
            )
        inside: dict[str, Any] = {}
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                inside = json.load(f)
        if measurement.returncode != 0:
            raise RuntimeError(
                f"{key} on {target_kind} exited with {measurement.returncode}; see {log}"
            )
        rows = rows_expected = None
        if contender.writes:
            rows_expected = expected["chunks"]
            rows = _count_and_drop(uri, collection)
            _release_lite(uri)
            if rows != rows_expected:
                raise RuntimeError(
                    f"{key} on {target_kind} left {rows} rows, not the {rows_expected} chunks "
                    f"of the corpus; see {log}"
                )
        seconds = inside.get("stage_seconds", measurement.wall_s)
        return Run(key, target_kind, repeat, measurement, seconds, rows, rows_expected, inside)
    finally:
        if lite_server is not None:
            servers.stop(lite_server)


def _process_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def summarize(runs: Sequence[Run], expected: dict[str, int]) -> list[dict[str, Any]]:
    """Medians per contender and target, with ranges and ratios to the peers."""
    rows: list[dict[str, Any]] = []
    by_key: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_key.setdefault((run.contender, run.target), []).append(run)
    medians: dict[tuple[str, str], float] = {}
    for (key, target_kind), group in by_key.items():
        seconds = [r.seconds for r in group]
        median = statistics.median(seconds)
        medians[(key, target_kind)] = expected["documents"] / median
        contender = next(c for c in CONTENDERS if c.key == key)
        rows.append(
            {
                "contender": key,
                "label": contender.label,
                "group": contender.group,
                "target": target_kind,
                "runs": len(group),
                "seconds": round(median, 2),
                "seconds_min": round(min(seconds), 2),
                "seconds_max": round(max(seconds), 2),
                "documents_per_s": round(expected["documents"] / median, 1),
                "chunks_per_s": round(expected["chunks"] / median, 1),
                "tokens_per_s": round(expected["corpus_tokens"] / median),
                "cpu_s": round(statistics.median(r.measurement.cpu_s for r in group), 1),
                "peak_rss_mb": round(
                    statistics.median(r.measurement.peak_tree_rss_mb for r in group)
                ),
                "max_process_rss_mb": round(
                    statistics.median(r.measurement.max_process_rss_mb for r in group)
                ),
                "lite_server_rss_mb": round(
                    statistics.median(r.measurement.peak_apart_rss_mb for r in group)
                ),
                "whole_process_s": round(statistics.median(r.measurement.wall_s for r in group), 2),
                "rows_checked": all(r.rows == r.rows_expected for r in group),
                "inside": group[-1].inside,
            }
        )
    for row in rows:
        for column, base in RATIO_BASES:
            reference = medians.get((base, row["target"]))
            row[f"x_{column}"] = round(row["documents_per_s"] / reference, 2) if reference else None
    order = {c.key: i for i, c in enumerate(CONTENDERS)}
    rows.sort(key=lambda r: (r["target"] != SERVER, order[r["contender"]]))
    return rows


def embedding_step(runs: Sequence[Run]) -> dict[str, Any]:
    """Our embedding step against StaticModel.encode on the same texts."""
    stages: dict[str, list[float]] = {}
    diffs: list[float] = []
    for run in runs:
        if run.contender.startswith("encode_"):
            stages.setdefault(run.contender, []).append(run.seconds)
            if "max_abs_diff_vs_encode" in run.inside:
                diffs.append(run.inside["max_abs_diff_vs_encode"])
    diff = max(diffs, default=None)
    if "encode_ours" not in stages:
        return {}
    ours = statistics.median(stages["encode_ours"])
    found: dict[str, Any] = {"ours_s": round(ours, 3), "max_abs_diff_vs_encode": diff}
    if "encode_ours_counted" in stages:
        found["ours_counted_s"] = round(statistics.median(stages["encode_ours_counted"]), 3)
    for key in ("encode_m2v_mp", "encode_m2v"):
        if key in stages:
            theirs = statistics.median(stages[key])
            found[f"{key.removeprefix('encode_')}_s"] = round(theirs, 3)
            found[f"x_{key.removeprefix('encode_')}"] = round(theirs / ours, 2)
    fastest = min(
        (statistics.median(v) for k, v in stages.items() if k.startswith("encode_m2v")),
        default=None,
    )
    if fastest:
        found["x_fastest_encode"] = round(fastest / ours, 2)
        if "ours_counted_s" in found:
            found["x_fastest_encode_counted"] = round(fastest / found["ours_counted_s"], 2)
    return found


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table per target, then the embedding step."""
    corpus = report["corpus"]
    settings = report["settings"]
    lines = [
        f"Corpus: {corpus['documents']:,} documents, {corpus['characters'] / 1e6:.1f} M "
        f"characters, {corpus['corpus_tokens'] / 1e6:.1f} M tokens, {corpus['chunks']:,} chunks "
        f"({settings['max_tokens']}-token windows, {settings['overlap_tokens']} "
        f"overlap); model {os.path.basename(settings['model'])}; "
        f"{report['machine']['cpus']} CPUs; {settings['repeat']} run(s) each, medians "
        "(min-max).",
        "",
    ]
    for target_kind, title in ((SERVER, "Milvus 2.3.5 server"), (LITE, "Milvus Lite (embedded)")):
        rows = [r for r in report["results"] if r["target"] == target_kind]
        if not rows:
            continue
        lines += [
            f"**{title}**",
            "",
            "| contender | docs/s | chunks/s | tokens/s | seconds | CPU s | peak RSS MB "
            "| x docs (c) | x ml.rag 1w (d) | x ml.rag 2w (d) | x pool (e) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            seconds = f"{r['seconds']:.1f}"
            if r["runs"] > 1:
                seconds += f" ({r['seconds_min']:.1f}-{r['seconds_max']:.1f})"
            if r["group"] == "limit":
                seconds += " stage"
            rss = f"{r['peak_rss_mb']:,}"
            if r["lite_server_rss_mb"]:
                rss += f" + {r['lite_server_rss_mb']:,} Lite"
            lines.append(
                f"| {r['label']} | {r['documents_per_s']:,.0f} | {r['chunks_per_s']:,.0f} "
                f"| {r['tokens_per_s'] / 1e6:.2f} M | {seconds} | {r['cpu_s']:.0f} | {rss} "
                f"| {_fmt(r['x_docs'], '.2f')} | {_fmt(r['x_beam_rag'], '.2f')} "
                f"| {_fmt(r['x_beam_rag_2w'], '.2f')} | {_fmt(r['x_pool'], '.2f')} |"
            )
        lines.append("")
    step = report.get("embedding_step") or {}
    if step:
        lines.append(
            f"Embedding step on the same {report['corpus']['chunks']:,} texts: ours "
            f"{step['ours_s']:.2f} s, StaticModel.encode {_fmt(step.get('m2v_mp_s'), '.2f')} s "
            f"(use_multiprocessing=True) / {_fmt(step.get('m2v_s'), '.2f')} s (False): "
            f"x {_fmt(step.get('x_fastest_encode'), '.2f')} the fastest; largest difference "
            f"of a vector component {_fmt(step.get('max_abs_diff_vs_encode'), '.1e')}."
        )
        if "ours_counted_s" in step:
            ratio = _fmt(step.get("x_fastest_encode_counted"), ".2f")
            lines.append(
                f"As it runs in our pipeline (each window's ids kept from chunking): "
                f"{step['ours_counted_s']:.2f} s, x {ratio} the fastest encode."
            )
    scale = report.get("scale")
    if scale:
        lines.append(
            f"Scale ({scale['contender']}, server): {scale['small_docs']:,} → "
            f"{scale['large_docs']:,} documents: {scale['small_docs_per_s']:,.0f} → "
            f"{scale['large_docs_per_s']:,.0f} documents/s, peak RSS {scale['small_rss_mb']:,} → "
            f"{scale['large_rss_mb']:,} MB (x {scale['rss_ratio']:.2f})."
        )
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in (
        "apache-beam",
        "pymilvus",
        "pymilvus-model",
        "milvus-lite",
        "milvus",
        "model2vec",
        "tokenizers",
        "numpy",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Our ingestion against the limits and the peers (see bench/run.py)."
    )
    parser.add_argument("--docs", type=int, default=20_000, help="Documents in the corpus.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the corpus.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Model2Vec model folder.")
    parser.add_argument("--max_tokens", type=int, default=256)
    parser.add_argument("--overlap_tokens", type=int, default=32)
    parser.add_argument("--milvus_uri", help="A Milvus server to use (default: start one).")
    parser.add_argument(
        "--targets", default=f"{SERVER},{LITE}", help="server, lite, or both (comma-separated)."
    )
    parser.add_argument(
        "--contenders",
        default=",".join(c.key for c in CONTENDERS),
        help="Which to run (comma-separated keys): " + ", ".join(c.key for c in CONTENDERS),
    )
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each contender.")
    parser.add_argument("--encode_passes", type=int, default=3, help="Passes of each encode run.")
    parser.add_argument(
        "--scale_docs",
        type=int,
        default=0,
        help="Also run our pipeline (2 workers, server) on this many documents, for memory growth.",
    )
    parser.add_argument("--work", default=os.path.join(REPO, "work", "bench"))
    parser.add_argument("--json", help="Write the report here as JSON.")
    parser.add_argument("--markdown", help="Write the table here as Markdown.")
    parser.add_argument("--timeout_s", type=float, default=1800.0)
    return parser.parse_args(argv)


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _prepare(settings: Settings, docs: int) -> tuple[str, str, dict[str, int]]:
    """The corpus and its chunks (cached in the work folder)."""
    args = settings.args
    corpus = os.path.join(settings.work, f"corpus-{docs}-{args.seed}.jsonl")
    stats = write_corpus(corpus, docs, seed=args.seed)
    model = os.path.basename(settings.model)
    tag = f"{docs}-{args.seed}-{args.max_tokens}-{args.overlap_tokens}-{model}-{_CHUNKS_FORMAT}"
    chunks_file = os.path.join(settings.work, f"chunks-{tag}.pkl")
    counts_file = chunks_file + ".json"
    if not (os.path.exists(chunks_file) and os.path.exists(counts_file)):
        print(f"Cutting {docs:,} documents into chunks once, for the limits…", flush=True)
        command = _peer_command(
            settings, "prepare", counts_file, corpus=corpus, chunks=chunks_file, workers=2
        )
        done = measure(
            command, cwd=REPO, env=_env(), log_path=os.path.join(settings.logs, "prepare.log")
        )
        if done.returncode != 0:
            raise RuntimeError(f"preparing the chunks failed; see {settings.logs}/prepare.log")
    with open(counts_file, encoding="utf-8") as f:
        counts = json.load(f)
    counts["characters"] = stats.characters
    return corpus, chunks_file, counts


def _server(settings: Settings) -> tuple[Any, str]:
    if settings.args.milvus_uri:
        return None, settings.args.milvus_uri
    print("Starting a Milvus 2.3.5 server…", flush=True)
    folder = os.path.join(settings.work, "milvus")
    return servers.start_milvus_server(
        tempfile.mkdtemp(prefix="server-", dir=_ensure(folder)),
        bin_dir=os.path.join(settings.work, "milvus-bin"),
        port_offset=700,
    )


def _ensure(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    wanted = [k for k in args.contenders.split(",") if k]
    unknown = sorted(set(wanted) - {c.key for c in CONTENDERS})
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; choose from the --help list")
    targets = [t for t in args.targets.split(",") if t]
    if not targets or set(targets) - {SERVER, LITE}:
        raise SystemExit(f"--targets={args.targets!r}: give server, lite or server,lite")
    settings = Settings(args)
    started = time.monotonic()
    load_before = _load_average()
    corpus, chunks_file, expected = _prepare(settings, args.docs)
    print(
        f"Corpus: {expected['documents']:,} documents, {expected['chunks']:,} chunks, "
        f"{expected['corpus_tokens']:,} tokens",
        flush=True,
    )
    server, server_uri = (None, "") if targets == [LITE] else _server(settings)
    _settle(server)
    runs: list[Run] = []
    try:
        for repeat in range(args.repeat):
            for target_kind in targets:
                for contender in CONTENDERS:
                    if contender.key not in wanted or target_kind not in contender.targets:
                        continue
                    if not contender.writes and target_kind != targets[0]:
                        continue  # the encode limits need no target: once a repetition
                    run = run_contender(
                        settings, contender, target_kind, repeat, corpus, chunks_file, expected,
                        server_uri,
                    )  # fmt: skip
                    runs.append(run)
                    _settle(server)
                    print(
                        f"  {target_kind:6s} {contender.key:14s} {run.seconds:7.1f} s  "
                        f"{expected['documents'] / run.seconds:7.0f} docs/s  "
                        f"rss {run.measurement.peak_tree_rss_mb:5.0f} MB  rows {run.rows}",
                        flush=True,
                    )
        scale = _scale(settings, runs, expected, server_uri) if args.scale_docs else None
    finally:
        if server is not None:
            servers.stop(server)
    report: dict[str, Any] = {
        "settings": {
            "docs": args.docs,
            "seed": args.seed,
            "model": settings.model,
            "max_tokens": args.max_tokens,
            "overlap_tokens": args.overlap_tokens,
            "repeat": args.repeat,
            "targets": targets,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": _load_average(),
            "versions": _versions(),
        },
        "corpus": expected,
        "results": summarize(runs, expected),
        "embedding_step": embedding_step(runs),
        "scale": scale,
        "runs": [
            {**dataclasses.asdict(r), "measurement": dataclasses.asdict(r.measurement)}
            for r in runs
        ],
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    write_report(report, markdown(report), args.json, args.markdown)
    return report


def _scale(
    settings: Settings, runs: Sequence[Run], expected: dict[str, int], server_uri: str
) -> dict[str, Any] | None:
    """Our pipeline (2 workers, server) on the larger corpus, against the default one."""
    small = [r for r in runs if r.contender == "ours_2" and r.target == SERVER]
    if not small or not server_uri:
        return None
    contender = next(c for c in CONTENDERS if c.key == "ours_2")
    corpus, chunks_file, large_expected = _prepare_corpus_only(settings, settings.args.scale_docs)
    run = run_contender(
        settings, contender, SERVER, 99, corpus, chunks_file, large_expected, server_uri
    )
    small_rss = statistics.median(r.measurement.peak_tree_rss_mb for r in small)
    small_seconds = statistics.median(r.seconds for r in small)
    return {
        "contender": "ours_2",
        "small_docs": expected["documents"],
        "large_docs": large_expected["documents"],
        "small_docs_per_s": round(expected["documents"] / small_seconds, 1),
        "large_docs_per_s": round(large_expected["documents"] / run.seconds, 1),
        "small_rss_mb": round(small_rss),
        "large_rss_mb": round(run.measurement.peak_tree_rss_mb),
        "large_max_process_rss_mb": round(run.measurement.max_process_rss_mb),
        "rss_ratio": round(run.measurement.peak_tree_rss_mb / small_rss, 2),
        "large_seconds": round(run.seconds, 1),
        "large_rows": run.rows,
    }


def _prepare_corpus_only(settings: Settings, docs: int) -> tuple[str, str, dict[str, int]]:
    """A larger corpus, with its chunk count read from our own run's report."""
    corpus = os.path.join(settings.work, f"corpus-{docs}-{settings.args.seed}.jsonl")
    stats = write_corpus(corpus, docs, seed=settings.args.seed)
    counts = _count_chunks(settings, corpus)
    counts["characters"] = stats.characters
    return corpus, "", counts


def _count_chunks(settings: Settings, corpus: str) -> dict[str, int]:
    out = corpus + ".counts.json"
    if not os.path.exists(out):
        command = _peer_command(settings, "count", out, corpus=corpus, workers=2)
        done = measure(
            command, cwd=REPO, env=_env(), log_path=os.path.join(settings.logs, "count.log")
        )
        if done.returncode != 0:
            raise RuntimeError(f"counting the chunks failed; see {settings.logs}/count.log")
    with open(out, encoding="utf-8") as f:
        return dict(json.load(f))


if __name__ == "__main__":
    main()
