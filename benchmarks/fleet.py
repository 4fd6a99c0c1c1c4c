"""A fleet of many groups on one machine: creation time, idle cost, spread throughput, node loss.

    python -m benchmarks.fleet [--groups 1000] [--members-per-host 1000] [--default-groups 20]
                               [--quick] [--out benchmarks/results/fleet.json]

Two runs on a local cluster (a head without a zone and three zone nodes, as the demo):

- *packed* (``members_per_host`` = ``--members-per-host``): ``--groups`` groups of 3;
- *default* (one actor per member): ``--default-groups`` groups of 3 (each member is a
  process of its own, so far fewer fit).

In each run, in this order:

1. create the groups (32 ``add_consensus_group`` calls in flight, 4 in default mode, where
   each member starts a process) and wait until every group has 3 members;
2. wait until every member has quiesced, then measure for ``--idle-seconds`` the CPU time
   and memory of the fleet's processes (hosts, agents, the reconciler, the ClusterActor),
   next to the floor:
   as many plain idle Ray actors, pinned the same way, measured the same way, in the same run;
3. 64 callers on one group, then 64 callers spread over 100 groups (caller i sends to group
   i, i + 64, ... in turn), each for ``--seconds``;
4. one command to every group (the client's leader cache is warm, as in an application that
   uses its groups), then once all are quiesced again, kill a worker node (no drain) and,
   from that instant, send one command to every group (retrying until it is answered): the
   time until each group answers again.

It prints a table with the targets of the density issue and writes everything as JSON.
The cluster detects a dead node within about 2 s (the demo's health-check settings).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import threading
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks.common import create_groups, pct, teardown, write_json
from raftfleet_ray.client import get_client
from raftfleet_ray.demo import start_local_cluster
from raftfleet_ray.runtime.cluster_actor import CLUSTER_ACTOR_NAME
from raftfleet_ray.runtime.factory import BALANCER_NAME
from raftfleet_ray.runtime.names import AGENT_PREFIX, HOST_PREFIX, NAMESPACE


def machine_cpu_s() -> float:
    """CPU seconds used by the whole machine so far (all cores, user + system), /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@ray.remote(num_cpus=0)
class Idle:
    """The floor of idle cost: a Ray actor that does nothing."""

    def process_info(self) -> dict[str, int]:
        from raftfleet_ray.runtime.procinfo import process_info

        return process_info()


def fleet_actors() -> list[Any]:
    """Every process of the fleet: hosts, agents, the reconciler (and, added by the caller,
    the ClusterActor)."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    return [ray.get_actor(n, namespace=NAMESPACE) for n in names
            if n.startswith((HOST_PREFIX, AGENT_PREFIX)) or n == BALANCER_NAME]


def hosts() -> list[Any]:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    return [ray.get_actor(n, namespace=NAMESPACE) for n in names if n.startswith(HOST_PREFIX)]


def cost(actors: list[Any], seconds: float) -> dict[str, float]:
    """CPU (percent of one core, summed over the processes) and memory of ``actors`` over
    ``seconds``, plus the whole machine's CPU over the same window."""
    before = ray.get([a.process_info.remote() for a in actors])
    m0, t0 = machine_cpu_s(), time.monotonic()
    time.sleep(seconds)
    after = ray.get([a.process_info.remote() for a in actors])
    m1, t1 = machine_cpu_s(), time.monotonic()
    cpu_s = sum(b["cpu_us"] - a["cpu_us"] for a, b in zip(before, after, strict=True)) / 1e6
    return {
        "processes": len(actors),
        "cpu_pct_of_one_core": 100.0 * cpu_s / (t1 - t0),
        "machine_cpu_pct_of_one_core": 100.0 * (m1 - m0) / (t1 - t0),
        "rss_mib": sum(b["rss"] for b in after) / 2**20,
        "uss_mib": sum(b["uss"] for b in after) / 2**20,
    }


def cluster_actor_info() -> Any:
    return ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE)


def idle_floor(node_ids: list[str], n: int, seconds: float) -> dict[str, float]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actors = [Idle.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_ids[i % len(node_ids)], soft=False)).remote()
              for i in range(n)]
    ray.get([a.process_info.remote() for a in actors])
    time.sleep(2.0)
    out = cost(actors, seconds)
    for a in actors:
        ray.kill(a)
    return out


def create(n: int, concurrency: int) -> dict[str, float]:
    t0 = time.monotonic()
    create_groups([f"g{i}" for i in range(n)], concurrency, fleet.RaftConfig(data=fleet.Counter))
    registered = time.monotonic() - t0
    while True:
        full = 0
        for h in hosts():
            full += sum(1 for s in ray.get(h.statuses.remote()).values()
                        if s.state_name == "leader" and len(s.members) == 3)
        if full >= n:
            break
        if time.monotonic() - t0 > 1200:
            raise TimeoutError(f"only {full} of {n} groups have 3 members")
        time.sleep(0.5)
    return {"groups": n, "leaders_ready_s": registered, "all_members_s": time.monotonic() - t0}


def wait_quiesced(timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while True:
        awake = sum(ray.get(h.stats.remote())["awake"] for h in hosts())
        if awake == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{awake} members still awake after {timeout}s")
        time.sleep(0.5)


def spread(groups: list[str], callers: int, seconds: float) -> dict[str, Any]:
    """``callers`` threads, caller i sending to groups i, i + callers, ... (mod len) in turn."""
    lat: list[list[float]] = [[] for _ in range(callers)]
    errors = [0]
    stop = threading.Event()
    barrier = threading.Barrier(callers + 1)

    def run(i: int) -> None:
        mine = [groups[k % len(groups)] for k in range(i, i + len(groups) * callers, callers)][: max(1, len(groups))]
        k = 0
        barrier.wait()
        while not stop.is_set():
            g = mine[k % len(mine)]
            k += 1
            t = time.perf_counter()
            try:
                fleet.command(g, "inc", timeout=5.0)
            except fleet.RaftFleetError:
                errors[0] += 1
                continue
            lat[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(callers)]
    for th in threads:
        th.start()
    for g in set(groups):  # warm the leader caches
        fleet.command(g, "inc", timeout=5.0)
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    flat = [x * 1e3 for xs in lat for x in xs]
    return {"callers": callers, "groups": len(set(groups)), "commands": len(flat), "errors": errors[0],
            "commands_per_s": len(flat) / elapsed, "p50_ms": pct(flat, 50), "p99_ms": pct(flat, 99)}


def command_all(groups: list[str]) -> None:
    async def run() -> None:
        sem = asyncio.Semaphore(64)

        async def one(g: str) -> None:
            async with sem:
                await fleet.command_async(g, "inc", timeout=5.0)

        await asyncio.gather(*(one(g) for g in groups))

    get_client().run(run())


def kill_and_recover(cluster: Any, worker: Any, groups: list[str], limit: float = 120.0) -> dict[str, Any]:
    """Kill ``worker``; once its processes are gone (a killed node's workers can answer for
    a moment after the kill), send one command to every group, retrying until it is
    answered; report per group the time from the kill until its answer."""
    from raftfleet_ray.runtime.names import is_host_on_node

    victim_pids = [ray.get(h.stats.remote())["pid"] for h in hosts() if is_host_on_node(ray.get(h.ping.remote()), worker.node_id)]
    answered: dict[str, float] = {}

    async def one(g: str, t0: float) -> None:
        while time.monotonic() - t0 < limit:
            try:
                await fleet.command_async(g, "inc", timeout=1.0, retry=0, retry_interval=0.0)
                answered[g] = time.monotonic() - t0
                return
            except fleet.RaftFleetError:
                await asyncio.sleep(0.05)

    async def all_groups(t0: float) -> None:
        await asyncio.gather(*(one(g, t0) for g in groups))

    t0 = time.monotonic()
    cluster.remove_node(worker, allow_graceful=False)
    while any(os.path.exists(f"/proc/{pid}") for pid in victim_pids) and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    gone = time.monotonic() - t0
    get_client().run(all_groups(t0))
    times = sorted(answered.values())
    return {"groups": len(groups), "answered": len(times), "processes_gone_s": gone,
            "max_s": times[-1] if times else float("nan"), "p50_s": pct(times, 50), "p99_s": pct(times, 99)}


def run_mode(mode: str, n_groups: int, members_per_host: int, args: argparse.Namespace) -> dict[str, Any]:
    cluster, workers = start_local_cluster()
    try:
        node_ids = [w.node_id for w in workers.values()]
        out: dict[str, Any] = {"mode": mode, "members_per_host": members_per_host}
        fleet.configure(fleet.FleetConfig(members_per_host=members_per_host))
        fleet.activate_all()
        # Packed: a new member is a method call. Default: a new process each, 2 cores.
        out["create"] = create(n_groups, 32 if members_per_host > 1 else 4)
        print(f"[{mode}] created {n_groups} groups: {out['create']}", flush=True)
        out["quiesce_wait_s"] = wait_quiesced()
        actors = fleet_actors() + [cluster_actor_info()]
        time.sleep(2.0)
        out["idle"] = cost(actors, args.idle_seconds)
        out["idle_floor"] = idle_floor(node_ids, len(actors), args.idle_seconds)
        print(f"[{mode}] idle: {out['idle']}\n[{mode}] floor: {out['idle_floor']}", flush=True)
        groups = [f"g{i}" for i in range(n_groups)]
        out["one_group_64"] = spread(groups[:1], 64, args.seconds)
        out["spread_64"] = spread(groups[: min(100, n_groups)], 64, args.seconds)
        print(f"[{mode}] one group: {out['one_group_64']}\n[{mode}] spread: {out['spread_64']}", flush=True)
        # A client that has used every group (its leader cache is warm), then idle groups.
        command_all(groups)
        wait_quiesced()
        out["node_kill"] = kill_and_recover(cluster, workers[sorted(workers)[0]], groups)
        print(f"[{mode}] node kill: {out['node_kill']}", flush=True)
        return out
    finally:
        teardown(cluster)


def targets(packed: dict[str, Any]) -> dict[str, list]:
    c, idle = packed["create"], packed["idle"]
    one, spr, kill = packed["one_group_64"], packed["spread_64"], packed["node_kill"]
    n = c["groups"]
    return {
        f"{n} groups x 3 created in <= 60 s": [c["all_members_s"], c["all_members_s"] <= 60],
        f"{n} idle groups: <= 10 % of one core in all": [idle["cpu_pct_of_one_core"], idle["cpu_pct_of_one_core"] <= 10],
        f"{n} idle groups: <= 3 GiB in all (RSS, MiB)": [idle["rss_mib"], idle["rss_mib"] <= 3 * 1024],
        "64 callers over 100 groups >= 2 x one group (ratio)": [
            spr["commands_per_s"] / one["commands_per_s"], spr["commands_per_s"] >= 2 * one["commands_per_s"]],
        f"node killed: all {n} groups answer within 5 s (max s)": [
            kill["max_s"], kill["answered"] == kill["groups"] and kill["max_s"] <= 5.0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--members-per-host", type=int, default=1000)
    ap.add_argument("--default-groups", type=int, default=20, help="groups in the default mode run (0: skip it)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="100 packed groups, 5 default, short runs")
    ap.add_argument("--out", default="benchmarks/results/fleet.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups, args.default_groups, args.seconds, args.idle_seconds = 100, 5, 3.0, 5.0
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__, "cpus": os.cpu_count()}}
    res["packed"] = run_mode("packed", args.groups, args.members_per_host, args)
    if args.default_groups:
        res["default"] = run_mode("default", args.default_groups, 1, args)
    res["targets"] = targets(res["packed"])
    out = write_json(args.out, res)
    _print(res)
    print(f"\nwritten to {out}")
    return 0


def _print(res: dict[str, Any]) -> None:
    rows = []
    for mode in ("packed", "default"):
        r = res.get(mode)
        if r is None:
            continue
        c, i, f = r["create"], r["idle"], r["idle_floor"]
        rows += [
            (f"{mode}: create {c['groups']} groups x 3", f"{c['all_members_s']:.1f} s", f"leaders ready {c['leaders_ready_s']:.1f} s"),
            (f"{mode}: idle, {i['processes']} fleet processes", f"{i['cpu_pct_of_one_core']:.1f} % of a core",
             f"RSS {i['rss_mib']:,.0f} MiB, USS {i['uss_mib']:,.0f} MiB; machine {i['machine_cpu_pct_of_one_core']:.0f} %"),
            (f"{mode}: floor, {f['processes']} idle Ray actors", f"{f['cpu_pct_of_one_core']:.1f} % of a core",
             f"RSS {f['rss_mib']:,.0f} MiB; machine {f['machine_cpu_pct_of_one_core']:.0f} %"),
        ]
        for key, label in (("one_group_64", "64 callers, 1 group"), ("spread_64", "64 callers, min(100, N) groups")):
            t = r[key]
            rows.append((f"{mode}: {label}", f"{t['commands_per_s']:,.0f} /s",
                         f"p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms, {t['errors']} errors"))
        k = r["node_kill"]
        rows.append((f"{mode}: node killed, all groups answer", f"max {k['max_s']:.2f} s",
                     f"p50 {k['p50_s']:.2f} s, p99 {k['p99_s']:.2f} s, {k['answered']}/{k['groups']}; "
                     f"its processes gone after {k['processes_gone_s']:.2f} s"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    for r in rows:
        print(f"  {r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    print("\n  targets (packed run):")
    for k, (v, ok) in res["targets"].items():
        print(f"  [{'x' if ok else ' '}] {k}: {v:,.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
