"""The fleet keeps every group (issue 14), on real clusters: silence is not death, a group
whose voters are all gone is kept and reported lost until the operator repairs it, and a
removed group stays removed through restarts.

Each test starts its own cluster (a head without zone, three workers in zones z1..z3 that
declare stable names ``raftfleet_node:<name>``, so that a node restarted under its name finds
its files again), as ``test_fleet_restart.py`` does.
"""

from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster

import raftfleet_ray as fleet
from raftfleet_ray.runtime.cluster_actor import get_or_create_cluster_actor
from raftfleet_ray.runtime.factory import BALANCER_NAME
from raftfleet_ray.runtime.names import AGENT_PREFIX, NAMESPACE

pytestmark = pytest.mark.timeout(300)

NODES = {"na": "z1", "nb": "z2", "nc": "z3"}
HEAD_SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}
CONFIG = fleet.RaftConfig(data=fleet.Counter)


def add_node(cluster: Cluster, name: str) -> None:
    cluster.add_node(num_cpus=1, object_store_memory=100 << 20,
                     resources={f"zone:{NODES[name]}": 1000, f"raftfleet_node:{name}": 1})


def start(**fleet_config) -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={
        "include_dashboard": False, "num_cpus": 1, "object_store_memory": 100 << 20, "_system_config": HEAD_SYSTEM_CONFIG})
    for name in NODES:
        add_node(cluster, name)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="raftfleet")
    fleet.configure(fleet.FleetConfig(balancing_interval=0.5, **fleet_config))
    fleet.activate_all()
    return cluster


def stop(cluster: Cluster) -> None:
    try:
        fleet.shutdown_fleet()
    finally:
        ray.shutdown()
        cluster.shutdown()


def node_named(cluster: Cluster, name: str):
    for n in cluster.worker_nodes:
        info = next(x for x in ray.nodes() if x["NodeID"] == n.node_id)
        if f"raftfleet_node:{name}" in info["Resources"]:
            return n
    raise LookupError(name)


def rounds(n: int) -> None:
    """Until ``n`` more reconcile rounds have run."""
    balancer = ray.get_actor(BALANCER_NAME, namespace=NAMESPACE)
    for _ in range(n):
        ray.get(balancer.wait_round.remote(30.0), timeout=60)


def test_silent_agents_leave_every_group_in_place(wait_for):
    """Issue 14 finding 1: every node's agent killed for good while the nodes and the members
    live on. The reconciler observes nothing at all for many rounds: not one group is removed
    or marked lost, and the groups keep answering. Activating the nodes again brings the
    agents back. (Before: every group was removed after 3 rounds.)"""
    cluster = start()
    try:
        groups = ["s0", "s1", "s2"]
        for g in groups:
            fleet.add_consensus_group(g, 3, CONFIG, await_timeout=30)
        wait_for(lambda: all(fleet.group_ready(g, 3) for g in groups), 60, "the groups ready")
        for g in groups:
            assert fleet.command(g, "inc") == 0
        zones = {n: z for z, ns in fleet.active_nodes().items() for n in ns}
        for node in zones:
            ray.kill(ray.get_actor(f"{AGENT_PREFIX}{node}", namespace=NAMESPACE), no_restart=True)
        rounds(12)  # far beyond the 3 observations that used to remove a group
        assert set(fleet.consensus_groups()) == set(groups)
        assert fleet.lost_consensus_groups() == {}
        for g in groups:  # the members never stopped: the groups still answer
            assert fleet.command(g, "inc", timeout=2.0, retry=5) == 1
        for node, zone in zones.items():
            fleet.activate(zone, node)  # restarts the agent, which adopts the node's hosts
        # (The first agent back reports the nodes whose agents are still down as unreachable,
        # and an idle leader keeps their members as unresponsive until traffic: send some.)
        assert [fleet.command(g, "inc", timeout=2.0, retry=5) for g in groups] == [2, 2, 2]
        wait_for(lambda: all(fleet.group_ready(g, 3) for g in groups), 60, "the groups ready again")
        assert fleet.find_consensus_group_with_no_established_leader() is None
        assert set(fleet.consensus_groups()) == set(groups)
    finally:
        stop(cluster)


def test_a_group_whose_voters_all_died_is_lost_until_the_operator_repairs_it_from_files(tmp_path, wait_for):
    """Every node of the group killed; one comes back under its name with its files. One file
    of three is no majority: a restore from it could roll back acknowledged writes (finding
    3), so the group is kept and reported lost, its commands raise GroupLostError, and
    repair_consensus_group(unsafe=True) restores it from that file, saying what may be lost."""
    cluster = start(members_per_host=8, persistence_dir_parent=str(tmp_path / "data"))
    try:
        fleet.add_consensus_group("lost", 3, CONFIG, await_timeout=30)
        wait_for(lambda: fleet.group_ready("lost", 3), 60, "lost ready")
        for _ in range(12):
            fleet.command("lost", "inc")
        wait_for(lambda: fleet.group_ready("lost", 3), 30, "every member to apply the writes")
        # The reconciler records the commit indexes it sees now and then (they must outlive
        # it: it may die with the nodes): the lost mark measures what may be lost against them.
        wait_for(lambda: ray.get(get_or_create_cluster_actor().commits_of.remote(["lost"])).get("lost", 0) >= 12, 30,
                 "the commit index to be recorded")
        workers = list(cluster.worker_nodes)
        dead = {w.node_id for w in workers}
        for node in workers:
            cluster.remove_node(node, allow_graceful=False)
        wait_for(lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] in dead), 60, "Ray to see them dead")
        add_node(cluster, "na")
        cluster.wait_for_nodes()
        fleet.activate_all()
        # (Marked lost as soon as its nodes are dead, with no file readable; the reason follows
        # what is readable now.)
        mark = wait_for(lambda: (m := fleet.lost_consensus_groups().get("lost")) and "only 1" in m["reason"] and m,
                        60, "'lost' to be reported lost, with one file of three readable")
        assert "3 of its 3 voter(s) are definitely gone" in mark["reason"], mark
        assert mark["highest_commit_index"] >= 12
        rounds(3)
        assert "lost" in fleet.consensus_groups() and not fleet.group_status("lost")  # kept, never restored alone
        assert fleet.find_consensus_group_with_no_established_leader() == ("lost", [])
        with pytest.raises(fleet.GroupLostError) as err:
            fleet.command("lost", "inc", timeout=0.5, retry=1, retry_interval=0.1)
        assert err.value.outcome_unknown and "repair" in str(err.value)
        with pytest.raises(fleet.RepairRefusedError) as refused:
            fleet.repair_consensus_group("lost")
        assert refused.value.plan["source"] == "files"
        report = fleet.repair_consensus_group("lost", unsafe=True)
        assert report["source"] == "files" and report["stop"] == [], report
        # na's member had every write: nothing acknowledged is lost, and the report says so.
        assert report["recovered_index"] >= report["highest_commit_index"] >= 12 and report["may_lose_at_least"] == 0
        assert fleet.query("lost", None, timeout=1.0, retry=20, retry_interval=0.3) == 12
        assert fleet.command("lost", "inc") == 12
        wait_for(lambda: "lost" not in fleet.lost_consensus_groups(), 30, "the lost mark to be cleared")
    finally:
        stop(cluster)


def test_a_removed_group_stays_removed_after_a_node_restart(tmp_path, wait_for):
    """Issue 14 finding 2: with persistence and one member per host, the members of a removed
    group are retired (durably) before their hosts go, so a node restarted under its name,
    and a reconciler restarted (it scans every node's files again), never bring it back."""
    cluster = start(members_per_host=1, persistence_dir_parent=str(tmp_path / "data"))
    try:
        fleet.add_consensus_group("keep", 3, CONFIG, await_timeout=30)
        fleet.add_consensus_group("gone", 3, CONFIG, await_timeout=30)
        wait_for(lambda: fleet.group_ready("keep", 3) and fleet.group_ready("gone", 3), 60, "both ready")
        for _ in range(5):
            fleet.command("gone", "inc")
        fleet.remove_consensus_group("gone")
        wait_for(lambda: not fleet.group_status("gone"), 30, "gone's members stopped")
        # A node restarts under its name (its files found again), and so does the reconciler.
        na = node_named(cluster, "na")
        cluster.remove_node(na, allow_graceful=False)
        wait_for(lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == na.node_id), 60, "na dead")
        add_node(cluster, "na")
        cluster.wait_for_nodes()
        fleet.activate_all()
        ray.kill(ray.get_actor(BALANCER_NAME, namespace=NAMESPACE), no_restart=False)
        wait_for(lambda: fleet.group_ready("keep", 3), 90, "keep back to 3 members")
        rounds(6)
        assert fleet.consensus_groups() == {"keep": 3}
        assert not fleet.group_status("gone") and fleet.lost_consensus_groups() == {}
        # Its user may add it again: then it is restored from its files (raft_fleet).
        def readd() -> bool:
            try:
                fleet.add_consensus_group("gone", 3, CONFIG, await_timeout=30)
                return True
            except fleet.CleanupOngoingError:
                return False

        wait_for(readd, 60, "the name to be reusable")
        assert fleet.query("gone", None, timeout=1.0, retry=10) == 5
    finally:
        stop(cluster)
