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
  after it, possibly torn inside a record (and, with the storage faults, zero-filled);
  the log's recovery cuts the torn tail.
- While a member is down, **bit rot** may flip a bit of its fsynced bytes
  (:mod:`.sim_storage`); recovery must refuse, and the disk is then restored from a backup.
- A restarted member is rebuilt from :meth:`SimDisk.reopen`, the log's recovery of the
  files, and nothing else; what recovery returns is checked against what was fsynced.
- :attr:`SimDisk.durable`, the image the direct durability check trusts, is computed from
  the fsynced bytes (the log's recovery over ``MemFileSystem.durable_copy``), never taken
  from what the log says it made durable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftfleet_ray.raft.types import Entry, HardState, Message, Snapshot
from raftfleet_ray.storage import DurableState, HostLog, MemberImage, MemFileSystem, StorageError
from raftfleet_ray.storage.log import CorruptLogError
from raftfleet_ray.testing.sim_storage import BitRot, StorageFaults, missing, violation

KEY = "member"
DIR = "disk"
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
    slow_until: float = -1.0  # a slow-disk episode lasts until then
    writes: int = 0  # flushes completed, for statistics
    name: str = "disk"  # the member's id, for the trace and the violations
    faults: StorageFaults | None = None  # bit rot and zero-filled tails (set by the simulator)
    _durable: tuple[int, MemberImage] | None = None  # (fs.version, the durable image)
    _oracle: HostLog | None = None  # the recovery of the fsynced bytes, followed with tail()
    _rot: BitRot | None = None  # a flipped bit, while the member is down

    def __post_init__(self) -> None:
        self.reopen()

    @property
    def durable(self) -> MemberImage:
        """The image a power loss keeps for sure: the log's recovery (without planted bugs)
        over the fsynced bytes alone. While bit rot is on the disk: the image before it (its
        backup)."""
        if self._rot is not None:
            return self._rot.sure
        cached = self._durable
        if cached is None or cached[0] != self.fs.version:
            cached = self._durable = (self.fs.version, self._recover_durable())
        return cached[1]

    def _recover_durable(self) -> MemberImage:
        copy = self.fs.durable_copy()
        oracle = self._oracle
        if oracle is not None:
            # Mostly an fsync appended records to the newest segment: replay just those
            # (the log's own replay, as recovery would run it on these bytes).
            oracle.fs = copy
            if not oracle.tail():
                oracle = None
        if oracle is None:
            oracle = HostLog(copy, DIR, segment_bytes=SEGMENT_BYTES)
            try:
                oracle.open()
            except StorageError as e:
                self._oracle = None
                raise violation(f"{self.name}: the log refuses its own fsynced bytes: {e}") from e
        self._oracle = oracle
        im = oracle.image(KEY)
        return im.copy() if im is not None else MemberImage()

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
        """A new process opens the files: the log's recovery, and nothing else. Checked:
        recovery returns at least everything that was fsynced (exactly that if nothing
        unsynced was left), refuses bit rot (then the backup is restored), and refuses
        nothing else."""
        rot = self._rot
        sure, exact = (rot.sure, rot.clean) if rot is not None else (self.durable, not self.fs.unsynced())
        try:
            st = self._open()
        except StorageError as e:
            if rot is None:
                raise violation(f"{self.name}: recovery refused a log that only crashes and power losses "
                                f"touched: {e}") from e
            if not isinstance(e, CorruptLogError) or e.path != rot.path or e.offset > rot.offset:
                raise violation(f"{self.name}: bit rot at {rot.path} offset {rot.offset}, but recovery "
                                f"said: {e}") from e
            assert self.faults is not None
            self.faults.rots_refused += 1
            self.faults.note(f"{self.name}: recovery refused the bit rot ({e}); disk restored from backup")
            self.fs.corrupt(rot.path, rot.offset, rot.bit)  # flipped back
            self._rot = rot = None
            try:
                st = self._open()
            except StorageError as e2:
                raise violation(f"{self.name}: recovery refused the disk restored from backup: {e2}") from e2
        self._rot = None
        lost = missing(MemberImage(st.hard_state, st.snapshot, list(st.entries)), sure, exact=exact)
        if lost is not None:
            where = f" (bit rot at {rot.path} offset {rot.offset} was not refused)" if rot is not None else ""
            raise violation(f"{self.name}: recovery lost fsynced state{where}: {lost}")
        return st

    def _open(self) -> DurableState:
        self.log = HostLog(self.fs, DIR, segment_bytes=SEGMENT_BYTES, bugs=self.bugs)
        found = {r.key: r.state for r in self.log.open()}
        self.buffered.clear()
        self.inflight.clear()
        self.flushing = False
        return found.get(KEY, DurableState())

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
        self.inflight, self.buffered = self.buffered, []
        self.flushing = True
        if self.faults is not None:
            self.faults.on_flush(self.name, any(w.entries for w in self.inflight))

    def complete_flush(self) -> list[PendingWrite]:
        """The fsync returned: the flush's writes are durable (what is durable is computed
        from the fsynced bytes: :attr:`durable`). Returns them, oldest first."""
        assert self.log is not None and self.flushing
        self.log.sync()
        self.writes += 1
        done, self.inflight = self.inflight, []
        self.flushing = False
        return done

    def crash(self) -> None:
        """A process crash: the buffer is lost; what was written out stays (page cache)."""
        self.fs.crash()
        self._maybe_rot()

    def power_loss(self, rng: random.Random) -> None:
        """A power loss: fsynced data stays, plus a random prefix of the rest."""
        self.fs.power_loss(rng, zeros=self.faults.zeros if self.faults is not None else None)
        self._maybe_rot()

    def _maybe_rot(self) -> None:
        """The member is down: maybe bit rot strikes its fsynced bytes (:mod:`.sim_storage`)."""
        if self.faults is None or self._rot is not None or not self.faults.strikes():
            return
        sure, clean = self.durable, not self.fs.unsynced()
        hit = self.faults.rot(self.fs, DIR)
        if hit is not None:
            path, offset, bit = hit
            self._rot = BitRot(path, offset, bit, sure, clean)
            self.faults.note(f"{self.name}: bit rot at {path} offset {offset} bit {bit}")


__all__ = ["KEY", "PendingWrite", "SimDisk", "StorageError"]
