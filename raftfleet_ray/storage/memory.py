"""In-memory storage: durable for as long as the process lives (a member that loses its
process loses its identity too, so nothing is ever restarted from it)."""

from __future__ import annotations

from ..raft.types import Entry, HardState, Snapshot
from .base import DurableState


class MemoryStorage:
    def __init__(self) -> None:
        self._state = DurableState()

    def _base(self) -> int:
        st = self._state
        return st.snapshot.meta.index if st.snapshot else 0

    def write(
        self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]
    ) -> None:
        st = self._state
        if hard_state is not None:
            st.hard_state = hard_state
        if snapshot is not None:
            idx, term = snapshot.meta.index, snapshot.meta.term
            log = st.entries
            first = log[0].index if log else idx + 1
            at = log[idx - first] if first <= idx < first + len(log) else None
            # Keep the suffix after the snapshot only if our log agrees with it there (Raft §7).
            st.entries = log[idx - first + 1 :] if at is not None and at.term == term else []
            st.snapshot = snapshot
        if entries:
            log = st.entries
            first_new = entries[0].index
            start = log[0].index if log else self._base() + 1
            if not start <= first_new <= start + len(log):
                raise ValueError(
                    f"storage: entries start at {first_new}, but the log holds {start}..{start + len(log) - 1}"
                )
            del log[first_new - start :]  # a conflicting suffix goes (Raft Fig. 2, receiver rule 3)
            log.extend(entries)

    def load(self) -> DurableState:
        st = self._state
        return DurableState(st.hard_state, st.snapshot, list(st.entries))

    def last_index(self) -> int:
        st = self._state
        return st.entries[-1].index if st.entries else self._base()
