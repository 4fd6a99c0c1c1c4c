"""Log replication: Raft §5.3 (AppendEntries, Figure 2's receiver rules, the fast back-off
of §5.3's last paragraphs), the durability order of etcd's msgsAfterAppend, and etcd's
Progress flow control (batching, pipelining bounded by inflight messages, probing)."""

from __future__ import annotations

import pytest
from raft_harness import CFG, Net, make, make_leader, noop, of_type, persisted, settle

from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Command,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    Message,
    Ok,
    RaftNode,
    Ready,
    RequestVoteResponse,
)


def cmd(term: int, index: int, cmd_id: object = None, arg: object = ("put", "k", 1)) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, Command(cmd_id if cmd_id is not None else index, arg))


def ack(lead: RaftNode, frm: str, match: int, **kw: int) -> Ready:
    return lead.step(AppendEntriesResponse(lead.term, frm, lead.id, True, match, **kw))


def replicating_leader(cfg: CoreConfig = CFG) -> RaftNode:
    """Leader ``a`` of term 1 whose followers b and c acknowledged its no-op (index 1)."""
    lead = make_leader("a", cfg=cfg)
    ack(lead, "b", 1)
    ack(lead, "c", 1)
    assert lead.commit_index == 1
    return lead


def test_proposal_is_sent_at_once_and_committed_by_a_majority() -> None:
    """§5.3: the leader appends the command, sends it to every follower, and commits it once a
    majority (itself included, once durable) stores it; then it applies it and answers."""
    lead = replicating_leader()
    rd = lead.propose("r1", "x", ("put", "k", 1))
    e = rd.entries[0]
    assert (e.index, e.term, e.kind) == (2, 1, EntryKind.COMMAND)
    apps = of_type(rd.messages, AppendEntries)
    assert sorted(m.to for m in apps) == ["b", "c"]
    assert all(m.prev_index == 1 and m.prev_term == 1 and m.entries == (e,) for m in apps)
    persisted(lead, rd)
    assert lead.commit_index == 1
    rd = ack(lead, "b", 2)
    assert lead.commit_index == 2
    assert [r.result for r in rd.replies] == [Ok(None)]
    assert rd.applied == [e]


def test_propose_batch_sends_one_append_per_follower() -> None:
    """DESIGN §4 batching: commands proposed together are appended together and carried by
    one AppendEntries per follower; a command id repeated inside the batch is appended once
    and both callers get its result."""
    lead = replicating_leader()
    items = [("r1", "x", ("put", 1, 1)), ("r2", "y", ("put", 2, 2)), ("r3", "x", ("put", 1, 1))]
    rd = lead.propose_batch(items)
    assert [e.index for e in rd.entries] == [2, 3]
    apps = of_type(rd.messages, AppendEntries)
    assert sorted(m.to for m in apps) == ["b", "c"]
    assert all([e.index for e in m.entries] == [2, 3] for m in apps)
    persisted(lead, rd)
    rd = ack(lead, "b", 3)
    assert sorted(r.req for r in rd.replies) == ["r1", "r2", "r3"]
    assert all(r.result == Ok(None) for r in rd.replies)


def test_leader_counts_itself_only_once_durable() -> None:
    """DESIGN §4 / etcd: the leader's own log counts toward a commit only after its write is
    durable. With one follower ack and the leader's write pending, nothing commits."""
    lead = replicating_leader()
    rd = lead.propose("r1", "x", ("put", "k", 1))
    ack(lead, "b", 2)
    assert lead.commit_index == 1, "committed with the leader's own write not durable"
    rd2 = persisted(lead, rd)
    assert lead.commit_index == 2 and [r.req for r in rd2.replies] == ["r1"]


def test_commit_without_leader_durable_needs_both_followers() -> None:
    """§5.3: a majority of the other members is enough even while the leader's write is pending."""
    lead = replicating_leader()
    lead.propose("r1", "x", ("put", "k", 1))
    ack(lead, "b", 2)
    ack(lead, "c", 2)
    assert lead.commit_index == 2


def test_single_member_commit_waits_for_persist() -> None:
    """§5.3 with one member: a commit needs the leader's own durable write."""
    lead = make_leader("a", members=("a",))
    assert lead.commit_index == 1
    rd = lead.propose("r", "x", ("put", "k", 1))
    assert lead.commit_index == 1 and not rd.replies
    rd = persisted(lead, rd)
    assert lead.commit_index == 2 and rd.replies[0].result == Ok(None)


def test_follower_acks_only_after_persisting() -> None:
    """§5.3 / etcd msgsAfterAppend: a follower's success claims the entries are durable, so it
    is released only after the write; a heartbeat for what is durable is acked at once."""
    f = make("b")
    e1 = noop(1, 1)
    rd = f.step(AppendEntries(1, "a", "b", 0, 0, (e1,), 0))
    assert rd.entries == [e1]
    assert rd.messages == []
    assert rd.messages_after_persist == [AppendEntriesResponse(1, "b", "a", True, 1)]
    assert rd.hard_state == HardState(1, None)
    persisted(f, rd)
    rd = f.step(AppendEntries(1, "a", "b", 1, 1, (), 1, sent_tick=4))
    assert rd.messages == [AppendEntriesResponse(1, "b", "a", True, 1, sent_tick=4)]
    assert f.commit_index == 1


def test_conflicting_suffix_is_truncated() -> None:
    """Fig. 2, AppendEntries receiver rule 3: a conflicting entry and all that follow it are
    deleted (rafted_value keeps the suffix; we must not). The Ready's entries start at the
    conflict, which tells storage to drop everything from there."""
    log = [noop(1, 1), cmd(1, 2), cmd(2, 3), cmd(2, 4), cmd(2, 5)]
    f = make("b", hard_state=HardState(2, None), entries=log)
    new = cmd(3, 3, cmd_id="n")
    rd = f.step(AppendEntries(3, "a", "b", 2, 1, (new,), 2))
    assert rd.entries == [new]
    assert f.last_index == 3 and f.entry_at(3) == new
    assert f.entries_from(1) == log[:2] + [new]
    assert rd.messages_after_persist == [AppendEntriesResponse(3, "b", "a", True, 3)]
    assert f.commit_index == 2


def test_matching_entries_are_not_truncated() -> None:
    """Fig. 2 rule 3 only deletes on a *conflict*: a delayed append whose entries we already
    hold must not shorten the log."""
    log = [noop(1, 1), cmd(1, 2), cmd(1, 3), cmd(1, 4)]
    f = make("b", hard_state=HardState(1, None), entries=log)
    rd = f.step(AppendEntries(1, "a", "b", 1, 1, (log[1],), 0))
    assert rd.entries == [] and f.last_index == 4
    # Everything acked is already durable: the answer leaves at once, and claims index 2 only
    # (the last entry of *this* message; Fig. 2 rule 5 uses the same "index of last new entry").
    assert rd.messages == [AppendEntriesResponse(1, "b", "a", True, 2)]


def test_committed_prefix_is_never_touched() -> None:
    """§5.4 (Leader Completeness): a legitimate leader never conflicts with a committed entry;
    the core refuses (loudly) rather than rewrite one."""
    log = [noop(1, 1), cmd(1, 2), cmd(1, 3)]
    f = make("b", hard_state=HardState(1, None), entries=log)
    f.step(AppendEntries(1, "a", "b", 3, 1, (), 3))
    assert f.commit_index == 3
    with pytest.raises(AssertionError, match="committed"):
        f.step(AppendEntries(2, "c", "b", 1, 1, (cmd(2, 2, "bad"),), 3))
    assert f.entries_from(1) == log


def test_follower_commit_bounded_by_last_new_entry() -> None:
    """Fig. 2 rule 5: commitIndex = min(leaderCommit, index of last new entry)."""
    f = make("b")
    rd = f.step(AppendEntries(1, "a", "b", 0, 0, (noop(1, 1), cmd(1, 2)), 9))
    assert f.commit_index == 2
    assert [e.index for e in rd.applied] == [1, 2]


def test_reject_when_prev_entry_is_missing() -> None:
    """Fig. 2 rule 2: reply false if the log has no entry at prevLogIndex; the hint tells the
    leader where our log ends."""
    f = make("b", hard_state=HardState(1, None), entries=[noop(1, 1)])
    rd = f.step(AppendEntries(1, "a", "b", 5, 1, (cmd(1, 6),), 0))
    assert rd.messages == [AppendEntriesResponse(1, "b", "a", False, 5, conflict_index=2, conflict_term=0)]
    assert rd.entries == []


def test_fast_back_off_hint_skips_a_whole_conflicting_term() -> None:
    """§5.3 (the optimization at the end of the section): the follower names the conflicting
    term and the first index it holds for it, and the leader skips back in one round trip."""
    follower_log = [noop(1, 1), cmd(1, 2)] + [cmd(2, i) for i in range(3, 9)]
    f = make("b", hard_state=HardState(2, None), entries=follower_log)
    rd = f.step(AppendEntries(3, "a", "b", 8, 3, (), 0))
    (rej,) = rd.messages_after_persist  # it adopts term 3: its answer waits for that to be durable
    assert isinstance(rej, AppendEntriesResponse) and not rej.success
    assert (rej.conflict_index, rej.conflict_term) == (3, 2)

    # The leader of term 3 never had term 2: it resumes right at index 3, skipping five probes.
    leader_log = [noop(1, 1), cmd(1, 2)] + [noop(3, i) for i in range(3, 9)]
    lead = make("a", hard_state=HardState(3, "a"), entries=leader_log)
    # Make it leader of term 4 quickly (single pre-vote + vote from c).
    settle(lead, lead.campaign())
    settle(lead, lead.step(RequestVoteResponse(4, "c", "a", True, pre_vote=True)))
    settle(lead, lead.step(RequestVoteResponse(4, "c", "a", True)))
    assert lead.role == "leader" and lead.last_index == 9
    rd = lead.step(AppendEntriesResponse(4, "b", "a", False, 9, conflict_index=3, conflict_term=2))
    (probe,) = of_type(rd.messages, AppendEntries)
    assert probe.prev_index == 2 and probe.prev_term == 1


def test_back_off_uses_leader_entries_of_the_conflicting_term() -> None:
    """§5.3 / etcd findConflictByTerm: when the leader holds the follower's conflicting term,
    it resumes after its own last entry of that term."""
    leader_log = [noop(1, 1)] + [cmd(2, i) for i in range(2, 5)] + [cmd(3, i) for i in range(5, 8)]
    lead = make("a", hard_state=HardState(3, "a"), entries=leader_log)
    settle(lead, lead.campaign())
    settle(lead, lead.step(RequestVoteResponse(4, "c", "a", True, pre_vote=True)))
    settle(lead, lead.step(RequestVoteResponse(4, "c", "a", True)))
    # b holds term-2 entries from 2 to 9 (the old leader of term 2 got further with it).
    rd = lead.step(AppendEntriesResponse(4, "b", "a", False, 8, conflict_index=2, conflict_term=2))
    (probe,) = of_type(rd.messages, AppendEntries)
    assert (probe.prev_index, probe.prev_term) == (4, 2)


def test_stale_rejection_is_ignored() -> None:
    """etcd Progress: a rejection for an index below what is known to match is old news."""
    lead = replicating_leader()
    rd = lead.step(AppendEntriesResponse(1, "b", "a", False, 0, conflict_index=1))
    assert rd.messages == [] and lead._progress["b"].match == 1


class Blob:
    """A value that accepts any command (here: 100-byte payloads)."""

    def __init__(self) -> None:
        self.n = 0

    def command(self, arg: object) -> int:
        self.n += 1
        return self.n

    def query(self, arg: object) -> int:
        return self.n


def lagging_follower_net(cfg: CoreConfig, n: int) -> tuple[Net, RaftNode, str]:
    """Leader and one follower commit ``n`` 100-byte commands while the third member is down."""
    net = Net("abc", cfg=cfg, data=Blob)
    lead = net.elect()
    lag = next(i for i in "abc" if i != lead.id)
    net.down.add(lag)
    for k in range(n):
        assert net.propose(lead.id, k, k, b"x" * 100) == Ok(k + 1)
    net.down.discard(lag)
    net.sent.clear()
    return net, lead, lag


def test_batching_bounded_by_max_entries_per_msg() -> None:
    """etcd MaxSizePerMsg-style batching: a follower catching up gets many entries per
    append, never more than max_entries_per_msg."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_entries_per_msg=3)
    net, lead, lag = lagging_follower_net(cfg, 10)
    net.tick_all(2 * cfg.heartbeat_ticks)
    sizes = [len(m.entries) for m in of_type(net.sent, AppendEntries) if m.to == lag and m.entries]
    assert max(sizes) == 3
    assert net.nodes[lag].last_index == lead.last_index


def test_batching_bounded_by_max_bytes_per_msg() -> None:
    """Batching stops at max_bytes_per_msg (a bytes command of 100 bytes counts 132), but a
    single entry is always sent, however large."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_bytes_per_msg=300)
    net, lead, lag = lagging_follower_net(cfg, 10)
    net.tick_all(2 * cfg.heartbeat_ticks)
    sizes = [len(m.entries) for m in of_type(net.sent, AppendEntries) if m.to == lag and m.entries]
    assert max(sizes) == 2
    assert net.nodes[lag].last_index == lead.last_index

    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_bytes_per_msg=10)
    net, lead, lag = lagging_follower_net(cfg, 3)
    net.tick_all(2 * cfg.heartbeat_ticks)
    sizes = [len(m.entries) for m in of_type(net.sent, AppendEntries) if m.to == lag and m.entries]
    assert max(sizes) == 1
    assert net.nodes[lag].last_index == lead.last_index


def test_appends_pipelined_up_to_max_inflight_msgs() -> None:
    """etcd Inflights: in the replicate state several appends are in flight at once, at most
    max_inflight_msgs; each acknowledgement frees a slot."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_inflight_msgs=3)
    lead = replicating_leader(cfg)
    sent = []
    for k in range(6):
        rd = lead.propose(k, k, ("put", k, k))
        sent += [m for m in of_type(rd.messages, AppendEntries) if m.to == "b"]
    assert [m.entries[0].index for m in sent] == [2, 3, 4]
    rd = ack(lead, "b", 2)
    more = [m for m in of_type(rd.messages, AppendEntries) if m.to == "b"]
    # One slot freed: the rest (5..7) go in one batched append.
    assert [tuple(e.index for e in m.entries) for m in more] == [(5, 6, 7)]


def test_lost_pipelined_append_recovered_after_heartbeat() -> None:
    """etcd Progress: appends lost in the replicate state leave no progress for a whole
    heartbeat; the leader falls back to probing from the known match and resends."""
    net = Net("abc")
    lead = net.elect()
    f = next(i for i in "abc" if i != lead.id)
    dropped: list[AppendEntries] = []

    def drop(m: Message) -> bool:
        if isinstance(m, AppendEntries) and m.to == f and m.entries and not dropped:
            dropped.append(m)
            return True
        return False

    net.drop = drop
    assert net.propose(lead.id, "r", "x", ("put", "k", 1)) == Ok(None)  # c (or b) suffices
    assert dropped and net.nodes[f].last_index < lead.last_index
    net.tick_all(2 * CFG.heartbeat_ticks)
    assert net.nodes[f].last_index == lead.last_index
    assert net.nodes[f].commit_index == lead.commit_index


def test_lost_probe_is_resent_on_heartbeat() -> None:
    """etcd Progress probe state: one append at a time; a lost probe is retried at the
    next heartbeat."""
    lead = make_leader("a")
    for _ in range(CFG.heartbeat_ticks - 1):
        assert of_type(lead.tick().messages, AppendEntries) == []
    rd = lead.tick()
    to_b = [m for m in of_type(rd.messages, AppendEntries) if m.to == "b"]
    assert any(m.entries and m.entries[0].index == 1 for m in to_b)


def test_heartbeat_carries_commit_to_followers() -> None:
    """§5.3: followers learn the commit index from later appends or heartbeats, bounded by
    what they are known to hold."""
    net = Net("abc")
    lead = net.elect()
    net.propose(lead.id, "r", "x", ("put", "k", 1))
    net.tick_all(CFG.heartbeat_ticks)
    assert all(n.commit_index == lead.commit_index for n in net.nodes.values())
    assert all(n.query_local(("get", "k")) == 1 for n in net.nodes.values())


def test_follower_far_behind_catches_up_through_probing() -> None:
    """§5.3: after an election the new leader finds each follower's position by probing and
    brings it up to date; the logs end identical (Log Matching)."""
    net = Net("abc")
    lead = net.elect()
    lag = next(i for i in "abc" if i != lead.id)
    net.down.add(lag)
    for k in range(20):
        net.propose(lead.id, k, k, ("put", k, k))
    net.down.discard(lag)
    net.tick_all(3 * CFG.heartbeat_ticks)
    assert net.nodes[lag].entries_from(1) == lead.entries_from(1)
