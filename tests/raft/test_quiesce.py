"""Quiescence: an idle group does no periodic work (Dragonboat's quiesce, TiKV's hibernated
regions), without giving up safety or bounded failure detection.

Rules checked here (raft/node.py, "Quiescence"):
- an idle leader whose followers are all caught up (or reported down) quiesces after
  ``quiesce_ticks`` quiet ticks and tells them; a quiesced member's ticks do nothing;
- any client or admin call to the leader, and any message of the current term, wakes a member;
- the leader lease ends when the leader quiesces (thesis §6.4.1: quiet time is not counted,
  so the lease cannot run on it), and a late ack does not renew it;
- a quiesced follower still refuses votes for one election timeout of awake time after it
  last heard from its leader (thesis §4.2.3), unless the shell reports that leader down
  (``peer_down``), after which it campaigns within one election timeout.
"""

from __future__ import annotations

from raft_harness import Net, of_type, vote_request

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Ok,
    Quiesce,
    RequestVoteResponse,
)

Q = 6
CFG = CoreConfig(election_ticks=10, heartbeat_ticks=2, quiesce_ticks=Q)
LEASE = CoreConfig(election_ticks=10, heartbeat_ticks=2, lease_ticks=5, quiesce_ticks=Q)
T = CFG.election_ticks


def quiesced_group(cfg: CoreConfig = CFG) -> tuple[Net, str]:
    net = Net("abc", cfg)
    lead = net.elect()
    assert net.propose(lead.id, "w", "w1", ("put", "k", 1)) == Ok(None)
    for _ in range(Q + 2 * cfg.heartbeat_ticks + 2):
        net.tick_all()
    assert all(n.quiesced for n in net.nodes.values()), {i: n.status() for i, n in net.nodes.items()}
    return net, lead.id


def test_idle_group_quiesces_and_then_sends_nothing() -> None:
    net, lead = quiesced_group()
    quiesce_msgs = of_type(net.sent, Quiesce)
    assert sorted(m.to for m in quiesce_msgs) == sorted(set("abc") - {lead})
    assert all(m.index == net.nodes[lead].last_index for m in quiesce_msgs)
    before = len(net.sent)
    now = {i: n._now for i, n in net.nodes.items()}
    net.tick_all(10 * T)
    assert len(net.sent) == before, "a quiesced group sent messages"
    assert {i: n._now for i, n in net.nodes.items()} == now, "a quiesced member's clock moved"
    assert net.nodes[lead].status().quiesced


def test_a_command_wakes_the_group_and_commits() -> None:
    net, lead = quiesced_group()
    assert net.propose(lead, "w2", "w2", ("put", "k", 2)) == Ok(1)
    assert not net.nodes[lead].quiesced
    followers = [n for i, n in net.nodes.items() if i != lead]
    assert all(not f.quiesced for f in followers), "the append did not wake the followers"
    net.tick_all(2)
    assert all(f.commit_index == net.nodes[lead].commit_index for f in followers)
    # ... and the group quiesces again once idle.
    net.tick_all(Q + 6)
    assert all(n.quiesced for n in net.nodes.values())


def test_a_read_wakes_the_leader_and_is_answered() -> None:
    net, lead = quiesced_group()
    assert net.read(lead, "r", ("get", "k")) == Ok(1)


def test_no_quiescence_while_a_follower_lags_unless_it_is_reported_down() -> None:
    net = Net("abc", CFG)
    lead = net.elect()
    ok, lag = sorted(set("abc") - {lead.id})
    net.down.add(lag)  # it hears nothing and answers nothing
    net.propose(lead.id, "w", "w1", ("put", "k", 1))
    net.tick_all(Q * 4)
    assert not lead.quiesced, "quiesced with a follower that misses entries"
    net.do(lead.id, lambda n: n.peer_down(lag))
    assert lag in lead.status().unresponsive_followers
    net.tick_all(Q + 4)
    assert lead.quiesced and net.nodes[ok].quiesced
    # It comes back: its first message clears the mark and wakes the leader, which catches it up.
    net.down.discard(lag)
    net.do(lag, lambda n: n.campaign())
    net.deliver()
    net.tick_all(4)
    assert net.nodes[lag].commit_index == lead.commit_index
    assert lag not in lead.status().unresponsive_followers


def test_quiesced_follower_elects_within_one_election_timeout_when_the_leader_is_reported_down() -> None:
    net, lead = quiesced_group()
    net.down.add(lead)
    for f in set("abc") - {lead}:
        net.do(f, lambda n: n.peer_down(lead))
        assert not net.nodes[f].quiesced
    # The first survivor in line (by member id) campaigns within a few ticks, the other half
    # an election timeout later: no split vote, a new leader well within one election timeout.
    first = next(t for t in range(1, 3 * T) if (net.tick_all(), any(
        n.role in ("pre_candidate", "candidate", "leader") for i, n in net.nodes.items() if i != lead))[1])
    assert first <= 3, f"first campaign after {first} ticks"
    ticks = 0
    while (new := net.leader()) is None or new.id == lead:
        assert ticks < T, "no new leader within an election timeout"
        net.tick_all()
        ticks += 1
    assert new.id == min(set("abc") - {lead}), "the first in line did not win"
    assert first + ticks < T // 2
    assert net.propose(new.id, "w3", "w3", ("put", "k", 3)) == Ok(1)


def test_a_quiesced_follower_woken_by_a_candidate_still_refuses_votes_for_a_while() -> None:
    """Thesis §4.2.3 with quiet time not counted: the follower heard from its leader just
    before quiescing, so it refuses for one election timeout of awake time."""
    net, lead = quiesced_group()
    f1, f2 = sorted(set("abc") - {lead})
    n2 = net.nodes[f2]
    term = n2.term
    rd = n2.step(vote_request(term + 1, f1, f2, n2.last_index, n2.last_term, pre_vote=True))
    assert not n2.quiesced
    assert [m.granted for m in of_type(rd.messages, RequestVoteResponse)] in ([], [False])
    # After an election timeout of awake ticks without the leader it would grant.
    for _ in range(T):
        n2.tick()
    rd = n2.step(vote_request(term + 1, f1, f2, n2.last_index, n2.last_term, pre_vote=True))
    assert [m.granted for m in of_type(rd.messages, RequestVoteResponse)] == [True]


def test_the_lease_ends_when_the_leader_quiesces_and_a_late_ack_does_not_renew_it() -> None:
    net = Net("abc", LEASE)
    lead = net.elect()
    net.propose(lead.id, "w", "w1", ("put", "k", 1))
    net.tick_all(2)
    assert lead.holds_lease()
    late = [m for m in net.sent if isinstance(m, AppendEntriesResponse) and m.to == lead.id and m.success][-1]
    for _ in range(Q + 6):
        net.tick_all()
    assert lead.quiesced
    assert not lead.holds_lease(), "a quiesced leader kept its lease"
    rd = lead.step(late)  # a duplicate of an old ack arrives
    assert lead.quiesced and rd.is_empty()
    assert not lead.holds_lease()
    # A read after waking needs a heartbeat round (ReadIndex), not the lease.
    rd = lead.read("r", ("get", "k"))
    assert rd.replies == []
    assert {m.to for m in of_type(rd.messages, AppendEntries)} == set("abc") - {lead.id}
    net.handle(lead, rd)
    net.deliver()
    assert net.reply_for("r") == Ok(1)


def test_an_awake_follower_of_a_leasing_group_keeps_its_vote_guard_on_a_down_report() -> None:
    """The report may be false (a partition between it and the leader only), and the
    leader's lease counts on this follower refusing votes for an election timeout."""
    net = Net("abc", LEASE)
    lead = net.elect()
    net.tick_all(2)
    f1, f2 = sorted(set("abc") - {lead.id})
    n2 = net.nodes[f2]
    assert not n2.quiesced
    net.do(f2, lambda n: n.peer_down(lead.id))
    rd = n2.step(vote_request(n2.term + 1, f1, f2, n2.last_index, n2.last_term, pre_vote=True))
    assert [m.granted for m in of_type(rd.messages, RequestVoteResponse)] in ([], [False])


def test_a_quiesce_that_overtook_an_append_wakes_the_leader() -> None:
    net = Net("abc", CFG)
    lead = net.elect()
    f = net.nodes["b" if lead.id != "b" else "c"]
    rd = f.step(Quiesce(lead.term, lead.id, f.id, f.last_index + 5, lead.term, lead._now))
    assert not f.quiesced
    nack = of_type(rd.messages, AppendEntriesResponse)
    assert len(nack) == 1 and not nack[0].success


def _woken_quiesced_group(bugs: frozenset[str] = frozenset()) -> tuple[Net, str, list[AppendEntriesResponse]]:
    """A leasing group quiesced, with copies of the acks of the heartbeat the leader sent in
    the tick in which it quiesced (they are always in flight then)."""
    net = Net("abc", LEASE, bugs=bugs)
    lead = net.elect()
    net.propose(lead.id, "w", "w1", ("put", "k", 1))
    for _ in range(Q + 2 * LEASE.heartbeat_ticks + 2):
        net.tick_all()
    assert lead.quiesced
    acks = [m for m in net.sent if isinstance(m, AppendEntriesResponse) and m.to == lead.id and m.success]
    last = max(m.sent_tick for m in acks)
    assert last == lead._now, "the last heartbeat before quiescing was not sent in the quiesce tick"
    return net, lead.id, [m for m in acks if m.sent_tick == last]


def test_a_late_ack_of_the_quiesce_tick_heartbeat_does_not_renew_the_lease_after_waking() -> None:
    """Review finding 13.1: the leader's clock stands still while it is quiesced, so after
    waking, a late (or duplicated) ack of the heartbeat it sent in the quiesce tick carries the
    current tick. It must not count: the followers' vote guards started long ago, in real time."""
    for bugs, expect_lease in ((frozenset(), False), (frozenset({"lease_counts_stale_acks"}), True)):
        net, lid, old_acks = _woken_quiesced_group(bugs)
        lead = net.nodes[lid]
        net.down |= set("abc") - {lid}  # the leader is cut off from here on
        net.do(lid, lambda n: n.read("r", ("get", "k")))  # wakes it, at the same tick
        assert not lead.quiesced
        for m in old_acks:
            net.do(lid, lambda n, m=m: n.step(m))  # the late copies arrive
        assert lead.holds_lease() is expect_lease, bugs
        assert net.reply_for("r") is None or expect_lease, "a cut-off leader answered a read"


def test_a_duplicated_quiesce_does_not_re_quiesce_a_follower_whose_ack_backs_the_lease() -> None:
    """Review finding 13.1, second path: after waking, a follower acks the leader's new
    heartbeat (its ack backs the lease now); a late copy of the old Quiesce must not quiesce it
    again, or a failure report (peer_down) would drop its vote guard under that lease."""
    for bugs, safe in ((frozenset(), True), (frozenset({"quiesce_stale"}), False)):
        net, lid, _ = _woken_quiesced_group(bugs)
        lead = net.nodes[lid]
        f1, f2 = sorted(set("abc") - {lid})
        old_quiesce = [m for m in net.sent if isinstance(m, Quiesce) and m.to == f2][-1]
        net.do(lid, lambda n: n.read("r", ("get", "k")))
        net.deliver()
        net.tick_all(2)  # a heartbeat round of the woken leader
        assert lead.holds_lease() and not net.nodes[f2].quiesced
        net.do(f2, lambda n, m=old_quiesce: n.step(m))  # the network duplicated it
        assert net.nodes[f2].quiesced is not safe
        # Now the leader is reported down to f2 (falsely: only their link broke), and f1,
        # cut off from the leader, asks f2 for its vote.
        net.do(f2, lambda n, lid=lid: n.peer_down(lid))
        n2 = net.nodes[f2]
        rd = n2.step(vote_request(n2.term + 1, f1, f2, n2.last_index, n2.last_term))
        granted = [m.granted for m in of_type(rd.messages_after_persist, RequestVoteResponse)]
        assert (granted == [True]) is not safe, (bugs, granted)
        assert lead.holds_lease()
