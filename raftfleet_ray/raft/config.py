"""The core's own configuration: every duration is in ticks (the shell turns seconds into ticks)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CoreConfig:
    election_ticks: int = 10
    """T: a follower's election timeout is drawn uniformly from (T, 2T] (rafted_value)."""
    heartbeat_ticks: int = 2
    lease_ticks: int = 0
    """Leader lease length (election timeout minus the clock-drift margin); 0 = no lease reads."""
    max_retained_command_results: int = 100
    max_sessions: int = 10_000
    """Client sessions kept by the de-dup cache (least recently used evicted first)."""
    max_entries_per_msg: int = 512
    max_bytes_per_msg: int = 1 << 20
    max_inflight_msgs: int = 64
    snapshot_interval: int = 1000
    """Take a snapshot once this many entries were applied since the last one."""
    snapshot_log_factor: float = 0.0
    """Size trigger (rafted_value's ``log_file_expansion_factor``, reference §4.6): also take a
    snapshot once the bytes of the entries applied since the last one exceed this many times
    the last snapshot's size, counted as at least ``snapshot_min_bytes``. Entry bytes are the
    core's estimate (``RaftNode._entry_size``: a bytes argument's length + 32, else 64).
    0 = off: only ``snapshot_interval`` counts. With both on, whichever fires first wins."""
    snapshot_min_bytes: int = 64 * 1024
    """The size the size trigger assumes for a snapshot that is smaller or not taken yet, so a
    tiny value is not snapshotted every few entries (the log grows to at least
    ``snapshot_log_factor`` × this between snapshots)."""
    log_retention: int = 100
    """Entries kept before the snapshot index, so a slightly lagging follower needs no snapshot."""
    snapshot_chunk_bytes: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    quiesce_ticks: int = 0
    """An idle leader whose followers are all caught up quiesces the group after this many
    quiet ticks: no ticks, heartbeats or election timers until the group is used again or a
    member is reported down (``RaftNode.peer_down``). 0 = never quiesce."""

    def __post_init__(self) -> None:
        if self.election_ticks < 2:
            raise ValueError(f"election_ticks must be >= 2, got {self.election_ticks}")
        if not 0 < self.heartbeat_ticks < self.election_ticks:
            raise ValueError(
                f"heartbeat_ticks must be in (0, election_ticks={self.election_ticks}), "
                f"got {self.heartbeat_ticks}"
            )
        if not 0 <= self.lease_ticks < self.election_ticks:
            raise ValueError(
                f"lease_ticks must be in [0, election_ticks={self.election_ticks}), got {self.lease_ticks}"
            )
        for name in ("max_retained_command_results", "max_sessions", "max_entries_per_msg", "max_bytes_per_msg",
                     "max_inflight_msgs", "snapshot_interval", "snapshot_chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.quiesce_ticks < 0:
            raise ValueError(f"quiesce_ticks must be >= 0, got {self.quiesce_ticks}")
        factor = self.snapshot_log_factor
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not (
            math.isfinite(factor) and factor >= 0
        ):
            raise ValueError(f"snapshot_log_factor must be a finite number >= 0 (0 = off), got {factor!r}")
        if self.snapshot_min_bytes < 0:
            raise ValueError(f"snapshot_min_bytes must be >= 0, got {self.snapshot_min_bytes}")
        if self.log_retention < 0:
            raise ValueError(f"log_retention must be >= 0, got {self.log_retention}")
