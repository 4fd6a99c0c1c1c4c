"""Placement: pure functions of a cluster view (no Ray, no clock).

- :func:`desired_members` — zone-aware rendezvous hashing (raft_fleet's ``lrw_members``).
"""

from raftfleet_ray.placement.rendezvous import (
    HashFn,
    desired_leader,
    desired_members,
    node_hash,
)

__all__ = ["HashFn", "desired_leader", "desired_members", "node_hash"]
