"""Names and addresses of the runtime's actors.

A member is addressed by (actor, group): the core's ``NodeId`` for a member is
``"<actor name>#<group>"``. Today each member actor hosts one group; because nothing
routes by actor handle alone, a host actor can later carry thousands of groups (raft_fleet
runs thousands per node, and a Ray actor costs about 50 MiB here) without touching the
core or the client.
"""

from __future__ import annotations

import uuid

NAMESPACE = "raftfleet"
"""Every raftfleet actor is named in this Ray namespace."""

_MEMBER_PREFIX = "raftfleet.member|"
_AGENT_PREFIX = "raftfleet.agent|"
NODE_ID_CHARS = 16  # node ids are 56 hex chars; 16 are plenty to tell nodes apart in a name


def member_actor_name(group: str, node_id: str) -> str:
    """A fresh name: a new incarnation never reuses an old identity (raft_fleet's pid rule)."""
    return f"{_MEMBER_PREFIX}{group}|{node_id[:NODE_ID_CHARS]}|{uuid.uuid4().hex[:8]}"


def member_id(actor_name: str, group: str) -> str:
    return f"{actor_name}#{group}"


def parse_member_id(mid: str) -> tuple[str, str]:
    """``member_id`` -> (actor name, group)."""
    actor_name, _, group = mid.rpartition("#")
    if not actor_name:
        raise ValueError(f"not a raftfleet member id: {mid!r}")
    return actor_name, group


def is_member_actor_of(actor_name: str, group: str) -> bool:
    return actor_name.startswith(f"{_MEMBER_PREFIX}{group}|")


def node_prefix_of_member(mid: str) -> str:
    """The (shortened) node id a member lives on, from its id."""
    actor_name, _ = parse_member_id(mid)
    return actor_name.split("|")[2]


def on_node(mid: str, node_id: str) -> bool:
    return node_prefix_of_member(mid) == node_id[:NODE_ID_CHARS]


def agent_name(node_id: str) -> str:
    return f"{_AGENT_PREFIX}{node_id}"
