"""The search row of the benchmark: ``milvus-search --query`` against a ten-line script.

Run it with ``python -m bench.search``. It writes the first ``--chunks``
chunks of the benchmark corpus (:func:`bench.recall.make_corpus`, embedded
with the demo model) into a collection as an ingestion does (the model's
fingerprint stored, the default FLAT index), on a Milvus 2.3.5 server it
starts and on embedded Milvus Lite, then times whole processes, start to
exit, each answering one query with its top 10:

* ``script``: :data:`SCRIPT`, the ten lines a user would write, which load the
  same model with model2vec (``StaticModel.from_pretrained``), load the
  collection (Milvus Lite opens a store with its collections released) and
  search with pymilvus (``MilvusClient.search``), the same output fields;
* ``instant``: ``python -m pipelines.search --query ...`` (the instant path:
  no Beam), printing JSON lines;
* ``beam``: the same command with ``--runner FnApiRunner``, which runs the
  query through a Beam pipeline (what every search did before).

Contenders run interleaved, ``--repeat`` times each, and the table gives the
median wall and CPU time with their range and each one's ratio to ``script``.
Figures from a shared machine are noisy; the goal is ``instant`` within 1.5x
of ``script``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

from bench.measure import DEFAULT_MODEL, REPO, Measurement, measure
from bench.recall import make_corpus

__all__ = ["SCRIPT", "main", "markdown"]

SERVER = "server"
LITE = "lite"
QUERY = "how do I catch an exception and raise it again"
TOP_K = 10
_BATCH_ROWS = 1000

SCRIPT = """\
import sys
from model2vec import StaticModel
from pymilvus import MilvusClient
model_path, uri, collection, query = sys.argv[1:5]
model = StaticModel.from_pretrained(model_path)
client = MilvusClient(uri)
client.load_collection(collection)  # Milvus Lite opens a store with its collections released
fields = ["document_id", "chunk_index", "text", "metadata"]
vector = model.encode([query])[0].tolist()
hits = client.search(collection, [vector], limit=10, output_fields=fields)
print("\\n".join(f"{h['distance']:.4f} {h['entity']['document_id']}" for h in hits[0]))
"""
"""The ten-line script ``instant`` is compared with."""


@dataclasses.dataclass
class _Row:
    store: str
    contender: str
    runs: list[Measurement]

    @property
    def wall(self) -> list[float]:
        return [m.wall_s for m in self.runs]

    @property
    def cpu(self) -> list[float]:
        return [m.cpu_s for m in self.runs]


def _fill(uri: str, collection: str, chunks: int, model: str, work: str) -> None:
    """Writes the corpus's first ``chunks`` chunks as an ingestion with ``model`` would."""
    from transforms.config import MilvusTarget, WriteConfig
    from transforms.embedding.model import describe_model
    from transforms.milvus.client import close_embedded, connect
    from transforms.milvus.collection import finish_collection, prepare_collection

    corpus = make_corpus(chunks, model=model, cache_dir=work)
    target = (
        MilvusTarget.lite(uri, collection)
        if uri.endswith(".db")
        else MilvusTarget.server(uri, collection, token_env=None)
    )
    description = describe_model(model)
    state = prepare_collection(
        target, dim=description.dim, fingerprint=description.fingerprint, config=WriteConfig()
    )
    client = connect(target)
    try:
        for start in range(0, len(corpus.ids), _BATCH_ROWS):
            client.insert(collection, corpus.rows(start, start + _BATCH_ROWS))
    finally:
        client.close()
    finish_collection(target, state, rows_upserted=len(corpus.ids))
    close_embedded(target)  # the measured processes open the store themselves


def _commands(uri: str, collection: str, model: str, script: str) -> dict[str, list[str]]:
    ours = [
        sys.executable,
        "-m",
        "pipelines.search",
        *("--milvus_uri", uri, "--collection", collection, "--model", model),
        *("--query", QUERY, "--top_k", str(TOP_K), "--output_format", "jsonl"),
    ]
    return {
        "script": [sys.executable, script, model, uri, collection, QUERY],
        "instant": ours,
        "beam": [*ours, "--runner", "FnApiRunner", "--output", os.path.dirname(script)],
    }


def _range(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def markdown(rows: Sequence[_Row]) -> str:
    """The table: median wall and CPU seconds (range), and the ratio to ``script``."""
    lines = [
        "| store | contender | wall s, median (range) | CPU s, median (range) | wall / script |",
        "|---|---|---:|---:|---:|",
    ]
    base = {r.store: statistics.median(r.wall) for r in rows if r.contender == "script"}
    for r in rows:
        ratio = statistics.median(r.wall) / base[r.store] if r.store in base else float("nan")
        lines.append(
            f"| {r.store} | {r.contender} | {_range(r.wall)} | {_range(r.cpu)} | {ratio:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--chunks", type=int, default=10000, help="Chunks in the collection.")
    parser.add_argument("--targets", default="server,lite", help="server, lite or both.")
    parser.add_argument("--repeat", type=int, default=5, help="Runs of each contender.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Model2Vec model folder.")
    parser.add_argument("--milvus_uri", help="A Milvus server to use (default: start one).")
    parser.add_argument("--work", default=os.path.join(REPO, "work", "bench", "search"))
    parser.add_argument("--json", help="Write every run here as JSON lines.")
    parser.add_argument("--markdown", help="Write the table here.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[_Row]:
    args = parse(argv)
    targets = [t for t in args.targets.split(",") if t]
    if not targets or set(targets) - {SERVER, LITE}:
        raise SystemExit(f"--targets={args.targets!r}: give server, lite or server,lite")
    os.makedirs(args.work, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="search-", dir=args.work)
    script = os.path.join(folder, "script.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    rows: list[_Row] = []
    server = None
    try:
        for store in targets:
            if store == SERVER:
                uri = args.milvus_uri
                if not uri:
                    from transforms.testing import servers

                    print("Starting a Milvus 2.3.5 server…", flush=True)
                    server, uri = servers.start_milvus_server(
                        tempfile.mkdtemp(prefix="server-", dir=folder),
                        bin_dir=os.path.join(args.work, "milvus-bin"),
                        port_offset=850,
                    )
            else:
                uri = os.path.join(folder, "search.db")
            collection = f"bench_search_{args.chunks}"
            started = time.monotonic()
            _fill(uri, collection, args.chunks, args.model, args.work)
            print(f"{store}: {args.chunks:,} chunks written in {time.monotonic() - started:.0f} s")
            commands = _commands(uri, collection, args.model, script)
            runs: dict[str, list[Measurement]] = {name: [] for name in commands}
            for _ in range(args.repeat):
                for name, command in commands.items():
                    log = os.path.join(folder, f"{store}-{name}.log")
                    measured = measure(command, cwd=folder, env=env, log_path=log)
                    if measured.returncode != 0:
                        raise SystemExit(f"{store} {name} failed: see {log}")
                    runs[name].append(measured)
            rows += [_Row(store, name, runs[name]) for name in commands]
    finally:
        if server is not None:
            from transforms.testing import servers

            servers.stop(server)
    table = markdown(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            for r in rows:
                for m in r.runs:
                    f.write(
                        json.dumps({"store": r.store, "contender": r.contender, **vars(m)}) + "\n"
                    )
    shutil.rmtree(folder, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
