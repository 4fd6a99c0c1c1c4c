"""Whole-fleet restart with persistence: a fleet on nodes that declare stable names
(``raftfleet_node:<name>``) is torn down completely (every actor, the ClusterActor and its
metadata, the Ray cluster itself); a new Ray cluster with the same node names over the same
disk is activated, and every group comes back, with its replica count, config and value,
without being added again. A group removed before the restart stays removed, and adding it
again restores its value from its files (raft_fleet)."""

from __future__ import annotations

import pytest
import ray
from ray.cluster_utils import Cluster

import raftfleet_ray as fleet

pytestmark = pytest.mark.timeout(300)

NODES = {"na": "z1", "nb": "z2", "nc": "z3"}
HEAD_SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}


def start(parent: str) -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={
        "include_dashboard": False, "num_cpus": 1, "object_store_memory": 100 << 20, "_system_config": HEAD_SYSTEM_CONFIG})
    for name, zone in NODES.items():
        cluster.add_node(num_cpus=1, object_store_memory=100 << 20,
                         resources={f"zone:{zone}": 1000, f"raftfleet_node:{name}": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="raftfleet")
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, members_per_host=8, persistence_dir_parent=parent))
    fleet.activate_all()
    return cluster


def recording_hook(path: str) -> type:
    """A leader hook class (pickled by value: it is local) that appends what it is told to ``path``."""

    class Recorder:
        def on_restored_from_files(self, data: object) -> None:
            with open(path, "a") as f:
                f.write(f"on_restored_from_files {data.value}\n")

    return Recorder


def stop(cluster: Cluster) -> None:
    try:
        fleet.shutdown_fleet()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_the_whole_fleet_restarts_from_its_files(tmp_path, wait_for):
    parent = str(tmp_path / "data")
    cluster = start(parent)
    try:
        fleet.add_consensus_group("r1", 3, fleet.RaftConfig(data=fleet.Counter, snapshot_interval=20), await_timeout=30)
        fleet.add_consensus_group("r2", 2, fleet.RaftConfig(data=fleet.KeyValue), await_timeout=30)
        fleet.add_consensus_group("gone", 3, fleet.RaftConfig(data=fleet.Counter), await_timeout=30)
        wait_for(lambda: fleet.group_ready("r1", 3) and fleet.group_ready("r2", 2) and fleet.group_ready("gone", 3),
                 60, "three groups ready")
        for _ in range(30):
            fleet.command("r1", "inc")
        fleet.command("r2", ("put", "k", {"v": 1}))
        for _ in range(5):
            fleet.command("gone", "inc")
        fleet.remove_consensus_group("gone")
        wait_for(lambda: "gone" not in fleet.consensus_groups(), 30, "gone removed")
        # Its members are stopped (their files retired) before the fleet goes.
        wait_for(lambda: not fleet.group_status("gone"), 30, "gone's members stopped")
    finally:
        stop(cluster)

    cluster = start(parent)  # new Ray node ids, a new ClusterActor: only the files remain
    try:
        wait_for(lambda: set(fleet.consensus_groups()) == {"r1", "r2"}, 60, "r1 and r2 registered from their files")
        assert fleet.consensus_groups() == {"r1": 3, "r2": 2}
        wait_for(lambda: fleet.group_ready("r1", 3) and fleet.group_ready("r2", 2), 90, "r1 and r2 ready")
        assert fleet.query("r1", None) == 30
        assert fleet.query("r2", ("get", "k")) == {"v": 1}
        assert fleet.command("r1", "inc") == 30
        # The removed group is not back by itself; added again, it is restored from its files,
        # and its leader hook hears of it (rafted_value's on_restored_from_files).
        hook_log = tmp_path / "hook.log"
        fleet.add_consensus_group("gone", 3, fleet.RaftConfig(data=fleet.Counter, leader_hook=recording_hook(str(hook_log))),
                                  await_timeout=30)
        assert fleet.query("gone", None) == 5
        assert hook_log.read_text().splitlines()[0] == "on_restored_from_files 5"
    finally:
        stop(cluster)


def test_a_group_whose_nodes_all_died_comes_back_when_they_restart_under_their_names(tmp_path, wait_for):
    """Every node that held the group's members dies (Ray says so): the group is kept (lost,
    with no file readable), and restored from its files by itself once nodes with the same
    names are back: the files of a majority of its last configuration can be read, so the
    newest of them holds every committed entry."""
    parent = str(tmp_path / "data")
    cluster = start(parent)
    try:
        fleet.add_consensus_group("lost", 3, fleet.RaftConfig(data=fleet.Counter), await_timeout=30)
        wait_for(lambda: fleet.group_ready("lost", 3), 60, "lost ready")
        for _ in range(12):
            fleet.command("lost", "inc")
        workers = list(cluster.worker_nodes)
        dead = {w.node_id for w in workers}
        for node in workers:
            cluster.remove_node(node, allow_graceful=False)
        wait_for(lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] in dead), 60, "Ray to see them dead")
        for name, zone in NODES.items():
            cluster.add_node(num_cpus=1, object_store_memory=100 << 20,
                             resources={f"zone:{zone}": 1000, f"raftfleet_node:{name}": 1})
        cluster.wait_for_nodes()
        fleet.activate_all()
        wait_for(lambda: fleet.group_ready("lost", 3), 90, "lost restored on the restarted nodes")
        assert not dead & {n for ns in fleet.active_nodes().values() for n in ns}  # the dead were purged
        assert fleet.query("lost", None) == 12
        assert "lost" in fleet.consensus_groups()
    finally:
        stop(cluster)
