"""Leader election: Raft §5.2 and §5.4.1, thesis §4.2.3 (disruptive servers), §6.2
(check-quorum) and §9.6 (pre-vote). Each test steps one or a few cores by hand and looks at
the Ready they return."""

from __future__ import annotations

import random

import pytest
from raft_harness import (
    CFG,
    Net,
    all_msgs,
    make,
    make_leader,
    noop,
    of_type,
    persisted,
    vote_request,
)

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    EntryKind,
    HardState,
    RaftNode,
    RequestVote,
    RequestVoteResponse,
)

T = CFG.election_ticks


def ticks_until_campaign(node: RaftNode, limit: int = 100) -> int:
    for k in range(1, limit + 1):
        rd = node.tick()
        if of_type(all_msgs(rd), RequestVote):
            return k
    raise AssertionError("never campaigned")


def test_randomized_election_timeout_in_T_2T() -> None:
    """§5.2: election timeouts are randomized; rafted_value draws them from (T, 2T]."""
    seen = set()
    for seed in range(200):
        k = ticks_until_campaign(make("a", seed=seed))
        assert T < k <= 2 * T, (seed, k)
        seen.add(k)
    assert seen == set(range(T + 1, 2 * T + 1)), "every value of (T, 2T] should occur"


def test_timeout_redrawn_after_each_election() -> None:
    """§5.2: each election starts with a fresh random timeout, so split votes resolve."""
    node = make("a", seed=3)
    gaps = [ticks_until_campaign(node) for _ in range(30)]
    assert all(T < g <= 2 * T for g in gaps)
    assert len(set(gaps)) > 1


def test_pre_vote_does_not_bump_term() -> None:
    """Thesis §9.6: a pre-candidate asks with term+1 but changes neither its term nor its vote,
    so nothing is persisted and the requests leave at once."""
    node = make("a", hard_state=HardState(4, None))
    rd = None
    for _ in range(2 * T):
        rd = node.tick()
        if node.role == "pre_candidate":
            break
    assert rd is not None and node.role == "pre_candidate"
    assert node.term == 4 and node.voted_for is None
    assert rd.hard_state is None and not rd.messages_after_persist
    reqs = of_type(rd.messages, RequestVote)
    assert sorted(m.to for m in reqs) == ["b", "c"]
    assert all(m.pre_vote and m.term == 5 for m in reqs)


def test_pre_vote_grant_does_not_change_voter() -> None:
    """Thesis §9.6: granting a pre-vote changes nothing durable on the voter."""
    voter = make("b", hard_state=HardState(4, None))
    for _ in range(T):
        voter.tick()  # no leader heard for T ticks: out of the lease guard
    rd = voter.step(vote_request(5, "a", "b", pre_vote=True))
    assert voter.term == 4 and voter.voted_for is None and voter.role == "follower"
    assert rd.hard_state is None and not rd.messages_after_persist
    assert rd.messages == [RequestVoteResponse(5, "b", "a", True, pre_vote=True)]


def test_pre_vote_rejected_for_stale_log() -> None:
    """§5.4.1 applies to pre-votes too: a candidate that could not win is told so."""
    voter = make("b", hard_state=HardState(2, None),
                 entries=[noop(1, 1), noop(2, 2)])
    for _ in range(T):
        voter.tick()
    rd = voter.step(vote_request(3, "a", "b", last_index=5, last_term=1, pre_vote=True))
    assert rd.messages == [RequestVoteResponse(2, "b", "a", False, pre_vote=True)]


def test_pre_vote_majority_starts_real_election_with_term_persisted_first() -> None:
    """§5.2 + Fig. 2: the real candidate increments its term and votes for itself; both are
    durable before any RequestVote leaves (they are in messages_after_persist, the hard
    state in the same Ready)."""
    node = make("a")
    node.campaign()
    rd = node.step(RequestVoteResponse(1, "b", "a", True, pre_vote=True))
    assert node.role == "candidate" and node.term == 1 and node.voted_for == "a"
    assert rd.hard_state == HardState(1, "a")
    assert rd.messages == []
    reqs = of_type(rd.messages_after_persist, RequestVote)
    assert sorted(m.to for m in reqs) == ["b", "c"]
    assert all(not m.pre_vote and m.term == 1 for m in reqs)
    assert rd.persist_seq > 0


def test_candidate_own_vote_counts_only_after_persist() -> None:
    """Fig. 2 / etcd msgsAfterAppend: the candidate's vote for itself counts once it is
    durable. With one grant from b, a 3-member candidate has a majority only after
    on_persisted."""
    node = make("a")
    node.campaign()
    rd = node.step(RequestVoteResponse(1, "b", "a", True, pre_vote=True))
    node.step(RequestVoteResponse(1, "b", "a", True))
    assert node.role == "candidate", "won with a vote that was not yet durable"
    rd2 = persisted(node, rd)
    assert node.role == "leader"
    assert [e.kind for e in rd2.entries] == [EntryKind.NOOP]


def test_single_member_becomes_leader_only_after_persist() -> None:
    """§5.2 with one member: it campaigns without pre-vote and wins on its own durable vote."""
    node = make("a", members=("a",))
    rd = node.campaign()
    assert node.role == "candidate" and rd.hard_state == HardState(1, "a")
    persisted(node, rd)
    assert node.role == "leader" and node.term == 1


def test_vote_persisted_before_grant_leaves() -> None:
    """§5.2, Fig. 2: currentTerm and votedFor are durable before the grant is sent: the
    grant is in messages_after_persist and the hard state in the same Ready."""
    voter = make("b")
    for _ in range(T):
        voter.tick()
    rd = voter.step(vote_request(1, "a", "b"))
    assert rd.hard_state == HardState(1, "a")
    assert rd.messages == []
    assert rd.messages_after_persist == [RequestVoteResponse(1, "b", "a", True)]
    assert rd.persist_seq > 0


def test_one_vote_per_term() -> None:
    """§5.2: each server votes for at most one candidate per term (first come, first served)."""
    voter = make("b")
    for _ in range(T):
        voter.tick()
    voter.step(vote_request(1, "a", "b"))
    rd = voter.step(vote_request(1, "c", "b"))
    assert rd.messages == [RequestVoteResponse(1, "b", "c", False)]
    assert rd.hard_state is None
    # Asking again (a retransmission) from the same candidate is granted again.
    rd = voter.step(vote_request(1, "a", "b"))
    assert rd.messages_after_persist == [RequestVoteResponse(1, "b", "a", True)]


def test_vote_refused_to_candidate_with_stale_log() -> None:
    """§5.4.1: a vote only goes to a candidate whose log is at least as up to date
    (last term first, then last index)."""
    voter = make("b", hard_state=HardState(3, None),
                 entries=[noop(1, 1), noop(3, 2)])
    for _ in range(T):
        voter.tick()
    # Longer log but older last term: refused.
    rd = voter.step(vote_request(4, "a", "b", last_index=9, last_term=2))
    assert rd.messages == [RequestVoteResponse(4, "b", "a", False)]
    assert voter.term == 4 and voter.voted_for is None  # the term still advances (§5.1)
    # Same last term, shorter: refused. Same last term and index: granted.
    rd = voter.step(vote_request(5, "c", "b", last_index=1, last_term=3))
    assert rd.messages == [RequestVoteResponse(5, "b", "c", False)]
    rd = voter.step(vote_request(6, "c", "b", last_index=2, last_term=3))
    assert rd.messages_after_persist == [RequestVoteResponse(6, "b", "c", True)]


def test_follower_ignores_votes_while_leader_is_live() -> None:
    """Thesis §4.2.3: within an election timeout of hearing from a leader, a RequestVote
    (or pre-vote) with a higher term is ignored: no term change, no answer."""
    f = make("b")
    f.step(AppendEntries(1, "a", "b", 0, 0, (), 0))
    for _ in range(T - 1):
        f.tick()
    for pre in (True, False):
        rd = f.step(vote_request(2, "c", "b", last_index=5, last_term=1, pre_vote=pre))
        assert rd.is_empty()
        assert f.term == 1 and f.leader_id == "a"
    f.tick()  # T ticks since the leader was heard: the guard lapses
    rd = f.step(vote_request(2, "c", "b", last_index=5, last_term=1))
    assert rd.messages_after_persist == [RequestVoteResponse(2, "b", "c", True)]


def test_leader_ignores_votes_while_quorum_is_live() -> None:
    """Thesis §4.2.3 on the leader side: with a quorum heard from in the last T ticks, a
    disruptive RequestVote is ignored and the leader keeps its term."""
    lead = make_leader("a")
    lead.step(AppendEntriesResponse(1, "b", "a", True, 1))
    rd = lead.step(vote_request(5, "c", "a", last_index=10, last_term=4))
    assert rd.is_empty() and lead.role == "leader" and lead.term == 1


def test_transfer_vote_bypasses_the_lease_guard() -> None:
    """Thesis §3.10: a RequestVote sent because of TimeoutNow is not disruptive; it is
    considered even while a leader is live."""
    f = make("b")
    f.step(AppendEntries(1, "a", "b", 0, 0, (), 0))
    rd = f.step(vote_request(2, "c", "b", transfer=True))
    assert f.term == 2 and f.voted_for == "c"
    assert rd.messages_after_persist == [RequestVoteResponse(2, "b", "c", True)]


def test_first_election_in_a_cluster() -> None:
    """§5.2: a group of three elects exactly one leader, whose no-op commits."""
    net = Net("abc")
    lead = net.elect()
    assert [n.id for n in net.nodes.values() if n.role == "leader"] == [lead.id]
    assert all(n.term == lead.term for n in net.nodes.values())
    assert all(n.leader_id == lead.id for n in net.nodes.values())


def test_partitioned_node_rejoins_without_disrupting() -> None:
    """Thesis §9.6 + §4.2.3: a member cut off for many election timeouts only pre-votes, so
    its term does not grow; when the partition heals it follows the same leader, in the same
    term, without an election."""
    net = Net("abc")
    lead = net.elect()
    other = next(i for i in "abc" if i != lead.id)
    term = lead.term
    net.drop = lambda m: other in (m.to, m.frm)
    net.tick_all(10 * T)
    assert net.nodes[other].term == term
    assert net.nodes[other].role == "pre_candidate"
    net.drop = lambda m: False
    net.tick_all(2 * CFG.heartbeat_ticks)
    assert net.leader() is lead and lead.term == term
    assert net.nodes[other].role == "follower" and net.nodes[other].leader_id == lead.id


def test_rejoining_node_with_higher_term_cannot_win_without_leader_loss() -> None:
    """§5.1 + thesis §4.2.3: without pre-vote a cut-off member raises its term; its vote
    requests are ignored while the leader is live (the lease guard), so it never wins
    while the others hear from their leader."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, pre_vote=False)
    net = Net("abc", cfg=cfg)
    lead = net.elect()
    other = next(i for i in "abc" if i != lead.id)
    net.drop = lambda m: other in (m.to, m.frm)
    net.tick_all(5 * T)
    assert net.nodes[other].term > lead.term
    # Heal only the other -> followers direction: its RequestVotes reach the live group.
    net.drop = lambda m: m.to == other
    net.tick_all(5 * T)
    assert net.leader() is lead and lead.role == "leader"
    assert all(n.role != "leader" for i, n in net.nodes.items() if i != lead.id)


def test_check_quorum_steps_down_after_2T_without_acks() -> None:
    """Thesis §6.2 / rafted_value: a leader that heard from no majority for 2T steps down to
    follower in the same term (it stops claiming leadership it cannot prove)."""
    lead = make_leader("a")
    for k in range(1, 2 * T + 1):
        lead.tick()
        assert lead.role == "leader", k
    lead.tick()
    assert lead.role == "follower" and lead.term == 1 and lead.leader_id is None


def test_check_quorum_kept_by_acks() -> None:
    """Thesis §6.2: acks from a majority keep the leader in office indefinitely."""
    lead = make_leader("a")
    for _ in range(10 * T):
        lead.tick()
        lead.step(AppendEntriesResponse(1, "b", "a", True, 0))
    assert lead.role == "leader"


def test_check_quorum_off_keeps_leader() -> None:
    """Thesis §6.2 is opt-out (CoreConfig.check_quorum=False): then a leader never steps down
    on its own."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, check_quorum=False)
    lead = make_leader("a", cfg=cfg)
    for _ in range(10 * T):
        lead.tick()
    assert lead.role == "leader"


def test_new_leader_appends_no_op_with_members() -> None:
    """§8: a new leader appends a no-op of its term at once (so it learns what is committed);
    like rafted_value's leader_elected2 it carries the member list."""
    node = make("a")
    node.campaign()
    rd = node.step(RequestVoteResponse(1, "b", "a", True, pre_vote=True))
    node.step(RequestVoteResponse(1, "b", "a", True))
    rd = persisted(node, rd)
    assert node.role == "leader"
    assert len(rd.entries) == 1
    e = rd.entries[0]
    assert (e.term, e.index, e.kind, e.data) == (1, 1, EntryKind.NOOP, ("a", "b", "c"))
    apps = of_type(rd.messages, AppendEntries)
    assert sorted(m.to for m in apps) == ["b", "c"]
    assert all(m.entries == (e,) and m.prev_index == 0 for m in apps)


def test_higher_term_response_deposes_leader() -> None:
    """§5.1: a leader that sees a higher term becomes a follower of that term."""
    lead = make_leader("a")
    rd = lead.step(AppendEntriesResponse(7, "b", "a", False, 0))
    assert lead.role == "follower" and lead.term == 7 and lead.voted_for is None
    assert rd.hard_state == HardState(7, None)


def test_stale_leader_is_told_the_newer_term() -> None:
    """§5.1 (etcd's rule with pre-vote and check-quorum): an append from an older term is
    answered with the newer term, so a stale leader steps down."""
    f = make("b", hard_state=HardState(5, None))
    rd = f.step(AppendEntries(3, "a", "b", 0, 0, (), 0))
    assert rd.messages == [AppendEntriesResponse(5, "b", "a", False, 0)]
    assert f.term == 5


def test_majority_of_rejections_ends_candidacy() -> None:
    """§5.2: a candidate that cannot win goes back to follower and waits a new timeout."""
    node = make("a")
    node.campaign()
    # A rejection carries the voter's own term (here the same as ours).
    node.step(RequestVoteResponse(0, "b", "a", False, pre_vote=True))
    assert node.role == "pre_candidate"
    node.step(RequestVoteResponse(0, "c", "a", False, pre_vote=True))
    assert node.role == "follower" and node.term == 0


def test_pre_vote_rejection_with_higher_term_adopts_it() -> None:
    """§5.1 (etcd): a pre-vote rejected by a member in a newer term moves us to that term."""
    node = make("a")
    node.campaign()
    rd = node.step(RequestVoteResponse(3, "b", "a", False, pre_vote=True))
    assert node.role == "follower" and node.term == 3
    assert rd.hard_state == HardState(3, None)


def test_candidate_steps_down_on_append_from_new_leader() -> None:
    """§5.2: a candidate that hears from a legitimate leader of its term becomes follower."""
    node = make("a")
    node.campaign()
    node.step(RequestVoteResponse(1, "b", "a", True, pre_vote=True))
    assert node.role == "candidate"
    node.step(AppendEntries(1, "c", "a", 0, 0, (), 0))
    assert node.role == "follower" and node.leader_id == "c"


@pytest.mark.parametrize("seed", range(5))
def test_at_most_one_leader_per_term_with_drops(seed: int) -> None:
    """§5.2 Election Safety: at most one leader per term, under message loss and crashes."""
    rng = random.Random(seed)
    net = Net("abcde", seed=seed)
    net.drop = lambda m: rng.random() < 0.2
    leaders: dict[int, str] = {}
    for step in range(400):
        if step % 50 == 0:
            net.down = set(rng.sample("abcde", rng.randint(0, 2)))
        net.tick_all()
        for i, n in net.nodes.items():
            if n.role == "leader":
                assert leaders.setdefault(n.term, i) == i, (n.term, leaders[n.term], i)
    assert leaders, "no leader was ever elected"


def test_the_vote_guard_holds_at_an_equal_term_reached_through_a_rejected_pre_vote() -> None:
    """Review finding 13.2 (thesis §4.2.3): a follower that heard from its leader a moment ago
    refuses votes, whatever the request's term. Here it first adopts a higher term from a
    rejected pre-vote's response (a late answer to a pre-vote of its own); the RequestVote of
    that term then arrives at an *equal* term, and must be refused all the same while the
    leader it heard still holds a lease."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, lease_ticks=5)
    for bugs, safe in ((frozenset(), True), (frozenset({"vote_guard_higher_term_only"}), False)):
        net = Net("abc", cfg, bugs=bugs)
        lead = net.elect()
        net.tick_all(2)
        assert lead.holds_lease()
        b, c = sorted(set("abc") - {lead.id})
        nb = net.nodes[b]
        t = nb.term + 1
        late = RequestVoteResponse(t, c, b, False, pre_vote=True)
        net.do(b, lambda n, m=late: n.step(m))
        assert nb.term == t and nb.leader_id is None
        rd = nb.step(vote_request(t, c, b, nb.last_index, nb.last_term))
        granted = [m.granted for m in of_type(all_msgs(rd), RequestVoteResponse)]
        assert (True in granted) is not safe, (bugs, granted)


def test_a_brand_new_group_elects_its_desired_leader_at_once() -> None:
    """Issue 14, group birth: every voter starts with the whole first configuration and the
    desired leader campaigns at once; members that never made a term durable acknowledged
    nothing (acks wait for their term), so they back no lease and grant at once. No tick."""
    net = Net("abc", CoreConfig(election_ticks=10, heartbeat_ticks=2, lease_ticks=5))
    net.do("b", lambda n: n.campaign())
    net.deliver()
    lead = net.nodes["b"]
    assert lead.role == "leader" and lead.commit_index == lead.last_index == 1
    assert all(n.commit_index >= 0 and n.term == lead.term for n in net.nodes.values())


def test_a_restarted_member_still_refuses_votes_for_an_election_timeout() -> None:
    """... but a member that restarts with a durable term may have backed a lease: it keeps
    the guard (thesis §6.4.1 across restarts)."""
    f = make("b", hard_state=HardState(3, "a"))
    rd = f.step(vote_request(4, "c", "b", 0, 0, pre_vote=True))
    assert [m.granted for m in of_type(all_msgs(rd), RequestVoteResponse)] in ([], [False])


def test_an_ack_claiming_a_new_term_waits_until_that_term_is_durable() -> None:
    """Raft Fig. 2: persistent state is updated on stable storage before responding. The
    leader counts the ack toward its lease, so it must not leave before the term is durable."""
    f = make("b", hard_state=HardState(1, None), entries=[noop(1, 1)])
    rd = f.step(AppendEntries(2, "a", "b", 1, 1, (), 1, sent_tick=7))
    assert rd.hard_state == HardState(2, None)
    assert of_type(rd.messages, AppendEntriesResponse) == []
    assert [m.success for m in of_type(rd.messages_after_persist, AppendEntriesResponse)] == [True]
    # Once the term is durable, the next heartbeat's ack leaves at once.
    f.on_persisted(rd.persist_seq)
    rd = f.step(AppendEntries(2, "a", "b", 1, 1, (), 1, sent_tick=9))
    assert [m.success for m in of_type(rd.messages, AppendEntriesResponse)] == [True]


def test_bootstrap_gives_a_new_member_its_first_configuration_once() -> None:
    nodes = {i: make(i, members=()) for i in "abc"}
    for n in nodes.values():
        assert n.bootstrap(("a", "b", "c")).is_empty()
        assert n.members == ("a", "b", "c")
    assert nodes["a"].bootstrap(("a", "b", "c")).is_empty()  # again: nothing changes
    with pytest.raises(ValueError, match="already has"):
        nodes["a"].bootstrap(("a", "b", "d"))
    with pytest.raises(ValueError, match="include this member"):
        make("d", members=()).bootstrap(("a", "b"))
    net = Net([], CoreConfig(election_ticks=10, heartbeat_ticks=2))
    for n in nodes.values():
        net.add_node(n)
    net.do("c", lambda n: n.campaign())
    net.deliver()
    assert nodes["c"].role == "leader" and nodes["c"].commit_index == 1
