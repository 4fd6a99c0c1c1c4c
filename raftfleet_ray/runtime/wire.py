"""Typed messages between the fleet's processes (CONVENTIONS §15).

Every message that crosses a process boundary is a frozen, slotted dataclass here, read by
attribute and matched with ``match``, never a tuple read by position or a dict read by key.

- ``CommandOp`` / ``QueryOp``: a client's operation on a group (``MemberHost.submit``).
- ``ValueReply`` / ``RaisedReply`` / ``UnpicklableReply`` / ``TooLargeReply`` /
  ``RejectedReply``: a host's answer to one operation, and to an admin call (``Reply``).
- ``LogSummary``: what one member's files hold, as its host tells its agent
  (``MemberHost.restorable``).
- ``CreationOutcome``: how a group's creation ended (``Balancer.wait_created``).
- ``RepairOutcome``: what a repair did or why it was refused (``Balancer.repair``).

- ``Quarantine``: a member its host stopped because its input or its code failed (an
  exception out of its core step, its Data class, its hook or its storage write). The host
  answers it to the member's callers, reports it in the member's status (key
  ``"quarantine"``) and to its node agent.
- ``MemberStatus``: one member's status, as its host tells it (``MemberHost.statuses``).
- ``MemberObservation``: one member as its node agent reports it to the reconciler
  (``NodeAgent.observe``).

Nothing here imports Ray: the shell's unit tests and the CLI read these types too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..raft.types import SessionId

if TYPE_CHECKING:  # for the annotation only: wire.py imports nothing above it at run time
    from ..placement.planner import RepairPlan

MAX_MESSAGE_CHARS = 500
"""A quarantine keeps at most this much of the exception's text (it travels in every status)."""


# -- client operations and their answers ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandOp:
    """Run ``Data.command`` with the pickled ``arg``; ``cmd_id`` is the command's id in its
    client's session (Raft thesis §6.3): every retry carries it, so it applies at most once."""

    cmd_id: SessionId
    arg: bytes


@dataclass(frozen=True, slots=True)
class QueryOp:
    """Run ``Data.query`` with the pickled ``arg`` (linearizable: ReadIndex or lease)."""

    arg: bytes


ClientOp = CommandOp | QueryOp


@dataclass(frozen=True, slots=True)
class ValueReply:
    """Done: the operation returned ``value`` (pickled by the host, one reply at a time, so one
    unpicklable value fails only its own caller)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class RaisedReply:
    """Done: the user's code raised ``exc`` (pickled); a command that raised changed nothing."""

    exc: bytes


@dataclass(frozen=True, slots=True)
class UnpicklableReply:
    """Done, but its result could not be pickled: ``message`` says why."""

    message: str


@dataclass(frozen=True, slots=True)
class TooLargeReply:
    """Refused before proposing: the argument's ``size`` exceeds the group's ``limit`` (bytes)."""

    size: int
    limit: int


@dataclass(frozen=True, slots=True)
class RejectedReply:
    """Not done by this member: ``reason`` is the core's (``not_leader``, ``leadership_lost``,
    ``session_expired``, ``uncommitted_membership_change``...) or the host's (``no_member``,
    ``removed``); ``leader`` a hint where to go; ``session_floor`` the session's new floor
    (``session_expired``)."""

    reason: str
    leader: str | None = None
    session_floor: int | None = None


Reply = ValueReply | RaisedReply | UnpicklableReply | TooLargeReply | RejectedReply


# -- files -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogSummary:
    """What one member's files hold: its log's last ``term`` and ``index``, the group's
    ``n_replica``, the ``member`` id and the configuration ``(voters, learners)`` its log ends
    with (``MemberHost.restorable``)."""

    term: int
    index: int
    n_replica: int
    member: str
    config: tuple[tuple[str, ...], tuple[str, ...]]


# -- reconciler answers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreationOutcome:
    """How waiting for a group's creation ended: ``created``; or ``error``, the pickled
    exception that failed it (its Data class could not be built, say); or neither (the wait
    timed out: the reconciler goes on creating it)."""

    created: bool
    error: bytes | None = None


@dataclass(frozen=True, slots=True)
class RepairOutcome:
    """``repaired`` (with the ``plan`` carried out; ``reason`` and ``lost_since``: why and
    when the group had been marked lost), ``refused`` or ``failed`` (with the ``reason``, and
    the ``plan`` when one was made), or ``not_found``."""

    outcome: Literal["repaired", "refused", "failed", "not_found"]
    reason: str = ""
    plan: RepairPlan | None = None
    lost_since: float | None = None


# -- members ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Member ``member`` of ``group`` on host ``host`` (node ``node_id``) was quarantined at
    ``since`` (epoch seconds) because ``during`` (what the host was doing for it: ``deliver``,
    ``persisted``, ``tick``, ``submit``, ``admin``, ``peer_down``, ``recover``...) raised
    ``error`` (the exception's class name) with ``message``.

    A quarantined member takes no part in its group any more: no message in or out, no call
    served; its callers get this as their answer. Its host's other members go on."""

    group: str
    member: str
    host: str
    node_id: str
    during: str
    error: str
    message: str
    since: float

    @classmethod
    def of(cls, exc: BaseException, *, group: str, member: str, host: str, node_id: str, during: str,
           now: float | None = None) -> Quarantine:
        text = " ".join(str(exc).split())
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 3] + "..."
        return cls(group, member, host, node_id, during, type(exc).__name__, text,
                   time.time() if now is None else now)

    @property
    def cause(self) -> str:
        """``"<during> raised <Error>: <message>"``: why, in one line."""
        return f"{self.during} raised {self.error}" + (f": {self.message}" if self.message else "")

    def describe(self) -> str:
        """One line for logs, errors and ``raftfleet status``."""
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"member {self.member} of group {self.group!r} quarantined at {at}: {self.cause}"


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member's status as its host tells it (``MemberHost.statuses``): the core's
    ``Status`` (rafted_value's status map plus indexes), where the member lives (``node_id``,
    ``host``), how up to date its log is (``last_index``, ``last_term``: Raft §5.4.1), and its
    quarantine if its host quarantined it (then ``state_name`` is ``"quarantined"`` and
    ``leader`` None, so that leader discovery never picks it). ``config``: the group's
    ``RaftConfig``, only in full statuses (None in the reconciler's brief ones).

    Users see it as a dict (``as_dict``: ``group_status``, ``leader_status``), as raft_fleet
    answers a map."""

    from_: str
    members: tuple[str, ...]
    leader: str | None
    state_name: str
    current_term: int
    commit_index: int
    applied_index: int
    last_index: int
    last_term: int = 0
    learners: tuple[str, ...] = ()
    caught_up_learners: tuple[str, ...] = ()
    unresponsive_followers: tuple[str, ...] = ()
    quiesced: bool = False
    snapshot_error: str | None = None
    node_id: str = ""
    host: str = ""
    quarantine: Quarantine | None = None
    config: Any = None

    def as_dict(self) -> dict[str, Any]:
        """The user's view: every field by name (``quarantine`` and ``config`` as they are)."""
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class MemberObservation:
    """One member of a node as its agent reports it to the reconciler: its id, its host actor,
    its status (``MemberStatus``; None if its host
    did not answer in time: busy or stuck, not dead), and its quarantine if its host
    quarantined it (then ``status`` is its last status, with ``state_name`` ``"quarantined"``)."""

    member: str
    host: str
    status: MemberStatus | None
    quarantine: Quarantine | None = None


__all__ = ["MAX_MESSAGE_CHARS", "MemberObservation", "MemberStatus", "Quarantine"]


class StartRefused(Exception):
    """A member could not start because of its group itself (its Data class's ``__init__``
    raised, say): ``error`` is that exception, the answer the group's creator gets. Anything
    else that fails a start (a timeout, a host or agent gone) is the fleet's trouble, retried.
    An exception, not a dataclass: it travels as the error of a remote call."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def start_refusal(exc: BaseException) -> BaseException | None:
    """The group's own error inside a failed start (``StartRefused``, through Ray's
    ``RayTaskError`` wrappers, one per process it crossed), else None."""
    for _ in range(8):
        if isinstance(exc, StartRefused) and type(exc) is StartRefused:
            return exc.error
        inner = getattr(exc, "cause", None)
        if not isinstance(inner, BaseException) or inner is exc:
            return getattr(exc, "error", None) if isinstance(exc, StartRefused) else None
        exc = inner
    return None
