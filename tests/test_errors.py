"""Exceptions: structured fields, helpful messages, pickling, reject-reason mapping."""

from __future__ import annotations

import pickle

import pytest

from raftfleet_ray import errors as E

SAMPLES = [
    E.NoLeaderError("orders", operation="command", leader_hint="m1"),
    E.LeadershipLostError("orders", operation="command"),
    E.AlreadyAddedError("orders"),
    E.CleanupOngoingError("orders"),
    E.NotFoundError("orders", operation="remove_consensus_group"),
    E.NotInactiveError("node-1", phase="activating"),
    E.InactiveError("node-1"),
    E.NoActiveNodeError("orders"),
    E.InvalidNameError("a/b", "it contains '/'"),
    E.AwaitTimeoutError("orders", operation="add_consensus_group", timeout=5.0),
    E.UncommittedMembershipChangeError("orders", member="m2", operation="remove_follower"),
    E.PendingLeaderChangeError("orders"),
    E.NotMemberError("orders", member="m9"),
    E.AlreadyMemberError("orders", member="m1"),
    E.AlreadyLeaderError("orders", member="m1"),
    E.CannotRemoveLeaderError("orders", member="m1"),
    E.WillBreakQuorumError("orders", member="m2"),
    E.NewLeaderUnresponsiveError("orders", member="m3"),
    E.MemberRemovedError("orders", member="m3"),
    E.CommandTooLargeError("orders", size=20, limit=10),
    E.GroupRemovedError("orders", operation="command"),
    E.GroupLostError("orders", operation="command", reason="every voter's node is dead", since=1.7e9),
    E.RepairRefusedError("orders", reason="the group has a leader", plan={"source": "survivor"}),
]


@pytest.mark.parametrize("err", SAMPLES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_class_message_and_fields(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.fields == err.fields
    for key, value in err.fields.items():
        assert getattr(back, key) == value
    assert isinstance(back, E.RaftFleetError)


@pytest.mark.parametrize("err", SAMPLES, ids=lambda e: type(e).__name__)
def test_message_names_the_subject(err):
    subject = err.fields.get("group") or err.fields.get("node_id") or err.fields.get("name")
    assert str(subject) in str(err)
    assert len(str(err)) > 40  # what was asked, what went wrong, what to do


def test_special_bases_and_flags():
    assert isinstance(E.AwaitTimeoutError("g", timeout=1.0), TimeoutError)
    assert isinstance(E.InvalidNameError("", "empty"), ValueError)
    assert isinstance(E.LeadershipLostError("g"), E.NoLeaderError)
    assert E.LeadershipLostError.outcome_unknown and E.AwaitTimeoutError.outcome_unknown
    assert not E.NoLeaderError.outcome_unknown
    # A lost group may have accepted a command before it was lost, and a recovery may keep it;
    # retrying does not help until an operator acts.
    assert E.GroupLostError.outcome_unknown and not E.GroupLostError.retryable
    assert E.NoLeaderError.retryable and E.CleanupOngoingError.retryable
    assert not E.AlreadyAddedError.retryable


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("not_leader", E.NoLeaderError),
        ("leadership_lost", E.LeadershipLostError),
        ("uncommitted_membership_change", E.UncommittedMembershipChangeError),
        ("pending_leader_change", E.PendingLeaderChangeError),
        ("not_member", E.NotMemberError),
        ("already_member", E.AlreadyMemberError),
        ("already_leader", E.AlreadyLeaderError),
        ("cannot_remove_leader", E.CannotRemoveLeaderError),
        ("will_break_quorum", E.WillBreakQuorumError),
        ("new_leader_unresponsive", E.NewLeaderUnresponsiveError),
        ("removed", E.MemberRemovedError),
    ],
)
def test_from_reject_reason(reason, cls):
    err = E.from_reject_reason(reason, group="orders", member="m2", leader="m1", operation="op")
    assert type(err) is cls
    assert err.group == "orders"
    assert "orders" in str(err)


def test_from_reject_reason_covers_the_core_reasons_and_refuses_unknown_ones():
    from raftfleet_ray.raft.types import REJECT_REASONS

    assert set(E.REJECT_REASONS) == set(REJECT_REASONS)
    assert E.from_reject_reason("not_leader", group="g", leader="m1").leader_hint == "m1"
    with pytest.raises(ValueError, match="unknown reject reason"):
        E.from_reject_reason("bogus")
