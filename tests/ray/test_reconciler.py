"""The fleet keeps itself: the reconciler on a real cluster, with a counter client on every
group throughout (no acknowledged increment lost or applied twice).

Scenarios, in order, on one cluster (packed hosts): grow from 3 to 6 nodes and shrink back
with ``deactivate(wait=True)``; a member host killed alone; a NodeAgent killed (Ray restarts
it) and a group removed after; a node killed; a whole zone lost; the caller of
``add_consensus_group`` killed mid-call. After each, the fleet converges to: members =
min(n_replica, nodes) per group, each group spread over as many zones as exist, members per
node at most twice the average, leaders per node at most ceil(groups / nodes) + 1, none on
an inactive node."""

from __future__ import annotations

import math
import threading
import time

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.runtime.names import NAMESPACE, on_node

pytestmark = pytest.mark.timeout(300)

N_GROUPS = 6
CONFIG = fleet.RaftConfig(data=fleet.Counter)


class Counter(threading.Thread):
    """Sequential increments on one group. A command that fails after its retries has an
    unknown outcome (it may have been applied once): counted apart."""

    def __init__(self, group: str) -> None:
        super().__init__(daemon=True)
        self.group = group
        self.acked = 0
        self.unknown = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                got = fleet.command(self.group, "inc", timeout=1.0, retry=20, retry_interval=0.2)
            except fleet.NoLeaderError:
                self.unknown += 1
                continue
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if not self.acked <= got <= self.acked + self.unknown:
                self.errors.append(f"answer {got} after {self.acked} acked and {self.unknown} unknown")
                return
            self.acked = got + 1
            self.unknown = 0  # every unknown before this answer is now known: applied or not
            time.sleep(0.02)

    def check(self) -> None:
        self.stop.set()
        self.join(30)
        assert self.errors == [], self.errors
        value = fleet.query(self.group, None, timeout=2.0, retry=10)
        assert self.acked <= value <= self.acked + self.unknown, (self.group, value, self.acked, self.unknown)


@pytest.fixture(scope="module")
def fleet_up(ray_cluster, zone_nodes):
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, node_purge_reconnect_interval=1.0,
                                      members_per_host=64))
    fleet.activate_all()
    groups = [f"r{i}" for i in range(N_GROUPS)]
    for g in groups:
        fleet.add_consensus_group(g, 3, CONFIG, await_timeout=30)
    counters = {g: Counter(g) for g in groups}
    for c in counters.values():
        c.start()
    yield counters
    for c in counters.values():
        c.stop.set()
    fleet.shutdown_fleet()


def placement() -> tuple[dict[str, list[dict]], dict[str, str]]:
    """{group: member statuses} from the leaders' views, and {node: zone} of active nodes."""
    zones = {n: z for z, ns in fleet.active_nodes().items() for n in ns}
    out = {}
    for g in fleet.consensus_groups():
        out[g] = [s for s in fleet.group_status(g).values() if s]
    return out, zones


def converged(expect_groups: set[str] | None = None) -> bool | str:
    groups, zones = placement()
    if expect_groups is not None and set(groups) != expect_groups:
        return f"groups {sorted(groups)}"
    n_nodes = len(zones)
    if not n_nodes:
        return "no active node"
    members_per_node: dict[str, int] = {}
    leaders_per_node: dict[str, int] = {}
    for g, sts in groups.items():
        leaders = [s for s in sts if s["state_name"] == "leader"]
        if len(leaders) != 1:
            return f"{g}: {len(leaders)} leaders"
        lead = leaders[0]
        want = min(3, n_nodes)
        if len(lead["members"]) != want or lead["learners"] or len(sts) != want:
            return f"{g}: {len(lead['members'])} voters, {len(lead['learners'])} learners, {len(sts)} running"
        nodes = [s["node_id"] for s in sts]
        if any(n not in zones for n in nodes):
            return f"{g}: a member on an inactive node"
        if len({zones[n] for n in nodes}) != min(want, len(set(zones.values()))):
            return f"{g}: over zones {sorted(zones[n] for n in nodes)}"
        for n in nodes:
            members_per_node[n] = members_per_node.get(n, 0) + 1
        leaders_per_node[lead["node_id"]] = leaders_per_node.get(lead["node_id"], 0) + 1
        if fleet.explain_placement(g)["next_step"].split("(")[0].split(":")[0] not in ("Nothing",):
            return f"{g}: next step {fleet.explain_placement(g)['next_step']}"
    total = sum(members_per_node.values())
    if max(members_per_node.values()) > 2 * total / n_nodes:
        return f"members per node {members_per_node}"
    # Leaders converge to their balanced desired nodes: at most one above the fair share.
    if max(leaders_per_node.values()) > math.ceil(len(groups) / n_nodes) + 1:
        return f"leaders per node {leaders_per_node}"
    return True


def wait_converged(wait_for, what: str, timeout: float = 120, groups: set[str] | None = None) -> None:
    last = [None]

    def ok() -> bool:
        r = converged(groups)
        last[0] = r
        return r is True

    try:
        wait_for(ok, timeout, f"convergence after {what}")
    except BaseException:
        print(f"not converged after {what}: {last[0]}")
        raise


def add_nodes(ray_cluster, add_zone_node, zones):
    return [add_zone_node(ray_cluster, z) for z in zones]


def test_grow_to_six_nodes_and_shrink_back(ray_cluster, fleet_up, add_zone_node, wait_for, zone_nodes):
    wait_converged(wait_for, "creating the groups")
    added = add_nodes(ray_cluster, add_zone_node, ["z1", "z2", "z3"])
    activated = fleet.activate_all()
    assert set(activated) == {n.node_id for n in added}
    wait_converged(wait_for, "growing to 6 nodes")
    _, zones = placement()
    assert len(zones) == 6
    # Shrink back: drain the three new nodes.
    for n in added:
        fleet.deactivate(n.node_id, wait=True, timeout=120)
        assert n.node_id not in {x for ns in fleet.active_nodes().values() for x in ns}
    wait_converged(wait_for, "shrinking back to 3 nodes")
    for g, sts in placement()[0].items():
        assert all(s["node_id"] in zone_nodes for s in sts), g
    fleet.activate_all()  # back to 6 for the next scenarios
    wait_converged(wait_for, "re-activating the 3 nodes")


def test_a_member_host_killed_alone_is_replaced(fleet_up, wait_for):
    g = "r0"
    lead = fleet.leader_status(g)
    follower = next(m for m in lead["members"] if m != lead["from_"])
    ray.kill(ray.get_actor(follower.split("#")[0], namespace=NAMESPACE), no_restart=True)
    wait_for(lambda: follower not in fleet.leader_status(g)["members"], 60, "the dead member to leave r0")
    wait_converged(wait_for, "killing a host")


def test_a_killed_agent_comes_back_and_removed_groups_are_stopped(fleet_up, wait_for):
    node = fleet.leader_status("r1")["node_id"]
    agent = ray.get_actor(f"raftfleet.agent|{node}", namespace=NAMESPACE)
    ray.kill(agent, no_restart=False)  # Ray restarts it; the new one adopts the node's hosts
    wait_for(lambda: "r1" in ray.get(ray.get_actor(f"raftfleet.agent|{node}", namespace=NAMESPACE).members.remote()),
             60, "the restarted agent to know its members again")
    fleet.add_consensus_group("doomed", 3, CONFIG, await_timeout=30)
    wait_converged(wait_for, "adding a group", groups=set(fleet_up) | {"doomed"})
    fleet.remove_consensus_group("doomed")
    wait_for(lambda: not fleet.group_status("doomed"), 60, "every member of 'doomed' to be stopped")

    def readd() -> bool:
        try:
            fleet.add_consensus_group("doomed", 3, CONFIG, await_timeout=30)
            return True
        except fleet.CleanupOngoingError:
            return False

    wait_for(readd, 60, "the name to be reusable")
    assert fleet.command("doomed", "inc") == 0
    fleet.remove_consensus_group("doomed")
    wait_for(lambda: not fleet.group_status("doomed"), 60, "'doomed' stopped again")
    wait_converged(wait_for, "the agent restart", groups=set(fleet_up))


def active_ids() -> set[str]:
    return {x for ns in fleet.active_nodes().values() for x in ns}


def test_a_killed_node_is_re_replicated(ray_cluster, fleet_up, wait_for, kill_node, node_is_dead):
    driver = ray.get_runtime_context().get_node_id()
    victim = next(s["node_id"] for s in fleet.group_status("r2").values() if s and s["node_id"] != driver)
    kill_node(ray_cluster, next(n for n in ray_cluster.worker_nodes if n.node_id == victim))
    wait_for(lambda: node_is_dead(victim) and victim not in active_ids(), 60, "the dead node to be purged")
    wait_converged(wait_for, "killing a node")
    for g in fleet_up:
        assert not any(on_node(m, victim) for m in fleet.leader_status(g)["members"])


def test_a_lost_zone_is_survived(ray_cluster, fleet_up, wait_for, kill_node):
    driver = ray.get_runtime_context().get_node_id()
    zones = fleet.active_nodes()
    zone = next(z for z, ns in sorted(zones.items()) if driver not in ns)
    for node_id in zones[zone]:
        kill_node(ray_cluster, next(n for n in ray_cluster.worker_nodes if n.node_id == node_id))
    wait_for(lambda: zone not in fleet.active_nodes(), 60, f"zone {zone}'s nodes to be purged")
    wait_converged(wait_for, f"losing zone {zone}")
    # Two zones left: every group now has two members in one of them.
    assert len(fleet.active_nodes()) == 2


def test_the_caller_of_add_consensus_group_killed_mid_call(fleet_up, wait_for):
    """The group is created by the reconciler even though the caller died right after the
    registration (before any member existed)."""

    @ray.remote(num_cpus=0, max_retries=0)
    def create() -> None:
        fleet.add_consensus_group("orphaned", 3, CONFIG, await_timeout=60)

    ref = create.remote()
    wait_for(lambda: "orphaned" in fleet.consensus_groups(), 60, "the group to be registered")
    ray.cancel(ref, force=True)
    assert fleet.command("orphaned", "inc", timeout=2.0, retry=30) == 0
    wait_converged(wait_for, "the orphaned creation", groups=set(fleet_up) | {"orphaned"})


def test_no_increment_lost_or_doubled(fleet_up):
    for c in fleet_up.values():
        c.check()
        assert c.acked > 20, (c.group, c.acked)
