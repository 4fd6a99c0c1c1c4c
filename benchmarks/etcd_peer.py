"""etcd, the peer a Ray user would otherwise pick, measured the way the issue measured it: three
members on loopback (fsync on, etcd's default), driven from Python through etcd's JSON gateway
with one keep-alive HTTP connection per thread.

    python -m benchmarks.etcd_peer [--seconds 5]

Used by ``benchmarks.persistence`` to put etcd's figures next to raftfleet_ray's in the same
run. Needs the ``etcd`` binary (Debian/Ubuntu: ``apt-get install etcd-server``); without it,
``available()`` is False and the callers skip it.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

from benchmarks.common import pct


def available() -> bool:
    return shutil.which("etcd") is not None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class EtcdCluster:
    """Three etcd members on loopback, each with its own data directory (fsync on)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="raftfleet-etcd-")
        ports = _free_ports(6)
        self.client_ports = ports[:3]
        peers = ports[3:]
        initial = ",".join(f"e{i}=http://127.0.0.1:{peers[i]}" for i in range(3))
        self.procs = [
            subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", f"{self.dir}/e{i}",
                 "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--log-level", "error"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(3)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                Client(self.client_ports[0]).put("ready", "1")
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        self.close()
        raise RuntimeError("etcd did not start within 30 s")

    def leader_port(self) -> int:
        """The client port of the member that leads (etcd forwards writes to the leader:
        asking it directly is etcd at its best)."""
        for port in self.client_ports:
            st = Client(port).call("/v3/maintenance/status", {})
            if st["header"]["member_id"] == st["leader"]:
                return port
        return self.client_ports[0]

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """One keep-alive HTTP connection to etcd's JSON gateway (v3)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"etcd {path}: {resp.status} {data[:200]!r}")
        return json.loads(data)

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                 "value": base64.b64encode(value.encode()).decode()})

    def get(self, key: str) -> None:
        self.call("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})


def measure(seconds: float = 5.0, n_seq: int = 500) -> dict[str, Any]:
    """Sequential put and get p50/p99 (ms), and puts/s at 1, 8 and 64 threads."""
    cluster = EtcdCluster()
    try:
        port = cluster.leader_port()
        c = Client(port)
        put_ms, get_ms = [], []
        for i in range(n_seq):
            t = time.perf_counter()
            c.put(f"k{i}", "v")
            put_ms.append((time.perf_counter() - t) * 1e3)
        for i in range(n_seq):
            t = time.perf_counter()
            c.get(f"k{i}")
            get_ms.append((time.perf_counter() - t) * 1e3)
        out: dict[str, Any] = {"put_p50_ms": pct(put_ms, 50), "put_p99_ms": pct(put_ms, 99),
                               "get_p50_ms": pct(get_ms, 50)}
        for threads in (1, 8, 64):
            counts = [0] * threads
            stop = time.monotonic() + seconds

            def run(i: int, counts: list[int] = counts, stop: float = stop) -> None:
                cl = Client(port)
                while time.monotonic() < stop:
                    cl.put(f"t{i}", str(counts[i]))
                    counts[i] += 1

            ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            out[f"puts_per_s_{threads}"] = sum(counts) / seconds
        return out
    finally:
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.etcd_peer", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    if not available():
        print("etcd is not installed (apt-get install etcd-server)")
        return 1
    print(json.dumps(measure(args.seconds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
