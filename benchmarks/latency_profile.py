"""Where a sequential command's time goes, by subtraction, in one run on a local cluster.

    python -m benchmarks.latency_profile [--n 2000] [--persistent]

Packed hosts (``members_per_host=1000``), three zone nodes. Each line adds one part of the
path to the one before, and the difference is that part's cost (p50 of ``--n`` calls):

1. a raw Ray actor call (the floor);
2. ``command`` on a 1-replica group: the client (the caller's thread to the client loop and
   back), one direct round trip to the leader's host, the host's work (propose, append, apply);
3. ``command_async`` on the same group from an asyncio loop: 2 without the thread hops;
4. ``command`` on a 3-replica group: 2 plus replication (the leader's append to its two
   followers and their answers, over direct connections);
5. ``query`` on the 3-replica group (ReadIndex: a heartbeat round instead of an append).

Written to ``benchmarks/results/latency_profile.json`` (issue 15: the profile behind the
sequential-latency targets).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks.common import pct, teardown, write_json
from raftfleet_ray.demo import start_local_cluster


@ray.remote(num_cpus=0)
class _Echo:
    def ping(self) -> int:
        return 0


def _p50(fn: Any, n: int) -> float:
    fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return pct(samples, 50)


async def _p50_async(fn: Any, n: int) -> float:
    await fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1e3)
    return pct(samples, 50)


def run(n: int, persistent: bool) -> dict[str, float]:
    cluster, _ = start_local_cluster()
    tmp = tempfile.mkdtemp(prefix="raftfleet-profile-") if persistent else None
    try:
        fleet.configure(fleet.FleetConfig(members_per_host=1000, persistence_dir_parent=tmp))
        fleet.activate_all()
        cfg = fleet.RaftConfig(data=fleet.Counter)
        fleet.add_consensus_group("one", 1, cfg)
        fleet.add_consensus_group("three", 3, cfg)
        for g in ("one", "three"):  # connections open at the first batches
            for _ in range(50):
                fleet.command(g, "inc")
        echo = _Echo.remote()
        out = {
            "raw_ray_call": _p50(lambda: ray.get(echo.ping.remote()), n),
            "command_1_replica": _p50(lambda: fleet.command("one", "inc"), n),
            "command_async_1_replica": asyncio.run(_p50_async(lambda: fleet.command_async("one", "inc"), n)),
            "command_3_replicas": _p50(lambda: fleet.command("three", "inc"), n),
            "query_3_replicas": _p50(lambda: fleet.query("three", None), n),
        }
        out["thread_hops"] = out["command_1_replica"] - out["command_async_1_replica"]
        out["replication"] = out["command_3_replicas"] - out["command_1_replica"]
        return out
    finally:
        teardown(cluster)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.latency_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/latency_profile.json")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__,
                                       "cpus": os.cpu_count()}, "persistent": args.persistent}
    res["p50_ms"] = r = run(args.n, args.persistent)
    out = write_json(args.out, res)
    print(f"\n  p50, ms ({'persistence on' if args.persistent else 'in memory'}):")
    for k, v in r.items():
        print(f"  {k:28s}{v:8.3f}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
