"""Milvus Lite served over gRPC with the keepalive rule that pymilvus' clients keep.

``python -m milvus_lite server`` (milvus-lite 3.x) builds its gRPC server with
gRPC's default ping policy: on a connection with no call in flight a client may
ping once in two hours, and the third ping that comes too soon ends the
connection with ``GOAWAY too_many_pings``. pymilvus' channels ping every 10 s,
calls or not (``grpc.keepalive_time_ms=10000``,
``grpc.keepalive_permit_without_calls``), and gRPC slows those pings to one a
minute after two. So a client that holds its connection idle for about 140 s
(the launcher while its workers write, a test session's shared channel) is
disconnected, and the calls racing the reconnect fail with "Too many pings".

Milvus' own servers accept those pings (Go's ``EnforcementPolicy{MinTime: 5s,
PermitWithoutStream: true}``). This module serves a Lite store under the same
rule, so every pymilvus client keeps its connection for as long as it likes:

    python -m transforms.milvus.lite_server --data-dir ./milvus.db --port 19530

It also stops cleanly on SIGTERM as well as on Ctrl-C: in-flight calls are
drained and the store is closed, so its lock and write-ahead log are released.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent import futures
from types import FrameType
from typing import Any

__all__ = ["KEEPALIVE_ENFORCEMENT", "build_server", "main"]

KEEPALIVE_ENFORCEMENT: tuple[tuple[str, int], ...] = (
    # Pings are allowed with no call in flight, as Milvus' servers allow them.
    ("grpc.keepalive_permit_without_calls", 1),
    # A ping sooner than 5 s after the last one is a strike (Milvus' MinTime);
    # pymilvus pings every 10 s.
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    # gRPC's default: the third strike in a row ends a connection that really
    # floods the server with pings.
    ("grpc.http2.max_ping_strikes", 2),
)
"""The server's ping policy: accepts pymilvus' keepalive, refuses ping floods."""

_MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # as Milvus Lite and Milvus standalone
_DRAIN_S = 5.0


def build_server(data_dir: str, *, host: str, port: int, max_workers: int = 10) -> Any:
    """Opens the Lite store in ``data_dir`` and binds a gRPC server to it, not yet started.

    Returns:
      ``(server, store, port)``: the ``grpc.Server``, the open ``MilvusLite``
      store (close it after stopping the server) and the bound port (the free
      one picked when ``port`` is 0).

    Raises:
      RuntimeError: this milvus-lite has no gRPC servicer where 3.x keeps it.
    """
    import grpc
    from pymilvus.grpc_gen import milvus_pb2_grpc

    try:
        from milvus_lite import MilvusLite
        from milvus_lite.adapter.grpc.servicer import MilvusServicer
    except ImportError as e:
        raise RuntimeError(
            f"milvus-lite has no gRPC servicer at milvus_lite.adapter.grpc.servicer ({e}); "
            "this server needs milvus-lite 3.x."
        ) from e

    store = MilvusLite(data_dir)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
            *KEEPALIVE_ENFORCEMENT,
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(store), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        store.close()
        raise OSError(f"cannot listen on {host}:{port}")
    return server, store, bound


def main(argv: Sequence[str] | None = None) -> int:
    """Serves a Lite store until SIGTERM or SIGINT; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m transforms.milvus.lite_server",
        description="Serve a Milvus Lite store over gRPC, accepting pymilvus' keepalive pings.",
    )
    parser.add_argument("--data-dir", required=True, help="The Lite store (a *.db folder).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument("--port", type=int, default=19530, help="Port; 0 picks a free one.")
    parser.add_argument("--max-workers", type=int, default=10, help="Threads serving calls.")
    args = parser.parse_args(argv)

    try:
        server, store, port = build_server(
            args.data_dir, host=args.host, port=args.port, max_workers=args.max_workers
        )
    except Exception as e:  # the store is locked by another process, the port taken
        print(f"error: cannot serve {args.data_dir}: {e}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server.start()
    print(f"Serving Milvus Lite store {args.data_dir} at {args.host}:{port}", flush=True)
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        server.stop(grace=_DRAIN_S).wait()
        store.close()
    print("Stopped; the store is closed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
