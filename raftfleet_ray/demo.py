"""The main job: raftfleet_ray on a local multi-node Ray cluster with three zones.

    python -m raftfleet_ray.demo

Starts a Ray cluster of a head and three worker nodes on this machine (one per zone,
``ray.cluster_utils.Cluster``), activates the workers, creates consensus groups, runs
commands and queries, kills the node that hosts a leader, shows the groups still
answering with nothing lost and the reconciler repairing the membership, and shuts
everything down.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .logs import LOG_LEVEL_ENV, apply_env_log_level

ZONES = ("zone-a", "zone-b", "zone-c")


def _say(msg: str) -> None:
    print(msg, flush=True)


def _table(rows: list[tuple], header: tuple) -> str:
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join(["  " + line(header), "  " + line(tuple("-" * w for w in widths))] + ["  " + line(r) for r in rows])


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: {what} did not happen within {timeout}s")
        time.sleep(interval)


def quiet_ray_driver() -> bool:
    """Keep the messages the cluster publishes to drivers (a killed node's raylet sends its last
    20 log lines, "Raylet is terminated...", plus "marked dead" and task-retry notices) off
    this process's terminal: they go to the ``raftfleet_ray.demo`` logger at DEBUG instead.

    Ray prints them from its driver thread ``listen_error_messages`` through
    ``ray._private.worker.print_to_stdstream``, whatever ``log_to_driver`` says, and offers no
    switch; so this wraps that function (private API: on a Ray without it, returns False and
    the messages show as before). Worker logs (``log_to_driver``) are not touched."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:
        return False
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None:
        return False
    if getattr(original, "_raftfleet_quiet", False):
        return True
    demo_log = logging.getLogger(__name__)

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet":  # what listen_error_messages sends
            demo_log.debug("ray: %s", "\n".join(str(line) for line in data.get("lines", [])))
            return
        original(data, ignore_prefix)

    print_to_stdstream._raftfleet_quiet = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_to_stdstream
    return True


def start_local_cluster(zones: tuple[str, ...] = ZONES, verbose: bool = False) -> tuple[Any, dict[str, Any]]:
    """A head node (no zone: it hosts no member) and one worker node per zone; this process
    connected as the driver. Quiet unless ``verbose``: Ray's own INFO lines, the workers'
    output and the messages Ray publishes about dead nodes stay off the terminal (Ray's log
    files under /tmp/ray keep everything)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            # No dashboard head (about 900 MiB with ray[default]); the nodes' metrics agents
            # still export the fleet's metrics.
            "include_dashboard": False,
            # Notice a killed node within about 2 s (DESIGN §8).
            "_system_config": {
                "health_check_initial_delay_ms": 0,
                "health_check_period_ms": 500,
                "health_check_failure_threshold": 4,
            },
        },
    )
    workers = {z: cluster.add_node(num_cpus=1, resources={f"zone:{z}": 1000}) for z in zones}
    cluster.wait_for_nodes()
    if not verbose:
        quiet_ray_driver()
    ray.init(address=cluster.address, namespace="raftfleet", log_to_driver=verbose,
             logging_level=logging.INFO if verbose else logging.WARNING)
    return cluster, workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftfleet_ray.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=3, help="how many key-value groups to create (default 3)")
    parser.add_argument("--verbose", action="store_true",
                        help="show raftfleet_ray's logs (INFO, the actors' too) and Ray's own messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.verbose:
        # The local nodes start from this process, so their workers inherit the variable.
        os.environ.setdefault(LOG_LEVEL_ENV, "INFO")
    apply_env_log_level()  # RAFTFLEET_LOG_LEVEL wins over --verbose for raftfleet_ray's loggers

    import ray

    import raftfleet_ray as fleet
    from raftfleet_ray.runtime.names import on_node

    t0 = time.monotonic()
    _say(f"1. starting a local Ray cluster: a head node and {len(ZONES)} worker nodes in zones {', '.join(ZONES)}")
    cluster, workers = start_local_cluster(verbose=args.verbose)
    node_zone = {w.node_id: z for z, w in workers.items()}
    try:
        _say(f"   up in {time.monotonic() - t0:.1f}s")

        _say("2. activating every node that declares a zone (a zone:<name> resource or a zone label)")
        fleet.configure(fleet.FleetConfig(balancing_interval=5.0, node_purge_reconnect_interval=2.0))
        activated = fleet.activate_all()
        source = {n: d["zone_source"] for n, d in fleet.describe_nodes().items()}
        _say(_table([(n[:12], z, source.get(n) or "?") for n, z in sorted(activated.items(), key=lambda x: x[1])],
                    ("node", "zone", "declared by")))

        names = ["counter"] + [f"kv-{i}" for i in range(args.groups)]
        _say(f"3. creating {len(names)} consensus groups of 3 replicas: {', '.join(names)}")
        fleet.add_consensus_group("counter", 3, fleet.RaftConfig(data=fleet.Counter))
        for name in names[1:]:
            fleet.add_consensus_group(name, 3, fleet.RaftConfig(data=fleet.KeyValue))
        for name in names:
            wait_until(f"{name} has 3 members", lambda n=name: fleet.group_ready(n, 3), 60)
        _say(f"   consensus_groups() = {fleet.consensus_groups()}")
        _show_placement(names, node_zone)

        _say("4. commands and queries")
        for _ in range(20):
            fleet.command("counter", "inc")
        _say(f"   20 x command('counter', 'inc') -> query('counter') = {fleet.query('counter', None)}")
        for i, name in enumerate(names[1:]):
            fleet.command(name, ("put", f"key-{i}", {"written": i}))
            _say(f"   command({name!r}, ('put', 'key-{i}', ...)); query -> {fleet.query(name, ('get', f'key-{i}'))}")
        try:
            fleet.command(names[1], ("no-such-command",))
        except ValueError as exc:
            _say(f"   a command that raises is answered with its exception: ValueError: {exc}")

        victim = _leader_node("counter")
        zone = node_zone.get(victim, "?")
        _say(f"5. killing node {victim[:12]} ({zone}), which hosts the leader of 'counter'")
        before = fleet.query("counter", None)
        cluster.remove_node(workers[zone], allow_graceful=False)
        t_kill = time.monotonic()
        new_leader = wait_until("a new leader of 'counter'", lambda: _leader_elsewhere("counter", victim), 60, 0.05)
        _say(f"   a new leader of 'counter' was elected in {node_zone.get(new_leader, '?')} "
             f"{time.monotonic() - t_kill:.2f}s after the kill")
        value = fleet.command("counter", "inc", timeout=1.0, retry=10, retry_interval=0.5)
        _say(f"   the next increment returned {value}; the counter was {before}: nothing lost, nothing doubled")
        for name in names[1:]:
            i = names.index(name) - 1
            got = fleet.query(name, ("get", f"key-{i}"), timeout=1.0, retry=10, retry_interval=0.5)
            _say(f"   query({name!r}, ('get', 'key-{i}')) = {got}")
        wait_until("the reconciler to purge the dead node",
                   lambda: victim not in {n for ns in fleet.active_nodes().values() for n in ns}, 60, 0.2)
        _say(f"   Ray reports {victim[:12]} dead: the reconciler purged it, active_nodes() = "
             f"{ {z: [n[:12] for n in ns] for z, ns in fleet.active_nodes().items()} }")
        def repaired() -> bool:
            leads = [fleet.leader_status(n) for n in names]
            return all(ld is not None and not any(on_node(m, victim) for m in ld["members"]) for ld in leads)

        wait_until("the dead members to leave their groups", repaired, 60, 0.2)
        _say("   and removed its members from every group (two zones are left for three replicas)")
        _say(f"   find_consensus_group_with_no_established_leader() = "
             f"{fleet.find_consensus_group_with_no_established_leader()}")
        _say(f"   explain_placement('counter')['next_step'] = {fleet.explain_placement('counter')['next_step']!r}")
        _show_placement(names, node_zone)

        _say("6. removing the groups")
        for name in names:
            fleet.remove_consensus_group(name)
        _say(f"   consensus_groups() = {fleet.consensus_groups()}")
        _say(f"done in {time.monotonic() - t0:.1f}s")
        return 0
    finally:
        try:
            fleet.shutdown_fleet()
        finally:
            ray.shutdown()
            cluster.shutdown()


def _leader_elsewhere(name: str, dead_node: str) -> str | None:
    """The node of a leader of ``name`` that is not on ``dead_node``, if there is one."""
    from raftfleet_ray.api import group_status

    for s in group_status(name).values():
        if s and s["state_name"] == "leader" and s["node_id"] != dead_node:
            return s["node_id"]
    return None


def _leader_node(name: str) -> str:
    from raftfleet_ray.api import group_status

    for s in group_status(name).values():
        if s and s["state_name"] == "leader":
            return s["node_id"]
    raise RuntimeError(f"no leader for {name}")


def _show_placement(names: list[str], node_zone: dict[str, str]) -> None:
    from raftfleet_ray.api import group_status

    rows = []
    for name in names:
        sts = group_status(name)
        for s in sorted((s for s in sts.values() if s), key=lambda s: node_zone.get(s["node_id"], "")):
            rows.append((name, node_zone.get(s["node_id"], "?"), s["node_id"][:12], s["state_name"], s["current_term"], s["commit_index"]))
    _say(_table(rows, ("group", "zone", "node", "role", "term", "commit")))


if __name__ == "__main__":
    sys.exit(main())
