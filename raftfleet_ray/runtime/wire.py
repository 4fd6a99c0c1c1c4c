"""Typed messages between the fleet's processes (CONVENTIONS §15).

Every new message that crosses a process boundary is a frozen, slotted dataclass here, read
by attribute and matched with ``match``, never a tuple read by position or a dict read by
key. Older protocols (client ops and results, admin answers) still travel as tuples; they
move here as they are touched.

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
from typing import Any

MAX_MESSAGE_CHARS = 500
"""A quarantine keeps at most this much of the exception's text (it travels in every status)."""


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
