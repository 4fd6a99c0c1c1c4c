"""The write-ahead log on disk: one log per host process, shared by all its members.

Layout of a log directory (one per host, under the node's directory)::

    wal-00000001.log   records, appended; one fsync per flush covers every member
    wal-00000002.log   (after a rotation; older segments are deleted once superseded)
    snap-<member>-<index>.snap   a snapshot: temp file, fsync, rename, directory fsync

**Records.** Each record is framed as ``magic (2 bytes) | length (4) | crc32 (4) |
payload``, the CRC covering the length and the payload. On recovery a record that does not
check out is

- a *torn tail* if nothing valid follows it in the newest segment: the tail is cut (a
  write interrupted by a power loss; nothing after it was acknowledged);
- *corruption* otherwise (a bad record with valid records after it, or any bad record in
  an older segment, which was fsynced before the next one began): :class:`CorruptLogError`
  names the file and the offset. A corrupt record is never skipped.

**Group commit.** :meth:`HostLog.write` checks the write against the member's image (the
contract's one implementation, ``image.py``) and buffers it; :meth:`HostLog.flush` appends
the buffer to the segment and fsyncs it once for every member of the host. The caller sends
``messages_after_persist`` and calls ``on_persisted`` only after the flush returns. So the
fsync rate is one per host loop turn with writes, whatever the number of groups (Ra's shared
WAL; Ra then copies to per-member segments, which this log replaces with rotation).

**Rotation.** When the segment outgrows ``segment_bytes`` (and twice the live state), a new
segment starts with one checkpoint record per member (its whole image, including writes
still buffered, which the checkpoint thus makes durable early), is fsynced with its
directory, and the older segments are deleted. Snapshot files no image
refers to are deleted with them.

**Members.** Each member's records carry its key (the member id). A member's ``info``
(its group, config, replica count: whatever the runtime needs to recreate it) is logged
with it, so a whole fleet can be rebuilt from the files alone. :meth:`HostLog.drop` logs the
removal of a member: its state is gone at the next recovery.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..raft.types import Entry, HardState, Snapshot
from .base import DurableState
from .fs import FileSystem, join
from .image import MemberImage, StorageError

MAGIC = 0x5246  # "RF"
_HEAD = struct.Struct("<HII")  # magic, payload length, crc32(length bytes + payload)
MAX_RECORD = 1 << 30

ACK_BEFORE_FSYNC = "ack_before_fsync"
"""A planted bug (tests and simulator): flush() returns without fsyncing, so the caller
acknowledges writes a power loss can still take away."""
BUGS = frozenset({ACK_BEFORE_FSYNC})


class CorruptLogError(StorageError):
    """A record that fails its check before the tail of the log, or in an older segment."""

    def __init__(self, path: str, offset: int, why: str) -> None:
        super().__init__(f"storage: corrupt record in {path} at offset {offset}: {why}")
        self.path = path
        self.offset = offset


def frame(payload: bytes) -> bytes:
    n = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", n)))
    return _HEAD.pack(MAGIC, n, crc) + payload


def _valid_at(data: bytes, off: int) -> int | None:
    """The end of a valid record at ``off``, or None."""
    if off + _HEAD.size > len(data):
        return None
    magic, n, crc = _HEAD.unpack_from(data, off)
    end = off + _HEAD.size + n
    if magic != MAGIC or n > MAX_RECORD or end > len(data):
        return None
    if zlib.crc32(data[off + _HEAD.size:end], zlib.crc32(struct.pack("<I", n))) != crc:
        return None
    return end


def scan(data: bytes, path: str, *, tail_allowed: bool) -> tuple[list[bytes], int]:
    """The payloads of ``data`` and where the valid records end. A bad record with nothing
    valid after it is a torn tail (allowed only if ``tail_allowed``); anything else raises."""
    out: list[bytes] = []
    off = 0
    while off < len(data):
        end = _valid_at(data, off)
        if end is None:
            later = next((p for p in range(off + 1, len(data) - _HEAD.size + 1) if _valid_at(data, p)), None)
            if later is not None:
                raise CorruptLogError(path, off, f"a valid record follows at offset {later}")
            if not tail_allowed:
                raise CorruptLogError(path, off, "a bad record in a segment that was complete")
            return out, off
        out.append(data[off + _HEAD.size:end])
        off = end
    return out, off


def _safe(key: str) -> str:
    """A file-name fragment for a member key: readable, and unique by its hash."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)[-40:] + "-" + hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass(slots=True)
class _Member:
    image: MemberImage = field(default_factory=MemberImage)
    info: Any = None
    snap_file: str | None = None  # the file of image.snapshot
    retired: bool = False  # its group was removed: kept to restore it if added again


@dataclass(frozen=True, slots=True)
class Recovered:
    """A member found in a log: its durable state and its info."""

    key: str
    state: DurableState
    info: Any
    retired: bool = False


class HostLog:
    """The write-ahead log of one host process (see the module doc)."""

    def __init__(self, fs: FileSystem, directory: str, *, segment_bytes: int = 8 << 20,
                 bugs: frozenset[str] = frozenset()) -> None:
        unknown = set(bugs) - BUGS
        if unknown:
            raise ValueError(f"unknown planted storage bugs {sorted(unknown)}; known: {sorted(BUGS)}")
        self.fs = fs
        self.dir = directory
        self.segment_bytes = segment_bytes
        self._rotate_at = 0  # the next rotation is looked at past max(segment_bytes, this)
        self._bugs = bugs
        self._members: dict[str, _Member] = {}
        self._buf: list[bytes] = []
        self._seg_no = 0
        self._seg_size = 0
        self._opened = False
        self._failed: OSError | None = None
        self._unsynced = False  # written out since the last fsync
        self._synced_now = False  # fsync_written done, finish_sync not yet
        self.fsyncs = 0  # flushes that reached the disk, for statistics and tests

    # -- recovery ------------------------------------------------------------------------

    def _segments(self) -> list[tuple[int, str]]:
        segs = []
        for name in self.fs.listdir(self.dir):
            m = re.fullmatch(r"wal-(\d{8})\.log", name)
            if m:
                segs.append((int(m.group(1)), name))
        return sorted(segs)

    def open(self) -> list[Recovered]:
        """Recover every member from the directory (created if missing) and get ready to
        append. Raises :class:`CorruptLogError` / :class:`StorageError` naming the file."""
        self.fs.makedirs(self.dir)
        segs = self._segments()
        nos = [n for n, _ in segs]
        if nos and nos != list(range(nos[0], nos[-1] + 1)):
            raise StorageError(f"storage: segments missing in {self.dir}: found {nos}")
        for i, (no, name) in enumerate(segs):
            path = join(self.dir, name)
            data = self.fs.read(path)
            last = i == len(segs) - 1
            payloads, end = scan(data, path, tail_allowed=last)
            for off, p in enumerate(payloads):
                try:
                    rec = pickle.loads(p)
                except Exception as e:  # noqa: BLE001 - a record that checks out but does not decode
                    raise CorruptLogError(path, off, f"record {off} does not decode: {e!r}") from e
                self._replay(rec, path)
            if last:
                if end < len(data):
                    self.fs.truncate(path, end)  # the torn tail: never acknowledged
                    self.fs.fsync(path)
                self._seg_no, self._seg_size = no, end
        if not segs:
            self._seg_no, self._seg_size = 1, 0
            self.fs.append(self._seg_path(), b"")
            self.fs.fsync(self._seg_path())
            self.fs.fsync_dir(self.dir)
        self._opened = True
        return self.members()

    def members(self) -> list[Recovered]:
        """Every member the log holds (retired ones included), as recovery sees them."""
        return [Recovered(k, m.image.durable_state(), m.info, m.retired) for k, m in self._members.items()]

    def _replay(self, rec: tuple, path: str) -> None:
        kind, key = rec[0], rec[1]
        if kind == "w":
            _, _, hs, snap_ref, entries = rec
            m = self._members.setdefault(key, _Member())
            snap = self._load_snapshot(snap_ref) if snap_ref is not None else None
            try:
                m.image.apply(hs, snap, entries)
            except StorageError as e:
                raise StorageError(f"{e} (replaying {path})") from e
            if snap_ref is not None:
                m.snap_file = snap_ref
        elif kind == "ckpt":
            _, _, hs, snap_ref, entries, info, *rest = rec
            snap = self._load_snapshot(snap_ref) if snap_ref is not None else None
            self._members[key] = _Member(MemberImage(hs, snap, list(entries)), info, snap_ref, bool(rest and rest[0]))
        elif kind == "retire":
            if key in self._members:
                self._members[key].retired = True
        elif kind == "info":
            m = self._members.setdefault(key, _Member())
            m.info, m.retired = rec[2], False
        elif kind == "drop":
            self._members.pop(key, None)
        else:
            raise StorageError(f"storage: unknown record kind {kind!r} in {path}")

    def _load_snapshot(self, name: str) -> Snapshot:
        path = join(self.dir, name)
        try:
            data = self.fs.read(path)
        except FileNotFoundError:
            raise StorageError(f"storage: snapshot file {path} is missing (the log refers to it)") from None
        payloads, end = scan(data, path, tail_allowed=False)
        if len(payloads) != 1 or end != len(data):
            raise CorruptLogError(path, end, "a snapshot file holds exactly one record")
        snap = pickle.loads(payloads[0])
        if not isinstance(snap, Snapshot):
            raise CorruptLogError(path, 0, "not a snapshot")
        return snap

    # -- writing -------------------------------------------------------------------------

    def _seg_path(self, no: int | None = None) -> str:
        return join(self.dir, f"wal-{self._seg_no if no is None else no:08d}.log")

    def _check_usable(self) -> None:
        if not self._opened:
            raise StorageError("storage: HostLog.open() first")
        if self._failed is not None:
            raise StorageError(f"storage: the log in {self.dir} failed ({self._failed}); this host "
                               "accepts no more writes") from self._failed

    def register(self, key: str, info: Any) -> None:
        """Log a new member (or new info for one): ``info`` comes back from :meth:`open`."""
        self._check_usable()
        m = self._members.setdefault(key, _Member())
        m.info, m.retired = info, False
        self._buf.append(frame(pickle.dumps(("info", key, info), protocol=5)))

    def write(self, key: str, hard_state: HardState | None, snapshot: Snapshot | None,
              entries: list[Entry]) -> None:
        """Check one Ready's writes against the member's image and buffer them; durable
        after the next :meth:`flush`. A snapshot goes to its own file at once (temp file,
        fsync, rename, directory fsync): it is rare, and the record refers to it."""
        self._check_usable()
        m = self._members.setdefault(key, _Member())
        m.image.check(hard_state, snapshot, entries)
        snap_ref = self._write_snapshot(key, snapshot) if snapshot is not None else None
        m.image.apply(hard_state, snapshot, list(entries))
        if snap_ref is not None:
            m.snap_file = snap_ref
        self._buf.append(frame(pickle.dumps(("w", key, hard_state, snap_ref, list(entries)), protocol=5)))

    def _write_snapshot(self, key: str, snap: Snapshot) -> str:
        name = f"snap-{_safe(key)}-{snap.meta.index:012d}-{snap.meta.term}.snap"
        tmp = join(self.dir, name + ".tmp")
        try:
            self.fs.write_new(tmp, frame(pickle.dumps(snap, protocol=5)))  # written and fsynced
            self.fs.rename(tmp, join(self.dir, name))
            self.fs.fsync_dir(self.dir)
        except OSError as e:
            self._failed = e
            raise StorageError(f"storage: writing snapshot {name} in {self.dir} failed: {e}") from e
        return name

    def drop(self, key: str) -> None:
        """The member left (removed from its group, or its group removed)."""
        self._check_usable()
        if self._members.pop(key, None) is not None:
            self._buf.append(frame(pickle.dumps(("drop", key), protocol=5)))

    def retire(self, key: str) -> None:
        """The member's group was removed: keep its state, marked retired (recovery does not
        restart it; a group added again under that name is restored from it)."""
        self._check_usable()
        m = self._members.get(key)
        if m is not None and not m.retired:
            m.retired = True
            self._buf.append(frame(pickle.dumps(("retire", key), protocol=5)))

    def pending(self) -> bool:
        return bool(self._buf)

    def flush(self) -> None:
        """Make every buffered write durable with one append and one fsync. On an I/O error
        (a full disk) nothing buffered is acknowledged and the log refuses further writes:
        :class:`StorageError` names the directory and the cause."""
        self.write_out()
        self.sync()

    def write_out(self) -> None:
        """The first half of :meth:`flush`: hand the buffer to the OS (one append). Not
        durable yet; the simulator lets time pass (and power fail) before :meth:`sync`."""
        self._check_usable()
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        try:
            self.fs.append(self._seg_path(), data)
        except OSError as e:
            self._failed = e
            raise StorageError(f"storage: writing the log in {self.dir} failed: {e}") from e
        self._seg_size += len(data)
        self._unsynced = True

    def sync(self) -> None:
        """The second half of :meth:`flush`: one fsync for everything written out; then
        rotate if the segment is due."""
        self.fsync_written()
        self.finish_sync()

    def fsync_written(self) -> None:
        """Just the fsync of what :meth:`write_out` handed over. The one part of a flush that
        may run on another thread (the host's event loop goes on meanwhile, buffering the
        next writes); everything else runs on the caller's thread, one flush at a time."""
        self._check_usable()
        if not self._unsynced:
            return
        try:
            if ACK_BEFORE_FSYNC not in self._bugs:
                self.fs.fsync(self._seg_path())
        except OSError as e:
            self._failed = e
            raise StorageError(f"storage: fsync of the log in {self.dir} failed: {e}") from e
        self._synced_now = True

    def finish_sync(self) -> None:
        """After :meth:`fsync_written`: count it, and rotate if the segment is due."""
        self._check_usable()
        if not self._synced_now:
            return
        self._synced_now = False
        self._unsynced = False
        self.fsyncs += 1
        if self._seg_size > max(self.segment_bytes, self._rotate_at):
            self._maybe_rotate()

    def _checkpoints(self) -> Iterator[bytes]:
        for key, m in self._members.items():
            im = m.image
            yield frame(pickle.dumps(("ckpt", key, im.hard_state, m.snap_file, list(im.entries), m.info, m.retired),
                                     protocol=5))

    def _maybe_rotate(self) -> None:
        live = b"".join(self._checkpoints())
        if self._seg_size <= 2 * len(live):
            # Mostly live state: rotating now would copy it all for little gain. Look again
            # once the segment has doubled (not at every flush: each look pickles every
            # member's image, so the looks cost O(1) per byte written).
            self._rotate_at = 2 * max(len(live), self._seg_size)
            return
        old = [no for no, _ in self._segments()]
        self._seg_no += 1
        path = self._seg_path()
        try:
            self.fs.append(path, live)
            self.fs.fsync(path)
            self.fs.fsync_dir(self.dir)  # the new segment exists before the old ones go
            for no in old:
                self.fs.remove(self._seg_path(no))
            keep = {m.snap_file for m in self._members.values()}
            for name in self.fs.listdir(self.dir):
                if name.startswith("snap-") and name not in keep:
                    self.fs.remove(join(self.dir, name))
            self.fs.fsync_dir(self.dir)
        except OSError as e:
            self._failed = e
            raise StorageError(f"storage: rotating the log in {self.dir} failed: {e}") from e
        self._seg_size = len(live)
        # The checkpoints were taken from the images, which already include the writes
        # buffered since the last write_out: those are durable now, and replaying their
        # records after the checkpoints would apply them twice (out of order).
        self._buf.clear()

    def close(self) -> None:
        self.fs.close()

    # -- per-member view -----------------------------------------------------------------

    def storage(self, key: str) -> MemberLog:
        return MemberLog(self, key)

    def image(self, key: str) -> MemberImage | None:
        m = self._members.get(key)
        return m.image if m is not None else None


class MemberLog:
    """One member's view of its host's log: the ``Storage`` protocol, with writes durable
    only after the host's next :meth:`HostLog.flush` (``synchronous`` is False)."""

    synchronous = False

    def __init__(self, log: HostLog, key: str) -> None:
        self._log = log
        self.key = key

    def write(self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]) -> None:
        self._log.write(self.key, hard_state, snapshot, entries)

    def load(self) -> DurableState:
        im = self._log.image(self.key)
        return im.durable_state() if im is not None else DurableState()

    def last_index(self) -> int:
        im = self._log.image(self.key)
        return im.last_index() if im is not None else 0


__all__ = ["ACK_BEFORE_FSYNC", "CorruptLogError", "HostLog", "MemberLog", "Recovered", "frame", "scan"]
