"""A simulated member's disk: the real write-ahead log (``storage/log.py``) over the
in-memory filesystem with crash semantics (``storage/fs.py``). No second implementation of
the storage contract: a write the runtime's storage refuses, the simulator refuses too.

Group commit as in the runtime: every write is buffered in the log; one flush at a time is
in flight. A flush hands the buffer to the OS (``write_out``), the disk takes a random
latency, then the fsync completes (``sync``) and every write the flush covered is durable:
their ``messages_after_persist`` go out and the core hears ``on_persisted``. Writes issued
while a flush is in flight wait for the next one.

- A **process crash** loses the buffer (process memory) but not what was written out.
- A **power loss** keeps what was fsynced plus a random prefix of what was written out
  after it, possibly torn inside a record; the log's recovery cuts the torn tail.
- A restarted member is rebuilt from :meth:`SimDisk.reopen`, the log's recovery of the
  files, and nothing else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftfleet_ray.raft.types import Entry, HardState, Message, Snapshot
from raftfleet_ray.storage import DurableState, HostLog, MemberImage, MemFileSystem, StorageError

KEY = "member"
SEGMENT_BYTES = 4096  # small, so that rotation (checkpoints, deleted segments) is exercised


@dataclass(slots=True)
class PendingWrite:
    """One Ready's writes, and what waits on them."""

    hard_state: HardState | None
    snapshot: Snapshot | None
    entries: list[Entry]
    after_persist: list[Message]
    persist_seq: int
    done: float = 0.0


@dataclass(slots=True)
class SimDisk:
    """The files of one member, its log, and the flush in flight."""

    bugs: frozenset[str] = frozenset()
    fs: MemFileSystem = field(default_factory=MemFileSystem)
    log: HostLog | None = None
    buffered: list[PendingWrite] = field(default_factory=list)  # waiting for the next flush
    inflight: list[PendingWrite] = field(default_factory=list)  # covered by the flush in flight
    flushing: bool = False
    durable: MemberImage = field(default_factory=MemberImage)  # as of the last completed fsync
    _written: MemberImage | None = None  # the image as of the flush in flight's write_out
    slow_until: float = -1.0  # a slow-disk episode lasts until then
    writes: int = 0  # flushes completed, for statistics

    def __post_init__(self) -> None:
        self.reopen()

    # The durable image, for the simulator's direct durability check.
    @property
    def hard_state(self) -> HardState | None:
        return self.durable.hard_state

    @property
    def snapshot(self) -> Snapshot | None:
        return self.durable.snapshot

    @property
    def entries(self) -> list[Entry]:
        return self.durable.entries

    @property
    def pending(self) -> bool:
        """Writes issued and not durable yet (buffered or in the flush in flight)."""
        return bool(self.buffered or self.inflight)

    def reopen(self) -> DurableState:
        """A new process opens the files: the log's recovery, and nothing else."""
        self.log = HostLog(self.fs, "disk", segment_bytes=SEGMENT_BYTES, bugs=self.bugs)
        found = {r.key: r.state for r in self.log.open()}
        st = found.get(KEY, DurableState())
        self.durable = MemberImage(st.hard_state, st.snapshot, list(st.entries))
        self.buffered.clear()
        self.inflight.clear()
        self.flushing = False
        self._written = None
        return st

    def submit(self, w: PendingWrite) -> bool:
        """Buffer ``w`` in the log. True if a flush must be started now (none in flight)."""
        assert self.log is not None
        if w.hard_state is not None or w.snapshot is not None or w.entries:
            self.log.write(KEY, w.hard_state, w.snapshot, w.entries)  # StorageError: a contract breach
        self.buffered.append(w)
        return not self.flushing

    def start_flush(self) -> None:
        """Hand the buffer to the OS; durable once :meth:`complete_flush` runs."""
        assert self.log is not None and not self.flushing
        self.log.write_out()
        im = self.log.image(KEY)
        self._written = im.copy() if im is not None else MemberImage()
        self.inflight, self.buffered = self.buffered, []
        self.flushing = True

    def complete_flush(self) -> list[PendingWrite]:
        """The fsync returned: the flush's writes are durable. Returns them, oldest first."""
        assert self.log is not None and self.flushing
        self.log.sync()
        self.writes += 1
        assert self._written is not None
        self.durable = self._written
        done, self.inflight = self.inflight, []
        self.flushing = False
        return done

    def crash(self) -> None:
        """A process crash: the buffer is lost; what was written out stays (page cache)."""
        self.fs.crash()

    def power_loss(self, rng: random.Random) -> None:
        """A power loss: fsynced data stays, plus a random prefix of the rest."""
        self.fs.power_loss(rng)


__all__ = ["KEY", "PendingWrite", "SimDisk", "StorageError"]
