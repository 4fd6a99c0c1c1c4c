"""How fast the fleet keeps itself: convergence after growth, node loss and a drain.

    python -m benchmarks.reconcile [--groups 30] [--packed-groups 300] [--quick]
                                   [--out benchmarks/results/reconcile.json]

Two runs on a local cluster (a head without a zone, three zone nodes, as the demo; three
more zone nodes are added in the run), with ``balancing_interval`` 1 s:

- *default* mode (one actor per member) with ``--groups`` groups of 3;
- *packed* mode (``members_per_host=1000``) with ``--packed-groups`` groups of 3.

In each run, with 8 client threads sending commands to random groups all along:

1. grow from 3 to 6 nodes (``activate_all``): the time until the reconciler plans nothing
   for every group (every group on its desired nodes, its leader on its desired leader node);
2. kill one of the new nodes (no drain): the time until every group again has 3 voters and
   the reconciler plans nothing;
3. drain another (``deactivate(wait=True)``): the time the call blocks, and until converged.

For each phase: the client errors (commands that failed after their retries) and the p50 /
p99 latency of the commands sent during it. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import threading
import time
from typing import Any

import ray

import raftfleet_ray as fleet
from benchmarks.common import create_groups, pct, teardown, write_json
from raftfleet_ray.demo import start_local_cluster
from raftfleet_ray.runtime.factory import balancer_handle


class Load:
    """Client threads sending commands to random groups; latencies and errors per phase."""

    def __init__(self, groups: list[str], threads: int = 8) -> None:
        self.groups = groups
        self.phase = "setup"
        self.lat: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        rng = random.Random(i)
        while not self.stop.is_set():
            g = rng.choice(self.groups)
            phase = self.phase
            t = time.perf_counter()
            try:
                fleet.command(g, "inc", timeout=1.0, retry=10, retry_interval=0.2)
            except fleet.RaftFleetError:
                self.errors[phase] = self.errors.get(phase, 0) + 1
                continue
            self.lat.setdefault(phase, []).append(time.perf_counter() - t)
            time.sleep(0.01)

    def summary(self, phase: str) -> dict[str, float]:
        ms = [x * 1e3 for x in self.lat.get(phase, [])]
        return {"commands": len(ms), "errors": self.errors.get(phase, 0), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99)}


def wait_converged(after: float, n_groups: int, timeout: float = 900.0) -> float:
    """Seconds from ``after`` until a round started later planned nothing for every group."""
    b = balancer_handle()
    while True:
        rep = ray.get(b.last_round.remote())
        if rep.started > after and rep.planned.get("Nothing", 0) == n_groups and rep.groups == n_groups:
            return time.time() - after
        if time.time() - after > timeout:
            raise TimeoutError(f"not converged after {timeout}s: last round planned {dict(rep.planned)}")
        time.sleep(0.2)


def run_mode(mode: str, n_groups: int, members_per_host: int) -> dict[str, Any]:
    cluster, workers = start_local_cluster()
    try:
        fleet.configure(fleet.FleetConfig(balancing_interval=1.0, members_per_host=members_per_host))
        fleet.activate_all()
        t0 = time.time()
        create_groups([f"c{i}" for i in range(n_groups)], 32 if members_per_host > 1 else 4,
                      fleet.RaftConfig(data=fleet.Counter), await_timeout=300.0)
        out: dict[str, Any] = {"mode": mode, "groups": n_groups, "members_per_host": members_per_host}
        out["create_converged_s"] = wait_converged(t0, n_groups) if n_groups else 0.0
        groups = [f"c{i}" for i in range(n_groups)]
        load = Load(groups)
        load.start()

        load.phase = "grow"
        new = [cluster.add_node(num_cpus=1, resources={f"zone:{z}": 1000}) for z in sorted(workers)]
        cluster.wait_for_nodes()
        t = time.time()
        fleet.activate_all()
        out["grow_3_to_6_s"] = wait_converged(t, n_groups)
        out["grow_load"] = load.summary("grow")
        print(f"[{mode}] grow: {out['grow_3_to_6_s']:.1f} s {out['grow_load']}", flush=True)

        load.phase = "kill"
        t = time.time()
        cluster.remove_node(new[0], allow_graceful=False)
        # Converged only counts once the reconciler knows (Ray marks the node dead in ~2 s here).
        while new[0].node_id in {n for ns in fleet.active_nodes().values() for n in ns}:
            time.sleep(0.1)
        out["node_dead_purged_s"] = time.time() - t
        out["node_kill_s"] = wait_converged(time.time(), n_groups) + out["node_dead_purged_s"]
        out["kill_load"] = load.summary("kill")
        print(f"[{mode}] kill: {out['node_kill_s']:.1f} s {out['kill_load']}", flush=True)

        load.phase = "drain"
        t = time.time()
        fleet.deactivate(new[1].node_id, wait=True, timeout=900)
        out["drain_wait_s"] = time.time() - t
        out["drain_s"] = wait_converged(t, n_groups)
        out["drain_load"] = load.summary("drain")
        print(f"[{mode}] drain: {out['drain_s']:.1f} s (deactivate returned after {out['drain_wait_s']:.1f} s) "
              f"{out['drain_load']}", flush=True)
        load.stop.set()
        for th in load.threads:
            th.join(60)  # before Ray goes: a retry after ray.shutdown() would connect again
        return out
    finally:
        teardown(cluster)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reconcile", description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=30, help="groups in the default-mode run (0: skip it)")
    ap.add_argument("--packed-groups", type=int, default=300, help="groups in the packed run (0: skip it)")
    ap.add_argument("--quick", action="store_true", help="6 and 30 groups")
    ap.add_argument("--out", default="benchmarks/results/reconcile.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.groups, args.packed_groups = 6, 30
    res: dict[str, Any] = {"machine": {"python": platform.python_version(), "ray": ray.__version__, "cpus": os.cpu_count()}}
    if args.groups:
        res["default"] = run_mode("default", args.groups, 1)
    if args.packed_groups:
        res["packed"] = run_mode("packed", args.packed_groups, 1000)
    out = write_json(args.out, res)
    print()
    for mode in ("default", "packed"):
        r = res.get(mode)
        if not r:
            continue
        print(f"  {mode}, {r['groups']} groups x 3 (converged after creation in {r['create_converged_s']:.1f} s):")
        for phase, key, lkey in (("grow 3 -> 6 nodes", "grow_3_to_6_s", "grow_load"),
                                 ("node killed", "node_kill_s", "kill_load"), ("drain", "drain_s", "drain_load")):
            load = r[lkey]
            print(f"    {phase:18s} converged in {r[key]:6.1f} s; meanwhile {load['commands']} commands, "
                  f"{load['errors']} errors, p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
