"""The ClusterActor on a real Ray cluster: get-or-create, commands, retries, restart after
its node dies (durability through the GCS KV checkpoint)."""

from __future__ import annotations

import uuid

import pytest
import ray
from ray.experimental import internal_kv

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.data import KeyValue
from raftfleet_ray.errors import (
    AlreadyAddedError,
    CleanupOngoingError,
    InvalidNameError,
    NotFoundError,
)
from raftfleet_ray.runtime.cluster_actor import (
    KV_NAMESPACE,
    NAMESPACE,
    checkpoint_key,
    destroy_cluster_actor,
    get_or_create_cluster_actor,
)


def rid() -> str:
    return uuid.uuid4().hex


def unique_name() -> str:
    # One ClusterActor (and checkpoint key) per test: the cluster is shared by the module.
    return f"test_cluster_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def actor_name(ray_cluster):
    name = unique_name()
    yield name
    destroy_cluster_actor(name)


@ray.remote(num_cpus=0)
def _get_or_create_and_ping(name: str):
    handle = get_or_create_cluster_actor(name)
    info = ray.get(handle.ping.remote())
    return (info.pid, info.node_id, info.started_at)


@pytest.mark.timeout(120)
def test_concurrent_get_or_create_yields_one_actor(actor_name):
    # Tasks spread over the nodes race to create the same named actor.
    refs = [_get_or_create_and_ping.remote(actor_name) for _ in range(8)]
    seen = set(ray.get(refs, timeout=60))
    assert len(seen) == 1, seen
    handle = ray.get_actor(actor_name, namespace=NAMESPACE)
    info = ray.get(handle.ping.remote(), timeout=30)
    assert (info.pid, info.node_id, info.started_at) in seen
    assert not info.restored


@pytest.mark.timeout(120)
def test_commands_and_queries(actor_name, zone_nodes):
    c = get_or_create_cluster_actor(actor_name)
    for node_id, zone in zone_nodes.items():
        ray.get(c.add_node.remote(rid(), node_id, zone), timeout=30)
    assert ray.get(c.active_nodes.remote(), timeout=30) == {
        zone: [node_id] for node_id, zone in sorted(zone_nodes.items(), key=lambda kv: kv[1])
    }

    cfg = RaftConfig(data=KeyValue)
    members = ray.get(c.add_group.remote(rid(), "orders", 3, cfg), timeout=30)
    assert sorted(members) == sorted(zone_nodes)
    assert ray.get(c.consensus_groups.remote(), timeout=30) == {"orders": 3}
    assert ray.get(c.group_spec.remote("orders"), timeout=30).config == cfg
    assert ray.get(c.desired_members.remote("orders"), timeout=30) == members
    assert ray.get(c.groups_for_leader_node.remote(members[0]), timeout=30) == [
        ("orders", members)
    ]

    # Errors arrive as our exception classes, with their fields readable.
    with pytest.raises(AlreadyAddedError) as info:
        ray.get(c.add_group.remote(rid(), "orders", 3, cfg), timeout=30)
    assert info.value.group == "orders"
    with pytest.raises(InvalidNameError):
        ray.get(c.add_group.remote(rid(), "no/slash", 3, cfg), timeout=30)
    with pytest.raises(NotFoundError):
        ray.get(c.remove_group.remote(rid(), "nope"), timeout=30)

    # Removal and cleanup bookkeeping, then the name is free again.
    ray.get(c.remove_group.remote(rid(), "orders"), timeout=30)
    with pytest.raises(CleanupOngoingError):
        ray.get(c.add_group.remote(rid(), "orders", 3, cfg), timeout=30)
    for node_id in zone_nodes:
        names, index = ray.get(c.removed_names_for_node.remote(node_id), timeout=30)
        assert (names, index) == (["orders"], 1)
        ray.get(c.stopped_extra_members.remote(rid(), node_id, index), timeout=30)
    assert not ray.get(c.cleanup_ongoing.remote("orders"), timeout=30)
    assert ray.get(c.add_group.remote(rid(), "orders", 3, cfg), timeout=30)

    fc = FleetConfig(balancing_interval=1.0)
    ray.get(c.set_fleet_config.remote(rid(), fc), timeout=30)
    assert ray.get(c.fleet_config.remote(), timeout=30) == fc
    view = ray.get(c.node_view.remote(members[0]), timeout=30)
    assert view.removed_names == [] and view.groups_led


@pytest.mark.timeout(120)
def test_a_retried_request_is_applied_once(actor_name, zone_nodes):
    c = get_or_create_cluster_actor(actor_name)
    node_id, zone = next(iter(zone_nodes.items()))
    ray.get(c.add_node.remote(rid(), node_id, zone), timeout=30)
    request = rid()
    first = ray.get(c.add_group.remote(request, "g", 3, RaftConfig()), timeout=30)
    # The client timed out and retries with the same request id: same answer, no error.
    again = ray.get(c.add_group.remote(request, "g", 3, RaftConfig()), timeout=30)
    assert again == first
    # The checkpoint is in the GCS KV store.
    assert internal_kv._internal_kv_get(checkpoint_key(actor_name), namespace=KV_NAMESPACE)


@pytest.mark.timeout(60)
def test_destroy_removes_actor_and_checkpoint(ray_cluster):
    name = unique_name()
    c = get_or_create_cluster_actor(name)
    ray.get(c.add_node.remote(rid(), "n1", "z1"), timeout=30)
    destroy_cluster_actor(name)
    assert internal_kv._internal_kv_get(checkpoint_key(name), namespace=KV_NAMESPACE) is None
    fresh = get_or_create_cluster_actor(name)
    assert ray.get(fresh.active_nodes.remote(), timeout=30) == {}
    destroy_cluster_actor(name)


def _create_off_head(ray_cluster, prefer_node_id: str, attempts: int = 10):
    """A fresh ClusterActor on a worker node (so that node can be killed), preferably on
    ``prefer_node_id``; returns (name, handle, the cluster node object it runs on).

    The factory's soft NodeAffinity is only a hint for a *detached* actor in Ray 2.60: we saw
    such actors land on any node (spare, zone node or head), so retry under a new name while
    it lands on the head, which ``Cluster.remove_node`` cannot kill.
    """
    for _ in range(attempts):
        name = unique_name()
        handle = get_or_create_cluster_actor(name, _prefer_node_id=prefer_node_id)
        node_id = ray.get(handle.ping.remote(), timeout=60).node_id
        host = [n for n in ray_cluster.worker_nodes if n.node_id == node_id]
        if host:
            return name, handle, host[0]
        destroy_cluster_actor(name)
    pytest.fail(f"could not place a ClusterActor off the head node in {attempts} attempts")


# Kills a node: keep it the last test of the module that uses the zone nodes.
@pytest.mark.timeout(180)
def test_actor_restarts_on_another_node_with_its_metadata(
    ray_cluster, zone_nodes, add_zone_node, kill_node, node_is_dead, wait_for
):
    # A spare node to host the actor and then die, so that normally the zone nodes stay up.
    spare = add_zone_node(ray_cluster, None)
    name, c, host = _create_off_head(ray_cluster, spare.node_id)
    try:
        before = ray.get(c.ping.remote(), timeout=60)
        assert before.node_id == host.node_id and not before.restored

        for node_id, zone in zone_nodes.items():
            ray.get(c.add_node.remote(rid(), node_id, zone), timeout=30)
        request = rid()
        members = ray.get(c.add_group.remote(request, "survivor", 3, RaftConfig()), timeout=30)
        ray.get(c.add_group.remote(rid(), "gone", 1, RaftConfig()), timeout=30)
        ray.get(c.remove_group.remote(rid(), "gone"), timeout=30)
        ray.get(c.set_fleet_config.remote(rid(), FleetConfig(balancing_interval=3.0)), timeout=30)

        kill_node(ray_cluster, host)
        wait_for(lambda: node_is_dead(host.node_id), 30, "Ray to mark the actor's node dead")
        # A call made while the actor is down is delivered to the next incarnation.
        pending = c.consensus_groups.remote()

        after = wait_for(
            lambda: ray.get(c.ping.remote(), timeout=5), 90, "the ClusterActor to restart"
        )
        assert after.node_id != host.node_id
        assert after.restored
        assert ray.get(pending, timeout=60) == {"survivor": 3}
        assert ray.get(c.desired_members.remote("survivor"), timeout=30) == members
        assert ray.get(c.cleanup_ongoing.remote("gone"), timeout=30)
        assert ray.get(c.fleet_config.remote(), timeout=30).balancing_interval == 3.0
        # The dedup cache survived: the client's retry of a pre-crash request is recognised.
        retry = c.add_group.remote(request, "survivor", 3, RaftConfig())
        assert ray.get(retry, timeout=30) == members
        # get-or-create finds the restarted actor instead of making a second one.
        assert ray.get(get_or_create_cluster_actor(name).ping.remote(), timeout=30) == after
    finally:
        destroy_cluster_actor(name)
