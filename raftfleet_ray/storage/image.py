"""The storage contract, implemented once: what one ``Ready``'s writes do to a member's
durable state.

:class:`MemberImage` is that state (hard state, snapshot, log after the snapshot) and
:meth:`MemberImage.apply` the one implementation of the rules. The in-memory backend *is* a
``MemberImage``; the write-ahead log (``log.py``) checks every write against one before it
is logged, and replays its records through the same method on recovery. A write the rules
forbid raises :class:`StorageError` in every backend alike, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..raft.types import Entry, HardState, Snapshot
from .base import DurableState


class StorageError(Exception):
    """A write that would leave the durable log unusable (a gap, an entry below the
    snapshot), or storage that cannot be read back (corruption, a missing file)."""


@dataclass(slots=True)
class MemberImage:
    """One member's durable state. ``entries`` is contiguous and starts right after the
    snapshot (or at 1)."""

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def base(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base

    def check(self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]) -> None:
        """Raise :class:`StorageError` if :meth:`apply` of this write would; change nothing."""
        for a, b in zip(entries, entries[1:], strict=False):
            if b.index != a.index + 1:
                raise StorageError(f"storage: entries are not contiguous: {a.index} then {b.index}")
        if not entries:
            return
        if snapshot is not None:
            kept = self._kept_after(snapshot)
            base, end = snapshot.meta.index, (kept[-1].index if kept else snapshot.meta.index)
        else:
            base, end = self.base, self.last_index()
        first = entries[0].index
        if not base + 1 <= first <= end + 1:
            raise StorageError(
                f"storage: entries start at {first}, but the log holds {base + 1}..{end} "
                f"(an entry below the snapshot at {base}, or a gap)"
            )

    def _kept_after(self, snap: Snapshot) -> list[Entry]:
        """The suffix of the log a snapshot keeps: the entries after it, if the log agrees
        with the snapshot at its index (Raft §7); none otherwise."""
        idx, term = snap.meta.index, snap.meta.term
        log = self.entries
        first = log[0].index if log else idx + 1
        if first <= idx < first + len(log) and log[idx - first].term == term:
            return log[idx - first + 1:]
        if idx == self.base and self.snapshot is not None and self.snapshot.meta.term == term:
            return list(log)  # the same snapshot again
        return []

    def apply(self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]) -> None:
        """Apply one Ready's writes in order: hard state, then snapshot (it drops the entries
        it covers, all of them if they conflict), then entries (an entry at index i replaces
        every stored entry >= i)."""
        self.check(hard_state, snapshot, entries)
        if hard_state is not None:
            self.hard_state = hard_state
        if snapshot is not None:
            self.entries = self._kept_after(snapshot)
            self.snapshot = snapshot
        if entries:
            log = self.entries
            start = log[0].index if log else self.base + 1
            del log[entries[0].index - start:]  # a conflicting suffix goes (Raft Fig. 2, rule 3)
            log.extend(entries)

    def durable_state(self) -> DurableState:
        return DurableState(self.hard_state, self.snapshot, list(self.entries))

    def copy(self) -> MemberImage:
        return MemberImage(self.hard_state, self.snapshot, list(self.entries))


__all__ = ["MemberImage", "StorageError"]
