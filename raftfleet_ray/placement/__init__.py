"""Placement: pure functions of a cluster view (no Ray, no clock).

- :func:`desired_members` — zone-aware rendezvous hashing (raft_fleet's ``lrw_members``);
- :func:`fleet_layout` — every group's desired members, with leaders balanced over nodes;
- :func:`plan` — the reconciler's next step for one group (``planner.py``).
"""

from raftfleet_ray.placement.layout import fleet_layout
from raftfleet_ray.placement.planner import plan
from raftfleet_ray.placement.rendezvous import (
    HashFn,
    desired_leader,
    desired_members,
    node_hash,
)

__all__ = ["HashFn", "desired_leader", "desired_members", "fleet_layout", "node_hash", "plan"]
