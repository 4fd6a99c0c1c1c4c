"""User-facing configuration: ``RaftConfig`` per consensus group, ``FleetConfig`` per fleet.

Durations are in seconds (floats); raft_fleet and rafted_value use milliseconds, the names
and defaults are theirs (reference §2, §4.1). The Raft core counts ticks, so
``RaftConfig.to_core()`` turns seconds into ticks of ``tick_interval`` seconds.

Example::

    from raftfleet_ray.config import RaftConfig
    from raftfleet_ray.data import KeyValue

    cfg = RaftConfig(data=KeyValue, election_timeout=0.5, heartbeat_timeout=0.1)
    cfg.to_core().election_ticks  # 10
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from raftfleet_ray.data import Counter
from raftfleet_ray.raft.config import CoreConfig


def _positive(owner: str, name: str, value: Any) -> None:
    # bool is an int subclass: True would otherwise pass as "1".
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be a finite number of seconds, got {value!r}")
    if value <= 0:
        raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")


def _positive_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Configuration of one consensus group (rafted_value's ``RaftedValue.Config``).

    - ``data``: the replicated value's class (the ``Data`` protocol: ``__init__()``,
      ``command(arg)``, ``query(arg)``); a class, not an instance.
    - ``heartbeat_timeout``: the leader's heartbeat period (s).
    - ``election_timeout``: T; a follower starts an election after a random time in (T, 2T].
    - ``election_timeout_clock_drift_margin``: ``None`` = no leader lease (rafted_value's
      default margin = T); otherwise the lease lasts ``election_timeout - margin`` seconds and
      the leader answers queries from its lease without a quorum round trip.
    - ``max_retained_command_results``: size of the command de-duplication cache for plain
      command ids (rafted_value's).
    - ``max_sessions``: client sessions the group keeps (one per client process that wrote
      to it; least recently used first out). A command of an evicted session is refused with
      ``SessionExpiredError`` (its outcome unknown), never applied twice; raise it if more
      client processes than this write to one group.
    - ``tick_interval``: the member's clock period (s); timeouts are rounded to whole ticks.
    - ``snapshot_interval``: take a snapshot after this many applied entries.
    - ``snapshot_log_factor``: also take one once the bytes of the log entries applied since
      the last snapshot exceed this × its size (a smaller snapshot, or none yet, counts as
      64 KiB); rafted_value's ``log_file_expansion_factor`` (10 there). 0 = off (the
      default); with both on, whichever trigger fires first wins.
    - ``max_command_bytes``: a command whose encoded argument is larger is refused
      (``CommandTooLargeError``) instead of clogging the log.
    - ``quiesce_after``: an idle group (nothing proposed or read, every follower caught up)
      quiesces after this many seconds: no ticks, heartbeats or timers until it is used
      again or a member is reported down. ``None`` = never (the group always ticks).
    - ``leader_hook``: ``None``, or a class (rafted_value's ``LeaderHook``) instantiated in
      each member, whose methods the *leader* calls, each optional:
      ``on_command_committed(command_arg, command_ret, data_after)``,
      ``on_query_answered(data, query_arg, query_ret)``, ``on_follower_added(data, member)``,
      ``on_follower_removed(data, member)``, ``on_elected(data)``,
      ``on_restored_from_files(data)``. ``data`` is the group's value: read it, do not change
      it. A hook that raises is logged with the group name; the member and the command go on.
      (rafted_value also passes ``data_before`` to ``on_command_committed``; keeping a copy of
      every value before each command is not worth its cost here, so it is not passed, and
      ``data_after`` is the value once the batch of commands applied together is applied.)

    Raises ``ValueError`` naming the field when a value is out of range.
    """

    data: type = Counter
    heartbeat_timeout: float = 0.2
    election_timeout: float = 1.0
    election_timeout_clock_drift_margin: float | None = None
    max_retained_command_results: int = 100
    max_sessions: int = 10_000
    tick_interval: float = 0.05
    snapshot_interval: int = 1000
    snapshot_log_factor: float = 0.0
    max_command_bytes: int = 16 * 2**20
    quiesce_after: float | None = 2.0
    leader_hook: type | None = None

    def __post_init__(self) -> None:
        owner = "RaftConfig"
        if self.leader_hook is not None and not isinstance(self.leader_hook, type):
            raise ValueError(f"{owner}.leader_hook must be None or a class with on_* methods, got "
                             f"{self.leader_hook!r}; pass the class itself, not an instance")
        if not isinstance(self.data, type):
            raise ValueError(
                f"{owner}.data must be a class implementing the Data protocol (command/query), "
                f"got {self.data!r}; pass the class itself, e.g. data=Counter, not Counter()"
            )
        for method in ("command", "query"):
            if not callable(getattr(self.data, method, None)):
                raise ValueError(
                    f"{owner}.data={self.data.__qualname__} has no method {method}(arg); a Data "
                    "class needs __init__(), command(arg) and query(arg)"
                )
        for name in ("heartbeat_timeout", "election_timeout", "tick_interval"):
            _positive(owner, name, getattr(self, name))
        for name in ("max_retained_command_results", "max_sessions", "snapshot_interval", "max_command_bytes"):
            _positive_int(owner, name, getattr(self, name))
        factor = self.snapshot_log_factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not (
            math.isfinite(factor) and factor >= 0
        ):
            raise ValueError(f"{owner}.snapshot_log_factor must be a finite number >= 0 (0 = off), got {factor!r}")
        if self.heartbeat_timeout >= self.election_timeout:
            raise ValueError(
                f"{owner}.heartbeat_timeout ({self.heartbeat_timeout}) must be smaller than "
                f"election_timeout ({self.election_timeout}), or followers time out between "
                "heartbeats"
            )
        if self.tick_interval > self.heartbeat_timeout:
            raise ValueError(
                f"{owner}.tick_interval ({self.tick_interval}) must be <= heartbeat_timeout "
                f"({self.heartbeat_timeout}): timeouts are counted in ticks"
            )
        if self.quiesce_after is not None:
            _positive(owner, "quiesce_after", self.quiesce_after)
        margin = self.election_timeout_clock_drift_margin
        if margin is not None:
            if isinstance(margin, bool) or not isinstance(margin, int | float) or not (
                math.isfinite(margin) and margin >= 0
            ):
                raise ValueError(
                    f"{owner}.election_timeout_clock_drift_margin must be None (no lease) or a "
                    f"number of seconds >= 0, got {margin!r}"
                )

    def _ticks(self, seconds: float) -> int:
        return round(seconds / self.tick_interval)

    def to_core(self) -> CoreConfig:
        """The core's tick-based config.

        ``election_ticks`` is at least 2 and ``heartbeat_ticks`` in [1, election_ticks);
        ``lease_ticks`` is 0 without a lease and at most ``election_ticks - 1`` with one (a
        lease as long as the election timeout would leave no room for clock drift).
        """
        election = max(2, self._ticks(self.election_timeout))
        heartbeat = min(max(1, self._ticks(self.heartbeat_timeout)), election - 1)
        margin = self.election_timeout_clock_drift_margin
        if margin is None:
            lease = 0
        else:
            # A margin >= election_timeout means no lease, as in rafted_value.
            lease = min(max(0, self._ticks(self.election_timeout - margin)), election - 1)
        return CoreConfig(
            election_ticks=election,
            heartbeat_ticks=heartbeat,
            lease_ticks=lease,
            max_retained_command_results=self.max_retained_command_results,
            max_sessions=self.max_sessions,
            snapshot_interval=self.snapshot_interval,
            snapshot_log_factor=float(self.snapshot_log_factor),
            quiesce_ticks=0 if self.quiesce_after is None else max(1, self._ticks(self.quiesce_after)),
        )


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Fleet-wide settings (raft_fleet's application env), kept by the ClusterActor so every
    node uses the same values. Set with ``configure(FleetConfig(...))`` before the first
    ``activate``.

    - ``balancing_interval``: period of the rebalancing round (s).
    - ``follower_addition_delay``: the i-th follower of a new group starts i × this later (s).
    - ``node_purge_failure_time_window``: a node unreachable for longer is purged (s).
    - ``node_purge_reconnect_interval``: period of the node health probe (s).
    - ``leader_pid_cache_refresh_interval``: period of the leader cache refresh (s).
    - ``persistence_dir_parent``: ``None`` = in-memory members; otherwise every host process
      keeps a write-ahead log (hard state, entries, snapshots of all its members; one fsync
      per loop turn) under ``<parent>/<node name>/<host>`` on its node, and Ray restarts a
      host that died: its members recover from the log and rejoin as themselves. The node
      name is the node's ``raftfleet_node:<name>`` resource if it declares one, else its Ray
      node id. A removed group's files are kept: adding it again restores its value, and
      after every node restarted (same node names, same disks) the reconciler registers and
      restores every group it finds in files.
    - ``members_per_host``: how many members one host actor (one process) carries. 1 (the
      default) = one actor per member; with N > 1 each node packs its members into hosts of
      up to N, which is what lets a machine hold thousands of groups.
    - ``peer_probe_interval``: how often each node agent probes the other nodes (s); a node
      that does not answer within max(1 s, this) is reported unreachable to the members.
    - ``max_moves_in_flight``: membership changes (member added, promoted, removed, leader
      moved) the reconciler carries out at once across the fleet; ``max_moves_per_node``:
      at once on any one node, so a joining or draining node does not storm the cluster.

    Raises ``ValueError`` naming the field when a value is out of range.
    """

    balancing_interval: float = 60.0
    follower_addition_delay: float = 0.2
    node_purge_failure_time_window: float = 600.0
    node_purge_reconnect_interval: float = 60.0
    leader_pid_cache_refresh_interval: float = 300.0
    persistence_dir_parent: str | None = None
    members_per_host: int = 1
    peer_probe_interval: float = 1.0
    max_moves_in_flight: int = 64
    max_moves_per_node: int = 16

    def __post_init__(self) -> None:
        owner = "FleetConfig"
        for name in (
            "balancing_interval",
            "node_purge_failure_time_window",
            "node_purge_reconnect_interval",
            "leader_pid_cache_refresh_interval",
            "peer_probe_interval",
        ):
            _positive(owner, name, getattr(self, name))
        for name in ("members_per_host", "max_moves_in_flight", "max_moves_per_node"):
            _positive_int(owner, name, getattr(self, name))
        delay = self.follower_addition_delay
        # 0 is allowed here: start every follower at once.
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not (
            math.isfinite(delay) and delay >= 0
        ):
            raise ValueError(f"{owner}.follower_addition_delay must be >= 0 seconds, got {delay!r}")
        parent = self.persistence_dir_parent
        if parent is not None:
            if not isinstance(parent, str | os.PathLike) or not os.fspath(parent):
                raise ValueError(
                    f"{owner}.persistence_dir_parent must be None or a non-empty path, "
                    f"got {parent!r}"
                )
            # Kept as str: it travels to every node and is compared/pickled as plain data.
            object.__setattr__(self, "persistence_dir_parent", str(os.fspath(parent)))


__all__ = ["FleetConfig", "RaftConfig"]
