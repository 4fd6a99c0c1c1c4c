"""The simulator's storage side (sim_disk.py, sim_storage.py): the durable image comes from
the fsynced bytes, recovery is checked against it, bit rot is refused and restored from a
backup, and the storage faults fire in the mixes they belong to. Each check is shown to
fire with the planted storage bug it exists for (storage/log.py ``BUGS``)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from raftfleet_ray.raft.types import Command, Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raftfleet_ray.storage import HostLog, MemberImage
from raftfleet_ray.storage.log import (
    ACK_BEFORE_FSYNC,
    RECOVERY_TRUSTS_PAGE_CACHE,
    TAIL_MISREAD,
    frame,
    frame_v1,
)
from raftfleet_ray.testing.sim_checker import SimViolation
from raftfleet_ray.testing.sim_disk import DIR, KEY, SEGMENT_BYTES, PendingWrite, SimDisk
from raftfleet_ray.testing.sim_storage import StorageFaults, missing
from raftfleet_ray.testing.simulator import Simulator


def cmd(term: int, index: int, arg: Any = ("put", "k", 1)) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, Command((0, index), arg))


def _write(disk: SimDisk, hs: HardState | None = None, snap: Snapshot | None = None,
           entries: list[Entry] | None = None) -> None:
    disk.submit(PendingWrite(hs, snap, entries or [], [], 0))


def _flush(disk: SimDisk) -> None:
    disk.start_flush()
    disk.complete_flush()


def _faults(seed: int, p_rot: float = 0.0) -> StorageFaults:
    notes: list[str] = []
    sim = SimpleNamespace(plan=SimpleNamespace(storage_seed=seed), mix=SimpleNamespace(name="calm", intensity=1.0),
                          note=notes.append, healing=False)
    f = StorageFaults(sim)  # type: ignore[arg-type]
    f.p_rot = p_rot
    return f


def test_the_durable_image_is_what_was_fsynced_not_what_the_log_says() -> None:
    """With flush() not fsyncing (the planted ACK_BEFORE_FSYNC), nothing is durable, and the
    durability check sees it at once."""
    ok, bad = SimDisk(), SimDisk(frozenset({ACK_BEFORE_FSYNC}))
    for d in (ok, bad):
        _write(d, HardState(1, "a"), entries=[cmd(1, 1)])
        _flush(d)
    assert [e.index for e in ok.entries] == [1] and ok.hard_state == HardState(1, "a")
    assert bad.entries == [] and bad.hard_state is None


def test_after_a_crash_in_a_flush_what_recovery_returns_is_durable() -> None:
    for bugs, durable in ((frozenset(), [1, 2]), (frozenset({RECOVERY_TRUSTS_PAGE_CACHE}), [1])):
        d = SimDisk(bugs)
        _write(d, entries=[cmd(1, 1)])
        _flush(d)
        _write(d, entries=[cmd(1, 2)])
        d.start_flush()
        d.crash()  # the flush's bytes are in the page cache only
        assert [e.index for e in d.reopen().entries] == [1, 2]
        assert [e.index for e in d.entries] == durable, bugs


def _busy_disk(d: SimDisk) -> None:
    _write(d, HardState(1, "a"), entries=[cmd(1, i) for i in range(1, 4)])
    _flush(d)
    _write(d, snap=Snapshot(SnapshotMeta(2, 1, ("a",)), b"state"))
    _flush(d)
    _write(d, HardState(2, "b"), entries=[cmd(2, 4)])
    _flush(d)


def test_bit_rot_is_refused_then_the_backup_is_restored() -> None:
    refused = 0
    for seed in range(40):
        f = _faults(seed, p_rot=1.0)
        d = SimDisk(name="n0", faults=f)
        _busy_disk(d)
        before = d.durable.copy()
        d.power_loss(random.Random(seed)) if seed % 2 else d.crash()
        assert f.rots == 1
        st = d.reopen()
        assert MemberImage(st.hard_state, st.snapshot, list(st.entries)) == before
        assert d.durable == before  # restored: the flip is gone from the disk
        refused += f.rots_refused
    assert refused == 40


def test_with_the_old_tail_rules_bit_rot_in_the_newest_record_is_a_violation() -> None:
    seen = []
    for seed in range(40):
        d = SimDisk(frozenset({TAIL_MISREAD}), name="n0", faults=_faults(seed, p_rot=1.0))
        _busy_disk(d)
        d.crash()
        try:
            d.reopen()
        except SimViolation as v:
            seen.append(v)
    assert seen and all(v.kind == "safety" and "recovery lost fsynced state" in v.description for v in seen)


def test_a_torn_record_holding_frames_is_cut_and_with_the_old_rules_a_violation() -> None:
    value = b"v1|" + frame(b"x") + b"|" + frame_v1(b"x")
    refused = 0
    for bugs in (frozenset(), frozenset({TAIL_MISREAD})):
        for seed in range(60):
            d = SimDisk(bugs)
            _write(d, entries=[cmd(1, 1)])
            _flush(d)
            _write(d, entries=[cmd(1, 2, ("put", "k", value))])
            d.start_flush()
            d.power_loss(random.Random(seed))
            try:
                assert [e.index for e in d.reopen().entries] in ([1], [1, 2])
            except SimViolation as v:
                assert bugs and "refused a log that only crashes and power losses touched" in v.description
                refused += 1
    assert refused > 0


def test_missing_allows_later_writes_and_catches_lost_state() -> None:
    base = MemberImage(HardState(3, "a"), None, [cmd(1, 1), cmd(3, 2), cmd(3, 3)])
    same = base.copy()
    assert missing(same, base, exact=True) is None and missing(same, base, exact=False) is None
    later = base.copy()
    later.apply(HardState(4, None), None, [cmd(4, 3)])  # a newer term, an entry replaced
    assert missing(later, base, exact=False) is None
    assert missing(later, base, exact=True) is not None
    snap = base.copy()
    snap.apply(None, Snapshot(SnapshotMeta(3, 9, ("a",)), b""), [])  # conflicts: drops the log
    assert missing(snap, base, exact=False) is None
    cut = MemberImage(HardState(3, "a"), None, [cmd(1, 1), cmd(3, 2)])
    assert "entry 3" in str(missing(cut, base, exact=False))
    vote = MemberImage(HardState(3, None), None, list(base.entries))
    assert "hard state" in str(missing(vote, base, exact=False))


@pytest.mark.parametrize("mix", ["crashes", "power_loss", "chaos"])
def test_the_storage_faults_fire_in_their_mixes(mix: str) -> None:
    """Seeds 0..39 of each mix with bit rot: flips happen and are refused, and the runs pass;
    with power losses, frame values are written and the page-cache fault strikes."""
    rots = refused = strikes = frames = 0
    for seed in range(40):
        sim = Simulator(seed, mix)
        sim.run()
        s = sim.storage
        rots += s.rots
        refused += s.rots_refused
        strikes += s.page_cache_strikes
        frames += bool(s.p_frame_value)
    assert rots > 0 and refused > 0
    if mix != "crashes":
        assert strikes > 0 and frames > 0


def test_the_followed_durable_image_is_a_full_recovery_of_the_fsynced_bytes(monkeypatch) -> None:
    """SimDisk follows the fsynced bytes with HostLog.tail() instead of recovering them all
    at every fsync: over whole runs, it always equals a full recovery."""
    follow = SimDisk._recover_durable
    checked = 0

    def both(self: SimDisk) -> MemberImage:
        nonlocal checked
        im = follow(self)
        full = HostLog(self.fs.durable_copy(), DIR, segment_bytes=SEGMENT_BYTES)
        full.open()
        ref = full.image(KEY) or MemberImage()
        assert (im.hard_state, im.snapshot, im.entries) == (ref.hard_state, ref.snapshot, ref.entries)
        checked += 1
        return im

    monkeypatch.setattr(SimDisk, "_recover_durable", both)
    for seed, mix in [(s, m) for s in range(8) for m in ("power_loss", "chaos", "calm")]:
        Simulator(seed, mix).run()
    assert checked > 1000
