"""Membership changes: Raft §6 as refined in the thesis §4 (single-server changes, one at a
time, a configuration in effect from the moment it is appended, and the 2015 raft-dev fix:
a leader commits an entry of its own term before changing the membership), with
rafted_value's errors and its force_remove_member for majority loss (reference §4.5)."""

from __future__ import annotations

from raft_harness import CFG, Net, make, make_leader, noop, of_type, settle

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Ok,
    RaftNode,
    Ready,
    Rejected,
    Removed,
    RequestVote,
    Status,
)

T = CFG.election_ticks


def ack(lead: RaftNode, frm: str, match: int) -> Ready:
    return lead.step(AppendEntriesResponse(lead.term, frm, lead.id, True, match))


def replicating_leader(**kw) -> RaftNode:
    lead = make_leader("a", **kw)
    ack(lead, "b", 1)
    ack(lead, "c", 1)
    assert lead.commit_index == 1
    return lead


def result(rd: Ready) -> object:
    (reply,) = rd.replies
    return reply.result


# ---------------------------------------------------------------------------------------
# Errors (rafted_value's, reference §4.5)


def test_membership_change_on_follower_is_not_leader() -> None:
    """Thesis §4.1 / rafted_value: only the leader changes the membership; others answer
    not_leader with a hint."""
    f = make("b")
    f.step(AppendEntries(1, "a", "b", 0, 0, (), 0))
    assert result(f.add_member("r", "d")) == Rejected("not_leader", "a")
    assert result(f.remove_member("r", "c")) == Rejected("not_leader", "a")


def test_one_change_at_a_time() -> None:
    """Thesis §4.1: a change may start only once the previous one is committed."""
    lead = replicating_leader()
    rd = lead.add_member("r1", "d")
    assert [e.kind for e in rd.entries] == [EntryKind.MEMBERS] and not rd.replies
    assert result(lead.add_member("r2", "e")) == Rejected("uncommitted_membership_change", "a")
    assert result(lead.remove_member("r3", "b")) == Rejected("uncommitted_membership_change", "a")


def test_leader_commits_own_term_entry_before_a_change() -> None:
    """Thesis §4.1 + Ongaro's 2015 raft-dev correction: until the new leader's no-op is
    committed, a single-server change could overlap an uncommitted change of an earlier
    term and break safety; it is refused."""
    lead = make_leader("a")
    assert lead.commit_index < lead._term_start_index
    assert result(lead.add_member("r", "d")) == Rejected("uncommitted_membership_change", "a")
    ack(lead, "b", 1)
    rd = lead.add_member("r", "d")
    assert rd.entries and rd.entries[0].data == ("a", "b", "c", "d")


def test_change_refused_during_transfer() -> None:
    """rafted_value pending_leader_change: no membership change while a leadership transfer
    (thesis §3.10) is pending."""
    lead = replicating_leader()
    lead.propose("p", "p", ("put", 1, 1))
    assert lead.transfer_leadership("t", "b").replies == []  # b is behind: pending
    assert result(lead.add_member("r", "d")) == Rejected("pending_leader_change", "a")
    assert result(lead.remove_member("r", "c")) == Rejected("pending_leader_change", "a")


def test_add_and_remove_argument_errors() -> None:
    """rafted_value's errors: already_member, not_member, cannot_remove_leader (a leader never
    removes itself)."""
    lead = replicating_leader()
    assert result(lead.add_member("r", "b")) == Rejected("already_member", "a")
    assert result(lead.remove_member("r", "z")) == Rejected("not_member", "a")
    assert result(lead.remove_member("r", "a")) == Rejected("cannot_remove_leader", "a")


def test_will_break_quorum_rule() -> None:
    """rafted_value can_safely_remove?: an unresponsive member can always be removed; a healthy
    one only if the healthy members left are a majority of the new configuration."""
    lead = replicating_leader()
    for _ in range(2 * T + 1):
        lead.tick()
        ack(lead, "b", 1)  # b answers, c is silent
    assert lead.status().unresponsive_followers == ("c",)
    assert result(lead.remove_member("r", "b")) == Rejected("will_break_quorum", "a")
    rd = lead.remove_member("r", "c")
    assert rd.entries[0].data == ("a", "b")


def test_healthy_member_removable_when_all_are_healthy() -> None:
    """rafted_value can_safely_remove?: with everyone healthy, 2 of the 2 left are a majority."""
    lead = replicating_leader()
    rd = lead.remove_member("r", "c")
    assert rd.entries[0].data == ("a", "b")


# ---------------------------------------------------------------------------------------
# A configuration is in effect from its append (thesis §4.1).


def test_configuration_in_effect_at_append_on_leader_and_follower() -> None:
    """Thesis §4.1: every server uses the latest configuration in its log, committed or not."""
    lead = replicating_leader()
    rd = lead.add_member("r", "d")
    assert lead.members == ("a", "b", "c", "d") and lead.commit_index == 1
    f = make("b")
    f.step(AppendEntries(1, "a", "b", 0, 0, (noop(1, 1),), 1))
    f.step(AppendEntries(1, "a", "b", 1, 1, tuple(rd.entries), 1))
    assert f.members == ("a", "b", "c", "d") and f.commit_index == 1


def test_commit_after_add_needs_majority_of_new_configuration() -> None:
    """Thesis §4.1: the add entry itself and what follows need a majority of the new
    configuration (3 of 4)."""
    lead = replicating_leader()
    rd = lead.add_member("r", "d")
    settle(lead, rd)
    idx = rd.entries[0].index
    ack(lead, "b", idx)
    assert lead.commit_index == 1, "2 of 4 is not a majority"
    rd = ack(lead, "c", idx)
    assert lead.commit_index == idx
    assert rd.replies[0].result == Ok(("a", "b", "c", "d"))


def test_uncommitted_change_undone_by_truncation() -> None:
    """Thesis §4.1: a configuration entry removed from the log (overwritten by a new leader)
    stops being in effect (rafted_value 0.10.2's fix)."""
    add_d = Entry(1, 2, EntryKind.MEMBERS, ("a", "b", "c", "d"))
    f = make("b", hard_state=HardState(1, None), entries=[noop(1, 1), add_d])
    assert f.members == ("a", "b", "c", "d")
    f.step(AppendEntries(2, "c", "b", 1, 1, (noop(2, 2),), 1))
    assert f.members == ("a", "b", "c")


def test_commit_of_removal_counts_remaining_members() -> None:
    """Thesis §4.1: after removing c (in effect at append) the pair a, b commits alone."""
    lead = replicating_leader()
    rd = lead.remove_member("r", "c")
    assert [m.to for m in of_type(rd.messages, AppendEntries)] == ["b"], "c gets no more appends"
    settle(lead, rd)
    idx = rd.entries[0].index
    rd = ack(lead, "b", idx)
    assert lead.commit_index == idx and rd.replies[0].result == Ok(("a", "b"))
    assert [m.to for m in of_type(rd.messages, Removed)] == ["c"]


# ---------------------------------------------------------------------------------------
# Removed members stop.


def test_removed_member_is_told_and_stops() -> None:
    """rafted_value remove_follower_completed: once the removal commits the member is told;
    it reports Ready.removed, takes role "removed" and ignores everything after."""
    net = Net("abc")
    lead = net.elect()
    gone = next(i for i in "abc" if i != lead.id)
    net.do(lead.id, lambda n: n.remove_member("r", gone))
    net.deliver()
    assert net.reply_for("r") == Ok(tuple(m for m in "abc" if m != gone))
    node = net.nodes[gone]
    assert node.role == "removed" and node.status().state_name == "removed"
    assert any(rd.removed for rd in net.readies[gone])
    assert node.tick().is_empty()
    assert node.step(AppendEntries(lead.term, lead.id, gone, 0, 0, (), 0)).is_empty()
    assert result(node.propose("p", "p", ("put", 1, 1))) == Rejected("removed", None)
    assert result(node.read("q", ("get", 1))) == Rejected("removed", None)
    net.tick_all(5 * T)
    assert net.leader() is lead


def test_removed_member_that_missed_the_news_is_told_again() -> None:
    """Reference §4.5 (rafted_value keeps such a member running): a removed member that lost
    its Removed message campaigns; the leader answers with Removed and it stops, without
    disturbing the group."""
    net = Net("abc")
    lead = net.elect()
    term = lead.term
    gone = next(i for i in "abc" if i != lead.id)
    net.drop = lambda m: isinstance(m, Removed)
    net.do(lead.id, lambda n: n.remove_member("r", gone))
    net.deliver()
    assert net.nodes[gone].role == "follower"
    assert gone in net.nodes[gone].members, "the removed member never gets its removal entry"
    net.drop = lambda m: False
    net.tick_all(3 * T)
    assert net.nodes[gone].role == "removed"
    assert net.leader() is lead and lead.term == term


def test_follower_that_knows_the_removal_also_tells() -> None:
    """A removed member only writes to its old configuration, which may no longer hold the
    leader (after later changes); any member whose committed log shows the removal answers
    Removed."""
    net = Net("abc")
    lead = net.elect()
    gone = next(i for i in "abc" if i != lead.id)
    other = next(i for i in "abc" if i not in (lead.id, gone))
    net.drop = lambda m: gone in (m.to, m.frm)
    net.do(lead.id, lambda n: n.remove_member("r", gone))
    net.deliver()
    net.tick_all(CFG.heartbeat_ticks)
    f = net.nodes[other]
    assert f.role == "follower" and f.commit_index == lead.commit_index
    rd = f.step(RequestVote(f.term + 1, gone, other, 1, 1, pre_vote=True))
    assert [type(m) for m in rd.messages] == [Removed]


def test_leader_remembers_removals_past_compaction() -> None:
    """The leader still recognises a removed member after the log that recorded its removal
    was compacted away."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=3, log_retention=0)
    net = Net("abc", cfg=cfg)
    lead = net.elect()
    gone = next(i for i in "abc" if i != lead.id)
    net.drop = lambda m: isinstance(m, Removed)
    net.do(lead.id, lambda n: n.remove_member("r", gone))
    net.deliver()
    for k in range(6):
        net.propose(lead.id, k, k, ("put", k, k))
    assert lead.first_index > 2 and all(gone not in ms for _, ms, _ in lead._configs)
    rd = lead.step(RequestVote(lead.term + 1, gone, lead.id, 1, 1, pre_vote=True))
    assert [type(m) for m in rd.messages] == [Removed]


def test_removal_remembered_across_restart_through_the_snapshot() -> None:
    """The members that left are kept in snapshots: after every survivor restarts from a disk
    whose log no longer shows the removal, the leader still stops the removed member that
    missed its Removed message."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=3, log_retention=0)
    net = Net("abc", cfg=cfg)
    lead = net.elect()
    gone = next(i for i in "abc" if i != lead.id)
    net.drop = lambda m: isinstance(m, Removed) or gone in (m.to, m.frm)
    net.do(lead.id, lambda n: n.remove_member("r", gone))
    net.deliver()
    for k in range(6):
        net.propose(lead.id, k, k, ("put", k, k))
    for i in "abc":
        if i != gone:
            assert net.disks[i].snapshot is not None
            net.nodes[i] = net.disks[i].restart(i, cfg, seed=ord(i))
            assert all(gone not in ms for _, ms, _ in net.nodes[i]._configs)
    net.drop = lambda m: False
    net.tick_all(6 * T)
    assert net.nodes[gone].role == "removed"
    assert net.leader() is not None and net.leader().members == tuple(i for i in "abc" if i != gone)


def test_stale_leader_does_not_remove_a_member_it_never_knew() -> None:
    """Regression: a leader answered *any* vote request from outside its configuration with
    Removed. A stale leader (cut off while a newer leader added ``d``) would then stop a
    legitimate member. Removed now goes only to members known to have left."""
    lead = replicating_leader()
    rd = lead.step(RequestVote(5, "d", "a", 9, 4, pre_vote=True))
    assert of_type(rd.messages, Removed) == []
    rd = lead.step(RequestVote(5, "d", "a", 9, 4))
    assert of_type(rd.messages, Removed) == []


# ---------------------------------------------------------------------------------------
# Joiners.


def joiner(node_id: str = "d", seed: int = 5, cfg: CoreConfig = CFG) -> RaftNode:
    return make(node_id, members=(), seed=seed, cfg=cfg)


def test_joiner_stays_passive_until_it_is_in_its_own_configuration() -> None:
    """Thesis §4.2.1 / rafted_value join: a new member starts with no configuration; it never
    campaigns (it could only disrupt) until the entry adding it reaches its log."""
    d = joiner()
    for _ in range(10 * T):
        assert of_type(d.tick().messages, RequestVote) == []
    assert d.campaign().is_empty()
    assert d.role == "follower"


def test_joiner_catches_up_and_activates() -> None:
    """Thesis §4.2.1 / rafted_value join: the joiner catches up through ordinary appends; once
    its own add entry is in its log it is a voting member and may campaign."""
    net = Net("abc")
    lead = net.elect()
    for k in range(5):
        net.propose(lead.id, k, k, ("put", k, k))
    d = net.add_node(joiner())
    net.do(lead.id, lambda n: n.add_member("add", "d"))
    net.deliver()
    assert net.reply_for("add") == Ok(("a", "b", "c", "d"))
    assert d.members == ("a", "b", "c", "d")
    assert d.commit_index == lead.commit_index and d.data == lead.data
    rd = d.campaign()
    assert sorted(m.to for m in of_type(rd.messages, RequestVote)) == ["a", "b", "c"]


def test_joiner_gets_a_snapshot_when_the_log_is_compacted() -> None:
    """§7 + rafted_value join: a joiner behind the leader's log start receives the snapshot
    (in chunks), then the entries after it, including the one that adds it."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=4, log_retention=1,
                     snapshot_chunk_bytes=40)
    net = Net("abc", cfg=cfg)
    lead = net.elect()
    for k in range(10):
        net.propose(lead.id, k, k, ("put", k, k))
    assert lead.first_index > 1
    d = net.add_node(joiner(cfg=cfg))
    net.do(lead.id, lambda n: n.add_member("add", "d"))
    net.deliver()
    chunks = [m for m in net.sent if isinstance(m, InstallSnapshot) and m.to == "d"]
    assert len(chunks) > 1
    assert net.reply_for("add") == Ok(("a", "b", "c", "d"))
    assert d.members == ("a", "b", "c", "d") and d.data == lead.data
    assert d.snapshot_meta is not None


# ---------------------------------------------------------------------------------------
# force_remove_member (reference §4.5): recovery from majority loss.


def test_force_remove_recovers_group_that_lost_its_majority() -> None:
    """rafted_value force_remove_member: run on the survivor for each dead member; at its next
    election timeout it wins alone, and its no-op carries the reduced member list."""
    net = Net("abc")
    lead = net.elect()
    net.propose(lead.id, "p", "p", ("put", "k", 1))
    survivor = next(i for i in "abc" if i != lead.id)
    dead = [i for i in "abc" if i != survivor]
    net.down.update(dead)
    net.tick_all(5 * T)
    assert net.leader() is None
    s = net.nodes[survivor]
    for m in dead:
        assert net.do(survivor, lambda n, m=m: n.force_remove_member(m)).is_empty()
    assert s.members == (survivor,)
    for _ in range(3 * T):
        net.tick_all()
        if s.role == "leader":
            break
    assert s.role == "leader"
    e = s.entry_at(s._term_start_index)
    assert e.kind == EntryKind.NOOP and e.data == (survivor,)
    assert s.commit_index == s.last_index
    assert net.propose(survivor, "q", "q", ("put", "j", 2)) == Ok(None)
    assert s.query_local(("get", "k")) == 1


def test_force_remove_guards() -> None:
    """rafted_value force_remove_member guard: a member never removes itself, and an unknown id
    is a no-op."""
    node = make("b")
    assert node.force_remove_member("b").is_empty() and node.members == ("a", "b", "c")
    assert node.force_remove_member("z").is_empty() and node.members == ("a", "b", "c")


def test_force_remove_on_leader_lets_pending_entries_commit() -> None:
    """Dropping a dead member from the leader's configuration lowers the quorum at once."""
    lead = make_leader("a", members=("a", "b"))
    assert lead.commit_index == 0
    settle(lead, lead.force_remove_member("b"))
    assert lead.commit_index == 1


# ---------------------------------------------------------------------------------------
# status (rafted_value's map, reference §4.8)


def test_status_fields() -> None:
    """rafted_value status/1 (reference §4.8): members, leader, unresponsive followers (leader
    only, silent for 2T), term, state name, config, plus our indexes."""
    net = Net("abc")
    lead = net.elect()
    net.propose(lead.id, "p", "p", ("put", 1, 1))
    st = lead.status()
    assert isinstance(st, Status)
    assert (st.from_, st.members, st.leader, st.state_name) == (lead.id, ("a", "b", "c"), lead.id, "leader")
    assert st.unresponsive_followers == () and st.current_term == lead.term
    assert st.config is net.cfg
    assert st.commit_index == st.applied_index == st.last_index == 2
    f = next(n for n in net.nodes.values() if n is not lead)
    fs = f.status()
    assert (fs.state_name, fs.leader, fs.unresponsive_followers) == ("follower", lead.id, ())
    net.down.add(f.id)
    net.tick_all(2 * T + 1)
    assert lead.status().unresponsive_followers == (f.id,)
