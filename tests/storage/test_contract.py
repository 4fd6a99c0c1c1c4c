"""Every backend follows the Ready contract (raft/types.py) alike: writes in order, an entries
write at index i replaces every stored entry >= i, a snapshot drops what it covers (all of the
log if it conflicts), a gap or an entry below the snapshot is refused before anything is
written. Run over MemoryStorage and over the write-ahead log (flushed after every write)."""

from __future__ import annotations

import pytest

from raftfleet_ray.raft import Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raftfleet_ray.storage import HostLog, MemFileSystem, MemoryStorage, StorageError


class _Flushed:
    """The log's member view, flushed after each write, recovered from the files on load."""

    def __init__(self) -> None:
        self.fs = MemFileSystem()
        self.log = HostLog(self.fs, "d")
        self.log.open()
        self.st = self.log.storage("m")

    def write(self, hs, snap, entries) -> None:
        self.st.write(hs, snap, entries)
        self.log.flush()

    def load(self):
        fresh = HostLog(self.fs, "d")
        got = {r.key: r.state for r in fresh.open()}
        live = self.st.load()
        assert got.get("m", live) == live, "recovery differs from what was written"
        return live

    def last_index(self) -> int:
        return self.st.last_index()


@pytest.fixture(params=["memory", "log"])
def backend(request):
    return MemoryStorage if request.param == "memory" else _Flushed


def e(index: int, term: int) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, f"x{index}")


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ("a", "b", "c")), b"state")


def test_append_and_load(backend) -> None:
    st = backend()
    st.write(HardState(1, "a"), None, [e(1, 1), e(2, 1)])
    st.write(None, None, [e(3, 1)])
    d = st.load()
    assert d.hard_state == HardState(1, "a")
    assert [x.index for x in d.entries] == [1, 2, 3]
    assert st.last_index() == 3


def test_conflicting_suffix_is_truncated(backend) -> None:
    """Raft Fig. 2, receiver rule 3: an entry at i replaces i and everything after it."""
    st = backend()
    st.write(None, None, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)])
    st.write(None, None, [e(3, 2)])
    assert [(x.index, x.term) for x in st.load().entries] == [(1, 1), (2, 1), (3, 2)]


def test_gap_is_refused(backend) -> None:
    st = backend()
    st.write(None, None, [e(1, 1)])
    with pytest.raises(StorageError, match="entries start at 3"):
        st.write(None, None, [e(3, 1)])
    assert st.last_index() == 1  # nothing of the refused write was kept


def test_entries_below_the_snapshot_are_refused(backend) -> None:
    """The core bug of the persistence issue asked for this order: a snapshot at 5 and, in the
    same Ready, entries from 3. Every backend refuses it alike (the simulator's old disk
    silently skipped the covered entries and hid the bug)."""
    st = backend()
    st.write(None, None, [e(i, 1) for i in range(1, 3)])
    with pytest.raises(StorageError, match="below the snapshot"):
        st.write(None, snap(5, 1), [e(i, 1) for i in range(3, 7)])
    assert st.last_index() == 2


def test_matching_snapshot_keeps_the_suffix(backend) -> None:
    st = backend()
    st.write(None, None, [e(i, 1) for i in range(1, 6)])
    st.write(None, snap(3, 1), [])
    d = st.load()
    assert d.snapshot.meta.index == 3
    assert [x.index for x in d.entries] == [4, 5]
    st.write(None, None, [e(6, 1)])
    assert st.last_index() == 6


def test_conflicting_snapshot_drops_the_log(backend) -> None:
    """Raft §7: a snapshot whose last entry we do not hold replaces the whole log."""
    st = backend()
    st.write(None, None, [e(i, 1) for i in range(1, 6)])
    st.write(None, snap(4, 2), [])
    d = st.load()
    assert d.entries == [] and st.last_index() == 4
    st.write(None, None, [e(5, 2)])
    assert [x.index for x in st.load().entries] == [5]
