"""raftfleet_ray: many Raft consensus groups on a Ray cluster, placed across zones.

The public API is imported lazily so that ``import raftfleet_ray.raft`` (the pure core)
never pulls in Ray or asyncio.
"""

from __future__ import annotations

import importlib
from typing import Any

from .logs import apply_env_log_level

__version__ = "0.1.0"

apply_env_log_level()  # RAFTFLEET_LOG_LEVEL, in the driver and in every actor

_LAZY: dict[str, str] = {
    "Counter": "raftfleet_ray.data",
    "KeyValue": "raftfleet_ray.data",
    "Data": "raftfleet_ray.data",
    "RaftConfig": "raftfleet_ray.config",
    "FleetConfig": "raftfleet_ray.config",
    "RaftFleetError": "raftfleet_ray.errors",
    "NoLeaderError": "raftfleet_ray.errors",
    "AlreadyAddedError": "raftfleet_ray.errors",
    "CleanupOngoingError": "raftfleet_ray.errors",
    "NotFoundError": "raftfleet_ray.errors",
    "NotInactiveError": "raftfleet_ray.errors",
    "InactiveError": "raftfleet_ray.errors",
    "NoActiveNodeError": "raftfleet_ray.errors",
    "InvalidNameError": "raftfleet_ray.errors",
    "AwaitTimeoutError": "raftfleet_ray.errors",
    "CommandTooLargeError": "raftfleet_ray.errors",
    "FleetConfigLockedError": "raftfleet_ray.errors",
    "CommandError": "raftfleet_ray.errors",
    "SessionExpiredError": "raftfleet_ray.errors",
    "MemberQuarantinedError": "raftfleet_ray.errors",
    "GroupLostError": "raftfleet_ray.errors",
    "RepairRefusedError": "raftfleet_ray.errors",
    "activate": "raftfleet_ray.api",
    "activate_all": "raftfleet_ray.api",
    "deactivate": "raftfleet_ray.api",
    "active_nodes": "raftfleet_ray.api",
    "connect": "raftfleet_ray.api",
    "draining_nodes": "raftfleet_ray.api",
    "draining_nodes_async": "raftfleet_ray.api",
    "describe_nodes": "raftfleet_ray.api",
    "describe_nodes_async": "raftfleet_ray.api",
    "members_on_node": "raftfleet_ray.api",
    "members_on_node_async": "raftfleet_ray.api",
    "group_statuses": "raftfleet_ray.api",
    "group_statuses_async": "raftfleet_ray.api",
    "configure": "raftfleet_ray.api",
    "add_consensus_group": "raftfleet_ray.api",
    "add_consensus_groups": "raftfleet_ray.api",
    "remove_consensus_group": "raftfleet_ray.api",
    "consensus_groups": "raftfleet_ray.api",
    "command": "raftfleet_ray.api",
    "query": "raftfleet_ray.api",
    "whereis_leader": "raftfleet_ray.api",
    "find_consensus_group_with_no_established_leader": "raftfleet_ray.api",
    "lost_consensus_groups": "raftfleet_ray.api",
    "repair_consensus_group": "raftfleet_ray.api",
    "remove_dead_pids_located_in_dead_node": "raftfleet_ray.api",
    "remove_dead_members": "raftfleet_ray.api",
    "unreachable_nodes": "raftfleet_ray.api",
    "query_non_leader": "raftfleet_ray.api",
    "group_status": "raftfleet_ray.api",
    "group_ready": "raftfleet_ray.api",
    "leader_status": "raftfleet_ray.api",
    "shutdown_fleet": "raftfleet_ray.api",
    "group_status_async": "raftfleet_ray.api",
    "activate_async": "raftfleet_ray.api",
    "activate_all_async": "raftfleet_ray.api",
    "deactivate_async": "raftfleet_ray.api",
    "active_nodes_async": "raftfleet_ray.api",
    "configure_async": "raftfleet_ray.api",
    "add_consensus_group_async": "raftfleet_ray.api",
    "add_consensus_groups_async": "raftfleet_ray.api",
    "remove_consensus_group_async": "raftfleet_ray.api",
    "consensus_groups_async": "raftfleet_ray.api",
    "command_async": "raftfleet_ray.api",
    "query_async": "raftfleet_ray.api",
    "whereis_leader_async": "raftfleet_ray.api",
    "find_consensus_group_with_no_established_leader_async": "raftfleet_ray.api",
    "lost_consensus_groups_async": "raftfleet_ray.api",
    "repair_consensus_group_async": "raftfleet_ray.api",
    "remove_dead_pids_located_in_dead_node_async": "raftfleet_ray.api",
    "remove_dead_members_async": "raftfleet_ray.api",
    "unreachable_nodes_async": "raftfleet_ray.api",
    "explain_placement": "raftfleet_ray.api",
    "explain_placement_async": "raftfleet_ray.api",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raftfleet_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
