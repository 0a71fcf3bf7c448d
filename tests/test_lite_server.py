"""The Lite server this project starts keeps pymilvus' connections: no GOAWAY too_many_pings.

pymilvus pings every 10 s, calls or not; gRPC's default server policy allows a
ping on an idle connection once in two hours and ends the connection at the
third strike. The tests watch real channels with pymilvus' keepalive settings
for 35 s; ``grpc.http2.max_pings_without_data=0`` lets the client ping every
10 s instead of slowing to one a minute after two, so the third strike comes
at 30 s instead of about 140 s (what a launcher idle during a run met).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from transforms.config import MilvusTarget
from transforms.milvus.client import _client_kwargs
from transforms.testing.processes import free_port, stop_process
from transforms.testing.servers import start_lite_server, stop

# The keepalive settings of every pymilvus 3 channel (pymilvus/client/grpc_handler.py).
PYMILVUS_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
_EVERY_PING = ("grpc.http2.max_pings_without_data", 0)
_OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)  # channels never share one
_WATCH_S = 35.0


class WatchedChannel:
    """A gRPC channel to a Milvus server whose connectivity states are recorded."""

    def __init__(self, address: str, options: list[tuple[str, Any]]) -> None:
        self.states: list[str] = []
        self.channel = grpc.insecure_channel(
            address, options=[*options, _EVERY_PING, _OWN_CONNECTION]
        )
        self.channel.subscribe(lambda state: self.states.append(state.name), try_to_connect=True)
        stub = milvus_pb2_grpc.MilvusServiceStub(self.channel)
        stub.GetVersion(milvus_pb2.GetVersionRequest(), timeout=30, wait_for_ready=True)

    def lost_connection(self) -> bool:
        """Whether the channel left READY: the server ended the connection."""
        ready = self.states.index("READY")
        return any(s != "READY" for s in self.states[ready + 1 :])

    def close(self) -> None:
        self.channel.close()


@pytest.fixture()
def stock_lite_server(tmp_path: Path) -> Iterator[str]:
    """``python -m milvus_lite server``, as milvus-lite ships it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "stock"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        # Its clean shutdown runs on SIGINT only; on a loaded machine it may
        # take long, and this test's claims do not depend on it.
        stop_process(proc, sig=signal.SIGINT, timeout=30)


@pytest.fixture()
def served_lite(tmp_path: Path) -> Iterator[str]:
    proc, uri = start_lite_server(tmp_path / "served")
    try:
        yield uri.removeprefix("http://")
    finally:
        stop(proc)


def test_pymilvus_keepalive_ends_stock_lite_connections_and_keeps_ours(
    stock_lite_server: str, served_lite: str, tmp_path: Path
) -> None:
    from milvus_lite.server_manager import server_manager_instance

    keepalive = PYMILVUS_KEEPALIVE
    embedded_path = str(tmp_path / "embedded.db")
    embedded = server_manager_instance.start_and_get_uri(embedded_path).removeprefix("http://")
    ours = _client_kwargs(MilvusTarget.lite(embedded_path, "docs"))["grpc_options"]
    ours_over_pymilvus = list({**dict(keepalive), **ours}.items())
    channels = {
        "stock server": WatchedChannel(stock_lite_server, keepalive),
        "our server": WatchedChannel(served_lite, keepalive),
        "embedded, pymilvus' options": WatchedChannel(embedded, keepalive),
        "embedded, our options": WatchedChannel(embedded, ours_over_pymilvus),
    }
    try:
        time.sleep(_WATCH_S)
        lost = {name: c.lost_connection() for name, c in channels.items()}
    finally:
        for c in channels.values():
            c.close()
        server_manager_instance.release_server(embedded_path)
    # The reproduction: gRPC's default policy ends pymilvus' idle connections...
    assert lost["stock server"] and lost["embedded, pymilvus' options"], lost
    # ...and the fix, on both sides: our server accepts the pings, our
    # embedded client does not send them.
    assert not lost["our server"] and not lost["embedded, our options"], lost


def test_sigterm_drains_the_server_and_closes_the_store(tmp_path: Path) -> None:
    proc, uri = start_lite_server(tmp_path)
    client = MilvusClient(uri=uri, timeout=10)
    client.create_collection("kept", dimension=4)
    client.insert("kept", [{"id": i, "vector": [0.1, 0.2, 0.3, float(i)]} for i in range(5)])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "the store is closed" in Path(proc.milvus["log"]).read_text()

    # Closed, not killed: the store opens again at once, with its rows.
    reopened, uri = start_lite_server(tmp_path)
    try:
        again = MilvusClient(uri=uri, timeout=10)
        again.load_collection("kept")
        assert again.query("kept", filter="", output_fields=["count(*)"])[0]["count(*)"] == 5
    finally:
        stop(reopened)


def test_a_locked_store_is_a_one_line_error(tmp_path: Path) -> None:
    proc, _ = start_lite_server(tmp_path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "transforms.milvus.lite_server",
             "--data-dir", str(tmp_path / "db"), "--port", "0"],
            capture_output=True, text=True, timeout=60, env={**os.environ},
        )  # fmt: skip
    finally:
        stop(proc)
    assert second.returncode == 1
    assert second.stderr.startswith(f"error: cannot serve {tmp_path / 'db'}:"), second.stderr
    assert "Traceback" not in second.stderr
