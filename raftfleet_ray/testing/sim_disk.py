"""A fake disk per simulated member: a FIFO of pending writes over a durable image.

Each ``Ready`` that has something to persist (or that waits on earlier writes) becomes one
:class:`PendingWrite`. Writes complete in order, each after a random latency; only a
completed write is *durable*. A process crash loses no issued write (the OS page cache
outlives the process), a power loss keeps only a random prefix of the pending ones. A
restarted member is rebuilt from :class:`SimDisk`'s durable image and nothing else.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from raftfleet_ray.raft.types import Entry, HardState, Message, Snapshot


class StorageError(Exception):
    """The core asked for a write that leaves the durable log unusable (e.g. with a gap)."""


@dataclass(slots=True)
class PendingWrite:
    """One Ready's writes, and what waits on them."""

    hard_state: HardState | None
    snapshot: Snapshot | None
    entries: list[Entry]
    after_persist: list[Message]
    persist_seq: int
    done: float  # virtual time at which it is durable


@dataclass(slots=True)
class SimDisk:
    """The durable state of one member plus its queue of writes in flight.

    The stored log is ``entries``, contiguous, ``entries[k].index == first + k``; after a
    snapshot it holds only entries above ``snapshot.meta.index``.
    """

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    pending: deque[PendingWrite] = field(default_factory=deque)
    last_done: float = 0.0  # completion time of the newest pending write (FIFO order)
    slow_until: float = -1.0  # a slow-disk episode lasts until then
    writes: int = 0  # writes made durable, for statistics

    def submit(self, w: PendingWrite, now: float, latency: float) -> float:
        """Queue ``w``; return the time it becomes durable (never before an earlier write)."""
        done = now + latency
        if done < self.last_done:
            done = self.last_done
        w.done = done
        self.last_done = done
        self.pending.append(w)
        return done

    def complete_head(self) -> PendingWrite:
        """The oldest pending write reached the platter: apply it to the durable image."""
        w = self.pending.popleft()
        self.apply(w)
        return w

    def apply(self, w: PendingWrite) -> None:
        """Apply one write in the documented order: hard state, snapshot, entries."""
        self.writes += 1
        if w.hard_state is not None:
            self.hard_state = w.hard_state
        if w.snapshot is not None:
            self._apply_snapshot(w.snapshot)
        if w.entries:
            self._apply_entries(w.entries)

    def _apply_snapshot(self, snap: Snapshot) -> None:
        s = snap.meta.index
        if self.snapshot is not None and s <= self.snapshot.meta.index:
            return  # an older snapshot than the one we hold changes nothing
        ents = self.entries
        if ents and ents[0].index <= s <= ents[-1].index and ents[s - ents[0].index].term == snap.meta.term:
            del ents[: s - ents[0].index + 1]  # the log agrees with the snapshot: keep the suffix
        else:
            ents.clear()  # conflicting or older log: the snapshot replaces all of it
        self.snapshot = snap

    def _apply_entries(self, new: list[Entry]) -> None:
        ents = self.entries
        i = new[0].index
        for a, b in zip(new, new[1:], strict=False):
            if b.index != a.index + 1:
                raise StorageError(f"entries write is not contiguous: {a.index} then {b.index}")
        snap_index = self.snapshot.meta.index if self.snapshot is not None else 0
        if i <= snap_index:
            # Entries the snapshot already covers are committed and identical: skip them.
            new = new[snap_index - i + 1 :]
            if not new:
                return
            i = new[0].index
        end = ents[-1].index if ents else snap_index
        if i > end + 1:
            raise StorageError(f"entries write at {i} leaves a gap after the stored log end {end}")
        if ents:
            del ents[i - ents[0].index :]  # the write replaces every stored entry >= i
        ents.extend(new)

    def crash(self) -> list[PendingWrite]:
        """A process crash: every issued write still reaches the disk."""
        done = list(self.pending)
        for w in done:
            self.apply(w)
        self.pending.clear()
        return done

    def power_loss(self, keep: int) -> None:
        """A power loss: the first ``keep`` pending writes survive, the rest are lost."""
        for _ in range(keep):
            self.apply(self.pending.popleft())
        self.pending.clear()

    def reset_queue(self, now: float) -> None:
        """Forget the write queue's timing after a restart (nothing is pending then)."""
        self.pending.clear()
        self.last_done = now
