"""Reads: thesis §6.4 (ReadIndex: no log entry per read; the leader first commits an entry of
its term, then confirms it is still leader with a heartbeat round, then answers once its
state machine reaches the read index; reads share rounds) and §6.4.1 (leader leases, with
rafted_value's clock-drift margin), plus rafted_value's query_non_leader."""

from __future__ import annotations

from raft_harness import CFG, Net, make, make_leader, of_type, settle

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Ok,
    RaftNode,
    Ready,
    Rejected,
)

T = CFG.election_ticks
LEASE = CoreConfig(election_ticks=10, heartbeat_ticks=2, lease_ticks=5)


def ack(lead: RaftNode, frm: str, match: int, read_ctx: int = 0, sent_tick: int = 0) -> Ready:
    return lead.step(AppendEntriesResponse(lead.term, frm, lead.id, True, match,
                                           read_ctx=read_ctx, sent_tick=sent_tick))


def replicating_leader(cfg: CoreConfig = CFG) -> RaftNode:
    lead = make_leader("a", cfg=cfg)
    ack(lead, "b", 1)
    ack(lead, "c", 1)
    settle(lead, lead.propose("p", "p", ("put", "k", 7)))
    ack(lead, "b", 2)
    ack(lead, "c", 2)
    assert lead.applied_index == 2
    return lead


def test_read_index_appends_nothing_and_waits_for_a_heartbeat_round() -> None:
    """Thesis §6.4 steps 2-3: the read is not logged; the leader sends a heartbeat round
    tagged with the read's round and answers only once a majority answered that round."""
    lead = replicating_leader()
    last = lead.last_index
    rd = lead.read("q", ("get", "k"))
    assert rd.entries == [] and rd.replies == [] and not rd.needs_persist()
    hbs = of_type(rd.messages, AppendEntries)
    assert sorted(m.to for m in hbs) == ["b", "c"]
    assert all(m.entries == () and m.read_ctx == 1 for m in hbs)
    # An answer to an older message (round 0) proves nothing about now.
    assert ack(lead, "b", 2, read_ctx=0).replies == []
    rd = ack(lead, "b", 2, read_ctx=1)
    assert [(r.req, r.result) for r in rd.replies] == [("q", Ok(7))]
    assert lead.last_index == last


def test_rejected_append_of_the_round_also_confirms_leadership() -> None:
    """Thesis §6.4: any answer in our term to a message of the round shows the follower still
    recognises us; a log mismatch does not matter for that."""
    lead = replicating_leader()
    lead.read("q", ("get", "k"))
    rd = lead.step(AppendEntriesResponse(1, "c", "a", False, 9, conflict_index=3, read_ctx=1))
    assert [r.result for r in rd.replies] == [Ok(7)]


def test_reads_during_a_round_share_the_next_round() -> None:
    """Reads are batched: those arriving while a round is in flight wait for one more round
    (started when the current one completes), not one round each."""
    lead = replicating_leader()
    lead.read("q1", ("get", "k"))
    for q in ("q2", "q3", "q4"):
        rd = lead.read(q, ("get", "k"))
        assert rd.messages == [] and rd.replies == []
    rd = ack(lead, "b", 2, read_ctx=1)
    assert [r.req for r in rd.replies] == ["q1"]
    hbs = of_type(rd.messages, AppendEntries)
    assert hbs and all(m.read_ctx == 2 for m in hbs)
    rd = ack(lead, "c", 2, read_ctx=2)
    assert [r.req for r in rd.replies] == ["q2", "q3", "q4"]


def test_read_waits_for_the_leaders_no_op_to_commit() -> None:
    """Thesis §6.4 step 1: a new leader does not know the commit index until an entry of its
    term commits; reads wait for its no-op even when leadership is confirmed."""
    lead = make_leader("a")
    rd = lead.read("q", ("get", "k"))
    rd = ack(lead, "b", 0, read_ctx=1)
    assert rd.replies == []
    rd = ack(lead, "b", 1, read_ctx=1)
    assert [(r.req, r.result) for r in rd.replies] == [("q", Ok(None))]


def test_read_waits_until_applied_up_to_the_read_index() -> None:
    """Thesis §6.4 step 4: the answer reflects at least the commit index seen on arrival."""
    net = Net("abc")
    lead = net.elect()
    assert net.propose(lead.id, "p", "p", ("put", "k", 1)) == Ok(None)
    assert net.read(lead.id, "q", ("get", "k")) == Ok(1)


def test_lease_read_answered_without_a_round() -> None:
    """Thesis §6.4.1: with a lease (lease_ticks > 0) heard from a majority recently, the leader
    answers at once: no message, no log entry."""
    lead = replicating_leader(LEASE)
    rd = lead.read("q", ("get", "k"))
    assert rd.messages == [] and rd.entries == []
    assert [(r.req, r.result) for r in rd.replies] == [("q", Ok(7))]


def test_lease_expires_lease_ticks_after_the_acknowledged_send() -> None:
    """Thesis §6.4.1 / rafted_value 0.1.9: the lease runs from when the acknowledged message
    was *sent* (echoed back), not when the ack arrived; after lease_ticks a round is needed."""
    lead = replicating_leader(LEASE)
    for _ in range(LEASE.lease_ticks - 1):
        lead.tick()
    ack(lead, "b", 2, sent_tick=0)  # a late ack of an old message does not extend the lease
    assert lead.read("q1", ("get", "k")).replies != []
    lead.tick()
    rd = lead.read("q2", ("get", "k"))
    assert rd.replies == []
    assert all(m.read_ctx == 1 for m in of_type(rd.messages, AppendEntries))


def test_no_lease_reads_by_default() -> None:
    """rafted_value default: margin = election timeout, i.e. no lease; every read is confirmed."""
    lead = replicating_leader()
    assert lead.read("q", ("get", "k")).replies == []


def test_lease_never_overlaps_a_new_leader() -> None:
    """Thesis §6.4.1: the lease (lease_ticks < T) ends before the other members stop refusing
    votes (T after they last heard the leader), so a deposed leader never answers from its
    lease while another leader exists."""
    net = Net("abc", cfg=LEASE)
    old = net.elect()
    net.tick_all(3)
    net.drop = lambda m: old.id in (m.to, m.frm)
    overlap = []
    for _ in range(4 * T):
        net.tick_all()
        others = [n for n in net.nodes.values() if n is not old and n.role == "leader"]
        if others and old.role == "leader" and old._lease_valid():
            overlap.append(old._now)
    assert not overlap
    assert any(n.role == "leader" for n in net.nodes.values() if n is not old)


def test_a_follower_told_its_leasing_leader_is_down_campaigns_only_after_its_vote_guard() -> None:
    """Thesis §6.4.1 and ``peer_down``: the report may be false (the follower alone lost the
    leader), so the follower keeps refusing votes for T ticks after it last heard the leader,
    and it must not campaign before then either: its vote for itself counts like any other.
    Here the third member lost the leader earlier and would vote for it; a campaign at once
    made a second leader while the first still answered reads from its lease."""
    net = Net("abc", cfg=LEASE)
    old = net.elect()
    f, g = sorted(set("abc") - {old.id})
    net.drop = lambda m: {m.frm, m.to} == {old.id, g}  # g stops hearing the leader first
    net.tick_all(T + 2)
    assert old.holds_lease()  # resting on f's acks
    net.drop = lambda m: old.id in (m.frm, m.to)  # now f loses it too, and hears it is down
    net.do(f, lambda n: n.peer_down(old.id))
    overlap = []
    for _ in range(3 * T):
        net.tick_all()
        if old.holds_lease() and any(n.role == "leader" for n in net.nodes.values() if n is not old):
            overlap.append(old._now)
    assert not overlap, f"a new leader while the old one held its lease, at its ticks {overlap}"
    assert any(n.role == "leader" for n in net.nodes.values() if n is not old), "no leader after the guard"


def test_single_member_reads_at_once() -> None:
    """Thesis §6.4: with one member there is nobody to confirm with; once its no-op is
    committed it answers at once."""
    lead = make_leader("a", members=("a",))
    rd = lead.read("q", ("get", "k"))
    assert rd.messages == [] and [r.result for r in rd.replies] == [Ok(None)]


def test_read_on_follower_is_rejected_with_leader_hint() -> None:
    """Thesis §6.4 / rafted_value: linearizable reads go to the leader; a follower answers
    not_leader with a hint."""
    net = Net("abc")
    lead = net.elect()
    f = next(n for n in net.nodes.values() if n is not lead)
    rd = f.read("q", ("get", "k"))
    assert rd.replies[0].result == Rejected("not_leader", lead.id)


def test_query_local_works_without_a_leader() -> None:
    """rafted_value query_non_leader: any member answers from its applied value, possibly
    stale, even while the group has no leader."""
    net = Net("abc")
    lead = net.elect()
    net.propose(lead.id, "p", "p", ("put", "k", 3))
    net.tick_all(CFG.heartbeat_ticks)
    survivor = next(i for i in "abc" if i != lead.id)
    net.down.update(i for i in "abc" if i != survivor)
    net.tick_all(3 * T)
    s = net.nodes[survivor]
    assert s.leader_id is None and s.role != "leader"
    assert s.query_local(("get", "k")) == 3
    assert make("z", members=()).query_local(("get", "k")) is None


def test_pending_reads_rejected_when_leadership_is_lost() -> None:
    """A leader that steps down (here: check-quorum) answers its pending reads not_leader so
    the caller retries elsewhere."""
    lead = replicating_leader()
    lead.read("q", ("get", "k"))
    replies = []
    for _ in range(2 * T + 1):
        replies += lead.tick().replies
    assert lead.role == "follower"
    assert [(r.req, r.result) for r in replies] == [("q", Rejected("not_leader", None))]


def test_partitioned_leader_never_serves_a_stale_read() -> None:
    """Thesis §6.4: a deposed leader cut off from the majority cannot confirm a round, so it
    never answers, while the majority elects a leader and commits a new value."""
    net = Net("abc")
    old = net.elect()
    net.propose(old.id, "p", "p", ("put", "k", 1))
    net.drop = lambda m: old.id in (m.to, m.frm)
    net.do(old.id, lambda n: n.read("stale", ("get", "k")))
    for _ in range(4 * T):
        net.tick_all()
        new = net.leader()
        if new is not None and new is not old and new.commit_index >= new._term_start_index:
            break
    new = net.leader()
    assert new is not old
    assert net.propose(new.id, "p2", "p2", ("put", "k", 2)) == Ok(1)
    net.tick_all(2 * T)
    assert net.reply_for("stale") == Rejected("not_leader", None)


def test_open_read_round_completes_when_the_group_shrinks_to_the_leader() -> None:
    """Regression (thesis §4.1, the newest configuration counts at once): a read round was
    re-checked only when an acknowledgement arrived; after the group shrank to the leader
    alone none ever came, and the pending read, with every later read queued behind it,
    waited forever."""
    for how in ("remove", "force"):
        net = Net("ab")
        lead = net.elect()
        other = next(i for i in "ab" if i != lead.id)
        net.drop = lambda m, other=other: other in (m.to, m.frm)
        net.do(lead.id, lambda n: n.read("q1", ("get", "k")))
        net.deliver()
        assert net.reply_for("q1") is None
        if how == "remove":
            net.do(lead.id, lambda n, other=other: n.remove_member("rm", other))
        else:
            net.do(lead.id, lambda n, other=other: n.force_remove_member(other))
        net.deliver()
        assert net.reply_for("q1") == Ok(None), how
        assert net.read(lead.id, "q2", ("get", "k")) == Ok(None), how


def test_reads_keep_flowing_when_rounds_outpace_ticks_with_a_member_down() -> None:
    """Regression: the leader counted itself in the read quorum with the tick count instead of
    the newest round; once more rounds than ticks had passed, and the majority needed the
    leader's own "ack" (a member down), reads stalled until the ticks caught up."""
    net = Net("abc")
    lead = net.elect()
    net.down.add(next(i for i in "abc" if i != lead.id))
    for k in range(3 * lead._now + 10):
        assert net.read(lead.id, ("q", k), ("get", "k")) == Ok(None), k
