"""Safety: Raft §5.4 (the commitment rule of §5.4.2 and Figure 8, State Machine Safety),
and what rafted_value adds on top of the log (§4.4 of the reference): command
de-duplication by id, replicated and in snapshots, and commands that raise leaving the
value unchanged on every replica."""

from __future__ import annotations

import random
from typing import Any

import pytest
from raft_harness import Net, make, make_leader, noop, settle

from raftfleet_ray.data import Counter, KeyValue
from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Command,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    Ok,
    RaftNode,
    Raised,
)
from raftfleet_ray.raft import bugs as planted

FIVE = ("a", "b", "c", "d", "e")


def cmd(term: int, index: int, cmd_id: object, arg: object) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, Command(cmd_id, arg))


class Fragile(KeyValue):
    """A KeyValue whose ``("boom", k)`` changes the value half-way and then raises."""

    def command(self, arg: Any) -> Any:
        if arg[0] == "boom":
            self.items[arg[1]] = "half-done"
            raise RuntimeError("boom")
        return super().command(arg)


# ---------------------------------------------------------------------------------------
# §5.4.2: only entries of the current term are committed by counting replicas.


def figure8_leader(bugs: frozenset[str] = frozenset()) -> RaftNode:
    """Figure 8 (c): S1 (here ``a``) was leader of term 2 and got (2, 2) onto S2; S5 led term
    3 without reaching anyone; now S1 leads term 4 and replicates (2, 2) to S3."""
    lead = make_leader("a", members=FIVE, hard_state=HardState(3, None),
                       entries=[noop(1, 1, FIVE), cmd(2, 2, "x", ("put", "k", 2))], bugs=bugs)
    assert lead.term == 4 and lead.last_index == 3  # its no-op of term 4 is at index 3
    return lead


def test_figure8_old_term_entry_not_committed_by_counting() -> None:
    """§5.4.2 / Figure 8: an entry of an earlier term stored on a majority is not committed by
    counting; it commits only together with an entry of the leader's own term."""
    lead = figure8_leader()
    lead.step(AppendEntriesResponse(4, "b", "a", True, 2))
    lead.step(AppendEntriesResponse(4, "c", "a", True, 2))
    assert lead.commit_index == 0, "an entry of term 2 committed by counting in term 4"
    lead.step(AppendEntriesResponse(4, "b", "a", True, 3))
    lead.step(AppendEntriesResponse(4, "c", "a", True, 3))
    assert lead.commit_index == 3


def test_figure8_planted_bug_is_visible() -> None:
    """The test above has teeth: with the COMMIT_OLD_TERM planted bug, index 2 commits."""
    lead = figure8_leader(frozenset({planted.COMMIT_OLD_TERM}))
    lead.step(AppendEntriesResponse(4, "b", "a", True, 2))
    lead.step(AppendEntriesResponse(4, "c", "a", True, 2))
    assert lead.commit_index == 2


def test_figure8_overwritten_entry_never_applied() -> None:
    """Figure 8 (d): the uncommitted (2, 2) may be overwritten by a leader of term 3 (S5);
    a follower that held it truncates and never applies it."""
    f = make("b", members=FIVE, hard_state=HardState(2, None),
             entries=[noop(1, 1, FIVE), cmd(2, 2, "x", ("put", "k", 2))])
    e5 = cmd(3, 2, "y", ("put", "k", 3))
    rd = f.step(AppendEntries(5, "e", "b", 1, 1, (e5,), 2))
    assert rd.entries == [e5] and f.commit_index == 2
    assert f.query_local(("get", "k")) == 3


# ---------------------------------------------------------------------------------------
# De-duplication by command id (rafted_value CommandResults).


def test_retry_answered_from_cache_without_new_entry() -> None:
    """rafted_value §4.4: a retry of an applied command is answered with the first result and
    appends nothing."""
    net = Net("abc", data=Counter)
    lead = net.elect()
    assert net.propose(lead.id, "r1", "x", "inc") == Ok(0)
    last = lead.last_index
    rd = net.do(lead.id, lambda n: n.propose("r2", "x", "inc"))
    assert rd.entries == [] and rd.replies[0].result == Ok(0)
    assert lead.last_index == last and lead.data.value == 1


def test_retry_while_in_flight_is_answered_once_with_the_result() -> None:
    """A retry that arrives while the command is still in the leader's log waits for it;
    both callers get the one result."""
    net = Net("abc", data=Counter)
    lead = net.elect()
    rd1 = net.do(lead.id, lambda n: n.propose("r1", "x", "inc"))
    rd2 = net.do(lead.id, lambda n: n.propose("r2", "x", "inc"))
    assert len(rd1.entries) == 1 and rd2.entries == []
    net.deliver()
    assert net.reply_for("r1") == net.reply_for("r2") == Ok(0)
    assert lead.data.value == 1


def leader_change_with_uncommitted(net: Net, cmd_id: str, arg: object) -> tuple[RaftNode, str]:
    """The leader gets ``arg`` onto every follower but hears no ack, then goes down."""
    lead = net.elect()
    net.drop = lambda m: isinstance(m, AppendEntriesResponse)
    net.do(lead.id, lambda n: n.propose("first", cmd_id, arg))
    net.deliver()
    assert all(n.last_index == lead.last_index for n in net.nodes.values())
    assert net.reply_for("first") is None
    net.drop = lambda m: False
    net.down.add(lead.id)
    return lead, lead.id


def test_retry_after_leader_change_applied_once() -> None:
    """rafted_value §4.4: the command results are replicated state, so a retry with the same
    id at the next leader is answered with the first result and not applied again."""
    net = Net("abc", data=Counter)
    _, old = leader_change_with_uncommitted(net, "x", "inc")
    new = net.elect()
    assert new.id != old and new.data.value == 1
    last = new.last_index
    assert net.propose(new.id, "retry", "x", "inc") == Ok(0)
    assert new.last_index == last
    net.tick_all(2)  # followers learn the commit index with the next heartbeat
    assert all(n.data.value == 1 for i, n in net.nodes.items() if i != old)


def test_retry_appended_again_before_first_commits_is_applied_once() -> None:
    """A retry reaching a new leader before its no-op commits is appended a second time (the
    cache is filled at apply time); the second copy is skipped when applied, and the caller
    gets the first copy's result."""
    net = Net("abc", data=Counter)
    _, old = leader_change_with_uncommitted(net, "x", "inc")
    net.drop = lambda m: isinstance(m, AppendEntriesResponse)
    for _ in range(100):
        net.tick_all()
        new = net.leader()
        if new is not None:
            break
    assert new is not None and new.commit_index < new._term_start_index
    rd = net.do(new.id, lambda n: n.propose("retry", "x", "inc"))
    assert len(rd.entries) == 1  # a second copy of x
    net.drop = lambda m: False
    net.tick_all(4)
    assert net.reply_for("retry") == Ok(0)
    assert all(n.data.value == 1 for i, n in net.nodes.items() if i != old)


def test_dedup_cache_evicts_oldest_after_max_retained() -> None:
    """rafted_value §4.4: only the last max_retained_command_results ids are remembered
    (FIFO); an evicted id is a new command."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_retained_command_results=2)
    net = Net("a", cfg=cfg, data=Counter)
    lead = net.elect()
    for k in ("c1", "c2", "c3"):
        net.propose("a", k, k, "inc")
    assert lead.data.value == 3
    assert net.propose("a", "again3", "c3", "inc") == Ok(2)  # still cached
    assert lead.data.value == 3
    assert net.propose("a", "again1", "c1", "inc") == Ok(3)  # evicted: executed again
    assert lead.data.value == 4


# ---------------------------------------------------------------------------------------
# Commands that raise.


def values(net: Net) -> list[dict]:
    return [dict(n.data.items) for n in net.nodes.values()]


def test_raising_command_is_answered_raised_and_changes_nothing() -> None:
    """data.py contract: a command that raises is answered with the exception and the value
    is left as it was, on every replica, also after later commands."""
    net = Net("abc", data=Fragile)
    lead = net.elect()
    net.propose(lead.id, "p", "p", ("put", "k", 1))
    res = net.propose(lead.id, "b", "b", ("boom", "k"))
    assert isinstance(res, Raised) and isinstance(res.exc, RuntimeError)
    net.tick_all(2)
    assert values(net) == [{"k": 1}] * 3
    net.propose(lead.id, "q", "q", ("put", "j", 2))
    net.tick_all(2)
    assert values(net) == [{"k": 1, "j": 2}] * 3
    # A retry of the raising command is answered from the cache, not re-run.
    assert net.propose(lead.id, "b2", "b", ("boom", "k")) == res


def test_raising_command_survives_snapshots_and_catch_up() -> None:
    """§7 + data.py: the rolled-back value is what snapshots hold, so a follower that catches
    up from a snapshot, and a member restarted from its disk, agree with the others."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=3, log_retention=0)
    net = Net("abc", cfg=cfg, data=Fragile)
    lead = net.elect()
    lag = next(i for i in "abc" if i != lead.id)
    net.down.add(lag)
    net.propose(lead.id, 1, 1, ("put", "k", 1))
    net.propose(lead.id, 2, 2, ("boom", "k"))
    for k in range(3, 8):
        net.propose(lead.id, k, k, ("put", k, k))
    assert lead.snapshot_meta is not None and lead.first_index > 2
    net.down.discard(lag)
    net.tick_all(4)
    want = {"k": 1, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7}
    assert values(net) == [want] * 3
    # Restart the member that caught up from its disk: snapshot + log, then the leader's commit.
    back = net.disks[lag].restart(lag, cfg, data=Fragile)
    assert back.snapshot_meta is not None
    net.add_node(back)
    net.tick_all(4)
    assert values(net) == [want] * 3


def test_rollback_does_not_replay_deduplicated_commands() -> None:
    """Regression: rolling back after a raising command replayed every command since the
    snapshot, including a duplicate that had been answered from the cache, so the value got
    that command twice. The duplicate must stay skipped."""
    log = [noop(1, 1, ("a",)), cmd(1, 2, "x", "inc"), cmd(1, 3, "x", "inc"), cmd(1, 4, "y", "bad")]
    node = make("a", members=("a",), data=Counter, hard_state=HardState(1, "a"), entries=log)
    settle(node, node.campaign())
    assert node.role == "leader" and node.applied_index == 5
    assert node.data.value == 1


def test_rollback_after_duplicate_from_leader_change_keeps_replicas_right() -> None:
    """Regression, end to end: a retry appended twice across a leader change, then a raising
    command. Every replica must hold the command once."""
    net = Net("abc", data=Counter)
    _, old = leader_change_with_uncommitted(net, "x", "inc")
    net.drop = lambda m: isinstance(m, AppendEntriesResponse)
    new = None
    for _ in range(100):
        net.tick_all()
        new = net.leader()
        if new is not None:
            break
    assert new is not None
    net.do(new.id, lambda n: n.propose("retry", "x", "inc"))
    net.drop = lambda m: False
    net.tick_all(4)
    res = net.propose(new.id, "bad", "bad", "oops")
    assert isinstance(res, Raised)
    net.tick_all(2)
    assert [n.data.value for i, n in net.nodes.items() if i != old] == [1, 1]


# ---------------------------------------------------------------------------------------
# State Machine Safety under loss, crashes and restarts.


@pytest.mark.parametrize("seed", range(6))
def test_state_machine_safety_randomized(seed: int) -> None:
    """§5.4.3 State Machine Safety and Log Matching: under message loss, crashes and
    restarts from disk, no two members apply different entries at one index, and every
    committed prefix agrees. Replays exactly from ``seed``."""
    rng = random.Random(seed)
    ids = "abcde"
    net = Net(ids, seed=seed, data=Counter)
    net.drop = lambda m: rng.random() < 0.15
    applied: dict[int, Entry] = {}
    leaders: dict[int, str] = {}
    k = 0
    for step in range(300):
        if step % 40 == 0:
            # Crash (losing memory, keeping the disk) one member, restart another.
            victim = rng.choice(ids)
            net.nodes[victim] = net.disks[victim].restart(
                victim, net.cfg, members=ids, data=Counter, seed=seed * 7 + step)
            net.down = set(rng.sample(ids, rng.randint(0, 2)))
        lead = net.leader()
        if lead is not None and rng.random() < 0.5:
            k += 1
            net.do(lead.id, lambda n, k=k: n.propose(k, k, "inc"))
        net.tick_all()
        for i, n in net.nodes.items():
            if n.role == "leader":
                assert leaders.setdefault(n.term, i) == i
        for rds in net.readies.values():
            for rd in rds:
                for e in rd.applied:
                    assert applied.setdefault(e.index, e) == e, f"seed={seed} index {e.index}"
            rds.clear()
    nodes = list(net.nodes.values())
    for x in nodes:
        for y in nodes:
            hi = min(x.commit_index, y.commit_index)
            lo = max(x.first_index, y.first_index)
            assert x.entries_from(lo, hi) == y.entries_from(lo, hi), f"seed={seed}"
    assert leaders
