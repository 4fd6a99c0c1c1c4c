"""Creating groups one ``add_consensus_group`` at a time, as an application adds them.

    python -m benchmarks.creation [--groups 1000] [--members-per-host 1000] [--quick]
                                  [--out benchmarks/results/creation.json]

On a local cluster (a head without a zone and three zone nodes, as the demo), packed hosts,
no persistence: ``--groups`` groups of 3 created by one caller, each call waiting until the
group is born (all 3 voters started, the first entry committed on a majority). Reports the
total, the first and the last hundred (creation must not get slower as the fleet grows:
each creation used to cost a reconcile round over every group), the per-call p50 and p99,
and next to them the floor of the same run: a raw Ray actor call's round trip.

Target (issue 14): 1,000 groups in <= 60 s, the last 100 no slower than the first 100.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks.common import pct, teardown, write_json
from raftfleet_ray.demo import start_local_cluster
from raftfleet_ray.runtime.factory import balancer_handle


@ray.remote(num_cpus=0)
class _Echo:
    def ping(self) -> int:
        return 0


def floor_round_trip_ms(n: int = 300) -> float:
    echo = _Echo.remote()
    ray.get(echo.ping.remote())
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        ray.get(echo.ping.remote())
        samples.append((time.perf_counter() - t) * 1e3)
    ray.kill(echo)
    return pct(samples, 50)


def run(n_groups: int, members_per_host: int) -> dict[str, Any]:
    cluster, _workers = start_local_cluster()
    try:
        fleet.configure(fleet.FleetConfig(members_per_host=members_per_host))
        fleet.activate_all()
        cfg = fleet.RaftConfig(data=fleet.Counter)
        fleet.add_consensus_group("warm-up", 3, cfg, await_timeout=120.0)  # hosts and agents up
        floor = floor_round_trip_ms()
        durations: list[float] = []
        before = ray.get(balancer_handle().creation_profile.remote())
        t0 = time.perf_counter()
        for i in range(n_groups):
            t = time.perf_counter()
            fleet.add_consensus_group(f"g{i}", 3, cfg, await_timeout=120.0)
            durations.append(time.perf_counter() - t)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1} groups in {time.perf_counter() - t0:.1f} s "
                      f"(last 100: {sum(durations[-100:]):.1f} s)", flush=True)
        total = time.perf_counter() - t0
        after = ray.get(balancer_handle().creation_profile.remote())
        # Where a creation's time goes: the reconciler's phases of a birth (mean ms per group),
        # and the rest of the call (the API's checks and registration, the calls' own hops).
        phases = {k: (after.get(k, 0.0) - before.get(k, 0.0)) * 1e3 / n_groups for k in after if k != "births"}
        phases["outside_the_birth"] = total * 1e3 / n_groups - sum(phases.values())
        assert fleet.command(f"g{n_groups - 1}", "inc") == 0
        head = durations[: min(100, n_groups)]
        tail = durations[-min(100, n_groups):]
        ms = [d * 1e3 for d in durations]
        return {
            "groups": n_groups, "members_per_host": members_per_host, "total_s": total,
            "first_100_s": sum(head), "last_100_s": sum(tail),
            "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": max(ms),
            "floor_ray_round_trip_p50_ms": floor,
            "mean_ms_per_phase": phases,
        }
    finally:
        teardown(cluster)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.creation", description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=1000)
    ap.add_argument("--members-per-host", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 groups")
    ap.add_argument("--out", default="benchmarks/results/creation.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups = 100
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__,
                                       "cpus": os.cpu_count()}}
    res["packed"] = r = run(args.groups, args.members_per_host)
    out = write_json(args.out, res)
    print(f"\n  {r['groups']} groups x 3 created one at a time in {r['total_s']:.1f} s "
          f"(target <= 60 s for 1,000: {'met' if r['total_s'] <= 60 * r['groups'] / 1000 else 'MISSED'})")
    print(f"  first 100: {r['first_100_s']:.1f} s, last 100: {r['last_100_s']:.1f} s "
          f"({'met' if r['last_100_s'] <= r['first_100_s'] else 'MISSED'}: last no slower than first)")
    print(f"  per call p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; "
          f"floor: raw Ray round trip p50 {r['floor_ray_round_trip_p50_ms']:.2f} ms")
    print("  mean ms per creation, by phase: " + ", ".join(f"{k} {v:.1f}" for k, v in r["mean_ms_per_phase"].items()))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
