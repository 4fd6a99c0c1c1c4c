"""When a member takes a snapshot (Raft §7 leaves it to each server): after
``snapshot_interval`` applied entries (the count trigger), or once the bytes of the entries
applied since the last snapshot exceed ``snapshot_log_factor`` × that snapshot's size (the
size trigger, rafted_value's ``log_file_expansion_factor``, reference §4.6), with a missing or
smaller snapshot counted as ``snapshot_min_bytes``. Whichever fires first wins; factor 0 is
the count trigger alone; either way a snapshot covers durable entries only."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from raft_harness import settle

from raftfleet_ray.raft import (
    AppendEntries,
    Command,
    CoreConfig,
    Entry,
    EntryKind,
    RaftNode,
    Ready,
    Snapshot,
)


class Blob:
    """A value whose size the test chooses: ``pad`` bytes, plus the bytes commands seen."""

    pad = 0

    def __init__(self) -> None:
        self.state = b"x" * self.pad
        self.seen = 0

    def command(self, arg: bytes) -> int:
        self.seen += len(arg)
        return self.seen

    def query(self, arg: object) -> int:
        return self.seen


class BigBlob(Blob):
    pad = 20_000


def cfg(**kw) -> CoreConfig:
    base = dict(election_ticks=10, heartbeat_ticks=2, snapshot_interval=1_000_000, log_retention=0,
                max_retained_command_results=1)
    base.update(kw)
    return CoreConfig(**base)


def entry_bytes(e: Entry) -> int:
    """The documented estimate: a bytes argument's length + 32, any other entry 64."""
    if e.kind == EntryKind.COMMAND and isinstance(e.data.arg, bytes):
        return len(e.data.arg) + 32
    return 64


def leader(c: CoreConfig, data: type = Blob) -> tuple[RaftNode, list[Ready]]:
    """A single-member group that elected itself, and the Readies of that (its no-op)."""
    lead = RaftNode("a", c, data, random.Random(1), members=("a",))
    readies = settle(lead, lead.campaign())
    assert lead.role == "leader" and lead.applied_index == 1
    return lead, readies


_ids = itertools.count()


def run(lead: RaftNode, sizes: list[int]) -> list[Ready]:
    """Propose one command of each size on a single-member leader, persisting every Ready."""
    readies: list[Ready] = []
    for n in sizes:
        k = next(_ids)
        readies += settle(lead, lead.propose(k, ("c", k), b"b" * n))
    return readies


def snapshots(readies: list[Ready]) -> list[Snapshot]:
    return [rd.snapshot for rd in readies if rd.snapshot is not None]


def check_size_trigger(readies: list[Ready], factor: float, floor: int) -> list[Snapshot]:
    """Every snapshot came the moment the bytes applied since the previous one (or the start)
    passed factor × max(previous snapshot's size, floor): past it with its last entry, not
    before it."""
    applied: dict[int, Entry] = {}
    prev_index, prev_size = 0, 0
    snaps = []
    for rd in readies:
        for e in rd.applied:
            applied[e.index] = e
        if rd.snapshot is None:
            continue
        snap = rd.snapshot
        limit = factor * max(prev_size, floor)
        total = sum(entry_bytes(applied[i]) for i in range(prev_index + 1, snap.meta.index + 1))
        last = entry_bytes(applied[snap.meta.index])
        assert total > limit, f"snapshot at {snap.meta.index} before {total} bytes passed {limit}"
        assert total - last <= limit, f"snapshot at {snap.meta.index} late: {total - last} > {limit}"
        prev_index, prev_size = snap.meta.index, len(snap.data)
        snaps.append(snap)
    return snaps


def test_size_trigger_fires_once_the_log_bytes_pass_factor_times_the_snapshot_size() -> None:
    """Reference §4.6: snapshot when the log written since the last snapshot exceeds
    snapshot size × factor. The count trigger is off in effect here (a huge interval)."""
    c = cfg(snapshot_log_factor=2.0, snapshot_min_bytes=0)
    lead, readies = leader(c)
    readies += run(lead, [100, 7, 300, 50, 1000, 1, 1, 250] * 6)
    snaps = check_size_trigger(readies, 2.0, 0)
    assert len(snaps) >= 5
    # With no floor and no snapshot yet, the very first applied entry (the no-op) takes one.
    assert snaps[0].meta.index == 1


def test_the_threshold_follows_the_snapshot_size() -> None:
    """A larger value is snapshotted after proportionally more log: the same commands on a
    20 kB value take far fewer snapshots than on a tiny one."""
    sizes = [50] * 400
    counts = {}
    for data in (Blob, BigBlob):
        lead, readies = leader(cfg(snapshot_log_factor=1.5, snapshot_min_bytes=0), data)
        counts[data] = len(check_size_trigger(readies + run(lead, sizes), 1.5, 0))
    assert counts[Blob] > 10 * counts[BigBlob] > 0, counts


def test_the_floor_stands_in_for_a_missing_or_smaller_snapshot() -> None:
    """``snapshot_min_bytes``: with no snapshot yet, the first one waits for factor × the floor
    bytes; a snapshot smaller than the floor counts as the floor, so a tiny value is not
    snapshotted every few entries."""
    c = cfg(snapshot_log_factor=1.0, snapshot_min_bytes=4000)
    lead, readies = leader(c)
    readies += run(lead, [968] * 20)  # 1000 bytes an entry
    snaps = check_size_trigger(readies, 1.0, 4000)
    assert all(len(s.data) < 4000 for s in snaps)
    # The no-op (64) and 4 commands make 4064 > 4000; then every 5 commands (5000 > 4000).
    assert [s.meta.index for s in snaps] == [5, 10, 15, 20]


def test_count_trigger_still_fires_with_the_size_trigger_on() -> None:
    """Whichever fires first wins: small entries reach snapshot_interval long before their
    bytes reach the size threshold."""
    c = cfg(snapshot_interval=5, snapshot_log_factor=100.0)
    lead, _ = leader(c)
    snaps = snapshots(run(lead, [1] * 14))
    assert [s.meta.index for s in snaps] == [5, 10, 15]


def test_size_trigger_fires_before_the_count_trigger_on_large_entries() -> None:
    """And large entries reach the size threshold first; each snapshot restarts both counts."""
    c = cfg(snapshot_interval=10, snapshot_log_factor=1.0, snapshot_min_bytes=3000)
    lead, _ = leader(c)
    readies = run(lead, [1] * 12 + [968] * 4 + [1] * 10)
    # 1..10: the count trigger (10 entries, 640 bytes). 11..13 small, then 1000-byte entries:
    # 14, 15, 16 make 3192 > 3000. Then 10 small ones: the count trigger again, at 26.
    assert [s.meta.index for s in snapshots(readies)] == [10, 16, 26]


def test_factor_zero_keeps_the_count_trigger_alone() -> None:
    """The default (0) is the old behaviour: however large the entries, only
    snapshot_interval counts, and a node with the default config snapshots at the same
    indexes."""
    sizes = [50_000, 1, 20_000] * 5
    got = []
    for c in (cfg(snapshot_interval=4, snapshot_min_bytes=0),
              CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=4, log_retention=0,
                         max_retained_command_results=1)):
        assert c.snapshot_log_factor == 0.0
        lead, _ = leader(c)
        got.append([s.meta.index for s in snapshots(run(lead, sizes))])
    assert got[0] == got[1] == [4, 8, 12, 16]


def test_a_size_triggered_snapshot_waits_for_the_entries_to_be_durable() -> None:
    """A follower applies entries the leader committed before its own write of them is
    durable; a snapshot inside them would be an impossible write, so the size trigger too
    waits for on_persisted (as the count trigger does)."""
    c = cfg(snapshot_log_factor=1.0, snapshot_min_bytes=1000)
    f = RaftNode("f", c, Blob, random.Random(1), members=("l", "f"))
    ents = (Entry(1, 1, EntryKind.NOOP, ("l", "f")),) + tuple(
        Entry(1, i, EntryKind.COMMAND, Command(("c", i), b"z" * 600)) for i in range(2, 4))
    rd = f.step(AppendEntries(1, "l", "f", 0, 0, ents, commit=3))
    assert f.applied_index == 3  # 64 + 2 × 632 bytes > 1000, applied at once
    assert rd.snapshot is None, "a snapshot inside entries that are not durable yet"
    rd2 = f.on_persisted(rd.persist_seq)
    assert rd2.snapshot is not None and rd2.snapshot.meta.index == 3 and not rd2.entries


def test_a_restarted_member_counts_from_its_snapshot() -> None:
    """The bytes counted are those applied by this incarnation since its snapshot: a member
    restarted from a snapshot and a log suffix counts the suffix as it applies it again."""
    c = cfg(snapshot_log_factor=1.0, snapshot_min_bytes=2000)
    lead, _ = leader(c)
    readies = run(lead, [968] * 2)  # the no-op and 2 × 1000 bytes: 2064 > 2000
    assert [s.meta.index for s in snapshots(readies)] == [3]
    snap = snapshots(readies)[-1]
    readies = run(lead, [968])  # 1000 bytes since: no snapshot yet
    assert snapshots(readies) == []
    again = RaftNode("a", c, Blob, random.Random(2), members=("a",), snapshot=snap,
                     entries=[e for rd in readies for e in rd.entries])
    rds = settle(again, again.campaign())
    assert again.role == "leader"
    # Applies entry 4 (1000 bytes) again and its new no-op 5 (64): below 2000, no snapshot.
    assert snapshots(rds) == [] and again.applied_index == again.last_index == 5
    assert again.data.seen == 2 * 968 + 968
    rds = run(again, [968])  # 2064 > 2000
    assert [s.meta.index for s in snapshots(rds)] == [6]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"snapshot_log_factor": -0.5}, "snapshot_log_factor"),
        ({"snapshot_log_factor": math.nan}, "snapshot_log_factor"),
        ({"snapshot_log_factor": math.inf}, "snapshot_log_factor"),
        ({"snapshot_log_factor": True}, "snapshot_log_factor"),
        ({"snapshot_log_factor": "10"}, "snapshot_log_factor"),
        ({"snapshot_min_bytes": -1}, "snapshot_min_bytes"),
    ],
)
def test_core_config_validation_names_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        CoreConfig(**kwargs)


def test_core_config_accepts_the_size_trigger() -> None:
    c = CoreConfig(snapshot_log_factor=10, snapshot_min_bytes=0)
    assert (c.snapshot_log_factor, c.snapshot_min_bytes) == (10, 0)
    assert CoreConfig().snapshot_log_factor == 0.0 and CoreConfig().snapshot_min_bytes == 64 * 1024
