"""The pure Raft core: no Ray, no asyncio, no clock, no randomness source, no file I/O.

``RaftNode`` is driven by ``tick()``, ``step(msg)``, ``propose(...)``, ``read(...)`` and
``on_persisted(...)``; each returns a ``Ready`` saying what to persist, send, apply and
answer. See ``node.py`` and ``types.py``.
"""

from .config import CoreConfig
from .node import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE, REMOVED, RaftNode, restored_snapshot
from .types import (
    REJECT_REASONS,
    AppendEntries,
    AppendEntriesResponse,
    Command,
    CommandError,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Membership,
    Message,
    NodeId,
    Ok,
    Quiesce,
    Raised,
    Ready,
    Rejected,
    Removed,
    Reply,
    RequestVote,
    RequestVoteResponse,
    Result,
    SessionId,
    Snapshot,
    SnapshotMeta,
    Status,
    TimeoutNow,
)

__all__ = [
    "CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "REMOVED", "REJECT_REASONS",
    "AppendEntries", "AppendEntriesResponse", "Command", "CommandError", "CoreConfig", "Entry", "EntryKind",
    "HardState", "InstallSnapshot", "InstallSnapshotResponse", "Membership", "Message", "NodeId", "Ok",
    "Quiesce", "Raised", "RaftNode", "restored_snapshot", "Ready", "Rejected", "Removed", "Reply", "RequestVote",
    "RequestVoteResponse", "Result", "SessionId", "Snapshot", "SnapshotMeta", "Status", "TimeoutNow",
]
