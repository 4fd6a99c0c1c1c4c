"""Persistence on a real cluster (``FleetConfig.persistence_dir_parent``): every host keeps a
write-ahead log on its node; kill -9 the processes of *all* members of a group at once under
counter load, and Ray restarts them, they recover from their logs as the same members, and
the group comes back with every acknowledged increment (none lost, none doubled)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.errors import RaftFleetError
from raftfleet_ray.runtime.names import NAMESPACE, host_of

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def persistent(ray_cluster, zone_nodes, tmp_path_factory, wait_for):
    parent = str(tmp_path_factory.mktemp("raftfleet-data"))
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, members_per_host=8, persistence_dir_parent=parent))
    fleet.activate_all()
    fleet.add_consensus_group("pc", 3, fleet.RaftConfig(data=fleet.Counter, snapshot_interval=50), await_timeout=30.0)
    wait_for(lambda: fleet.group_ready("pc", 3), 60, "pc with 3 voters")
    yield parent
    fleet.shutdown_fleet()


def host_pids(group: str) -> dict[str, int]:
    out = {}
    for mid in fleet.leader_status(group)["members"]:
        h = ray.get_actor(host_of(mid), namespace=NAMESPACE)
        out[mid] = ray.get(h.stats.remote(), timeout=10)["pid"]
    return out


def test_every_host_writes_its_log_under_the_node(persistent):
    logs = [os.path.join(d, f) for d, _, fs in os.walk(persistent) for f in fs if f.startswith("wal-")]
    assert len(logs) >= 3, logs  # one host per node at least
    assert all(os.path.getsize(p) > 0 for p in logs)


def test_all_members_killed_at_once_come_back_with_every_acknowledged_increment(persistent, wait_for):
    before = set(fleet.leader_status("pc")["members"])
    acked: list[int] = []
    failed = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal failed
        while not stop.is_set():
            try:
                acked.append(fleet.command("pc", "inc", timeout=2.0, retry=20, retry_interval=0.25))
            except RaftFleetError:
                failed += 1  # outcome unknown: it may or may not have been applied

    t = threading.Thread(target=load, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= 50, 60, "50 acknowledged increments")
    pids = host_pids("pc")
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)  # every member of the group at once
    n_at_kill = len(acked)
    wait_for(lambda: len(acked) >= n_at_kill + 50, 120, "50 more increments after the kill")
    stop.set()
    t.join(30)
    assert not t.is_alive()
    wait_for(lambda: fleet.group_ready("pc", 3), 60, "pc ready again")
    # The same members, recovered from their logs (Ray restarted the same host actors).
    assert set(fleet.leader_status("pc")["members"]) == before
    assert set(host_pids("pc").values()).isdisjoint(pids.values()), "the processes were not restarted"
    final = fleet.query("pc", None)
    assert len(set(acked)) == len(acked), "an increment was applied twice"
    # "inc" answers the value before it: the acknowledged answers are distinct values below
    # the final count, and only calls whose outcome is unknown may add to it.
    assert max(acked) < final <= len(acked) + failed, (max(acked), final, len(acked), failed)
    assert set(acked) <= set(range(final))
    print(f"acknowledged {len(acked)} increments ({failed} unknown), counter {final}")


def test_a_restarted_host_recovers_from_a_snapshot_and_the_log(persistent, wait_for):
    """snapshot_interval=50: the log has rotated past snapshots; kill the leader's host only,
    and it comes back as the same member, caught up."""
    ld = fleet.leader_status("pc")
    leader = ld["leader"]
    pid = host_pids("pc")[leader]
    for _ in range(120):
        fleet.command("pc", "inc", timeout=2.0, retry=10, retry_interval=0.25)
    value = fleet.query("pc", None)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        try:
            assert fleet.command("pc", "inc", timeout=2.0, retry=10, retry_interval=0.25) == value
            break
        except RaftFleetError:
            assert time.monotonic() < deadline
    wait_for(lambda: fleet.group_ready("pc", 3), 60, "pc ready again")
    statuses = [s for s in fleet.group_status("pc").values() if s]
    back = next(s for s in statuses if s["from_"] == leader)
    assert back["applied_index"] == max(s["applied_index"] for s in statuses)
