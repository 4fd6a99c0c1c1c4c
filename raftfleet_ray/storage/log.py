"""The write-ahead log on disk: one log per host process, shared by all its members.

Layout of a log directory (one per host, under the node's directory)::

    wal-00000001.log   records, appended; one fsync per flush covers every member
    wal-00000002.log   (after a rotation; older segments are deleted once superseded)
    snap-<member>-<index>.snap   a snapshot: temp file, fsync, rename, directory fsync

**Records.** Each record is framed as ``magic (2 bytes) | length (4) | crc32 of the payload
(4) | crc32 of the ten header bytes before it (4) | payload | 0xA5``. The header checksum
makes a record's extent trustworthy: a length that checks out is the length that was
written, so recovery never has to guess where a record ends, and never looks inside a
payload (client bytes may contain anything, record frames included). On recovery a record
that does not check out is classified by what a torn write (a write cut short by a power
loss) can look like:

- a *torn tail*, cut (nothing in it was acknowledged), if it is at the end of the newest
  segment and either fewer than a header's bytes are left, or its header checks out and the
  record runs past the end of the file, or the file is all zeros from inside the record
  (inside its header, if that fails its checksum) to its end (a file system that extended
  the file before writing its blocks; etcd's ``isTornEntry`` looks for zeroed sectors);
- *corruption* otherwise: a header that fails its checksum with bytes that are not all
  zeros, a record that fits in the file but fails its payload checksum (a bit flip, also in
  the newest record, which was fsynced and may hold a vote), anything wrong in an older
  segment or a snapshot file (complete before the next one began). :class:`CorruptLogError`
  names the file and the offset; a corrupt record is never skipped or cut.

The end byte has four bits set: one flipped bit cannot turn the last record of a file into
"zeros to the end of the file", so the zero rule cannot mistake a bit flip for a torn write
(without it, a payload ending in ``\x01`` could be zeroed by one flip).

**Older files.** Format 1 (magic ``0x5246``, ``magic | length | crc32(length + payload) |
payload``, no header checksum), written before this format, is still read, with its old
rules: a bad record with a valid record of either format at any later byte offset is
corruption, otherwise a tail that is cut. :meth:`HostLog.open` then rewrites such a log at
once as checkpoints in a new segment of format 2 (a rotation), so those rules only ever
apply to a log on its first open by this version. Snapshot files of format 1 are read as
they are until a new snapshot replaces them. (An older version cannot read format 2.)

**Recovery makes what it replays durable.** After a process crash (an OOM kill, Ray
restarting the actor) the page cache still holds bytes that were written and never fsynced;
they read back like any other. The members then acknowledge entries that only the page
cache holds, and a power loss before the next fsync would take back a committed entry. So
:meth:`HostLog.open` fsyncs every segment and snapshot file it read, and the directory,
before it returns (PostgreSQL fsyncs its data directory after a crash for the same reason):
what it returns is durable.

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

MAGIC = 0x3252  # b"R2" on disk: record format 2
MAGIC_V1 = 0x5246  # b"FR" on disk: format 1 (read, never written); 4 bits away from MAGIC
_HEAD = struct.Struct("<HIII")  # magic, payload length, crc32(payload), crc32(the 10 bytes before)
_HEAD_CRC = struct.Struct("<HII")  # the part of the header its checksum covers
_END = 0xA5  # the byte after the payload (see the module doc: the zero rule)
_HEAD_V1 = struct.Struct("<HII")  # format 1: magic, payload length, crc32(length bytes + payload)
_V1_BYTES = struct.pack("<H", MAGIC_V1)
MAX_RECORD_V1 = 1 << 30

ACK_BEFORE_FSYNC = "ack_before_fsync"
"""A planted bug (tests and simulator): flush() returns without fsyncing, so the caller
acknowledges writes a power loss can still take away."""
RECOVERY_TRUSTS_PAGE_CACHE = "recovery_trusts_page_cache"
"""A planted bug (tests and simulator): open() returns what it replayed without fsyncing it,
so after a process crash the members acknowledge entries that only the page cache holds,
and a power loss before the next fsync takes them back (issue 13, finding 3)."""
TAIL_MISREAD = "tail_misread"
"""A planted bug (tests and simulator): the old tail rules. A bad last record is cut whatever
it looks like (a bit flip in a fsynced record too: a vote is forgotten), and a bad record is
corruption when a valid frame starts at any later byte offset (one inside a torn record's
payload too: an ordinary torn write stops the host) (issue 13, finding 5)."""
BUGS = frozenset({ACK_BEFORE_FSYNC, RECOVERY_TRUSTS_PAGE_CACHE, TAIL_MISREAD})


class CorruptLogError(StorageError):
    """A record that fails its checks and cannot be a torn write (see the module doc)."""

    def __init__(self, path: str, offset: int, why: str) -> None:
        super().__init__(f"storage: corrupt record in {path} at offset {offset}: {why}")
        self.path = path
        self.offset = offset


def frame(payload: bytes) -> bytes:
    """``payload`` as one record of the current format (see the module doc)."""
    head = _HEAD_CRC.pack(MAGIC, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload + bytes((_END,))


def frame_v1(payload: bytes) -> bytes:
    """``payload`` as a record of format 1, which the log reads but no longer writes (tests
    and the simulator write it to check that old frames are read, and that old frames
    inside client bytes are never mistaken for records)."""
    n = len(payload)
    return _HEAD_V1.pack(MAGIC_V1, n, zlib.crc32(payload, zlib.crc32(struct.pack("<I", n)))) + payload


def _zeros_to_end(data: bytes, lo: int, hi: int) -> bool:
    """Whether ``data`` is all zeros from some offset in ``[lo, hi)`` to its end."""
    if hi <= lo or not data or data[-1] != 0:
        return False
    nonzero_end = len(data.rstrip(b"\0"))
    return max(lo, nonzero_end) < hi


def _check_at(data: bytes, off: int) -> tuple[int, str | None, bool]:
    """The record of the current format at ``off``: ``(end, None, False)`` if it checks out,
    else ``(0, what is wrong, whether a torn write explains it)``."""
    size = len(data)
    if size - off < _HEAD.size:
        return 0, f"{size - off} bytes left, fewer than a record header's {_HEAD.size}", True
    magic, n, payload_crc, head_crc = _HEAD.unpack_from(data, off)
    if zlib.crc32(data[off:off + _HEAD_CRC.size]) != head_crc:
        # A torn write leaves each header byte as written or zero (never garbage): a header
        # that fails its checksum is torn only if it is zeroed up to the end of the file.
        return 0, "the header fails its checksum", _zeros_to_end(data, off, off + _HEAD.size)
    if magic != MAGIC:
        return 0, f"unknown record format (magic {magic:#06x})", False
    end = off + _HEAD.size + n + 1
    if end > size:
        # The length checked out, so the record really was this long: cut short.
        return 0, f"the record runs to offset {end}, past the end of the file at {size}", True
    if data[end - 1] != _END or zlib.crc32(data[off + _HEAD.size:end - 1]) != payload_crc:
        # It fits in the file: a torn write of it left zeros up to the end of the file
        # (the end byte among them), anything else is a changed byte.
        return 0, "the payload fails its checksum", _zeros_to_end(data, off + _HEAD.size, end)
    return end, None, False


def _valid_v1_at(data: bytes, off: int) -> int | None:
    """The end of a valid record of format 1 at ``off``, or None."""
    if off + _HEAD_V1.size > len(data):
        return None
    magic, n, crc = _HEAD_V1.unpack_from(data, off)
    end = off + _HEAD_V1.size + n
    if magic != MAGIC_V1 or n > MAX_RECORD_V1 or end > len(data):
        return None
    if zlib.crc32(data[off + _HEAD_V1.size:end], zlib.crc32(struct.pack("<I", n))) != crc:
        return None
    return end


def _valid_at(data: bytes, off: int) -> bool:
    """A valid record of either format starts at ``off`` (the old rules' probe)."""
    if data.startswith(_V1_BYTES, off):
        return _valid_v1_at(data, off) is not None
    return _check_at(data, off)[1] is None


def _old_rules(data: bytes, path: str, off: int, tail_allowed: bool) -> int:
    """Format 1's rules for a bad record at ``off`` (no header checksum, so no extent to
    trust): corruption if a valid record starts at any later byte offset, else a torn tail.
    Returns where the valid records end."""
    later = next((p for p in range(off + 1, len(data)) if _valid_at(data, p)), None)
    if later is not None:
        raise CorruptLogError(path, off, f"a valid record follows at offset {later}")
    if not tail_allowed:
        raise CorruptLogError(path, off, "a bad record in a segment that was complete")
    return off


def scan(data: bytes, path: str, *, tail_allowed: bool, old_rules: bool = False) -> tuple[list[bytes], int]:
    """The payloads of ``data`` and where the valid records end. A bad record that a torn
    write explains ends the records if ``tail_allowed`` (the newest segment); anything else
    raises :class:`CorruptLogError` (see the module doc). ``old_rules``: the planted bug
    ``TAIL_MISREAD`` (format 1's rules for records of every format)."""
    out: list[bytes] = []
    off = 0
    while off < len(data):
        if data.startswith(_V1_BYTES, off):
            end_v1 = _valid_v1_at(data, off)
            if end_v1 is None:
                return out, _old_rules(data, path, off, tail_allowed)
            out.append(data[off + _HEAD_V1.size:end_v1])
            off = end_v1
            continue
        end, why, torn = _check_at(data, off)
        if why is not None:
            if old_rules:
                return out, _old_rules(data, path, off, tail_allowed)
            if not torn:
                raise CorruptLogError(path, off, why)
            if not tail_allowed:
                raise CorruptLogError(path, off, f"{why}, in a file that was complete")
            return out, off
        out.append(data[off + _HEAD.size:end - 1])
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
        self._read: dict[str, None] = {}  # files open() read, in order: it fsyncs them
        self._tailing: tuple[list[int], bool] = ([], False)  # for tail(): the segments, old format
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
        append. What it returns is durable: every file it read is fsynced, and the directory,
        before it returns. Raises :class:`CorruptLogError` / :class:`StorageError` naming the
        file."""
        self.fs.makedirs(self.dir)
        segs = self._segments()
        nos = [n for n, _ in segs]
        if nos and nos != list(range(nos[0], nos[-1] + 1)):
            raise StorageError(f"storage: segments missing in {self.dir}: found {nos}")
        trust_cache = RECOVERY_TRUSTS_PAGE_CACHE in self._bugs
        old_format = False
        self._read = {}
        for i, (no, name) in enumerate(segs):
            path = join(self.dir, name)
            data = self.fs.read(path)
            self._read[path] = None
            old_format = old_format or data.startswith(_V1_BYTES)
            last = i == len(segs) - 1
            payloads, end = scan(data, path, tail_allowed=last, old_rules=TAIL_MISREAD in self._bugs)
            for off, p in enumerate(payloads):
                try:
                    rec = pickle.loads(p)
                except Exception as e:  # noqa: BLE001 - a record that checks out but does not decode
                    raise CorruptLogError(path, off, f"record {off} does not decode: {e!r}") from e
                self._replay(rec, path)
            if last:
                if end < len(data):
                    self.fs.truncate(path, end)  # the torn tail: never acknowledged
                    if trust_cache:
                        self.fs.fsync(path)  # the one fsync recovery did before issue 13
                self._seg_no, self._seg_size = no, end
        if not segs:
            self._seg_no, self._seg_size = 1, 0
            self.fs.append(self._seg_path(), b"")
            self.fs.fsync(self._seg_path())
            self.fs.fsync_dir(self.dir)
        elif not trust_cache:
            # What was read may be in the page cache only (written before a process crash,
            # never fsynced): make it durable before anyone acknowledges it.
            try:
                for path in self._read:
                    self.fs.fsync(path)
                self.fs.fsync_dir(self.dir)
            except OSError as e:
                raise StorageError(f"storage: making the recovered log in {self.dir} durable failed: {e}") from e
        self._read = {}
        self._opened = True
        self._tailing = ([n for n, _ in segs], old_format)
        if old_format:
            # Rewrite a log of format 1 in the current format at once, so that its weaker
            # tail rules never apply to a record this version wrote.
            self._rotate(b"".join(self._checkpoints()))
        return self.members()

    def tail(self) -> bool:
        """For a log that is only read (never written through this object): replay the
        records appended to the newest segment since :meth:`open` or the last call, which
        another writer added (the simulator follows the fsynced bytes of a member's log this
        way, instead of recovering them all again at every fsync). Returns False, having
        replayed nothing, if the files changed in any other way (another segment, a shorter
        newest segment, a record that does not check out at the end): recover with a new
        :class:`HostLog` then. Only the newest segment is read again."""
        nos, old_format = self._tailing
        if not self._opened or old_format or [n for n, _ in self._segments()] != nos or not nos:
            return False
        path = self._seg_path()
        data = self.fs.read(path)
        if len(data) < self._seg_size:
            return False
        try:
            payloads, end = scan(data[self._seg_size:], path, tail_allowed=False)
            records = [pickle.loads(p) for p in payloads]
        except Exception:  # noqa: BLE001 - judged by a full recovery, which names file and offset
            return False
        for rec in records:
            self._replay(rec, path)
        self._read = {}  # (what open() fsyncs; nothing here)
        self._seg_size += end
        return True

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
        self._read[path] = None
        payloads, end = scan(data, path, tail_allowed=False, old_rules=TAIL_MISREAD in self._bugs)
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
        self._rotate(live)

    def _rotate(self, live: bytes) -> None:
        """Start a new segment with ``live`` (every member's checkpoint), make it durable,
        then delete the older segments and the snapshot files no image refers to."""
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


__all__ = [
    "ACK_BEFORE_FSYNC",
    "BUGS",
    "RECOVERY_TRUSTS_PAGE_CACHE",
    "TAIL_MISREAD",
    "CorruptLogError",
    "HostLog",
    "MemberLog",
    "Recovered",
    "frame",
    "frame_v1",
    "scan",
]
