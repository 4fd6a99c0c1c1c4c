"""Persistence on and off, in one run: what the write-ahead log costs, next to the floor.

    python -m benchmarks.persistence [--groups 100] [--seconds 10] [--quick]

On a local cluster with three zones and packed hosts, the same figures twice, with
``persistence_dir_parent`` unset and then set (a temporary directory on this machine's
disk): 1, 8 and 64 callers on one group and 64 callers spread over ``--groups`` groups
(commands/s, p50/p99), and the fsyncs the hosts made per second (group commit: one fsync
per flush for every member of a host, however many groups wrote in it). The floor is a raw
Ray actor call measured in the same run. When the ``etcd`` binary is installed (Debian/Ubuntu:
``apt-get install etcd-server``), etcd's figures come next to them, from the same run
(``benchmarks/etcd_peer.py``: 3 members on loopback, fsync on, its JSON gateway).
Writes ``benchmarks/results/persistence.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks import etcd_peer
from benchmarks.common import create_groups, teardown, write_json
from benchmarks.fleet import hosts, spread
from raftfleet_ray.demo import start_local_cluster


@ray.remote(num_cpus=0)
class Echo:
    def echo(self, x: Any) -> Any:
        return x


def floor(node_id: str, seconds: float) -> dict[str, float]:
    """Sequential round trips to a plain actor on a worker node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    a = Echo.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    ray.get(a.echo.remote(0))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ray.get(a.echo.remote(n))
        n += 1
    ray.kill(a)
    return {"calls_per_s": n / (time.perf_counter() - t0)}


def fsyncs() -> int:
    return sum(ray.get(h.stats.remote(), timeout=10).get("fsyncs", 0) for h in hosts())


def run_mode(persist: bool, n_groups: int, seconds: float) -> dict[str, Any]:
    cluster, workers = start_local_cluster()
    tmp = tempfile.mkdtemp(prefix="raftfleet-bench-") if persist else None
    try:
        out: dict[str, Any] = {"persistence": persist, "dir": tmp}
        fleet.configure(fleet.FleetConfig(members_per_host=1000, persistence_dir_parent=tmp))
        fleet.activate_all()
        groups = [f"p{i}" for i in range(n_groups)]
        t0 = time.monotonic()
        create_groups(groups, 32, fleet.RaftConfig(data=fleet.Counter))
        out["create_s"] = time.monotonic() - t0
        out["floor"] = floor(next(iter(workers.values())).node_id, 3.0)
        runs = [(f"one_group_{c}", groups[:1], c) for c in (1, 8, 64)] + [("spread_64", groups, 64)]
        for key, gs, callers in runs:
            f0, c0 = fsyncs(), time.perf_counter()
            r = spread(gs, callers, seconds)
            f1, elapsed = fsyncs(), time.perf_counter() - c0
            r["fsyncs_per_s"] = (f1 - f0) / elapsed
            out[key] = r
            print(f"[persistence={'on' if persist else 'off'}] {key}: {r}", flush=True)
        return out
    finally:
        teardown(cluster)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.persistence", description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="20 groups, 3 s runs")
    ap.add_argument("--out", default="benchmarks/results/persistence.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups, args.seconds = 20, 3.0
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__, "cpus": os.cpu_count()}}
    res["off"] = run_mode(False, args.groups, args.seconds)
    res["on"] = run_mode(True, args.groups, args.seconds)
    if etcd_peer.available():
        res["etcd"] = etcd_peer.measure(args.seconds)
        print(f"[etcd] {res['etcd']}", flush=True)
    out = write_json(args.out, res)
    print(f"\n{'':28}{'persistence off':>18}{'persistence on':>18}")
    for key in ("one_group_1", "one_group_8", "one_group_64", "spread_64"):
        off, on = res["off"][key], res["on"][key]
        print(f"{key + ' commands/s':28}{off['commands_per_s']:>18,.0f}{on['commands_per_s']:>18,.0f}")
        print(f"{key + ' p99 ms':28}{off['p99_ms']:>18.1f}{on['p99_ms']:>18.1f}")
        print(f"{key + ' fsyncs/s':28}{off['fsyncs_per_s']:>18.0f}{on['fsyncs_per_s']:>18.0f}")
    ratio = res["on"]["one_group_64"]["commands_per_s"] / res["off"]["one_group_64"]["commands_per_s"]
    res["target_64_callers_persisted_vs_memory"] = [ratio, ratio >= 0.8]
    write_json(args.out, res)
    print(f"{'64 callers: on / off':28}{ratio:>36.2f}  (target >= 0.80: {'met' if ratio >= 0.8 else 'MISSED'})")
    print(f"{'floor: raw actor calls/s':28}{res['off']['floor']['calls_per_s']:>18,.0f}{res['on']['floor']['calls_per_s']:>18,.0f}")
    if "etcd" in res:
        e, on = res["etcd"], res["on"]
        print("\nagainst etcd (3 members, fsync on), persistence on:")
        print(f"  sequential: command p50 {on['one_group_1']['p50_ms']:.2f} ms, etcd put p50 {e['put_p50_ms']:.2f} ms "
              f"({'met' if on['one_group_1']['p50_ms'] <= e['put_p50_ms'] else 'MISSED'}: <= etcd)")
        for n in (8, 64):
            ours, theirs = on[f"one_group_{n}"]["commands_per_s"], e[f"puts_per_s_{n}"]
            print(f"  {n} callers, one group: {ours:,.0f}/s, etcd {theirs:,.0f}/s: {ours / theirs:.2f} x "
                  f"(target >= 2: {'met' if ours >= 2 * theirs else 'MISSED'})")
    else:
        print("\netcd is not installed (apt-get install etcd-server): no peer figures")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
