"""ReadDocuments over the network: S3 (a local moto server, through s3fs) and HTTP.

Both servers run in this process, on 127.0.0.1 and a free port, and stop at the
end of the module.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from tests.test_sources import read_all
from transforms import SourceConfig, match_files

BUCKET = "corpus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server (moto), with fake credentials in the environment."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    patch = pytest.MonkeyPatch()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        patch.setenv(name, value)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        patch.undo()
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.fixture(scope="module")
def s3_corpus(s3_endpoint: str) -> dict:
    """A bucket with one file of each kind; returns the storage options to reach it."""
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(BUCKET)
    lines = "".join(json.dumps({"id": f"j{i}", "text": f"line {i}"}) + "\n" for i in range(400))
    fs.pipe(f"{BUCKET}/dump/part-0.jsonl", lines.encode())
    fs.pipe(f"{BUCKET}/dump/part-1.jsonl.gz", gzip.compress(b'{"id": "gz", "text": "zipped"}\n'))
    fs.pipe(f"{BUCKET}/docs/guide/intro.md", b"# Intro\n\nOn S3.")
    fs.pipe(f"{BUCKET}/docs/notes.txt", b"plain notes")
    fs.pipe(f"{BUCKET}/tables/rows.csv", b'id,text\nc1,"quoted\nnewline"\n')
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["parquet one", "parquet two"]}), sink)
    fs.pipe(f"{BUCKET}/tables/rows.parquet", sink.getvalue().to_pybytes())
    fs.pipe(f"{BUCKET}/tables/bad.jsonl", b'{"id": "b", "text": \n')
    return options


def test_s3_globs_folders_and_every_format(s3_corpus: dict) -> None:
    assert match_files(f"s3://{BUCKET}/docs/**/*.md", storage_options=s3_corpus) == [
        f"s3://{BUCKET}/docs/guide/intro.md"
    ]
    docs, dead, counters = read_all(
        SourceConfig(
            patterns=(f"s3://{BUCKET}/dump/*", f"s3://{BUCKET}/docs", f"s3://{BUCKET}/tables/"),
            storage_options=s3_corpus,
        )
    )
    ids = {d[0] for d in docs}
    assert {"gz", "c1", "p1", "p2", f"s3://{BUCKET}/docs/notes.txt"} <= ids
    assert f"s3://{BUCKET}/docs/guide/intro.md" in ids and len(docs) == 400 + 6
    assert dead == [("read", f"s3://{BUCKET}/tables/bad.jsonl:1", dead[0][2])]
    assert dead[0][2].startswith("malformed JSON")
    assert counters["documents_read"] == 406


def test_s3_large_file_is_split_by_byte_ranges(s3_corpus: dict) -> None:
    pattern = f"s3://{BUCKET}/dump/part-0.jsonl"
    whole = read_all(SourceConfig(patterns=(pattern,), storage_options=s3_corpus))
    split = read_all(SourceConfig(patterns=(pattern,), storage_options=s3_corpus, split_bytes=2000))
    assert split[:2] == whole[:2] and len(whole[0]) == 400
    assert split[2]["split_ranges"] > 5


def test_s3_missing_bucket_or_key_is_an_empty_match(s3_corpus: dict) -> None:
    assert match_files(f"s3://{BUCKET}/nothing/*.jsonl", storage_options=s3_corpus) == []
    assert match_files("s3://no-such-bucket/x.jsonl", storage_options=s3_corpus) == []
    with pytest.raises(Exception, match="matches no file"):
        read_all(SourceConfig(patterns=(f"s3://{BUCKET}/nope.jsonl",), storage_options=s3_corpus))


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    """A static file server on 127.0.0.1 over a temporary folder."""
    root = tmp_path_factory.mktemp("www")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_urls_are_read_like_files(http_root) -> None:
    url, root = http_root
    (root / "a.jsonl").write_text('{"id": "h1", "text": "over http"}\n')
    (root / "page.md").write_text("# Served\n\nmarkdown")
    (root / "c.jsonl.gz").write_bytes(gzip.compress(b'{"id": "h2", "text": "gzip over http"}\n'))
    docs, dead, _ = read_all(
        SourceConfig(patterns=(f"{url}/a.jsonl", f"{url}/page.md", f"{url}/c.jsonl.gz"))
    )
    assert dead == []
    assert [d[0] for d in docs] == ["h1", "h2", f"{url}/page.md"]
    assert docs[0][3] == f"{url}/a.jsonl:1"
    assert match_files(f"{url}/missing.jsonl") == []
