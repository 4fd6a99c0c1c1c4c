"""Every Ray option of the member and node-agent actors, in one place (conventions §6).

The actor classes themselves are plain classes (``MemberHost``, ``NodeAgent``) that unit
tests can build directly; only these functions make them remote.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .names import NAMESPACE
from .per_cluster import PerCluster

ZONE_RESOURCE_PREFIX = "zone:"
MEMBER_ZONE_SHARE = 0.0001
"""Each member asks for this sliver of its node's ``zone:<name>`` resource (Ray's smallest
unit), so a node declaring ``zone:x: 1`` can host 10,000 members. A node whose zone comes
from a label (``raftfleet.io/zone``, ``ray.io/availability-zone``) has no such resource: its
members ask for none and are held there by node affinity alone (``pinned``)."""

_QUIET = {"env_vars": {"RAY_IGNORE_UNHANDLED_ERRORS": "1"}}
"""Peer messages are fire-and-forget: a send to a dead peer must not be logged as an error."""


def _runtime_env() -> dict[str, Any]:
    """``_QUIET``, plus ``RAFTFLEET_LOG_LEVEL`` when the creating process has it (read at each
    call: node agents pass on to their member hosts what the driver gave them)."""
    from ..logs import env_for_actors

    return {"env_vars": {**_QUIET["env_vars"], **env_for_actors()}}


def zone_resource(zone: str) -> str:
    return f"{ZONE_RESOURCE_PREFIX}{zone}"


_declares_resource: PerCluster[dict[tuple[str, str], bool]] = PerCluster(dict)


def member_resources(node_id: str, zone: str) -> dict[str, float]:
    """What a member on ``node_id`` asks for: a sliver of ``zone:<zone>`` if the node declares
    that resource, else nothing (its zone comes from a label; asking for a resource the node
    lacks would leave the member unschedulable). Static resources do not change while a node
    lives, so the answer is cached: one look at Ray's node table per node and process."""
    res = zone_resource(zone)
    declares = _declares_resource.get()
    known = declares.get((node_id, res))
    if known is None:
        known = any(n["NodeID"] == node_id and res in (n.get("Resources") or {}) for n in ray.nodes())
        declares[(node_id, res)] = known
    return {res: MEMBER_ZONE_SHARE} if known else {}


def pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    # Hard affinity: a member that cannot run on its node must fail, never run elsewhere.
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


_remote_classes: dict[str, Any] = {}


def _remote(cls: type) -> Any:
    """``ray.remote(cls)``, made once per process (each call would export the class again).
    Not per cluster: Ray exports an actor class again to each cluster and job it meets
    (``Worker.current_cluster_and_job``), so one stays valid across ``ray.init()`` calls."""
    rc = _remote_classes.get(cls.__name__)
    if rc is None:
        rc = _remote_classes[cls.__name__] = ray.remote(cls)
    return rc


def start_member_host(actor_name: str, node_id: str, zone: str, persist_dir: str | None = None) -> Any:
    """A detached member host actor pinned to ``node_id`` (it carries one member, or up to
    ``FleetConfig.members_per_host``).

    In memory (``persist_dir`` None), ``max_restarts=0``: a member that lost its memory must
    never come back under the same identity (it could vote twice or forget acknowledged
    entries); a new member is added instead, under a new name. With a write-ahead log in
    ``persist_dir``, ``max_restarts=-1``: Ray restarts a host whose process died, and the new
    process recovers its members from the log, votes and entries intact (Raft's own crash
    recovery), so they rejoin as themselves."""
    from .member import MemberHost

    return (
        _remote(MemberHost)
        .options(
            name=actor_name,
            namespace=NAMESPACE,
            lifetime="detached",
            max_restarts=0 if persist_dir is None else -1,
            max_concurrency=10_000,
            num_cpus=0,
            resources=member_resources(node_id, zone),
            scheduling_strategy=pinned(node_id),
            runtime_env=_runtime_env(),
        )
        .remote(actor_name, node_id, None, persist_dir, zone)
    )


def start_node_agent(name: str, node_id: str, zone: str) -> Any:
    """The per-node agent (raft_fleet's Manager): detached, pinned, get-or-create by name.

    ``max_restarts=-1``: Ray restarts an agent that died on its node; the new incarnation
    adopts the hosts running there (the agent holds no state of its own to lose)."""
    from .node_agent import NodeAgent

    return (
        _remote(NodeAgent)
        .options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_concurrency=1000,
            num_cpus=0,
            scheduling_strategy=pinned(node_id),
            runtime_env=_runtime_env(),
        )
        .remote(node_id, zone)
    )


BALANCER_NAME = "raftfleet_balancer"


def get_or_create_balancer() -> Any:
    """The reconciler (``balancer.Balancer``): a detached singleton, get-or-create by name,
    restarted by Ray wherever it fits (``max_restarts=-1``, not pinned: it keeps no state, it
    rebuilds everything from the ClusterActor and from observation)."""
    from .balancer import Balancer

    return (
        _remote(Balancer)
        .options(
            name=BALANCER_NAME,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_concurrency=1000,
            num_cpus=0,
            runtime_env=_runtime_env(),
        )
        .remote()
    )


_balancer: PerCluster[Any] = PerCluster(get_or_create_balancer)


def balancer_handle() -> Any:
    """The balancer's handle, created once per process and Ray cluster (Ray restarts the
    actor behind it; a handle of an earlier cluster names an actor that does not exist)."""
    return _balancer.get()


def forget_balancer_handle() -> None:
    """After the fleet is torn down (``shutdown_fleet``) a new balancer must be created."""
    _balancer.clear()
