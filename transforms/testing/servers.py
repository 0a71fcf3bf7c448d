"""Real Milvus servers on loopback, for tests and the benchmark.

Needs only the stdlib plus pymilvus (readiness check) and, for
start_milvus_server, the PyPI wheel ``milvus==2.3.5`` (the ``test`` and
``bench`` extras; no dependencies; it coexists with pymilvus 3.0.2 +
milvus-lite 3.2.2 in one venv). Linux and macOS only.

Costs, measured on 2 cores: a Milvus 2.3.5 server starts in ~10 s (plus ~4 s
and 250 MB of disk to unpack its binary once, see ensure_milvus_binary); a
Milvus Lite server in ~2 s.

Two kinds of server:

* ``start_milvus_server``: the real Milvus 2.3.5 standalone binary that ships
  inside the PyPI wheel ``milvus==2.3.5`` (embedded etcd + local storage +
  rocksmq).  We do NOT go through the ``milvus-server`` console script: it
  cannot move the embedded etcd off 2379/2380, hides the metrics port it
  picked, does not notice when the binary dies, and on SIGTERM it exits
  without stopping the binary (orphan).  Instead we render the wheel's config
  template ourselves and run ``bin/milvus run standalone`` directly.
* ``start_lite_server``: ``python -m transforms.milvus.lite_server``, the
  pure-Python Milvus Lite 3.x store served as the pipelines serve it for
  multi-process runs.

Every function returns/accepts a ``subprocess.Popen``; ``proc.milvus`` holds a
small dict with uri, ports, token, log file, data_dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from transforms.testing import processes
from transforms.testing.processes import free_port, tail

__all__ = [
    "ROOT_TOKEN",
    "ServerProcess",
    "ensure_milvus_binary",
    "free_port",
    "kill9",
    "start_lite_server",
    "start_milvus_server",
    "stop",
]

ROOT_TOKEN = "root:Milvus"  # default superuser of a fresh Milvus with auth on

# Order matters only for readability; each gets its own free port.
_PORT_KEYS = (
    "proxy_port",  # gRPC (+ REST v1) endpoint clients use
    "proxy_internal_port",
    "root_coord_port",
    "query_coord_port",
    "query_node_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
    "etcd_port",  # embedded etcd client port (also in etcd yaml)
    "etcd_peer_port",  # embedded etcd peer port (etcd yaml only)
    "metrics_port",  # HTTP /healthz + /metrics (METRICS_PORT env)
)
_DEFAULT_PORT_BASE = 23000  # below Linux's ephemeral range (32768-60999)
_LITE_PORT_BASE = 26000
_start_lock = threading.Lock()  # serialise port picking inside one process
_reserved: set[int] = set()  # ports handed out by this process


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class ServerProcess(subprocess.Popen):
    """A server's process, with what clients need to reach it in ``milvus``:
    kind, uri, token, ports, log and data_dir."""

    milvus: dict[str, Any]


def _port_is_free(port: int) -> bool:
    # Milvus listens on *:port (all interfaces), etcd on 127.0.0.1:port.
    # SO_REUSEADDR like Go's listeners: TIME_WAIT leftovers don't count.
    for host in ("0.0.0.0", "127.0.0.1"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def _pick_ports(n: int, start: int) -> list[int]:
    ports: list[int] = []
    p = start
    while len(ports) < n:
        if p > 32000:
            raise RuntimeError("no free ports below 32000")
        if p not in _reserved and _port_is_free(p):
            ports.append(p)
        p += 1
    return ports


def _milvus_pkg_dir() -> Path:
    import milvus  # the PyPI "milvus==2.3.5" wheel (pure data, no deps)

    return Path(milvus.__file__).parent


def ensure_milvus_binary(bin_dir: str | os.PathLike) -> Path:
    """Decompress the wheel's ``*.lzma`` binaries into ``bin_dir`` once.

    ~250 MB, ~4 s the first time; idempotent (md5 markers) and safe to call
    from several processes at once (flock).  Share one bin_dir between all
    servers of a test session to avoid paying this per server.
    """
    import fcntl  # POSIX only, as the binary is

    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    src = _milvus_pkg_dir() / "data" / "bin"
    with open(bin_dir / ".extract.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for lz in sorted(src.glob("*.lzma")):
            name = lz.name[:-5]
            data = lz.read_bytes()
            digest = hashlib.md5(data).hexdigest()
            marker = bin_dir / (name + ".md5")
            target = bin_dir / name
            if target.exists() and marker.exists() and marker.read_text() == digest:
                continue
            tmp = bin_dir / (name + ".tmp")
            tmp.write_bytes(lzma.decompress(data))
            tmp.chmod(0o755)
            tmp.replace(target)
            marker.write_text(digest)
    return bin_dir / "milvus"


def _render_config(data_dir: Path, ports: dict, auth: bool, session_ttl: int) -> Path:
    tpl = (_milvus_pkg_dir() / "data" / "config.yaml.template").read_text()
    logs, storage = data_dir / "logs", data_dir / "data"
    values = {k: ports[k] for k in _PORT_KEYS if k in ports}
    # 2.3.5 has no separate index coord: it lives inside datacoord and never
    # binds indexCoord.address; point it at datacoord instead of a port that
    # another server could grab.
    values["index_coord_port"] = ports["data_coord_port"]
    values.update(
        etcd_log_level="warn",
        etcd_log_path=str(logs / "etcd.log"),
        etcd_data_dir=str(storage / "etcd.data"),
        local_storage_dir=str(storage),
        rocksmq_data_dir=str(storage / "rocksmq"),
        system_log_path=str(logs),
        server_pem_path="server.pem",
        server_key_path="server.key",
        ca_pem_path="ca.pem",
        authorization_enabled="true" if auth else "false",
        tls_mode=0,
    )

    def sub(m):
        key = re.split(r"[(:]", m.group(1).strip())[0].strip()
        if key not in values:
            raise KeyError(f"unrendered template key {key!r}")
        return str(values[key])

    text = re.sub(r"\{\{(.*?)\}\}", sub, tpl)
    # Components register this address in etcd and dial each other on it;
    # empty = "first unicast address" (eth0).  Keep all traffic on loopback.
    text = re.sub(r"(?m)^(\s+)ip:\s*(#.*)?$", r"\g<1>ip: 127.0.0.1", text)
    # common.session.ttl: coord sessions of a previous run stay in etcd until
    # their lease expires; a restart on the same data_dir blocks until then
    # (default 30 s -> ~55 s restarts).  Lower = faster restarts, but a
    # process starved for > ttl seconds loses its session and exits.
    text, n = re.subn(r"(?m)^(    ttl: )30( .*)?$", rf"\g<1>{int(session_ttl)}\2", text)
    if n != 1:
        raise RuntimeError("the milvus wheel's config template has no 'ttl: 30' session line")
    conf_dir = data_dir / "configs"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "milvus.yaml").write_text(text)
    (conf_dir / "glog.conf").write_text((_milvus_pkg_dir() / "data" / "glog.conf").read_text())
    # Without this file the embedded etcd ALWAYS listens on 127.0.0.1:2379/2380
    # (etcd.endpoints in milvus.yaml does not move it).  Passed via the
    # ETCD_CONFIG_PATH env var (== milvus.yaml key etcd.config.path).
    c, p = ports["etcd_port"], ports["etcd_peer_port"]
    (conf_dir / "embedEtcd.yaml").write_text(
        "name: default\n"
        f"listen-client-urls: http://127.0.0.1:{c}\n"
        f"advertise-client-urls: http://127.0.0.1:{c}\n"
        f"listen-peer-urls: http://127.0.0.1:{p}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{p}\n"
        f"initial-cluster: default=http://127.0.0.1:{p}\n"
    )
    return conf_dir


def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200 and b"OK" in r.read()
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _client_ready(uri: str, token: str) -> bool:
    from pymilvus import MilvusClient

    try:
        c = MilvusClient(uri=uri, token=token, timeout=3)
        try:
            c.list_collections(timeout=3)
        finally:
            c.close()
        return True
    except Exception:
        return False


def _wait_ready(proc, check, timeout: float, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode} during startup; log {log}:\n{tail(log)}"
            )
        if check():
            return
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError(f"{what} not ready after {timeout}s; log {log}:\n{tail(log)}")


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------
def start_milvus_server(
    data_dir: str | os.PathLike,
    *,
    auth: bool = False,
    port_offset: int = 0,
    bin_dir: str | os.PathLike | None = None,
    timeout: float = 120.0,
    attempts: int = 3,
    session_ttl: int = 10,
    graceful_stop_s: int = 3,
) -> tuple[ServerProcess, str]:
    """Start Milvus 2.3.5 standalone; return ``(proc, uri)`` once it serves.

    data_dir   -- holds configs/, logs/ (incl. milvus.log = stdout+stderr),
                  data/ (etcd.data, rocksmq, insert_log ...) and ports.json.
                  Reusing a data_dir restarts with the old data on the SAME
                  ports (stale sessions in etcd point at them); it fails if
                  one of them is taken meanwhile.  A restart waits for the old
                  sessions to expire (~session_ttl + a few s).
    auth       -- authorizationEnabled; connect with token ``ROOT_TOKEN``.
    port_offset-- shifts where the free-port scan starts (23000 + offset),
                  e.g. give each pytest-xdist worker its own 100-port range.
    bin_dir    -- where the binary is decompressed (default data_dir/bin);
                  pass one shared dir to save ~4 s and 250 MB per server.
    """
    data_dir = Path(data_dir).resolve()
    for sub in ("logs", "data"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    exe = ensure_milvus_binary(bin_dir or data_dir / "bin")
    log = data_dir / "logs" / "milvus.log"
    token = ROOT_TOKEN if auth else ""
    ports_file = data_dir / "ports.json"
    saved = json.loads(ports_file.read_text()) if ports_file.exists() else None
    fresh = not (data_dir / "data" / "etcd.data").exists()
    if saved:
        attempts = 1
    last_err: Exception | None = None
    for attempt in range(attempts):
        with _start_lock:
            if saved:
                busy = [p for p in saved.values() if not _port_is_free(p)]
                if busy:
                    raise RuntimeError(
                        f"{data_dir} was created with ports {saved}; {busy} are in use now"
                    )
                ports = saved
            else:
                start = _DEFAULT_PORT_BASE + port_offset + attempt * 20
                ports = dict(zip(_PORT_KEYS, _pick_ports(len(_PORT_KEYS), start), strict=True))
            _reserved.update(ports.values())
            ports_file.write_text(json.dumps(ports))
            conf_dir = _render_config(data_dir, ports, auth, session_ttl)
            env = dict(os.environ)
            env.update(
                DEPLOY_MODE="STANDALONE",
                METRICS_PORT=str(ports["metrics_port"]),
                ETCD_CONFIG_PATH=str(conf_dir / "embedEtcd.yaml"),
                MILVUSCONF=str(conf_dir),
                # queryNode.gracefulStopTimeout (default 30 s): on SIGTERM the
                # query node waits for its loaded segments to be handed off,
                # which never happens in standalone -> 30 s stops.
                QUERYNODE_GRACEFULSTOPTIMEOUT=str(graceful_stop_s),
                LD_LIBRARY_PATH=f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
            )
            with open(log, "ab") as out:
                out.write(f"\n==== start {time.ctime()} ports={ports}\n".encode())
                out.flush()
                proc = ServerProcess(
                    [str(exe), "run", "standalone"],
                    cwd=data_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # own process group -> killpg
        uri = f"http://127.0.0.1:{ports['proxy_port']}"
        proc.milvus = dict(
            kind="milvus", uri=uri, token=token, ports=ports, log=str(log), data_dir=str(data_dir)
        )
        try:
            _wait_ready(
                proc,
                lambda ports=ports, uri=uri: (
                    _healthz(ports["metrics_port"]) and _client_ready(uri, token)
                ),
                timeout,
                log,
                "milvus standalone",
            )
            return proc, uri
        except RuntimeError as e:  # died early: most likely a port race; retry
            last_err = e
            stop(proc)
            if fresh:  # brand-new dir: forget the half-initialised state
                shutil.rmtree(data_dir / "data", ignore_errors=True)
                (data_dir / "data").mkdir()
                ports_file.unlink(missing_ok=True)
    raise last_err or RuntimeError("milvus standalone did not start")


def start_lite_server(
    data_dir: str | os.PathLike,
    *,
    port: int | None = None,
    port_offset: int = 0,
    timeout: float = 60.0,
) -> tuple[ServerProcess, str]:
    """Start ``python -m transforms.milvus.lite_server``; return ``(proc, uri)``.

    Data lives in data_dir/db (flock'ed while the server runs; survives
    kill -9), output goes to data_dir/lite-server.log.  The port is scanned
    from 26000 + port_offset (outside the kernel's ephemeral range: grpcio
    servers set SO_REUSEPORT, so two of them could share a port silently).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock:
        port = port or _pick_ports(1, _LITE_PORT_BASE + port_offset)[0]
        _reserved.add(port)
        log = data_dir / "lite-server.log"
        with open(log, "ab") as out:
            proc = ServerProcess(
                [
                    sys.executable,
                    "-u",
                    "-m",
                    "transforms.milvus.lite_server",
                    "--data-dir",
                    str(data_dir / "db"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    uri = f"http://127.0.0.1:{port}"
    proc.milvus = dict(
        kind="lite", uri=uri, token="", ports={"port": port}, log=str(log), data_dir=str(data_dir)
    )
    _wait_ready(proc, lambda: _client_ready(uri, ""), timeout, log, "milvus-lite server")
    return proc, uri


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    """Graceful stop, escalating to SIGKILL of the whole process group.

    Milvus: SIGTERM -> clean shutdown in ~0.05 s idle, ~graceful_stop_s with
    loaded collections; its return code is -6 even then (2.3.5 panics in
    CloseEtcdClient *after* "All cleanup done" -> SIGABRT): not an error.
    Lite server: SIGTERM drains its calls and closes the store. Any other
    process (started with processes.start_process) gets SIGTERM too. Returns
    proc.returncode.
    """
    if proc is None:
        return None
    processes.stop_process(proc, sig=signal.SIGTERM, timeout=timeout)
    _cleanup_outside_files(proc)
    return proc.returncode


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the server's process group (simulate a crash) and reap it."""
    processes.kill9(proc)
    _cleanup_outside_files(proc)


def _kind(proc: subprocess.Popen) -> str | None:
    return getattr(proc, "milvus", {}).get("kind")


def _cleanup_outside_files(proc: subprocess.Popen) -> None:
    # Milvus 2.3.5 hard-codes /tmp/milvus/server_id_<pid> (never removed).
    if _kind(proc) == "milvus" and proc.returncode is not None:
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/milvus/server_id_{proc.pid}")
