"""MemoryStorage follows the Ready contract (raft/types.py): writes in order, an entries write
at index i replaces every stored entry >= i, a snapshot drops what it covers (all of the log
if it conflicts), and a restart is rebuilt from exactly what was written."""

from __future__ import annotations

import pytest

from raftfleet_ray.raft import Entry, EntryKind, HardState, Snapshot, SnapshotMeta
from raftfleet_ray.storage import MemoryStorage


def e(index: int, term: int) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, f"x{index}")


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ("a", "b", "c")), b"state")


def test_append_and_load() -> None:
    st = MemoryStorage()
    st.write(HardState(1, "a"), None, [e(1, 1), e(2, 1)])
    st.write(None, None, [e(3, 1)])
    d = st.load()
    assert d.hard_state == HardState(1, "a")
    assert [x.index for x in d.entries] == [1, 2, 3]
    assert st.last_index() == 3


def test_conflicting_suffix_is_truncated() -> None:
    """Raft Fig. 2, receiver rule 3: an entry at i replaces i and everything after it."""
    st = MemoryStorage()
    st.write(None, None, [e(1, 1), e(2, 1), e(3, 1), e(4, 1)])
    st.write(None, None, [e(3, 2)])
    assert [(x.index, x.term) for x in st.load().entries] == [(1, 1), (2, 1), (3, 2)]


def test_gap_is_refused() -> None:
    st = MemoryStorage()
    st.write(None, None, [e(1, 1)])
    with pytest.raises(ValueError, match="entries start at 3"):
        st.write(None, None, [e(3, 1)])


def test_matching_snapshot_keeps_the_suffix() -> None:
    st = MemoryStorage()
    st.write(None, None, [e(i, 1) for i in range(1, 6)])
    st.write(None, snap(3, 1), [])
    d = st.load()
    assert d.snapshot.meta.index == 3
    assert [x.index for x in d.entries] == [4, 5]
    st.write(None, None, [e(6, 1)])
    assert st.last_index() == 6


def test_conflicting_snapshot_drops_the_log() -> None:
    """Raft §7: a snapshot whose last entry we do not hold replaces the whole log."""
    st = MemoryStorage()
    st.write(None, None, [e(i, 1) for i in range(1, 6)])
    st.write(None, snap(4, 2), [])
    d = st.load()
    assert d.entries == [] and st.last_index() == 4
    st.write(None, None, [e(5, 2)])
    assert [x.index for x in st.load().entries] == [5]
