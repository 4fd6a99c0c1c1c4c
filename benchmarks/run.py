"""raftfleet_ray against the floor, in one run on one local cluster.

    python -m benchmarks.run [--quick] [--out benchmarks/results/latest.json]

The floor is a raw Ray actor call on the same cluster in the same run: a sequential
round trip to an actor on a worker node, and pipelined calls to one actor. Then:
sequential command latency, command throughput at 1, 8 and 64 concurrent callers on one
3-replica group (threads of the driver; every call measured), query latency,
``add_consensus_group`` time and the memory of a member actor. It prints a table with
the targets of the issue and writes everything as JSON. Figures are for this machine
and this run only; the ratios to the floor are what carries over.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import threading
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks.common import pct, teardown, write_json
from raftfleet_ray.api import group_status
from raftfleet_ray.demo import start_local_cluster, wait_until


def latency_stats(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in samples_s]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "mean_ms": statistics.fmean(ms)}


@ray.remote(num_cpus=0)
class Echo:
    """The floor: an actor that does nothing."""

    def echo(self, x: Any) -> Any:
        return x


@ray.remote(num_cpus=0)
class BareReplica:
    """The message pattern of a replicated command without Raft: an async "leader" forwards
    to two async "followers" and answers at the first acknowledgement."""

    def __init__(self) -> None:
        self.peers: list[Any] = []

    def set_peers(self, peers: list[Any]) -> None:
        self.peers = peers

    async def submit(self, x: Any) -> Any:
        import asyncio

        async def ack(ref: Any) -> Any:
            return await ref

        pending = [asyncio.ensure_future(ack(p.deliver.remote(x))) for p in self.peers]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        return x

    async def deliver(self, x: Any) -> list:
        return []


def bare_replication_floor(node_ids: list[str], n_seq: int) -> dict[str, float]:
    """Sequential latency of the bare leader + 2 followers pattern on three nodes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors = [
        BareReplica.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
        for n in node_ids[:3]
    ]
    ray.get(actors[0].set_peers.remote(actors[1:]))
    samples = []
    for i in range(n_seq + 50):
        t = time.perf_counter()
        ray.get(actors[0].submit.remote(b"x" * 16))
        if i >= 50:
            samples.append(time.perf_counter() - t)
    for a in actors:
        ray.kill(a)
    return latency_stats(samples)


def floor(node_id: str, n_seq: int, n_pipe: int) -> dict[str, Any]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    echo = Echo.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    ray.get(echo.echo.remote(0))
    for _ in range(50):
        ray.get(echo.echo.remote(0))
    seq = []
    for _ in range(n_seq):
        t = time.perf_counter()
        ray.get(echo.echo.remote(b"x" * 16))
        seq.append(time.perf_counter() - t)
    t = time.perf_counter()
    ray.get([echo.echo.remote(b"x" * 16) for _ in range(n_pipe)])
    pipe_rate = n_pipe / (time.perf_counter() - t)
    ray.kill(echo)
    return {"round_trip": latency_stats(seq), "pipelined_calls_per_s": pipe_rate}


def sequential(name: str, n: int, fn: Any) -> dict[str, float]:
    for _ in range(20):
        fn(name)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn(name)
        samples.append(time.perf_counter() - t)
    return latency_stats(samples)


def concurrent(name: str, callers: int, per_caller: int) -> dict[str, Any]:
    lat: list[list[float]] = [[] for _ in range(callers)]
    barrier = threading.Barrier(callers + 1)

    def run(i: int) -> None:
        barrier.wait()
        out = lat[i]
        for _ in range(per_caller):
            t = time.perf_counter()
            fleet.command(name, "inc", timeout=5.0)
            out.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(callers)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    flat = [x for xs in lat for x in xs]
    return {"callers": callers, "commands": len(flat), "commands_per_s": len(flat) / elapsed, **latency_stats(flat)}


def member_memory(name: str) -> dict[str, float]:
    infos = []
    for actor, st in group_status(name).items():
        if st:
            infos.append(ray.get(ray.get_actor(actor, namespace="raftfleet").process_info.remote()))
    return {
        "rss_mib": statistics.fmean(i["rss"] for i in infos) / 2**20,
        "uss_mib": statistics.fmean(i["uss"] for i in infos) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    ap.add_argument("--out", default="benchmarks/results/latest.json")
    args = ap.parse_args(argv)
    q = 0.2 if args.quick else 1.0
    n_seq = int(1000 * q)

    cluster, workers = start_local_cluster()
    try:
        fleet.activate_all()
        node = next(iter(workers.values())).node_id
        res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__, "cpus": __import__("os").cpu_count()}}
        res["floor"] = floor(node, n_seq, int(5000 * q))
        res["floor"]["bare_replication"] = bare_replication_floor([w.node_id for w in workers.values()], n_seq)

        t = time.perf_counter()
        fleet.add_consensus_group("bench", 3, fleet.RaftConfig(data=fleet.Counter))
        res["add_consensus_group_s"] = time.perf_counter() - t
        wait_until("bench to have 3 members", lambda: fleet.group_ready("bench", 3), 60)
        t = time.perf_counter()
        fleet.add_consensus_group("bench-2", 3, fleet.RaftConfig(data=fleet.Counter))
        res["add_consensus_group_s"] = (res["add_consensus_group_s"] + time.perf_counter() - t) / 2
        wait_until("bench-2 to have 3 members", lambda: fleet.group_ready("bench-2", 3), 60)

        res["command_sequential"] = sequential("bench", n_seq, lambda g: fleet.command(g, "inc"))
        res["query_sequential"] = sequential("bench", n_seq, lambda g: fleet.query(g, None))
        res["throughput"] = [concurrent("bench", c, max(10, int(per * q))) for c, per in ((1, 1000), (8, 500), (64, 200))]
        res["member_memory"] = member_memory("bench")
        before = fleet.query("bench", None)
        done = sum(t["commands"] for t in res["throughput"]) + n_seq + 20
        res["exactly_once_check"] = {"commands_acked": done, "counter": before}
    finally:
        teardown(cluster)

    rt = res["floor"]["round_trip"]["p50_ms"]
    pipe = res["floor"]["pipelined_calls_per_s"]
    cmd = res["command_sequential"]
    t64 = res["throughput"][-1]
    res["targets"] = {
        "sequential p50 <= 2.5 x raw round trip": [cmd["p50_ms"] / rt, cmd["p50_ms"] / rt <= 2.5],
        "(context) bare replication pattern / raw round trip": [
            res["floor"]["bare_replication"]["p50_ms"] / rt,
            True,
        ],
        "(context) sequential p50 / bare replication pattern": [
            cmd["p50_ms"] / res["floor"]["bare_replication"]["p50_ms"],
            True,
        ],
        "64 callers >= 50% of raw pipelined calls": [t64["commands_per_s"] / pipe, t64["commands_per_s"] >= 0.5 * pipe],
        "one group >= 10,000 commands/s at 64 callers": [t64["commands_per_s"], t64["commands_per_s"] >= 10_000],
        "p99 <= 10 x p50 at every concurrency": [
            max(t["p99_ms"] / t["p50_ms"] for t in res["throughput"]),
            all(t["p99_ms"] <= 10 * t["p50_ms"] for t in res["throughput"]),
        ],
    }
    out = write_json(args.out, res)
    _print(res)
    print(f"\nwritten to {out}")
    return 0


def _print(res: dict[str, Any]) -> None:
    f = res["floor"]
    rows = [
        ("raw Ray round trip (floor)", f"p50 {f['round_trip']['p50_ms']:.2f} ms", f"p99 {f['round_trip']['p99_ms']:.2f} ms"),
        ("raw Ray pipelined calls, one actor (floor)", f"{f['pipelined_calls_per_s']:,.0f} calls/s", ""),
        ("bare leader + 2 followers, no Raft (floor)", f"p50 {f['bare_replication']['p50_ms']:.2f} ms",
         f"p99 {f['bare_replication']['p99_ms']:.2f} ms"),
        ("command, sequential", f"p50 {res['command_sequential']['p50_ms']:.2f} ms", f"p99 {res['command_sequential']['p99_ms']:.2f} ms"),
        ("query, sequential", f"p50 {res['query_sequential']['p50_ms']:.2f} ms", f"p99 {res['query_sequential']['p99_ms']:.2f} ms"),
    ]
    for t in res["throughput"]:
        rows.append((f"commands, {t['callers']} callers", f"{t['commands_per_s']:,.0f} /s",
                     f"p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms"))
    rows.append(("add_consensus_group", f"{res['add_consensus_group_s']:.2f} s", ""))
    m = res["member_memory"]
    rows.append(("member actor memory", f"RSS {m['rss_mib']:.0f} MiB", f"USS {m['uss_mib']:.0f} MiB"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    for r in rows:
        print(f"  {r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    print("\n  targets (this run):")
    for k, (v, ok) in res["targets"].items():
        mark = "   " if k.startswith("(context)") else f"[{'x' if ok else ' '}]"
        print(f"  {mark} {k}: {v:,.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
