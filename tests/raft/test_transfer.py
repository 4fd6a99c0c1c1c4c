"""Leadership transfer: thesis §3.10 (stop taking commands, bring the target up to date, send
TimeoutNow; the target campaigns at once, past the lease guard of §4.2.3; abort and resume
if it has not taken over within an election timeout), with rafted_value's replace_leader
semantics (reference §4.5: ``None`` cancels, a later call overrides, errors). Unlike
rafted_value, the caller hears Ok only once the target leads."""

from __future__ import annotations

from raft_harness import CFG, Net, make, of_type

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Ok,
    Rejected,
    RequestVote,
    TimeoutNow,
)

T = CFG.election_ticks


def setup(block_target: bool = True) -> tuple[Net, str, str]:
    """A group with a leader; the transfer target stops receiving appends and falls behind."""
    net = Net("abc")
    lead = net.elect()
    target = next(i for i in "abc" if i != lead.id)
    if block_target:
        net.drop = lambda m: isinstance(m, AppendEntries) and m.to == target
        assert net.propose(lead.id, "p", "p", ("put", "k", 1)) == Ok(None)
        assert net.nodes[target].last_index < lead.last_index
    return net, lead.id, target


def timeouts(net: Net) -> list[TimeoutNow]:
    return of_type(net.sent, TimeoutNow)


def test_transfer_waits_for_catch_up_then_sends_timeout_now() -> None:
    """Thesis §3.10: the leader first brings the target's log up to date, and only then sends
    TimeoutNow. Meanwhile it takes no new commands, which would delay that. It steps down when
    the target's election reaches it, and answers Ok once the target leads."""
    net, lead_id, target = setup()
    lead = net.nodes[lead_id]
    term = lead.term
    rd = net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    assert rd.replies == [] and lead.role == "leader"
    net.deliver()
    assert timeouts(net) == []
    rd = net.do(lead_id, lambda n: n.propose("p2", "p2", ("put", "j", 2)))
    assert rd.replies[0].result == Rejected("not_leader", target) and rd.entries == []
    net.drop = lambda m: False
    # The lost append is noticed after a heartbeat without progress, and resent.
    net.tick_all(2 * CFG.heartbeat_ticks)
    assert [m.to for m in timeouts(net)] == [target]
    assert net.reply_for("t") == Ok()
    assert lead.role == "follower" and lead.term > term
    assert net.leader() is net.nodes[target] and net.nodes[target].term == term + 1


def test_caught_up_target_gets_timeout_now_at_once() -> None:
    """Thesis §3.10: a target that already holds the whole log gets TimeoutNow immediately. The
    leader stays leader (refusing commands) until the target's election reaches it; the
    answer waits for the target to lead."""
    net, lead_id, target = setup(block_target=False)
    rd = net.handle(net.nodes[lead_id], net.nodes[lead_id].transfer_leadership("t", target))
    assert [m.to for m in of_type(rd.messages, TimeoutNow)] == [target]
    assert rd.replies == [] and net.nodes[lead_id].role == "leader"
    assert not net.nodes[lead_id].holds_lease()
    net.deliver()
    assert net.reply_for("t") == Ok()
    assert net.nodes[lead_id].role == "follower" and net.leader() is net.nodes[target]


def test_target_wins_past_the_lease_guard() -> None:
    """Thesis §3.10 / §4.2.3: the others heard from the leader a moment ago, so they would
    ignore an ordinary candidate; the transfer's RequestVote is flagged and wins at once,
    without waiting out any timeout (no tick happens here)."""
    net, lead_id, target = setup(block_target=False)
    net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    net.deliver()
    new = net.nodes[target]
    assert new.role == "leader"
    reqs = [m for m in of_type(net.sent, RequestVote) if m.frm == target]
    assert reqs and all(m.transfer and not m.pre_vote for m in reqs)
    assert net.elect() is new


def test_none_cancels_a_pending_transfer() -> None:
    """rafted_value replace_leader(nil): the pending transfer is dropped (its caller told so)
    and the leader takes commands again."""
    net, lead_id, target = setup()
    net.do(lead_id, lambda n: n.transfer_leadership("t1", target))
    rd = net.do(lead_id, lambda n: n.transfer_leadership("t2", None))
    assert [(r.req, r.result) for r in rd.replies] == [
        ("t1", Rejected("pending_leader_change", lead_id)), ("t2", Ok())]
    net.drop = lambda m: False
    assert net.propose(lead_id, "p2", "p2", ("put", "j", 2)) == Ok(None)
    net.tick_all(2 * T)
    assert timeouts(net) == [] and net.leader() is net.nodes[lead_id]


def test_none_without_pending_transfer_is_ok() -> None:
    """rafted_value replace_leader(nil) with nothing pending is a no-op that succeeds."""
    net, lead_id, _ = setup(block_target=False)
    rd = net.do(lead_id, lambda n: n.transfer_leadership("t", None))
    assert rd.replies[0].result == Ok()


def test_later_call_overrides_earlier_one() -> None:
    """rafted_value: a later replace_leader replaces the pending target."""
    net, lead_id, lagging = setup()
    other = next(i for i in "abc" if i not in (lead_id, lagging))
    net.do(lead_id, lambda n: n.transfer_leadership("t1", lagging))
    rd = net.do(lead_id, lambda n: n.transfer_leadership("t2", other))
    assert rd.replies[0].req == "t1" and rd.replies[0].result == Rejected("pending_leader_change", lead_id)
    net.deliver()
    assert [m.to for m in timeouts(net)] == [other]
    assert net.reply_for("t2") == Ok()
    assert net.leader() is net.nodes[other]


def test_unresponsive_target_is_refused() -> None:
    """rafted_value: new_leader_unresponsive when the target has not answered for 2T."""
    net, lead_id, target = setup(block_target=False)
    net.down.add(target)
    net.tick_all(2 * T + 1)
    rd = net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    assert rd.replies[0].result == Rejected("new_leader_unresponsive", lead_id)


def test_transfer_gives_up_after_an_election_timeout() -> None:
    """Thesis §3.10: if the transfer does not complete within an election timeout the leader
    aborts it and takes commands again."""
    net, lead_id, target = setup()
    net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    for _ in range(T - 1):
        net.tick_all()
    assert net.reply_for("t") is None
    net.tick_all()
    assert net.reply_for("t") == Rejected("new_leader_unresponsive", lead_id)
    assert net.nodes[lead_id].role == "leader"
    assert net.propose(lead_id, "p2", "p2", ("put", "j", 2)) == Ok(None)


def test_transfer_argument_errors() -> None:
    """rafted_value replace_leader errors: already_leader, not_member, not_leader,
    uncommitted_membership_change."""
    net, lead_id, target = setup(block_target=False)
    lead = net.nodes[lead_id]
    assert lead.transfer_leadership("t", lead_id).replies[0].result == Rejected("already_leader", lead_id)
    assert lead.transfer_leadership("t", "z").replies[0].result == Rejected("not_member", lead_id)
    f = net.nodes[target]
    assert f.transfer_leadership("t", lead_id).replies[0].result == Rejected("not_leader", lead_id)
    lead.add_member("add", "d")
    assert lead.transfer_leadership("t", target).replies[0].result == Rejected(
        "uncommitted_membership_change", lead_id)


def test_lost_timeout_now_is_a_failed_transfer_and_the_leader_resumes() -> None:
    """Thesis §3.10: a TimeoutNow that never arrives (target up to date but cut off) means no
    transfer happened. The caller is told so after an election timeout, and the old leader,
    which never stopped leading, takes commands again. (rafted_value answered Ok at once and
    stepped down, leaving the group leaderless and the caller misinformed.)"""
    net, lead_id, target = setup(block_target=False)
    lead = net.nodes[lead_id]
    term = lead.term
    net.drop = lambda m: isinstance(m, TimeoutNow)
    net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    net.deliver()
    assert lead.role == "leader" and net.reply_for("t") is None
    rd = net.do(lead_id, lambda n: n.propose("p", "p2", ("put", "j", 2)))
    assert rd.replies[0].result == Rejected("not_leader", target)
    for _ in range(T):
        net.tick_all()
    assert net.reply_for("t") == Rejected("transfer_failed", lead_id)
    assert lead.role == "leader" and lead.term == term
    assert net.propose(lead_id, "p3", "p3", ("put", "j", 3)) == Ok(None)
    assert not lead.holds_lease()  # the lost TimeoutNow could still arrive: no lease this term


def test_target_that_loses_its_election_fails_the_transfer() -> None:
    """The target campaigned (its higher term made the old leader step down) but did not win:
    the caller is told the transfer failed (at the deadline, or when somebody else leads)."""
    net, lead_id, target = setup(block_target=False)
    lead = net.nodes[lead_id]
    net.drop = lambda m: isinstance(m, RequestVote) and m.frm == target  # nobody hears its campaign
    net.do(lead_id, lambda n: n.transfer_leadership("t", target))
    net.deliver()
    net.tick_all(CFG.heartbeat_ticks)  # its answer to our heartbeat carries its higher term
    assert lead.role == "follower" and net.reply_for("t") is None
    net.down.add(target)
    for _ in range(6 * T):
        net.tick_all()
        if net.reply_for("t") is not None:
            break
    res = net.reply_for("t")
    assert isinstance(res, Rejected) and res.reason == "transfer_failed", res
    assert net.elect(max_ticks=6 * T).id != target


def test_timeout_now_ignored_by_non_member() -> None:
    """Thesis §3.10 applies to voting members only: a joiner never campaigns."""
    d = make("d", members=())
    assert d.step(TimeoutNow(1, "a", "d")).messages == []
    assert d.role == "follower"


def test_follower_responds_to_stale_transfer_vote_by_term() -> None:
    """§5.1: a transfer vote request from an old term is dropped like any other."""
    f = make("b")
    f.step(AppendEntries(3, "a", "b", 0, 0, (), 0))
    rd = f.step(RequestVote(2, "c", "b", 0, 0, transfer=True))
    assert rd.messages == [] and f.term == 3
    assert not of_type(rd.messages_after_persist, AppendEntriesResponse)
