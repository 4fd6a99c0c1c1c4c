"""Many groups per process on a real cluster (packed hosts): 200 groups are created, quiesce,
answer, survive the crash of a host that carries many of their members, and survive the loss
of a node while quiesced. Timings are bounds for a failing test, not benchmarks
(``benchmarks/fleet.py`` measures)."""

from __future__ import annotations

import asyncio
import math
import os

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.client import get_client
from raftfleet_ray.runtime.names import HOST_PREFIX, NAMESPACE, is_host_on_node
from raftfleet_ray.runtime.wire import MemberStatus

pytestmark = pytest.mark.timeout(300)

N_GROUPS = 200
PER_HOST = 150  # so that each node runs two hosts: a host crash leaves the other one


@pytest.fixture(scope="module")
def fleet200(ray_cluster, zone_nodes):
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, members_per_host=PER_HOST))
    fleet.activate_all()
    cfg = fleet.RaftConfig(data=fleet.Counter, quiesce_after=0.5)

    async def create_all() -> None:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await fleet.add_consensus_group_async(f"d{i}", 3, cfg, await_timeout=30.0)

        await asyncio.gather(*(one(i) for i in range(N_GROUPS)))

    get_client().run(create_all())
    yield [f"d{i}" for i in range(N_GROUPS)]
    fleet.shutdown_fleet()


def hosts() -> dict[str, ray.actor.ActorHandle]:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE and a["name"].startswith(HOST_PREFIX)]
    return {n: ray.get_actor(n, namespace=NAMESPACE) for n in names}


def all_statuses() -> dict[str, list[MemberStatus]]:
    out: dict[str, list[MemberStatus]] = {}
    for h in hosts().values():
        try:
            for g, st in ray.get(h.statuses.remote(), timeout=10).items():
                out.setdefault(g, []).append(st)
        except Exception:  # noqa: BLE001 - a host that just died
            pass
    return out


def full_groups() -> int:
    return sum(1 for sts in all_statuses().values()
               if any(s.state_name == "leader" and len(s.members) == 3 for s in sts))


def awake_members() -> int:
    return sum(ray.get(h.stats.remote(), timeout=10)["awake"] for h in hosts().values())


def command_all(groups: list[str], timeout: float = 60.0) -> dict[str, int]:
    """One increment on every group, concurrently, each retried until answered."""

    async def run() -> dict[str, int]:
        async def one(g: str) -> tuple[str, int]:
            return g, await fleet.command_async(g, "inc", timeout=2.0, retry=int(timeout / 2), retry_interval=0.5)

        # Every call runs to its end (no retry left running in the background after a failure).
        out = await asyncio.gather(*(one(g) for g in groups), return_exceptions=True)
        for r in out:
            if isinstance(r, BaseException):
                raise r
        return dict(out)

    return get_client().run(run())


def test_200_groups_on_packed_hosts_quiesce_and_answer(fleet200, zone_nodes, wait_for):
    wait_for(lambda: full_groups() == N_GROUPS, 120, f"{N_GROUPS} groups with 3 members")
    names = list(hosts())
    # ceil(200 / 150) = 2 hosts per node carry the 200 members of each node.
    assert len(names) == len(zone_nodes) * math.ceil(N_GROUPS / PER_HOST), names
    wait_for(lambda: awake_members() == 0, 60, "every member of every idle group to quiesce")
    assert command_all(fleet200) == dict.fromkeys(fleet200, 0)
    wait_for(lambda: awake_members() == 0, 60, "the groups to quiesce again")


def test_a_host_crash_takes_its_members_and_their_groups_elect_again(fleet200, wait_for, actor_is_dead):
    """Kill one host (about 100 members, some of them leaders of quiesced groups): every
    group answers again, and no increment is lost or applied twice."""
    wait_for(lambda: awake_members() == 0, 60, "quiesced groups")
    before = {g: max(s.applied_index for s in sts) for g, sts in all_statuses().items()}
    victim, handle = max(hosts().items(), key=lambda kv: sum(
        1 for s in ray.get(kv[1].statuses.remote()).values() if s.state_name == "leader"))
    led = [g for g, s in ray.get(handle.statuses.remote()).items() if s.state_name == "leader"]
    assert led, "the victim leads no group"
    ray.kill(handle, no_restart=True)
    # ray.kill returns before the process is gone: until it is, the old leaders may still
    # answer over their direct connections (committed with a follower: nothing is lost).
    wait_for(lambda: actor_is_dead(handle), 30, "the killed host to be dead")
    got = command_all(fleet200, timeout=60)
    assert got == dict.fromkeys(fleet200, 1), {g: v for g, v in got.items() if v != 1}

    # The groups it led elected a leader elsewhere.
    def elected() -> bool:
        sts = all_statuses()
        return all((leaders := [s for s in sts[g] if s.state_name == "leader"])
                   and all(s.host != victim for s in leaders)
                   and max(s.applied_index for s in sts[g]) > before[g] for g in led)

    wait_for(elected, 60, "the groups the killed host led to have a leader elsewhere")


def test_quiesced_groups_survive_the_loss_of_a_node(ray_cluster, fleet200, zone_nodes, wait_for, kill_node):
    """Kill the node whose host crashed in the previous test (nothing re-replicates members
    here, so a group must not lose a second member): every group keeps two of three."""
    wait_for(lambda: awake_members() == 0, 60, "quiesced groups")
    driver_node = ray.get_runtime_context().get_node_id()  # cluster_utils refuses to remove it
    live_hosts = {n: sum(1 for h in hosts() if is_host_on_node(h, n)) for n in zone_nodes}
    node_id = min(live_hosts, key=lambda n: (live_hosts[n], n))
    assert node_id != driver_node, "the node that lost a host is the driver's: cannot remove it"
    pids = [ray.get(h.stats.remote())["pid"] for n, h in hosts().items() if is_host_on_node(n, node_id)]
    node = next(n for n in ray_cluster.worker_nodes if n.node_id == node_id)
    kill_node(ray_cluster, node)
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 30, "the node's hosts to be gone")
    got = command_all(fleet200, timeout=60)
    assert got == dict.fromkeys(fleet200, 2), {g: v for g, v in got.items() if v != 2}
    # Ray reports the node dead: the reconciler purges it from the active nodes at once.
    wait_for(lambda: node_id not in {n for ns in fleet.active_nodes().values() for n in ns}, 30,
             "the dead node to be purged")
