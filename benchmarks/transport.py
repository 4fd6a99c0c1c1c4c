"""The direct transport against its floor: a round trip to another process over an
authenticated connection (``raftfleet_ray.runtime.transport``) and over a raw Ray actor call.

    python -m benchmarks.transport [--n 3000] [--out benchmarks/results/transport.json]

One Ray actor (another process on this machine) serves both: an async ``ping`` method and a
``Listener`` whose connections echo every frame. From the driver, in the same run:

- sequential round trips of a 100-byte payload: p50 and p99, each way;
- pipelined: 1,000 in flight at once (Ray: 1,000 ``ping.remote`` then ``ray.get``; transport:
  1,000 frames sent in one loop turn, then read back), in operations per second.

This is the first step of issue 15 (a direct data plane): it measures the channel Raft
traffic and client commands are to move onto, not yet a command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from typing import Any

import ray

from benchmarks.common import pct, write_json
from raftfleet_ray.runtime.transport import Connection, Listener, connect, new_secret

PAYLOAD = b"x" * 100


@ray.remote(num_cpus=0)
class _EchoHost:
    def __init__(self) -> None:
        self._listener: Listener | None = None

    async def listen(self, secret: bytes) -> int:
        async def echo(conn: Connection) -> None:
            while True:
                conn.send(await conn.recv())

        self._listener = Listener(secret, echo)
        _, port = await self._listener.start("127.0.0.1")
        return port

    async def ping(self, payload: bytes) -> bytes:
        return payload


def _ray_figures(host: Any, n: int) -> dict[str, float]:
    ray.get(host.ping.remote(PAYLOAD))
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        ray.get(host.ping.remote(PAYLOAD))
        samples.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        ray.get([host.ping.remote(PAYLOAD) for _ in range(1000)])
    rate = rounds * 1000 / (time.perf_counter() - t)
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "pipelined_per_s": rate}


async def _transport_figures(port: int, secret: bytes, n: int) -> dict[str, float]:
    conn = await connect("127.0.0.1", port, secret)
    conn.send(PAYLOAD)
    await conn.recv()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        conn.send(PAYLOAD)
        await conn.recv()
        samples.append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        for _ in range(1000):
            conn.send(PAYLOAD)
        for _ in range(1000):
            await conn.recv()
    rate = rounds * 1000 / (time.perf_counter() - t)
    conn.close()
    return {"p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99), "pipelined_per_s": rate}


def run(n: int) -> dict[str, Any]:
    ray.init(include_dashboard=False, num_cpus=2)
    try:
        host = _EchoHost.remote()
        secret = new_secret()
        port = ray.get(host.listen.remote(secret))
        raw = _ray_figures(host, n)
        direct = asyncio.run(_transport_figures(port, secret, n))
        return {"ray_actor_call": raw, "transport": direct}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.transport", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="sequential round trips of each kind")
    ap.add_argument("--out", default="benchmarks/results/transport.json")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__,
                                       "cpus": os.cpu_count()}}
    res.update(run(args.n))
    out = write_json(args.out, res)
    print(f"\n  {'':28s}{'p50 ms':>10s}{'p99 ms':>10s}{'1,000 in flight, per s':>26s}")
    for name, key in (("raw Ray actor call", "ray_actor_call"), ("direct transport", "transport")):
        r = res[key]
        print(f"  {name:28s}{r['p50_ms']:10.3f}{r['p99_ms']:10.3f}{r['pipelined_per_s']:26,.0f}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
