"""The write-ahead log (storage/log.py) over the in-memory disk with crash semantics: torn
writes at every byte offset (zero-filled ones, and ones of records whose payload holds a
record frame, too), bit flips (in the newest fsynced record too), missing, truncated and
extra files, a full disk, group commit, rotation, random power losses (acknowledged =
flushed is never lost), a process crash then a power loss (what recovery returned is
durable), and logs of the older record format."""

from __future__ import annotations

import os
import pickle
import random
import struct

import pytest

from raftfleet_ray.raft import Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raftfleet_ray.storage import (
    CorruptLogError,
    HostLog,
    MemFileSystem,
    OsFileSystem,
    StorageError,
)
from raftfleet_ray.storage.log import (
    ACK_BEFORE_FSYNC,
    MAGIC,
    RECOVERY_TRUSTS_PAGE_CACHE,
    TAIL_MISREAD,
    frame,
    frame_v1,
)


def e(index: int, term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, f"x{index}")


def snap(index: int, term: int = 1) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ("a", "b", "c")), b"state-%d" % index)


def opened(fs, d: str = "d", **kw) -> tuple[HostLog, dict]:
    log = HostLog(fs, d, **kw)
    return log, {r.key: r for r in log.open()}


def seg(fs: MemFileSystem, d: str = "d") -> str:
    return f"{d}/" + [n for n in fs.listdir(d) if n.startswith("wal-")][-1]


def test_recovery_returns_what_was_flushed_with_the_info() -> None:
    fs = MemFileSystem()
    log, found = opened(fs)
    assert found == {}
    log.register("m1", {"group": "g"})
    log.write("m1", HardState(2, "m1"), None, [e(1), e(2)])
    log.write("m2", None, None, [e(1)])
    log.flush()
    _, found = opened(fs)
    assert found["m1"].info == {"group": "g"} and found["m1"].state.hard_state == HardState(2, "m1")
    assert [x.index for x in found["m1"].state.entries] == [1, 2]
    assert [x.index for x in found["m2"].state.entries] == [1]


def test_unflushed_writes_are_not_durable_and_a_crash_loses_only_them() -> None:
    """The buffer lives in the process: a crash before flush loses it, and nothing that
    depended on it was sent (the caller waits for flush)."""
    fs = MemFileSystem()
    log, _ = opened(fs)
    log.write("m", None, None, [e(1)])
    log.flush()
    log.write("m", None, None, [e(2)])
    fs.crash()
    _, found = opened(fs)
    assert [x.index for x in found["m"].state.entries] == [1]


def test_one_fsync_per_flush_for_every_member_of_the_host() -> None:
    """Group commit: the fsync rate does not grow with the number of members."""
    fs = MemFileSystem()
    log, _ = opened(fs)
    before = fs.fsyncs
    for k in range(200):
        log.write(f"m{k}", HardState(1, None), None, [e(1)])
    log.flush()
    assert fs.fsyncs - before == 1
    log.flush()  # nothing buffered: no fsync
    assert fs.fsyncs - before == 1


def _two_records(second: list[Entry] | None = None) -> tuple[MemFileSystem, str, int, int]:
    fs = MemFileSystem()
    log, _ = opened(fs)
    log.write("m", HardState(1, None), None, [e(1)])
    log.flush()
    first_end = len(fs.read(seg(fs)))
    log.write("m", None, None, second or [e(2), e(3)])
    log.flush()
    return fs, seg(fs), first_end, len(fs.read(seg(fs)))


def _disk_with(path: str, data: bytes) -> MemFileSystem:
    fs = MemFileSystem()
    fs.makedirs("d")
    fs.append(path, data)
    fs.fsync(path)
    fs.fsync_dir("d")
    return fs


def test_a_torn_last_record_is_cut_at_every_byte_offset() -> None:
    fs0, path, first_end, end = _two_records()
    full = fs0.read(path)
    for cut in range(first_end, end):
        fs = MemFileSystem()
        fs.makedirs("d")
        fs.append(path, full[:cut])
        log, found = opened(fs)
        assert [x.index for x in found["m"].state.entries] == [1], cut
        assert len(fs.read(path)) == first_end, f"the torn tail at {cut} was not cut"
        log.write("m", None, None, [e(2, 2)])  # and the log goes on after the cut
        log.flush()
        _, again = opened(fs)
        assert [(x.index, x.term) for x in again["m"].state.entries] == [(1, 1), (2, 2)]


def test_a_bit_flip_before_the_tail_is_an_error_naming_file_and_offset() -> None:
    fs0, path, first_end, _end = _two_records()
    full = fs0.read(path)
    for off in range(first_end):
        for bit in (0, 7):
            fs = MemFileSystem()
            fs.makedirs("d")
            fs.append(path, full)
            fs.corrupt(path, off, bit)
            with pytest.raises(CorruptLogError) as exc:
                opened(fs)
            assert exc.value.path == path and exc.value.offset == 0, (off, bit)
            assert path in str(exc.value)


def test_a_bit_flip_in_the_last_fsynced_record_is_an_error_not_a_torn_tail() -> None:
    """Issue 13, finding 5a: the newest record was fsynced (it may hold a vote); a flipped bit
    in it, in any byte, is corruption. Cutting it as a torn write would forget the vote."""
    fs0, path, first_end, end = _two_records([e(2)])
    full = fs0.read(path)
    for off in range(first_end, end):
        for bit in range(8):
            fs = _disk_with(path, full)
            fs.corrupt(path, off, bit)
            with pytest.raises(CorruptLogError) as exc:
                opened(fs)
            assert exc.value.path == path and exc.value.offset == first_end, (off, bit)


def test_the_planted_tail_misread_bug_cuts_a_flipped_last_record() -> None:
    """The test above can fail: with the old tail rules the flipped record is cut silently."""
    fs0, path, first_end, end = _two_records([e(2)])
    fs = _disk_with(path, fs0.read(path))
    fs.corrupt(path, end - 3, 0)
    _, found = opened(fs, bugs=frozenset({TAIL_MISREAD}))
    assert [x.index for x in found["m"].state.entries] == [1]


def _embedding(framer) -> list[Entry]:
    """Entries whose client bytes hold a valid record frame (of a log record, even)."""
    inner = framer(pickle.dumps(("w", "m", HardState(9, "x"), None, [e(7, 9)]), protocol=5))
    return [Entry(1, 2, EntryKind.COMMAND, b"client bytes " + inner + b" more client bytes")]


@pytest.mark.parametrize("framer", [frame, frame_v1], ids=["format2", "format1"])
def test_a_torn_record_whose_payload_holds_a_frame_is_cut_at_every_byte_offset(framer) -> None:
    """Issue 13, finding 5b: a record's extent comes from its checked header, so a frame
    inside the torn record's payload is never looked at, let alone taken for a record that
    follows (which would make an ordinary torn write corruption: a host that cannot start)."""
    fs0, path, first_end, end = _two_records(_embedding(framer))
    full = fs0.read(path)
    assert framer(b"x")[:2] in full[first_end + 15:]  # the frame is in there
    for cut in range(first_end, end):
        fs = _disk_with(path, full[:cut])
        _, found = opened(fs)
        assert [x.index for x in found["m"].state.entries] == [1], cut
        assert len(fs.read(path)) == first_end, cut


@pytest.mark.parametrize("framer", [frame, frame_v1], ids=["format2", "format1"])
def test_the_planted_tail_misread_bug_refuses_a_torn_record_holding_a_frame(framer) -> None:
    """The test above can fail: the old rules probe every later byte offset for a frame."""
    fs0, path, first_end, end = _two_records(_embedding(framer))
    full = fs0.read(path)
    refused = 0
    for cut in range(first_end, end):
        try:
            opened(_disk_with(path, full[:cut]), bugs=frozenset({TAIL_MISREAD}))
        except CorruptLogError:
            refused += 1
    assert refused > 0


def test_zero_filled_tails_are_cut() -> None:
    """A file system may extend a file before it writes the blocks: after a power loss the
    end of the last record reads back as zeros (to the end of the file, possibly past the
    record). That is a torn write too, from any offset in the record."""
    fs0, path, first_end, end = _two_records()
    full = fs0.read(path)
    for start in range(first_end, end):
        for extra in (0, 1, 700):
            fs = _disk_with(path, full[:start] + bytes(end - start + extra))
            _, found = opened(fs)
            assert [x.index for x in found["m"].state.entries] == [1], (start, extra)
            assert len(fs.read(path)) == first_end
    fs = _disk_with(path, full + bytes(100))  # zeros after a whole record: a header never written
    _, found = opened(fs)
    assert [x.index for x in found["m"].state.entries] == [1, 2, 3] and len(fs.read(path)) == end


def test_zeros_at_the_end_do_not_excuse_a_bad_record_before_them() -> None:
    """Only the record the zeros start in is torn: a flipped bit in an earlier record, with a
    zero-filled tail after it, is still corruption at that record."""
    fs0, path, first_end, end = _two_records()
    full = fs0.read(path)
    for off in (2, 8, 14, first_end - 1):  # header, checksums, payload, end byte
        fs = _disk_with(path, full + bytes(40))
        fs.corrupt(path, off, 3)
        with pytest.raises(CorruptLogError) as exc:
            opened(fs)
        assert exc.value.offset == 0, off


def test_what_recovery_returns_after_a_process_crash_survives_a_power_loss() -> None:
    """Issue 13, finding 3: after a process crash the page cache still holds written, never
    fsynced bytes, and recovery reads them like the rest. The members then acknowledge them,
    so recovery must make them durable before it returns."""
    for seed in range(30):
        fs = MemFileSystem()
        log, _ = opened(fs)
        log.write("m", HardState(1, None), None, [e(1)])
        log.flush()
        log.write("m", HardState(2, "m"), None, [e(2, 2), e(3, 2)])
        log.write_out()  # handed to the OS, not fsynced yet ...
        fs.crash()  # ... when the process dies
        _, found = opened(fs)
        assert found["m"].state.hard_state == HardState(2, "m") and len(found["m"].state.entries) == 3
        fs.power_loss(random.Random(seed))
        _, again = opened(fs)
        assert again["m"].state == found["m"].state, seed


def test_the_planted_recovery_trusts_page_cache_bug_loses_what_recovery_returned() -> None:
    """The test above can fail: without the fsyncs a power loss takes back returned state."""
    lost = 0
    for seed in range(30):
        fs = MemFileSystem()
        log, _ = opened(fs, bugs=frozenset({RECOVERY_TRUSTS_PAGE_CACHE}))
        log.write("m", None, None, [e(1)])
        log.flush()
        log.write("m", None, None, [e(2)])
        log.write_out()
        fs.crash()
        opened(fs, bugs=frozenset({RECOVERY_TRUSTS_PAGE_CACHE}))
        fs.power_loss(random.Random(seed))
        _, again = opened(fs)
        lost += len(again["m"].state.entries) < 2
    assert lost > 10


def _v1_segment(records: list[tuple]) -> bytes:
    return b"".join(frame_v1(pickle.dumps(r, protocol=5)) for r in records)


def test_a_log_of_the_older_format_is_read_and_rewritten_in_the_current_one() -> None:
    fs = MemFileSystem()
    fs.makedirs("d")
    old = _v1_segment([("info", "m", {"g": 1}), ("w", "m", HardState(3, "m"), None, [e(1), e(2)]),
                       ("w", "m", None, None, [e(3)])])
    fs.append("d/wal-00000001.log", old + frame_v1(b"torn")[:7])  # and a torn tail, of that format
    log, found = opened(fs)
    assert found["m"].info == {"g": 1} and found["m"].state.hard_state == HardState(3, "m")
    assert [x.index for x in found["m"].state.entries] == [1, 2, 3]
    assert fs.listdir("d") == ["wal-00000002.log"]  # rewritten at once
    assert fs.read("d/wal-00000002.log")[:2] == struct.pack("<H", MAGIC)
    log.write("m", None, None, [e(4)])
    log.flush()
    _, again = opened(fs)
    assert [x.index for x in again["m"].state.entries] == [1, 2, 3, 4]


def test_a_bad_record_of_the_older_format_keeps_the_older_rules() -> None:
    """Format 1 has no header checksum: a bad record with a valid one after it is corruption."""
    fs = MemFileSystem()
    fs.makedirs("d")
    data = bytearray(_v1_segment([("w", "m", None, None, [e(1)]), ("w", "m", None, None, [e(2)])]))
    data[12] ^= 1
    fs.append("d/wal-00000001.log", bytes(data))
    with pytest.raises(CorruptLogError, match="a valid record follows"):
        opened(fs)


def test_missing_truncated_and_extra_files() -> None:
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=200)
    for i in range(1, 40):
        log.write("m", None, snap(i - 1) if i % 10 == 0 else None, [e(i)])
        log.flush()
    names = fs.listdir("d")
    segs = [n for n in names if n.startswith("wal-")]
    snaps = [n for n in names if n.endswith(".snap")]
    assert snaps, names
    # Extra files are left alone.
    fs.append("d/notes.txt", b"hello")
    _, found = opened(fs)
    assert found["m"].state.entries[-1].index == 39
    # A snapshot file the log refers to is missing: an error naming it.
    bad = MemFileSystem()
    bad.makedirs("d")
    for n in names:
        if not n.endswith(".snap"):
            bad.append(f"d/{n}", fs.read(f"d/{n}"))
    with pytest.raises(StorageError, match=r"snapshot file d/snap-.* is missing"):
        opened(bad)
    # A segment missing in the middle, or an older segment truncated: errors.
    fs.append(f"d/wal-{int(segs[-1][4:12]) + 2:08d}.log", b"")
    with pytest.raises(StorageError, match="segments missing"):
        opened(fs)


def test_an_older_segment_that_is_cut_is_corruption_not_a_tail() -> None:
    fs = MemFileSystem()
    fs.makedirs("d")
    log, _ = opened(fs)
    log.write("m", None, None, [e(1), e(2)])
    log.flush()
    data = fs.read("d/wal-00000001.log")
    fs.truncate("d/wal-00000001.log", len(data) - 3)
    fs.append("d/wal-00000002.log", b"")
    with pytest.raises(CorruptLogError, match="wal-00000001.log"):
        opened(fs)


def test_a_full_disk_fails_the_flush_and_refuses_writes_and_loses_nothing_acknowledged() -> None:
    fs = MemFileSystem()
    log, _ = opened(fs)
    log.write("m", HardState(1, None), None, [e(1)])
    log.flush()
    fs.space = 10
    log.write("m", None, None, [e(2)])
    with pytest.raises(StorageError, match="No space left"):
        log.flush()
    with pytest.raises(StorageError, match="accepts no more writes"):
        log.write("m", None, None, [e(3)])
    fs.space = None
    _, found = opened(fs)
    assert [x.index for x in found["m"].state.entries] == [1]


def test_rotation_bounds_the_files_and_keeps_the_state() -> None:
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=2_000)
    for i in range(1, 2_001):
        s = snap(i - 5) if i % 100 == 0 else None
        log.write("m", HardState(i // 500 + 1, None), s, [e(i)])
        log.write("other", None, None, [e(i)])
        log.flush()
        if i % 100 == 0:
            log.write("other", None, snap(i), [])
            log.flush()
    names = fs.listdir("d")
    assert len([n for n in names if n.startswith("wal-")]) <= 2, names
    assert len([n for n in names if n.endswith(".snap")]) <= 4, names
    _, found = opened(fs)
    st = found["m"].state
    assert st.snapshot.meta.index == 1995 and [x.index for x in st.entries] == list(range(1996, 2001))
    assert st.hard_state == HardState(5, None)


def test_a_log_of_mostly_live_state_is_not_checkpointed_at_every_flush(monkeypatch) -> None:
    """Live state larger than half a segment: rotating would copy it all, so the log waits
    until the segment is twice the live state, looking again each time it doubled, not at
    every flush (each look pickles every image)."""
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=2_000)
    log.write("m", None, None, [Entry(1, i, EntryKind.COMMAND, b"v" * 50) for i in range(1, 101)])
    log.flush()
    looks = 0
    real = HostLog._checkpoints

    def counted(self):
        nonlocal looks
        looks += 1
        return real(self)

    monkeypatch.setattr(HostLog, "_checkpoints", counted)
    for i in range(101, 301):
        log.write("m", None, None, [e(i)])
        log.flush()
    assert looks <= 10, f"{looks} checkpoint passes over 200 flushes"  # each time the segment doubled
    _, found = opened(fs)
    assert [x.index for x in found["m"].state.entries] == list(range(1, 301))


def test_a_reader_follows_what_a_writer_appends_and_says_when_it_cannot() -> None:
    """HostLog.tail(): the records appended to the newest segment, replayed as recovery would
    (the simulator follows the fsynced bytes this way); anything else is a False."""
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=400)
    log.write("m", HardState(1, "m"), None, [e(1)])
    log.flush()
    reader, _ = opened(fs)
    assert reader.tail() and [x.index for x in reader.image("m").entries] == [1]
    log.write("m", HardState(2, None), snap(1), [e(2, 2)])
    log.flush()
    assert reader.tail()
    im = reader.image("m")
    assert im.hard_state == HardState(2, None) and im.snapshot == snap(1) and [x.index for x in im.entries] == [2]
    for i in range(3, 30):  # until it rotates: another segment
        log.write("m", None, None, [e(i, 2)])
        log.flush()
    assert not reader.tail()
    reader, _ = opened(fs)
    log.write("m", None, None, [e(30, 2)])
    log.write_out()
    fs.truncate(seg(fs), len(fs.read(seg(fs))) - 2)  # a record that does not check out (yet)
    assert not reader.tail() and reader.image("m").entries[-1].index == 29


def test_a_dropped_member_does_not_come_back() -> None:
    fs = MemFileSystem()
    log, _ = opened(fs)
    log.write("m", None, None, [e(1)])
    log.drop("m")
    log.flush()
    _, found = opened(fs)
    assert "m" not in found


@pytest.mark.parametrize("seed", range(40))
def test_power_loss_keeps_every_flushed_write(seed: int) -> None:
    """Random writes, flushes and power losses: what a flush returned for is always
    recovered; what was written after it comes back as a prefix or not at all."""
    print(f"seed={seed}")
    rng = random.Random(seed)
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=rng.choice([300, 3_000, 1 << 20]))
    acked: dict[str, int] = {}
    last: dict[str, int] = {}
    for _ in range(300):
        key = rng.choice(["a", "b", "c"])
        nxt = last.get(key, 0) + 1
        if rng.random() < 0.1 and nxt > 3:
            back = rng.randint(max(acked.get(key, 0) + 1, 1), nxt)  # overwrite an unacked suffix
            nxt = back if back > 0 else nxt
        log.write(key, None, None, [e(nxt, 1)])
        last[key] = nxt
        r = rng.random()
        if r < 0.5:
            log.flush()
            acked.update(last)
        elif r < 0.55:
            fs.power_loss(rng)
            log, found = opened(fs, segment_bytes=log.segment_bytes)
            for k, ack in acked.items():
                got = found[k].state.entries[-1].index if k in found else 0
                assert got >= ack, (seed, k, got, ack)
            last = {k: (r.state.entries[-1].index if r.state.entries else 0) for k, r in found.items()}
            acked = dict(last)


def test_the_planted_ack_before_fsync_bug_loses_acknowledged_writes() -> None:
    """The check above can fail: with flush() not fsyncing, a power loss takes writes back."""
    lost = 0
    for seed in range(20):
        rng = random.Random(seed)
        fs = MemFileSystem()
        log, _ = opened(fs, bugs=frozenset({ACK_BEFORE_FSYNC}))
        for i in range(1, 20):
            log.write("m", None, None, [e(i)])
            log.flush()
        fs.power_loss(rng)
        _, found = opened(fs)
        lost += (found["m"].state.entries[-1].index if "m" in found else 0) < 19
    assert lost > 10


def test_on_the_real_disk(tmp_path) -> None:
    fs = OsFileSystem()
    d = os.fspath(tmp_path / "node" / "host")
    log, _ = opened(fs, d, segment_bytes=500)
    for i in range(1, 60):
        log.write("m", HardState(1, "m"), snap(i - 2) if i % 20 == 0 else None, [e(i)])
        log.flush()
    log.close()
    _, found = opened(OsFileSystem(), d)
    st = found["m"].state
    assert st.snapshot.meta.index == 38 and st.entries[-1].index == 59
    with open(os.path.join(d, sorted(n for n in os.listdir(d) if n.startswith("wal-"))[-1]), "ab") as f:
        f.write(struct.pack("<H", MAGIC) + b"\x09")  # a torn record header
    _, found = opened(OsFileSystem(), d)
    assert found["m"].state.entries[-1].index == 59


def test_a_retired_member_keeps_its_state_across_recovery_and_rotation() -> None:
    fs = MemFileSystem()
    log, _ = opened(fs, segment_bytes=300)
    log.register("g", {"mid": 1})
    log.write("g", HardState(3, None), None, [e(1), e(2)])
    log.retire("g")
    log.flush()
    for i in range(40):  # rotations: the retired member survives in checkpoints
        log.write("other", None, None, [e(i + 1)])
        log.flush()
    _, found = opened(fs)
    assert found["g"].retired and [x.index for x in found["g"].state.entries] == [1, 2]
    assert not found["other"].retired
    log2, _ = opened(fs)
    log2.register("g", {"mid": 2})  # a new member under the key: not retired any more
    log2.flush()
    _, found = opened(fs)
    assert not found["g"].retired and found["g"].info == {"mid": 2}
