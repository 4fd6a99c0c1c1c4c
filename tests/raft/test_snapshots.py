"""Snapshots and log compaction: Raft §7 (InstallSnapshot, sent in chunks; a follower keeps
the log suffix that matches the snapshot), rafted_value's snapshot contents (the value and the
de-dup cache, reference §4.6) and recovery from durable state (§4.7)."""

from __future__ import annotations

import copy

import pytest
from raft_harness import CFG, Net, make, make_leader, noop, of_type, settle

from raftfleet_ray.data import Counter
from raftfleet_ray.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Command,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Ok,
    RaftNode,
    Snapshot,
    SnapshotMeta,
)

T = CFG.election_ticks


def snap_cfg(**kw) -> CoreConfig:
    base = dict(election_ticks=10, heartbeat_ticks=2, snapshot_interval=5, log_retention=0,
                snapshot_chunk_bytes=64)
    base.update(kw)
    return CoreConfig(**base)


def run_commands(lead: RaftNode, n: int, start: int = 0) -> list:
    """Propose ``n`` commands on a single-member leader, persisting each Ready."""
    readies = []
    for k in range(start, start + n):
        readies += settle(lead, lead.propose(k, k, ("put", k, k)))
    return readies


def test_snapshot_taken_every_snapshot_interval_applied_entries() -> None:
    """§7: each server snapshots its applied state on its own, here every snapshot_interval
    applied entries; the snapshot records the last included index, term and configuration."""
    lead = make_leader("a", members=("a",), cfg=snap_cfg())
    readies = run_commands(lead, 9)
    snaps = [rd.snapshot for rd in readies if rd.snapshot is not None]
    assert [s.meta for s in snaps] == [SnapshotMeta(5, 1, ("a",)), SnapshotMeta(10, 1, ("a",))]


def test_log_compacted_keeping_log_retention_entries() -> None:
    """§7: the log up to the snapshot may be discarded; log_retention entries before it are
    kept so a slightly lagging follower still gets plain appends."""
    lead = make_leader("a", members=("a",), cfg=snap_cfg(log_retention=2))
    run_commands(lead, 4)
    assert lead.snapshot_meta is not None and lead.snapshot_meta.index == 5
    assert lead.first_index == 4 and lead.last_index == 5
    assert lead.term_at(3) == 1 and lead.term_at(2) is None


def lagging(cfg: CoreConfig, n: int = 12) -> tuple[Net, RaftNode, str]:
    net = Net("abc", cfg=cfg)
    lead = net.elect()
    lag = next(i for i in "abc" if i != lead.id)
    net.down.add(lag)
    for k in range(n):
        assert net.propose(lead.id, k, k, ("put", k, k)) == Ok(None)
    assert lead.first_index > 1
    net.down.discard(lag)
    net.sent.clear()
    return net, lead, lag


def test_lagging_follower_gets_snapshot_in_chunks() -> None:
    """§7: a follower behind the leader's log start receives the snapshot, in chunks of at most
    snapshot_chunk_bytes sent one at a time, each acknowledged; then plain appends resume."""
    cfg = snap_cfg()
    net, lead, lag = lagging(cfg)
    net.tick_all(2 * cfg.heartbeat_ticks)
    chunks = [m for m in net.sent if isinstance(m, InstallSnapshot) and m.to == lag]
    assert len(chunks) > 2
    assert all(len(c.chunk) <= cfg.snapshot_chunk_bytes for c in chunks)
    offsets = [c.offset for c in chunks]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert all(c.meta == lead.snapshot_meta for c in chunks)
    tiles = dict((c.offset, c.chunk) for c in chunks)
    assert b"".join(tiles[o] for o in sorted(tiles)) == lead._snap.data
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])
    f = net.nodes[lag]
    assert f.data == lead.data and f.commit_index == lead.commit_index
    assert f.last_index == lead.last_index and f._results == lead._results
    assert lead._progress[lag].state == "replicate"
    # Later commands reach it by plain appends.
    net.sent.clear()
    net.propose(lead.id, "z", "z", ("put", "z", 1))
    assert not [m for m in net.sent if isinstance(m, InstallSnapshot)]
    assert f.last_index == lead.last_index


def test_follower_answers_each_chunk_and_installs_on_the_last() -> None:
    """§7 receiver: chunks are written at their offset; the state is replaced only when
    ``done``; the follower then acknowledges the snapshot index, after persisting it."""
    leader_node = make_leader("a", members=("a",), cfg=snap_cfg())
    run_commands(leader_node, 4)
    snap = leader_node._snap
    assert snap is not None
    f = make("b", members=("a", "b"))
    data = snap.data
    rd = f.step(InstallSnapshot(1, "a", "b", snap.meta, 0, data[:10], False))
    assert rd.messages == [InstallSnapshotResponse(1, "b", "a", snap.meta.index, 10)]
    assert f.commit_index == 0 and rd.snapshot is None
    # An out-of-order chunk is refused with what we have.
    rd = f.step(InstallSnapshot(1, "a", "b", snap.meta, 20, data[20:30], False))
    assert rd.messages == [InstallSnapshotResponse(1, "b", "a", snap.meta.index, 10)]
    rd = f.step(InstallSnapshot(1, "a", "b", snap.meta, 10, data[10:], True))
    assert rd.snapshot == snap
    assert f.commit_index == f.applied_index == snap.meta.index == f.first_index - 1
    assert f.data == leader_node.data
    assert rd.messages_after_persist == [AppendEntriesResponse(1, "b", "a", True, snap.meta.index)]


def test_install_keeps_matching_suffix_and_drops_conflicting_log() -> None:
    """§7: if the follower has the snapshot's last entry (same index and term), the entries
    after it are kept; otherwise the whole log is discarded."""
    snapper = make_leader("a", members=("a",), cfg=snap_cfg())
    run_commands(snapper, 4)  # snapshot at 5, term 1
    snap = snapper._snap
    assert snap is not None and snap.meta.index == 5
    log = [noop(1, 1, ("a",))] + [Entry(1, i, EntryKind.COMMAND, Command(i, ("put", i, i))) for i in range(2, 9)]
    f = make("b", members=("a",), hard_state=HardState(1, None), entries=log)
    f.step(InstallSnapshot(1, "a", "b", snap.meta, 0, snap.data, True))
    assert f.first_index == 6 and f.last_index == 8
    other = [noop(1, 1, ("a",))] + [Entry(1, 2, EntryKind.COMMAND, Command(2, ("put", 2, 2)))] + [
        Entry(2, i, EntryKind.NOOP, ("a",)) for i in range(3, 9)]
    g = make("c", members=("a",), hard_state=HardState(2, None), entries=other)
    g.step(InstallSnapshot(2, "a", "c", snap.meta, 0, snap.data, True))
    assert g.first_index == 6 and g.last_index == 5


def test_snapshot_already_covered_is_acknowledged_not_reinstalled() -> None:
    """§7 receiver rule: a snapshot at or below what we have committed changes nothing."""
    cfg = snap_cfg()
    net, lead, lag = lagging(cfg)
    net.tick_all(2 * cfg.heartbeat_ticks)
    f = net.nodes[lag]
    snap = lead._snap
    assert snap is not None
    rd = f.step(InstallSnapshot(lead.term, lead.id, lag, snap.meta, 0, snap.data[:5], False))
    assert rd.snapshot is None
    assert of_type(rd.messages, AppendEntriesResponse)[0].match_index == f.commit_index


def test_lost_snapshot_chunk_is_resent_on_heartbeat() -> None:
    """§7: a chunk (or its answer) that is lost is sent again at the next heartbeat."""
    cfg = snap_cfg()
    net, lead, lag = lagging(cfg)
    dropped: list = []

    def drop(m: Message) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset > 0 and not dropped:
            dropped.append(m)
            return True
        return False

    net.drop = drop
    net.tick_all(4 * cfg.heartbeat_ticks)
    assert dropped
    assert net.nodes[lag].data == lead.data and net.nodes[lag].last_index == lead.last_index


def test_lost_ack_after_install_does_not_stall_the_follower() -> None:
    """Regression: the leader waited for the follower's AppendEntriesResponse after the last
    chunk and sent nothing else to it (not even heartbeats) until a new command arrived; when
    that ack was lost the follower, hearing nothing, never caught up. The leader now resends
    the last chunk at each heartbeat until the ack comes."""
    cfg = snap_cfg()
    net, lead, lag = lagging(cfg)
    snap_index = lead.snapshot_meta.index
    dropped: list = []

    def drop(m: Message) -> bool:
        if (isinstance(m, AppendEntriesResponse) and m.frm == lag and m.success
                and m.match_index >= snap_index and not dropped):
            dropped.append(m)
            return True
        return False

    net.drop = drop
    net.tick_all(4 * T)
    assert dropped
    f = net.nodes[lag]
    assert f.role == "follower" and f.leader_id == lead.id
    assert f.last_index == lead.last_index and f.commit_index == lead.commit_index
    assert lead._progress[lag].state == "replicate"


def test_follower_that_crashed_before_persisting_the_snapshot_gets_it_again() -> None:
    """§7: the leader restarts the transfer from the offset the follower reports, here 0 from
    a follower that lost the snapshot it had not yet made durable."""
    cfg = snap_cfg()
    net, lead, lag = lagging(cfg)
    before = copy.deepcopy(net.disks[lag])  # its disk before the snapshot was written
    # Every chunk reaches the follower, but its ack is lost and it crashes before the write.
    net.drop = lambda m: isinstance(m, AppendEntriesResponse) and m.frm == lag and m.success
    net.tick_all(cfg.heartbeat_ticks)
    assert lead._progress[lag].state == "snapshot"
    net.nodes[lag] = before.restart(lag, cfg, members=("a", "b", "c"))
    net.disks[lag] = before
    net.drop = lambda m: False
    net.tick_all(4 * T)
    f = net.nodes[lag]
    assert f.data == lead.data and f.last_index == lead.last_index
    assert lead._progress[lag].state == "replicate"


def test_restart_from_durable_state_restores_value_and_dedup_cache() -> None:
    """Reference §4.7 / Fig. 2 "persistent state": a member rebuilt from (hard state, snapshot,
    log) has the same value and the same de-dup cache; after it leads again, a retry of a
    command applied before the crash is answered from the cache and appends nothing."""
    cfg = snap_cfg(log_retention=1)
    net = Net("a", cfg=cfg, data=Counter)
    lead = net.elect()
    for k in range(8):
        assert net.propose("a", f"r{k}", f"c{k}", "inc") == Ok(k)
    disk = net.disks["a"]
    assert disk.snapshot is not None and disk.snapshot.meta.index == 5
    assert disk.hard_state == HardState(lead.term, "a")
    back = disk.restart("a", cfg, members=("a",), data=Counter)
    assert back.data.value == 4  # the snapshot: the no-op and c0..c3
    assert back.commit_index == 5 and back.last_index == lead.last_index
    assert "c2" in back._results
    net2 = Net([], cfg=cfg, data=Counter)
    net2.add_node(back)
    net2.disks["a"] = disk
    assert net2.elect() is back
    assert back.data.value == 8
    last = back.last_index
    assert net2.propose("a", "again2", "c2", "inc") == Ok(2)  # from the snapshot's cache
    assert net2.propose("a", "again7", "c7", "inc") == Ok(7)  # from the replayed log
    assert back.last_index == last and back.data.value == 8


def test_snapshot_is_what_the_next_install_carries() -> None:
    """A snapshot decodes to the value and the de-dup cache (reference §4.6)."""
    lead = make_leader("a", members=("a",), cfg=snap_cfg(), data=Counter)
    for k in range(4):
        settle(lead, lead.propose(k, f"c{k}", "inc"))
    snap = lead._snap
    assert isinstance(snap, Snapshot)
    f = make("b", members=("a", "b"), data=Counter)
    f.step(InstallSnapshot(1, "a", "b", snap.meta, 0, snap.data, True))
    assert f.data.value == 4 and f._results == lead._results
    assert f.members == ("a",)


def test_append_overlapping_the_snapshot_is_trimmed() -> None:
    """§7: an append whose start is inside our snapshot is anchored at the snapshot's end
    (everything before it is committed, hence identical)."""
    snapper = make_leader("a", members=("a",), cfg=snap_cfg())
    run_commands(snapper, 4)
    snap = snapper._snap
    f = make("b", members=("a",))
    f.step(InstallSnapshot(1, "a", "b", snap.meta, 0, snap.data, True))
    es = tuple(Entry(1, i, EntryKind.COMMAND, Command(i, ("put", i, i))) for i in range(4, 8))
    rd = f.step(AppendEntries(1, "a", "b", 3, 1, es, 7))
    assert [e.index for e in rd.entries] == [6, 7]
    assert f.last_index == 7 and f.commit_index == 7


def test_a_follower_never_snapshots_inside_entries_that_are_not_durable_yet() -> None:
    """The storage bug from the persistence issue: a follower that receives entries the
    leader has already committed appends, commits and applies them in one step. Had it taken
    a snapshot at an index inside those same entries, the Ready would say "snapshot, then
    entries" with entries below the snapshot: an impossible write (the snapshot drops the log,
    the entries start below its base). A snapshot covers only durable state: it waits for the
    write, and comes with the Ready of ``on_persisted``."""
    cfg = snap_cfg(snapshot_interval=3)
    f = RaftNode("f", cfg, Counter, __import__("random").Random(1), members=("l", "f"))
    ents = (Entry(1, 1, EntryKind.NOOP, ("l", "f")),) + tuple(
        Entry(1, i, EntryKind.COMMAND, Command(("c", i), "inc")) for i in range(2, 7))
    rd = f.step(AppendEntries(1, "l", "f", 0, 0, ents, commit=6))
    assert rd.entries and rd.entries[0].index == 1
    assert f.applied_index == 6  # applied at once: the leader committed them
    assert rd.snapshot is None, "a snapshot inside entries that are not durable yet"
    rd2 = f.on_persisted(rd.persist_seq)
    assert rd2.snapshot is not None and rd2.snapshot.meta.index == 6 and not rd2.entries


def test_restored_snapshot_carries_the_value_of_snapshot_plus_log_to_a_new_group() -> None:
    """raft_fleet's restore from files: the newest member's snapshot and log become one
    snapshot of a new 1-member group at the same index, value and de-dup cache included
    (a client retrying a command the old group applied gets its old answer)."""
    import random

    from raftfleet_ray.raft import restored_snapshot

    cfg = snap_cfg(snapshot_interval=4)
    old = RaftNode("a", cfg, Counter, random.Random(1), members=("a",))
    settle(old, old.campaign())
    for k in range(7):
        settle(old, old.propose(k, ("c", k), "inc"))
    assert old.data.query(None) == 7 and old.snapshot_meta is not None  # snapshot at 4, log after
    state = (HardState(old.term, "a"), old._snap, old.entries_from(old._base + 1))
    snap = restored_snapshot(state, cfg, Counter, ("new#g#1",), random.Random(2))
    assert snap.meta.index == old.last_index and snap.meta.members == ("new#g#1",)
    new = RaftNode("new#g#1", cfg, Counter, random.Random(3), snapshot=snap, hard_state=HardState(snap.meta.term, None))
    settle(new, new.campaign())
    assert new.role == "leader" and new.data.query(None) == 7
    rds = settle(new, new.propose(99, ("c", 3), "inc"))  # a retry of an old command: not applied again
    assert new.data.query(None) == 7, rds


def test_a_restore_is_born_whole_and_acknowledges_only_once_a_majority_holds_it() -> None:
    """Issue 14: a restore from files starts every voter of the new configuration at once;
    the one that leads gets the restored snapshot (``bootstrap(voters, restored=...)``), the
    others start empty and get it from the leader. Nothing commits beyond the restored index
    until a majority of the new configuration holds the snapshot, and the new leader's term
    follows the restored log's."""
    import random

    from raftfleet_ray.raft import restored_snapshot

    cfg = snap_cfg(snapshot_interval=4)
    old = RaftNode("a", cfg, Counter, random.Random(1), members=("a",))
    settle(old, old.campaign())
    for _ in range(3):  # a few terms, so the restored term is not 1
        old._set_term(old.term + 1, None)
        settle(old, old.campaign())
    for k in range(7):
        settle(old, old.propose(k, ("c", k), "inc"))
    state = (HardState(old.term, "a"), old._snap, old.entries_from(old._base + 1))
    voters = ("x", "y", "z")
    snap = restored_snapshot(state, cfg, Counter, voters, random.Random(2))
    net = Net([], cfg)
    for v in voters:
        net.add_node(RaftNode(v, cfg, Counter, random.Random(ord(v)), members=()))
    with pytest.raises(ValueError, match="restored snapshot of voters"):
        net.nodes["x"].bootstrap(voters, restored=restored_snapshot(state, cfg, Counter, ("x",), random.Random(2)))
    rd = net.do("x", lambda n: n.bootstrap(voters, restored=snap))
    assert rd.snapshot == snap and rd.hard_state == HardState(old.term, None)
    # The others stay passive (no configuration): they never campaign, so none of them can
    # lead the group with an empty log (two empty voters are a majority; the fleet simulator
    # found a follower given the configuration winning an election by timeout and
    # acknowledging writes on the empty value, seed 2049).
    net.down = {"x"}
    net.tick_all(50)
    assert all(net.nodes[v].role == "follower" and net.nodes[v].term == 0 for v in "yz")
    x = net.nodes["x"]
    assert x.data.query(None) == 7 and x.commit_index == snap.meta.index
    net.down = {"y", "z"}  # alone, it elects nobody and commits nothing new
    net.do("x", lambda n: n.campaign())
    net.deliver()
    net.tick_all(30)
    assert x.commit_index == snap.meta.index and x.role != "leader"
    net.down = {"z"}  # with one other voter, it leads, sends its snapshot and commits
    net.do("x", lambda n: n.campaign())
    net.deliver()
    net.tick_all(30)
    assert x.role == "leader" and x.term > old.term and x.commit_index > snap.meta.index
    y = net.nodes["y"]
    assert y.data.query(None) == 7 and y.commit_index == x.commit_index
    with pytest.raises(ValueError, match="already has"):
        x.bootstrap(voters, restored=snap)
