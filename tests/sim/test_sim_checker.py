"""The simulator's own checks must fire: a checker that never fails proves nothing.

Hand-made violations of each property (Raft §5.2 election safety, §5.3 log matching,
§5.4 leader completeness and state-machine safety) go straight into the checker; then
a core wrapped to misbehave runs inside the simulator, which must stop with the seed.
The fake disk's write semantics (the durability contract of ``Ready``) are tested here too.
"""

from __future__ import annotations

from typing import Any

import pytest

from raftfleet_ray.raft.node import RaftNode
from raftfleet_ray.raft.types import (
    Command,
    Entry,
    EntryKind,
    HardState,
    Ok,
    Ready,
    Snapshot,
    SnapshotMeta,
)
from raftfleet_ray.testing.sim_checker import SafetyChecker, SimViolation
from raftfleet_ray.testing.sim_disk import PendingWrite, SimDisk, StorageError
from raftfleet_ray.testing.simulator import Simulator


def cmd(term: int, index: int, arg: Any = ("put", "k", 1)) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, Command((0, index), arg))


# --- the checker, fed by hand --------------------------------------------------------


def test_two_leaders_in_one_term() -> None:
    c = SafetyChecker()
    c.on_leader("a", 3)
    c.on_leader("a", 3)  # the same leader seen again is fine
    c.on_leader("b", 4)
    with pytest.raises(SimViolation, match="election safety"):
        c.on_leader("b", 3)


def test_conflicting_applied_entry() -> None:
    c = SafetyChecker()
    c.on_applied("a", 0, [cmd(1, 1), cmd(1, 2)])
    c.on_applied("b", 0, [cmd(1, 1)])
    with pytest.raises(SimViolation, match="state-machine safety"):
        c.on_applied("b", 1, [cmd(1, 2, ("put", "k", 999))])


def test_applied_out_of_order() -> None:
    c = SafetyChecker()
    with pytest.raises(SimViolation, match="expected 1"):
        c.on_applied("a", 0, [cmd(1, 2)])


def test_different_values_at_same_applied_index() -> None:
    c = SafetyChecker()
    c.on_state("a", 5, {"k": 1})
    c.on_state("b", 5, {"k": 1})
    with pytest.raises(SimViolation, match="value"):
        c.on_state("c", 5, {"k": 2})


def test_log_matching_same_index_and_term_different_entry() -> None:
    c = SafetyChecker()
    c.on_entries("a", [cmd(2, 5)], 1)
    with pytest.raises(SimViolation, match="log matching"):
        c.on_entries("b", [cmd(2, 5, ("put", "k", 7))], 1)


def test_log_matching_different_predecessor() -> None:
    c = SafetyChecker()
    c.on_entries("a", [cmd(1, 4), cmd(2, 5)], 1)
    with pytest.raises(SimViolation, match="after term"):
        # (5, term 2) after an entry of term 3 at index 4: the logs cannot both be right.
        c.on_entries("b", [cmd(3, 4), cmd(2, 5)], 1)


def test_commit_of_a_different_term_at_a_committed_index() -> None:
    c = SafetyChecker()
    c.on_commit("a", 0, 2, [1, 1])
    with pytest.raises(SimViolation, match="commit safety"):
        c.on_commit("b", 1, 2, [2])


def test_leader_missing_a_committed_entry() -> None:
    c = SafetyChecker()
    c.on_commit("a", 0, 3, [1, 1, 2], in_term=2)
    terms = {1: 1, 2: 1, 3: 3}  # the new leader's log has another entry at index 3
    with pytest.raises(SimViolation, match="leader completeness"):
        c.check_leader_complete("b", 3, 1, terms.get)
    c.check_leader_complete("c", 3, 1, {1: 1, 2: 1, 3: 2, 4: 5}.get)


def test_a_lower_term_leader_elected_by_late_votes_may_lack_a_later_commit() -> None:
    """Review finding 13.7: Leader Completeness is about leaders of *higher* terms. Votes
    granted in term 2 that arrive after a leader of term 3 committed index 3 elect a leader of
    term 2 without it: legal (it can commit nothing), so not a violation."""
    c = SafetyChecker()
    c.on_commit("a", 0, 3, [1, 1, 3], in_term=3)
    c.check_leader_complete("b", 2, 1, {1: 1, 2: 1}.get)  # the late leader of term 2
    with pytest.raises(SimViolation, match="leader completeness"):
        c.check_leader_complete("b", 4, 1, {1: 1, 2: 1}.get)
    # A follower that commits in a later term never lowers what is known.
    c.on_commit("d", 0, 3, [1, 1, 3], in_term=5)
    with pytest.raises(SimViolation, match="leader completeness"):
        c.check_leader_complete("b", 4, 1, {1: 1, 2: 1}.get)


def test_snapshot_disagreeing_with_commits() -> None:
    c = SafetyChecker()
    c.on_commit("a", 0, 2, [1, 1])
    c.on_snapshot("a", SnapshotMeta(2, 1, ("a",)))
    with pytest.raises(SimViolation, match="snapshot safety"):
        c.on_snapshot("b", SnapshotMeta(2, 2, ("a",)))


# --- the simulator stops on a misbehaving core ---------------------------------------


class _TamperingNode(RaftNode):
    """A core that reports a forged applied entry once it has applied index 3."""

    def _take_ready(self) -> Ready:
        rd = super()._take_ready()
        if self.id == "n0" and any(e.index == 3 for e in rd.applied):
            rd.applied = [
                Entry(e.term, e.index, EntryKind.COMMAND, Command("forged", ("put", "x", 1))) if e.index == 3 else e
                for e in rd.applied
            ]
        return rd


def test_simulator_reports_seed_and_replay_on_violation() -> None:
    sim = Simulator(4, "calm", node_factory=_TamperingNode)
    with pytest.raises(SimViolation) as info:
        sim.run()
    v = info.value
    assert v.seed == 4 and v.mix == "calm"
    assert "state-machine safety" in v.description
    assert v.replay == "python -m raftfleet_ray.testing.simulator --seed 4 --mix calm"
    assert 0 < len(v.trace) <= 40 and v.event_no > 0
    assert "seed=4" in str(v) and v.replay in str(v)


class _CrashingNode(RaftNode):
    def tick(self) -> Ready:
        if self._now > 30:
            raise RuntimeError("boom")
        return super().tick()


def test_an_exception_in_the_core_is_a_violation() -> None:
    with pytest.raises(SimViolation, match="RuntimeError: boom") as info:
        Simulator(1, "calm", node_factory=_CrashingNode).run()
    assert info.value.kind == "exception"


class _NeverCommits(RaftNode):
    """Drops every append ack: nothing ever commits, which only liveness can see."""

    def step(self, msg: Any) -> Ready:
        if type(msg).__name__ == "AppendEntriesResponse":
            return self._take_ready()
        return super().step(msg)


def test_liveness_failure_is_reported() -> None:
    with pytest.raises(SimViolation, match="liveness") as info:
        Simulator(2, "calm", node_factory=_NeverCommits, heal_time=60.0).run()
    assert info.value.kind == "liveness"


class _StaleReads(RaftNode):
    """Answers reads from its local value whenever it believes it leads: no ReadIndex round,
    no lease (thesis §6.4 skipped). A deposed leader that has not noticed serves stale data."""

    def read(self, req: Any, arg: Any) -> Ready:
        if self.role == "leader":
            self._reply(req, Ok(self.data.query(arg)))
            return self._take_ready()
        return super().read(req, arg)


def test_linearizability_check_catches_stale_reads() -> None:
    kinds = []
    for seed in range(40):
        try:
            Simulator(seed, node_factory=_StaleReads).run()
        except SimViolation as v:
            kinds.append(v.kind)
            if v.kind == "linearizability":
                assert "not linearizable" in v.description
                return
    pytest.fail(f"stale reads went unnoticed over 40 seeds (violations seen: {kinds})")


# --- the simulated disk: the real log over the in-memory filesystem -------------------


def _write(disk: SimDisk, hs: HardState | None = None, snap: Snapshot | None = None,
           entries: list[Entry] | None = None, seq: int = 0) -> bool:
    return disk.submit(PendingWrite(hs, snap, entries or [], [], seq))


def _flush(disk: SimDisk) -> list[PendingWrite]:
    disk.start_flush()
    return disk.complete_flush()


def test_disk_entries_write_truncates_from_its_first_index() -> None:
    d = SimDisk()
    _write(d, entries=[cmd(1, 1), cmd(1, 2), cmd(1, 3)])
    _write(d, entries=[cmd(2, 2)])
    _flush(d)
    assert [(e.index, e.term) for e in d.entries] == [(1, 1), (2, 2)]
    assert [(e.index, e.term) for e in d.reopen().entries] == [(1, 1), (2, 2)]


def test_disk_rejects_a_gap_before_writing_anything() -> None:
    d = SimDisk()
    _write(d, entries=[cmd(1, 1)])
    with pytest.raises(StorageError, match="gap"):
        _write(d, entries=[cmd(1, 3)])
    _flush(d)
    assert [e.index for e in d.reopen().entries] == [1]


def test_disk_snapshot_keeps_matching_suffix_and_drops_conflicting_log() -> None:
    d = SimDisk()
    _write(d, entries=[cmd(1, i) for i in range(1, 6)])
    _write(d, snap=Snapshot(SnapshotMeta(3, 1, ("a",)), b""))
    _flush(d)
    assert [e.index for e in d.reopen().entries] == [4, 5]
    _write(d, snap=Snapshot(SnapshotMeta(5, 9, ("a",)), b""))  # conflicts at 5: drop everything
    _flush(d)
    st = d.reopen()
    assert st.entries == [] and st.snapshot is not None and st.snapshot.meta.index == 5


def test_one_flush_covers_every_write_issued_before_it_and_later_ones_wait() -> None:
    """Group commit: writes buffered while no flush runs go out together; a write issued
    while a flush is in flight waits for the next flush."""
    d = SimDisk()
    assert _write(d, entries=[cmd(1, 1)], seq=1) is True  # no flush in flight: start one
    assert _write(d, hs=HardState(1, "a"), seq=2) is True
    d.start_flush()
    assert _write(d, entries=[cmd(1, 2)], seq=3) is False  # waits for the next flush
    done = d.complete_flush()
    assert [w.persist_seq for w in done] == [1, 2] and d.pending
    assert [w.persist_seq for w in _flush(d)] == [3]


def test_crash_loses_the_buffer_and_power_loss_what_was_not_fsynced() -> None:
    import random

    d = SimDisk()
    _write(d, hs=HardState(1, "a"), entries=[cmd(1, 1)])
    _flush(d)
    _write(d, hs=HardState(2, "b"))  # buffered only
    d.crash()
    st = d.reopen()
    assert st.hard_state == HardState(1, "a") and len(st.entries) == 1 and not d.pending
    # Written out but not fsynced when the power went: a prefix (maybe torn, then cut).
    kept = set()
    for seed in range(30):
        d = SimDisk()
        _write(d, hs=HardState(1, "a"))
        _flush(d)
        _write(d, entries=[cmd(1, i) for i in range(1, 30)])
        d.start_flush()
        d.power_loss(random.Random(seed))
        st = d.reopen()
        assert st.hard_state == HardState(1, "a")
        kept.add(len(st.entries))
    # One record per write: all of it or none (mostly none: a random prefix of the written-out
    # bytes is usually torn inside the record, and recovery cuts it), never a part.
    assert kept <= {0, 29} and 0 in kept, kept
