"""Exceptions: one class per raft_fleet / rafted_value error atom, under ``RaftFleetError``.

Every exception carries structured fields (``group``, ``operation``, ...) as attributes and
its message says what was asked, what went wrong and what to do about it.

Two class attributes tell a caller how to react without parsing messages:

- ``retryable``: retrying the same request later may succeed (no leader right now, a
  membership change in progress, a cleanup still running).
- ``outcome_unknown``: the request may or may not have taken effect (Jepsen's "indeterminate"):
  retry it with the *same* command id, never a new one (CONVENTIONS §11).

Exceptions cross process boundaries inside Ray, so each one pickles to its class, message and
fields and is rebuilt without calling the subclass ``__init__`` (whose signature varies).
Ray re-raises an exception thrown in an actor as ``RayTaskError(<Class>)``, a subclass of both
``RayTaskError`` and the original class, so ``except NoLeaderError`` keeps working and the
fields stay readable on the re-raised object.

Example::

    try:
        raftfleet_ray.add_consensus_group("orders")
    except raftfleet_ray.AlreadyAddedError as e:
        print(e.group, "exists already")
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, ClassVar

from .raft.types import CommandError  # what a command raised, by name (re-exported here)


def _rebuild(cls: type[RaftFleetError], message: str, fields: dict[str, Any]) -> RaftFleetError:
    """Unpickle helper: rebuild an error from its message and fields, bypassing ``__init__``."""
    err = cls.__new__(cls)
    RaftFleetError.__init__(err, message, **fields)
    return err


class RaftFleetError(Exception):
    """Base class of every error raised by raftfleet_ray.

    ``fields`` holds the structured context (also available as attributes).
    """

    retryable: ClassVar[bool] = False
    outcome_unknown: ClassVar[bool] = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = dict(fields)
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, dict(self.fields)))


def _op(operation: str | None, group: str | None) -> str:
    """The 'what was asked' prefix of a message."""
    if operation and group is not None:
        return f"{operation} on consensus group {group!r}"
    if operation:
        return operation
    if group is not None:
        return f"request to consensus group {group!r}"
    return "request"


# ---------------------------------------------------------------------------------------
# raft_fleet's error atoms


class NoLeaderError(RaftFleetError):
    """``{:error, :no_leader}``: no member answered as leader within the retries."""

    retryable = True

    def __init__(
        self,
        group: str | None,
        *,
        operation: str | None = None,
        leader_hint: str | None = None,
        detail: str = "",
    ) -> None:
        hint = f" (last leader hint: {leader_hint})" if leader_hint else ""
        more = f": {detail}" if detail else ""
        super().__init__(
            f"{_op(operation, group)} failed: no leader answered{hint}{more}. The group may be "
            "electing a leader or may have lost a majority of its members; retry later, and if "
            "it persists look at find_consensus_group_with_no_established_leader().",
            group=group,
            operation=operation,
            leader_hint=leader_hint,
        )


class LeadershipLostError(NoLeaderError):
    """The leader accepted a command and then stopped leading: the outcome is unknown."""

    outcome_unknown = True

    def __init__(
        self, group: str | None, *, operation: str | None = None, leader_hint: str | None = None
    ) -> None:
        RaftFleetError.__init__(
            self,
            f"{_op(operation, group)}: the leader accepted the request, then lost its leadership "
            "before it committed, so it may or may not take effect. Retry with the same command "
            "id (command() does this): it is applied at most once.",
            group=group,
            operation=operation,
            leader_hint=leader_hint,
        )


class MemberQuarantinedError(NoLeaderError):
    """The member asked was quarantined by its host: something it was doing raised (a bug,
    an unreadable snapshot or state, a storage error of that member, a hook raising a
    ``BaseException``), so it takes no part in its group any more. Its group goes on with its
    other members; its host's other groups go on untouched. A command it had accepted may or
    may not be applied: retry with the same command id (``command()`` does). ``cause`` says
    what raised; ``member`` is the quarantined member. ``raftfleet status`` lists quarantines."""

    outcome_unknown = True

    def __init__(self, group: str | None, *, member: str, cause: str, operation: str | None = None) -> None:
        RaftFleetError.__init__(
            self,
            f"{_op(operation, group)} failed: member {member} was quarantined by its host because "
            f"{cause}; it takes no part in the group any more, and no other member answered as "
            "leader. The outcome of a command is unknown (retry with the same command id: it is "
            "applied at most once). `raftfleet status` and group_status() show the quarantine.",
            group=group,
            operation=operation,
            member=member,
            cause=cause,
            leader_hint=None,
        )


class AlreadyAddedError(RaftFleetError):
    """``{:error, :already_added}``: a group with this name exists."""

    def __init__(self, group: str) -> None:
        super().__init__(
            f"add_consensus_group({group!r}) failed: a consensus group with this name already "
            "exists. Pick another name, or call remove_consensus_group() first.",
            group=group,
        )


class CleanupOngoingError(RaftFleetError):
    """``{:error, :cleanup_ongoing}``: members of an earlier group of this name still run."""

    retryable = True

    def __init__(self, group: str) -> None:
        super().__init__(
            f"add_consensus_group({group!r}) failed: a group with this name was removed recently "
            "and its members are still being stopped on some nodes. Retry after about one "
            "balancing_interval.",
            group=group,
        )


class NotFoundError(RaftFleetError):
    """``{:error, :not_found}``: no group with this name."""

    def __init__(self, group: str, *, operation: str | None = None) -> None:
        super().__init__(
            f"{operation or 'request'} failed: there is no consensus group named {group!r}. "
            "consensus_groups() lists the existing groups.",
            group=group,
            operation=operation,
        )


class NotInactiveError(RaftFleetError):
    """``{:error, :not_inactive}``: ``activate`` on a node that is active (or activating)."""

    def __init__(self, node_id: str, *, phase: str = "active") -> None:
        super().__init__(
            f"activate() on node {node_id} failed: the node is {phase}, not inactive. Nothing to "
            "do if it is already active; to move it to another zone, deactivate() it, wait until "
            "it is inactive, then activate(zone) again.",
            node_id=node_id,
            phase=phase,
        )


class InactiveError(RaftFleetError):
    """``{:error, :inactive}``: ``deactivate`` on a node that is not active."""

    def __init__(self, node_id: str, *, phase: str = "inactive") -> None:
        super().__init__(
            f"deactivate() on node {node_id} failed: the node is {phase}, not active. Nothing to "
            "do; call activate(zone) first if you meant to use this node.",
            node_id=node_id,
            phase=phase,
        )


class FleetConfigLockedError(RaftFleetError):
    """``configure()`` that would change the configuration of a running fleet (a node active
    or draining, or a group registered). Refused, never half-applied: each node agent took
    the FleetConfig when its node was activated, and some fields (``members_per_host``,
    ``persistence_dir_parent``) cannot change under running members."""

    def __init__(
        self, *, changed: tuple[str, ...], active: int, draining: int, groups: int
    ) -> None:
        super().__init__(
            f"configure() refused: the fleet is running ({active} active node(s), {draining} "
            f"draining, {groups} group(s)) and this would change {', '.join(changed)}. The "
            "FleetConfig is fixed once the first node is activated: node agents took it then, "
            "and members_per_host and persistence_dir_parent cannot change under running "
            "members. Call configure() before the first activate(); to reconfigure a running "
            "fleet, shutdown_fleet() (every group is lost), then configure() and activate again. "
            "configure() with the configuration already in force is accepted (a no-op).",
            changed=changed,
            active=active,
            draining=draining,
            groups=groups,
        )


class NoActiveNodeError(RaftFleetError):
    """``{:error, :no_active_node}``: there is no node to place members on."""

    retryable = True

    def __init__(self, group: str | None = None, *, operation: str | None = None) -> None:
        super().__init__(
            f"{_op(operation or 'add_consensus_group', group)} failed: no node is active, so "
            "there is nowhere to place members. Call activate(zone) on at least one node (or "
            "activate_all()) first.",
            group=group,
            operation=operation,
        )


class InvalidNameError(RaftFleetError, ValueError):
    """A consensus group name that cannot be used (raft_fleet names are atoms; ours are strings).

    Also a ``ValueError``: it is bad input.
    """

    def __init__(self, name: Any, reason: str) -> None:
        super().__init__(
            f"{name!r} is not a valid consensus group name: {reason}. A name is a str of 1 to "
            "200 characters from A-Z a-z 0-9 _ . : -, starting with a letter, digit or '_', "
            "and not starting with 'raftfleet' (reserved for internal groups).",
            name=name,
            reason=reason,
        )


class AwaitTimeoutError(RaftFleetError, builtins.TimeoutError):
    """An operation did not complete within its ``await_timeout``: the outcome is unknown.

    Also a builtin ``TimeoutError``.
    """

    retryable = True
    outcome_unknown = True

    def __init__(self, group: str | None, *, operation: str | None = None, timeout: float) -> None:
        super().__init__(
            f"{_op(operation, group)} did not complete within {timeout} s; it may still "
            "complete. Check consensus_groups() / whereis_leader() before retrying, or retry "
            "with a longer await_timeout.",
            group=group,
            operation=operation,
            timeout=timeout,
        )


# ---------------------------------------------------------------------------------------
# Membership and leadership errors reported by the Raft core (rafted_value's atoms)


class _MemberError(RaftFleetError):
    """Shared constructor: an admin operation on ``member`` of ``group``."""

    _what: ClassVar[str] = ""
    _todo: ClassVar[str] = ""

    def __init__(
        self, group: str | None = None, *, member: str | None = None, operation: str | None = None
    ) -> None:
        subject = f" (member {member})" if member is not None else ""
        super().__init__(
            f"{_op(operation, group)}{subject} failed: {self._what}. {self._todo}",
            group=group,
            member=member,
            operation=operation,
        )


class UncommittedMembershipChangeError(_MemberError):
    """``:uncommitted_membership_change``: one membership change at a time."""

    retryable = True
    _what = "an earlier membership change of this group is not committed yet"
    _todo = "Retry once it commits (normally within a heartbeat or two)."


class PendingLeaderChangeError(_MemberError):
    """``:pending_leader_change``: a leadership transfer is in progress."""

    retryable = True
    _what = "a leadership transfer of this group is in progress"
    _todo = "Retry after it finishes (at most an election timeout), or cancel the transfer."


class NotMemberError(_MemberError):
    """``:not_member``: the target is not a member of the group."""

    _what = "the target is not a member of this group"
    _todo = "Check the group's current members with its status()."


class AlreadyMemberError(_MemberError):
    """``:already_member``: the joiner is a member already."""

    _what = "the target is already a member of this group"
    _todo = "Nothing to do."


class AlreadyLeaderError(_MemberError):
    """``:already_leader``: leadership transfer to the current leader."""

    _what = "the target is already the leader"
    _todo = "Nothing to do."


class CannotRemoveLeaderError(_MemberError):
    """``:cannot_remove_leader``: a leader does not remove itself."""

    _what = "the leader cannot remove itself"
    _todo = "Transfer leadership to another member first, then remove this one."


class WillBreakQuorumError(_MemberError):
    """``:will_break_quorum``: the removal would leave too few healthy members."""

    _what = (
        "removing this member would leave fewer responsive members than a majority of the new "
        "configuration"
    )
    _todo = (
        "Add or repair members first; if a majority is permanently lost, use "
        "remove_dead_pids_located_in_dead_node() (force removal)."
    )


class NewLeaderUnresponsiveError(_MemberError):
    """``:new_leader_unresponsive``: the transfer target does not answer the leader."""

    retryable = True
    _what = "the transfer target has not been answering the leader"
    _todo = "Pick a responsive member, or retry once the target has caught up."


class TransferFailedError(_MemberError):
    """``transfer_failed``: TimeoutNow was sent, but the target did not take over within an
    election timeout (Raft thesis §3.10); the old leader leads on."""

    retryable = True
    _what = "the transfer target did not take over within an election timeout"
    _todo = "Retry; if it keeps failing, the target may be cut off from the other members."


class NotLearnerError(_MemberError):
    """``not_learner``: promote_learner on a member that is not a learner."""

    _what = "the member is not a learner of the group"
    _todo = "Add it with add_learner first (or it is already a voter)."


class LearnerBehindError(_MemberError):
    """``learner_behind``: the learner has not caught up with the log yet."""

    retryable = True
    _what = "the learner has not caught up with the leader's log yet"
    _todo = "Retry once it has caught up (the reconciler does so on its next round)."


class MemberRemovedError(_MemberError):
    """``removed``: the member asked was removed from the group and has stopped.

    Ask another member (the group itself may still be alive).
    """

    retryable = True
    _what = "the member asked was removed from the group and has stopped"
    _todo = "Retry: the client looks the leader up again among the current members."


class CommandTooLargeError(RaftFleetError, ValueError):
    """A command whose encoded size exceeds ``RaftConfig.max_command_bytes``."""

    def __init__(self, group: str | None, *, size: int, limit: int) -> None:
        super().__init__(
            f"command on consensus group {group!r} failed: its encoded argument is {size} bytes, "
            f"more than max_command_bytes={limit}. Send smaller commands, or raise "
            "max_command_bytes in the group's RaftConfig.",
            group=group,
            size=size,
            limit=limit,
        )


class GroupRemovedError(RaftFleetError):
    """The group was removed (``remove_consensus_group``) while the request was in flight."""

    def __init__(self, group: str, *, operation: str | None = None) -> None:
        super().__init__(
            f"{_op(operation, group)} failed: the group was removed while the request was in "
            "flight. Re-create it with add_consensus_group() if you still need it.",
            group=group,
            operation=operation,
        )


def _when(epoch: float | None) -> str:
    return "" if epoch is None else f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(epoch))}"


class GroupLostError(RaftFleetError):
    """The group is *lost*: a majority of the voters of its last known configuration is
    definitely gone (Ray reports their nodes dead, or their nodes' agents answer that they no
    longer run them), so it can never elect a leader by itself, and no safe automatic restore
    was possible (without persistence; or the files of a majority of that configuration cannot
    be read). The fleet keeps the group, and does not guess: only an operator recovers it
    (``repair_consensus_group(name, unsafe=True)``, ``raftfleet repair NAME --unsafe``) or
    removes it.

    ``outcome_unknown``: a command sent before the loss may have been accepted by the last
    leader, and a recovery from a survivor or from files may keep it."""

    outcome_unknown = True

    def __init__(self, group: str, *, operation: str | None = None, reason: str = "",
                 since: float | None = None) -> None:
        super().__init__(
            f"{_op(operation, group)} failed: the group is lost{_when(since)}"
            f"{': ' + reason if reason else ''}. It cannot elect a leader by itself and the "
            "fleet does not guess: it keeps the group, and its commands and queries fail until an "
            f"operator acts. `raftfleet repair {group}` (repair_consensus_group({group!r})) shows "
            "what a recovery would keep and what it may lose; with --unsafe (unsafe=True) it "
            "recovers the group from its most up-to-date survivor or files; or "
            f"remove_consensus_group({group!r}) drops it. A command sent before the loss may or "
            "may not have been applied: check the value after the recovery.",
            group=group,
            operation=operation,
            reason=reason,
            since=since,
        )


class RepairRefusedError(RaftFleetError):
    """``repair_consensus_group`` did nothing: the group is not lost (it has a leader, or may
    still elect one), or it is and ``unsafe=True`` was not given (``plan`` then says what the
    recovery would keep and what it may lose), or a recovery is impossible right now."""

    def __init__(self, group: str, *, reason: str, plan: dict[str, Any] | None = None) -> None:
        super().__init__(f"repair of consensus group {group!r} refused: {reason}", group=group, reason=reason,
                         plan=plan)


class SessionExpiredError(RaftFleetError):
    """The group no longer remembers this process's client session (it keeps the newest
    ``RaftConfig.max_sessions`` sessions, least recently used out), so it cannot tell a retry
    of this command from a new one: it refused it rather than risk applying it twice. An
    earlier attempt may have been applied: the outcome is unknown. The next command starts a
    new session by itself."""

    outcome_unknown = True

    def __init__(self, group: str | None, *, operation: str | None = None) -> None:
        super().__init__(
            f"{_op(operation, group)}: the group evicted this process's client session (more "
            "than RaftConfig.max_sessions client processes wrote to it since), so it refused the "
            "command rather than risk applying it twice. An earlier attempt may have been applied: "
            "check the value before retrying. Later commands start a new session; raise "
            "max_sessions if many processes write to this group.",
            group=group,
            operation=operation,
        )


# ---------------------------------------------------------------------------------------

_REJECT_BUILDERS: dict[str, Callable[[dict[str, Any]], RaftFleetError]] = {
    "not_leader": lambda c: NoLeaderError(
        c.get("group"), operation=c.get("operation"), leader_hint=c.get("leader")
    ),
    "leadership_lost": lambda c: LeadershipLostError(
        c.get("group"), operation=c.get("operation"), leader_hint=c.get("leader")
    ),
    "uncommitted_membership_change": lambda c: UncommittedMembershipChangeError(**_member_ctx(c)),
    "pending_leader_change": lambda c: PendingLeaderChangeError(**_member_ctx(c)),
    "not_member": lambda c: NotMemberError(**_member_ctx(c)),
    "already_member": lambda c: AlreadyMemberError(**_member_ctx(c)),
    "already_leader": lambda c: AlreadyLeaderError(**_member_ctx(c)),
    "cannot_remove_leader": lambda c: CannotRemoveLeaderError(**_member_ctx(c)),
    "will_break_quorum": lambda c: WillBreakQuorumError(**_member_ctx(c)),
    "new_leader_unresponsive": lambda c: NewLeaderUnresponsiveError(**_member_ctx(c)),
    "transfer_failed": lambda c: TransferFailedError(**_member_ctx(c)),
    "not_learner": lambda c: NotLearnerError(**_member_ctx(c)),
    "learner_behind": lambda c: LearnerBehindError(**_member_ctx(c)),
    "removed": lambda c: MemberRemovedError(**_member_ctx(c)),
    "session_expired": lambda c: SessionExpiredError(c.get("group"), operation=c.get("operation")),
}

REJECT_REASONS: tuple[str, ...] = tuple(_REJECT_BUILDERS)
"""Every reject reason :func:`from_reject_reason` maps (the core's ``REJECT_REASONS``)."""


def _member_ctx(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"group": ctx.get("group"), "member": ctx.get("member"), "operation": ctx.get("operation")}


def from_reject_reason(reason: str, **ctx: Any) -> RaftFleetError:
    """Turn a Raft core reject reason into the matching exception (not raised, returned).

    ``ctx`` may hold ``group``, ``operation``, ``member`` and ``leader`` (the leader hint of a
    ``not_leader`` rejection); keys a class does not use are ignored.

    Raises ``ValueError`` for a reason the core does not define (a bug, not a runtime state).

    Example: ``raise from_reject_reason("will_break_quorum", group="orders", member=m)``.
    """
    try:
        build = _REJECT_BUILDERS[reason]
    except KeyError:
        raise ValueError(
            f"unknown reject reason {reason!r}; expected one of {', '.join(REJECT_REASONS)}"
        ) from None
    return build(ctx)


__all__ = [
    "REJECT_REASONS",
    "CommandError",
    "SessionExpiredError",
    "LearnerBehindError",
    "NotLearnerError",
    "TransferFailedError",
    "AlreadyAddedError",
    "AlreadyLeaderError",
    "AlreadyMemberError",
    "AwaitTimeoutError",
    "CannotRemoveLeaderError",
    "CleanupOngoingError",
    "CommandTooLargeError",
    "FleetConfigLockedError",
    "GroupLostError",
    "GroupRemovedError",
    "InactiveError",
    "InvalidNameError",
    "LeadershipLostError",
    "MemberQuarantinedError",
    "MemberRemovedError",
    "NewLeaderUnresponsiveError",
    "NoActiveNodeError",
    "NoLeaderError",
    "NotFoundError",
    "NotInactiveError",
    "NotMemberError",
    "PendingLeaderChangeError",
    "RaftFleetError",
    "RepairRefusedError",
    "UncommittedMembershipChangeError",
    "WillBreakQuorumError",
    "from_reject_reason",
]
