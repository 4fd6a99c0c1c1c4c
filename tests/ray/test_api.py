"""The public API on a real multi-node Ray cluster (3 zone nodes + a head without a zone):
every function, its error cases, and bad input that must leave the members running."""

from __future__ import annotations

import threading

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray import errors
from raftfleet_ray.api import group_status
from raftfleet_ray.placement import desired_members

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def active(ray_cluster, zone_nodes, members_per_host):
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, node_purge_reconnect_interval=1.0,
                                      members_per_host=members_per_host, leader_pid_cache_refresh_interval=1.0))
    activated = fleet.activate_all()
    assert activated == zone_nodes
    yield zone_nodes
    fleet.shutdown_fleet()


def test_activate_all_and_active_nodes(active):
    assert fleet.active_nodes() == {z: [n] for n, z in active.items()}
    assert fleet.activate_all() == {}  # every zone node is active already


def test_activate_errors(active):
    node = next(iter(active))
    with pytest.raises(errors.NotInactiveError):
        fleet.activate(active[node], node)
    head = ray.get_runtime_context().get_node_id()
    with pytest.raises(ValueError, match="does not declare the custom resource 'zone:z1'"):
        fleet.activate("z1", head)
    with pytest.raises(ValueError, match="not an alive node"):
        fleet.activate("z1", "f" * 56)
    with pytest.raises(ValueError, match="zone must be a non-empty string"):
        fleet.activate("", node)


def test_group_lifecycle_commands_and_queries(active, wait_for):
    fleet.add_consensus_group("counter-1", 3, fleet.RaftConfig(data=fleet.Counter))
    assert fleet.consensus_groups()["counter-1"] == 3
    assert [fleet.command("counter-1", "inc") for _ in range(10)] == list(range(10))
    assert fleet.query("counter-1", None) == 10
    wait_for(lambda: fleet.group_ready("counter-1", 3), 60, "three members of counter-1")
    # Placement: one member per zone, on the nodes rendezvous hashing chose.
    nodes = {s["node_id"] for s in group_status("counter-1").values() if s}
    assert nodes == set(desired_members(fleet.active_nodes(), "counter-1", 3))
    leader = fleet.whereis_leader("counter-1")
    st = ray.get(leader.status.remote("counter-1"))
    assert st.state_name == "leader"
    assert fleet.find_consensus_group_with_no_established_leader() is None
    with pytest.raises(errors.AlreadyAddedError):
        fleet.add_consensus_group("counter-1", 3, fleet.RaftConfig(data=fleet.Counter))
    # query_non_leader on a follower: possibly stale, but here caught up after a heartbeat.
    follower = next(
        ray.get_actor(name, namespace="raftfleet")
        for name, s in group_status("counter-1").items()
        if s and s["state_name"] == "follower"
    )
    wait_for(lambda: fleet.query_non_leader("counter-1", None, follower) == 10, 10, "follower catch-up")


def test_bad_input_gives_clear_errors_and_members_keep_running(active, wait_for):
    fleet.add_consensus_group("kv-bad", 3, fleet.RaftConfig(data=fleet.KeyValue, max_command_bytes=10_000))
    fleet.command("kv-bad", ("put", "a", 1))
    with pytest.raises(errors.InvalidNameError):
        fleet.add_consensus_group("bad name!", 3)
    with pytest.raises(ValueError, match="n_replica"):
        fleet.add_consensus_group("kv-zero", 0)
    with pytest.raises(ValueError, match="n_replica"):
        fleet.add_consensus_group("kv-neg", -1)
    with pytest.raises(TypeError, match="RaftConfig"):
        fleet.add_consensus_group("kv-cfg", 3, {"data": fleet.KeyValue})
    with pytest.raises(errors.NotFoundError):
        fleet.command("no-such-group", "inc")
    with pytest.raises(errors.NotFoundError):
        fleet.query("no-such-group", None)
    with pytest.raises(TypeError, match="cannot be pickled"):
        fleet.command("kv-bad", ("put", "lock", threading.Lock()))
    with pytest.raises(ValueError, match="unknown command"):
        fleet.command("kv-bad", ("frobnicate",))  # Data.command raises: answered with it
    with pytest.raises(errors.CommandTooLargeError):
        fleet.command("kv-bad", ("put", "big", b"x" * 20_000))
    with pytest.raises(ValueError, match="timeout"):
        fleet.command("kv-bad", ("put", "a", 2), timeout=0)
    with pytest.raises(ValueError, match="retry"):
        fleet.command("kv-bad", ("put", "a", 2), retry=-1)
    # None of that disturbed the group: same leader term, value intact, still writable.
    assert fleet.query("kv-bad", ("get", "a")) == 1
    assert fleet.command("kv-bad", ("put", "a", 2)) == 1
    assert fleet.query("kv-bad", ("get", "a")) == 2
    assert fleet.query("kv-bad", ("keys",)) == ["a"]


def test_remove_group_then_reuse_name(active, wait_for):
    fleet.add_consensus_group("temp", 3, fleet.RaftConfig(data=fleet.Counter))
    fleet.command("temp", "inc")
    # It returns once every node stopped the members (issue 14: with persistence, their files
    # are retired by then, so no whole-cluster restart brings the group back).
    assert fleet.remove_consensus_group("temp") is True
    assert "temp" not in fleet.consensus_groups()
    with pytest.raises(errors.NotFoundError):
        fleet.remove_consensus_group("temp")
    assert not group_status("temp"), "a member of the removed group still runs"
    with pytest.raises(errors.NotFoundError):
        fleet.command("temp", "inc")
    # The cleanup is done: the name can be used again at once, from scratch.
    fleet.add_consensus_group("temp", 1, fleet.RaftConfig(data=fleet.Counter))
    assert fleet.command("temp", "inc") == 0


def test_calls_from_a_task_and_an_async_actor(active):
    fleet.add_consensus_group("shared", 3, fleet.RaftConfig(data=fleet.Counter))

    @ray.remote(num_cpus=0)
    def bump(n: int) -> list[int]:
        return [fleet.command("shared", "inc") for _ in range(n)]

    @ray.remote(num_cpus=0)
    class AsyncUser:
        async def bump(self, n: int) -> list[int]:
            return [await fleet.command_async("shared", "inc") for _ in range(n)]

        async def read(self) -> int:
            return await fleet.query_async("shared", None)

    user = AsyncUser.remote()
    got = ray.get([bump.remote(5), user.bump.remote(5)])
    values = sorted(got[0] + got[1])
    assert values == list(range(10))  # each increment applied exactly once
    assert ray.get(user.read.remote()) == 10


def test_concurrent_callers_are_coalesced_and_exactly_once(active):
    fleet.add_consensus_group("busy", 3, fleet.RaftConfig(data=fleet.Counter))
    results: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(25):
            v = fleet.command("busy", "inc", timeout=2.0)
            with lock:
                results.append(v)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(400))
    assert fleet.query("busy", None) == 400


def test_deactivate_and_reactivate(active, wait_for):
    node, zone = sorted(active.items())[0]
    fleet.deactivate(node)
    assert node not in [n for ns in fleet.active_nodes().values() for n in ns]
    with pytest.raises(errors.InactiveError):
        fleet.deactivate(node)
    fleet.activate(zone, node)
    assert node in fleet.active_nodes()[zone]


def test_lease_reads_and_small_api_errors(active):
    # rafted_value's Cluster group setting: lease = election_timeout - margin = 0.5 s.
    cfg = fleet.RaftConfig(data=fleet.Counter, election_timeout_clock_drift_margin=0.5)
    fleet.add_consensus_group("leased", 3, cfg)
    for i in range(5):
        assert fleet.command("leased", "inc") == i
        assert fleet.query("leased", None) == i + 1
    assert fleet.whereis_leader("never-added") is None
    with pytest.raises(TypeError, match="FleetConfig"):
        fleet.configure({"balancing_interval": 1})
    with pytest.raises(errors.NotFoundError):
        fleet.remove_consensus_group("never-added")


def test_the_leader_cache_refresher_follows_leaders_and_forgets_removed_groups(active, wait_for):
    """leader_pid_cache_refresh_interval (raft_fleet's LeaderPidCacheRefresher): a cached
    leader that does not lead is looked up again, a removed group's entry is dropped, without
    any command failing first."""
    from raftfleet_ray.client import get_client

    fleet.add_consensus_group("cached", 3, fleet.RaftConfig(data=fleet.Counter))
    wait_for(lambda: fleet.group_ready("cached", 3), 60, "3 members of cached")
    fleet.command("cached", "inc")
    client = get_client()
    leader = client.cached_leader("cached").mid
    follower = next(m for m in fleet.leader_status("cached")["members"] if m != leader)
    stale = client.run(client.leader_from_id(follower))
    client._leaders.put("cached", stale)  # as if the leader had moved since it was cached
    wait_for(lambda: client.cached_leader("cached") is not None and client.cached_leader("cached").mid == leader,
             30, "the refresher to find the leader again")
    fleet.remove_consensus_group("cached")
    wait_for(lambda: client.cached_leader("cached") is None, 30, "the removed group to leave the cache")


def test_add_consensus_groups_adds_many_with_a_progress_bar_and_reports_each_failure(active, capfd):
    names = [f"bulk-{i}" for i in range(12)]
    with pytest.raises(ValueError, match="'bulk-3' is listed twice"):
        fleet.add_consensus_groups([*names, "bulk-3"])
    with pytest.raises(errors.InvalidNameError):
        fleet.add_consensus_groups([*names, ""])
    assert not any(n in fleet.consensus_groups() for n in names)  # checked before any was added
    cfg = fleet.RaftConfig(data=fleet.Counter)
    # Groups are born whole: in the default mode every one starts 3 member actors before it is
    # added, 34 new processes here, which Ray starts one at a time per node (its startup
    # concurrency is the node's 1 CPU): more than the default 30 s on this 2-core machine.
    added = fleet.add_consensus_groups(names[:-1] + [(names[-1], 1, cfg)], 3, cfg, progress=True,
                                       await_timeout=120.0)
    assert added == names
    err = capfd.readouterr().err
    assert "adding consensus groups" in err and "12/12" in err and "0 failed" in err, err
    groups = fleet.consensus_groups()
    assert {n: groups[n] for n in names} == {**{n: 3 for n in names[:-1]}, names[-1]: 1}
    assert [fleet.command(n, "inc", timeout=5.0) for n in names] == [0] * 12
    # One name already there: the others are added, the failure names its group.
    with pytest.raises(ExceptionGroup, match="1 of 2 groups were not added: bulk-0") as info:
        fleet.add_consensus_groups(["bulk-0", "bulk-new"], 3, cfg, progress=False)
    assert [type(e) for e in info.value.exceptions] == [errors.AlreadyAddedError]
    assert fleet.command("bulk-new", "inc", timeout=5.0) == 0
    for n in [*names, "bulk-new"]:
        fleet.remove_consensus_group(n)
