"""Values that go in and out of the pure Raft core.

Everything here is an immutable dataclass: log entries, the durable hard state,
snapshots, the closed set of peer messages, client results and the ``Ready`` the
core hands back after every input (the etcd-raft model: the caller persists,
sends and answers; the core never calls out).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

_T = TypeVar("_T")


def _compact_pickle(cls: type[_T]) -> type[_T]:
    """Pickle as ``cls(*values)``: entries and messages cross process boundaries by the
    thousand, and the generic dataclass pickling of frozen slotted classes is several
    times slower (measured in the member actors' profile)."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple:
        return (cls, tuple([getattr(self, n) for n in names]))

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls

NodeId = str
"""A member's identity. Unique per process incarnation: a restarted member that lost
its memory must come back under a *new* id (raft_fleet's pid semantics)."""


class EntryKind(enum.IntEnum):
    NOOP = 0  # appended by a new leader; data = the member tuple (rafted_value's leader_elected2)
    COMMAND = 1  # data = Command
    MEMBERS = 2  # data = the complete new configuration: voters, or Membership(voters, learners)


@_compact_pickle
@dataclass(frozen=True, slots=True)
class SessionId:
    """A command id from a client session (Raft thesis §6.3): ``seq`` numbers the client's
    commands; ``low`` is its smallest ``seq`` still in flight when this one was sent (all
    below are answered or abandoned, so their results may be forgotten). See ``dedup.py``."""

    client: str
    seq: int
    low: int
    since: int = 0
    """When the session began, on the client's clock (microseconds): the de-dup cache refuses
    a command of an evicted session by it (``dedup.py``). 0 (clients before it) counts as the
    oldest possible session."""


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Command:
    cmd_id: Any  # de-duplication key chosen by the client, the same on every retry
    arg: Any


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: Any = None


@_compact_pickle
@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves (Raft §5.1, Fig. 2)."""

    term: int = 0
    voted_for: NodeId | None = None


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Membership:
    """A configuration with learners (Raft thesis §4.2.1): ``voters`` elect and commit;
    ``learners`` receive the log but never vote or count toward a quorum. A configuration
    without learners is written as the plain tuple of voters (rafted_value's form)."""

    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()


def split_membership(data: Any) -> tuple[tuple[NodeId, ...], tuple[NodeId, ...]]:
    """(voters, learners) of a NOOP or MEMBERS entry's data."""
    if isinstance(data, Membership):
        return data.voters, data.learners
    return tuple(data), ()


def membership_data(voters: tuple[NodeId, ...], learners: tuple[NodeId, ...]) -> Any:
    return Membership(voters, learners) if learners else voters


@_compact_pickle
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    members: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Snapshot:
    """The applied state at ``meta.index``: the user's value and the de-dup cache, encoded."""

    meta: SnapshotMeta
    data: bytes


# ---------------------------------------------------------------------------------------
# Messages between members. Every message carries the sender's term and both ends.


@_compact_pickle
@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int  # for a pre-vote: the term the sender *would* campaign in
    frm: NodeId
    to: NodeId
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent after TimeoutNow: bypasses the live-leader guard (§3.10 thesis)


@_compact_pickle
@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    frm: NodeId
    to: NodeId
    granted: bool
    pre_vote: bool = False


@_compact_pickle
@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    frm: NodeId
    to: NodeId
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_ctx: int = 0  # ReadIndex round the leader wants confirmed (0 = none)
    sent_tick: int = 0  # leader's tick when sent, echoed back for the lease (rafted_value)


@_compact_pickle
@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    term: int
    frm: NodeId
    to: NodeId
    success: bool
    match_index: int  # on success: the last index known to match the leader's log
    conflict_index: int = 0  # on failure: where the leader should retry from
    conflict_term: int = 0  # on failure: term of the follower's entry at prev_index (0 = none)
    read_ctx: int = 0
    sent_tick: int = 0


@_compact_pickle
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    frm: NodeId
    to: NodeId
    meta: SnapshotMeta
    offset: int
    chunk: bytes
    done: bool


@_compact_pickle
@dataclass(frozen=True, slots=True)
class InstallSnapshotResponse:
    term: int
    frm: NodeId
    to: NodeId
    meta_index: int
    next_offset: int  # bytes received so far of that snapshot (what to send next)


@_compact_pickle
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    term: int
    frm: NodeId
    to: NodeId


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Quiesce:
    """An idle leader tells a caught-up follower to stop its election timer (Dragonboat's
    quiesce, TiKV's hibernated regions): the group then does no periodic work until it is
    used again. ``index``/``log_term`` are the leader's last entry, all of it committed; a
    follower whose log ends exactly there quiesces, any other answers and so wakes the leader.
    """

    term: int
    frm: NodeId
    to: NodeId
    index: int
    log_term: int
    sent_tick: int = 0  # the leader's tick when it quiesced (see RaftNode._handle_quiesce)


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Removed:
    """Tells a member that a committed configuration no longer contains it."""

    term: int
    frm: NodeId
    to: NodeId


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | InstallSnapshot
    | InstallSnapshotResponse
    | TimeoutNow
    | Quiesce
    | Removed
)


# ---------------------------------------------------------------------------------------
# Results of client and admin requests.


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Ok:
    value: Any = None


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Raised:
    """``Data.command`` raised: the value is unchanged on every replica; this is the answer.
    ``exc`` always survives pickling (``RaftNode`` replaces one that does not by a
    :class:`CommandError`): it is kept in the replicated de-dup cache and in snapshots."""

    exc: BaseException


class CommandError(Exception):
    """What ``Data.command`` or ``Data.query`` raised, by name, when the exception itself
    cannot be handed on: it does not survive pickling (typically an ``__init__`` with
    required arguments that are not its ``args``), or it is not an ``Exception`` at all
    (``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError``). The value is
    unchanged, as for any exception a command raises.

    ``type_name`` is the qualified name of the original exception's class and ``text`` its
    ``repr``."""

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(type_name, text)
        self.type_name = type_name
        self.text = text

    def __str__(self) -> str:
        return (f"Data.command or Data.query raised {self.text}, which cannot be handed on as it is "
                f"(it does not survive pickling, or it is not an Exception); reported as {self.type_name} "
                "by name. To receive the exception itself, make it picklable: its __init__ must accept "
                "its own args, or define __reduce__.")


@_compact_pickle
@dataclass(frozen=True, slots=True)
class Rejected:
    """The request was not carried out *by this member*.

    ``reason`` is one of ``REJECT_REASONS``. Only ``not_leader`` and ``leadership_lost``
    leave the outcome of a command unknown (it may still commit): retry with the same id.
    """

    reason: str
    leader: NodeId | None = None
    session_floor: int = 0  # session_expired: a new session's `since` must be above this


REJECT_REASONS = (
    "not_leader",  # this member is not the leader; `leader` is a hint (may be None)
    "leadership_lost",  # accepted, then this member stopped leading: outcome unknown, retry
    "uncommitted_membership_change",
    "pending_leader_change",
    "not_member",
    "already_member",
    "already_leader",
    "cannot_remove_leader",
    "will_break_quorum",
    "new_leader_unresponsive",
    "transfer_failed",  # TimeoutNow sent, but the target did not take over within an election timeout
    "not_learner",
    "learner_behind",  # promote_learner: the learner has not caught up yet; try again later
    "removed",  # this member was removed from the group and has stopped
    "session_expired",  # the command's client session was evicted from the de-dup cache: a
    # retry of it cannot be told from a new command, so it is refused; an earlier attempt may
    # have been applied (outcome unknown). The client starts a new session.
)

Result = Ok | Raised | Rejected


@dataclass(frozen=True, slots=True)
class Reply:
    req: Any  # the request token the caller passed in
    result: Result


# ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Ready:
    """What the caller must do after one input, in this order.

    1. Persist ``hard_state`` (if not None), then ``snapshot`` (if not None: the log up to
       ``snapshot.meta.index`` may be dropped, and the whole log if it conflicts), then
       ``entries`` (the storage first drops every entry at index >= ``entries[0].index``:
       that is how a conflicting suffix is truncated). Writes are applied in Ready order.
    2. Send ``messages`` at once (they do not depend on this Ready's writes).
    3. Once everything from this and every earlier Ready is durable, send
       ``messages_after_persist`` and call ``on_persisted(persist_seq)``.
    4. ``replies`` answer callers; ``applied`` lists the entries applied to the value
       (for observers and tests); ``removed`` says this member left the group: stop it.
    """

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    messages_after_persist: list[Message] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    applied: list[Entry] = field(default_factory=list)
    persist_seq: int = 0  # 0 = nothing to persist and nothing waits on a write
    removed: bool = False

    def needs_persist(self) -> bool:
        return self.hard_state is not None or self.snapshot is not None or bool(self.entries)

    def is_empty(self) -> bool:
        return not (
            self.needs_persist()
            or self.messages
            or self.messages_after_persist
            or self.replies
            or self.applied
            or self.removed
        )


@dataclass(frozen=True, slots=True)
class Status:
    """rafted_value's status map, plus indexes."""

    from_: NodeId
    members: tuple[NodeId, ...]  # the voters
    leader: NodeId | None
    unresponsive_followers: tuple[NodeId, ...]
    current_term: int
    state_name: str  # "leader" | "candidate" | "follower" | "pre_candidate" | "removed"
    config: Any
    commit_index: int
    applied_index: int
    last_index: int
    quiesced: bool = False  # no timers run until a message, a call or peer_down wakes it
    learners: tuple[NodeId, ...] = ()
    caught_up_learners: tuple[NodeId, ...] = ()  # leader only: learners that promote_learner accepts
    snapshot_error: str | None = None  # the last failure to take or install a snapshot, if any
