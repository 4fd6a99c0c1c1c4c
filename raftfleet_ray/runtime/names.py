"""Names and addresses of the runtime's actors.

A member lives in a *host* actor (``MemberHost``), which carries one member (the default,
``FleetConfig.members_per_host=1``) or many, at most one per group. A member is addressed by
(host, group); its id, the core's ``NodeId``, is ``"<host name>#<group>#<n>"`` where ``n``
numbers the members a host has started: a member started again on the same host (say, a
group moved away and back) is a new member with a new id, never an old identity reused
(raft_fleet's pid rule). Host names carry their node, so a member's node is known from its
id alone.
"""

from __future__ import annotations

import uuid

NAMESPACE = "raftfleet"
"""Every raftfleet actor is named in this Ray namespace."""

HOST_PREFIX = "raftfleet.host|"
AGENT_PREFIX = "raftfleet.agent|"
NODE_ID_CHARS = 16  # node ids are 56 hex chars; 16 are plenty to tell nodes apart in a name


def host_actor_name(node_id: str, token: str | None = None) -> str:
    """A fresh host name on ``node_id``: ``raftfleet.host|<node>|<token>`` (8 random hex
    digits unless given)."""
    return f"{HOST_PREFIX}{node_id[:NODE_ID_CHARS]}|{(token or uuid.uuid4().hex)[:8]}"


def member_id(host: str, group: str, n: int) -> str:
    return f"{host}#{group}#{n}"


def parse_member_id(mid: str) -> tuple[str, str]:
    """``member_id`` -> (host actor name, group)."""
    parts = mid.split("#")
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"not a raftfleet member id: {mid!r}")
    return parts[0], parts[1]


def host_of(mid: str) -> str:
    return parse_member_id(mid)[0]


def node_prefix_of_host(host: str) -> str:
    parts = host.split("|")
    return parts[1] if len(parts) == 3 else ""


def node_prefix_of_member(mid: str) -> str:
    """The (shortened) node id a member lives on, from its id."""
    return node_prefix_of_host(host_of(mid))


def node_prefix(node_id: str) -> str:
    return node_id[:NODE_ID_CHARS]


def on_node(mid: str, node_id: str) -> bool:
    return node_prefix_of_member(mid) == node_id[:NODE_ID_CHARS]


def is_host_on_node(host: str, node_id: str) -> bool:
    return host.startswith(HOST_PREFIX) and node_prefix_of_host(host) == node_id[:NODE_ID_CHARS]


def agent_name(node_id: str) -> str:
    return f"{AGENT_PREFIX}{node_id}"
