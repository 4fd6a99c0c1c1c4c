"""The few file operations storage needs, on a real disk or in memory with crash semantics.

:class:`OsFileSystem` is the real one. :class:`MemFileSystem` is the same contract in
memory, with the failure semantics of a real disk and page cache, so the simulator and the
storage tests run the real storage code (``log.py``) over it:

- a **process crash** loses nothing that was written (the kernel's page cache outlives the
  process): :meth:`MemFileSystem.crash` is a no-op on data;
- a **power loss** keeps what was fsynced, plus a random prefix of what was written after
  it (possibly cut inside a record: a torn write), the end of which may read back as zeros
  (a file system that extended the file before writing its blocks); names created, renamed
  or removed since their directory's last fsync revert (:meth:`MemFileSystem.power_loss`);
  :meth:`MemFileSystem.durable_copy` is what every power loss keeps;
- a **full disk**: after ``space`` bytes, writes raise ``OSError(ENOSPC)``.

Paths are plain strings joined with ``/``.
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass, field
from typing import Protocol


class FileSystem(Protocol):
    def makedirs(self, path: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def read(self, path: str) -> bytes: ...
    def append(self, path: str, data: bytes) -> None:
        """Append ``data`` (the file is created if missing)."""
        ...
    def write_new(self, path: str, data: bytes) -> None:
        """Create (or truncate) ``path`` and write ``data``."""
        ...
    def fsync(self, path: str) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def close(self) -> None: ...


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else "."


class OsFileSystem:
    """The real disk. Append handles stay open (one per file) until :meth:`close`."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fds[path] = fd
        return fd

    def _drop(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def append(self, path: str, data: bytes) -> None:
        fd = self._fd(path)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def write_new(self, path: str, data: bytes) -> None:
        self._drop(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync(self, path: str) -> None:
        fd = self._fds.get(path)
        if fd is not None:
            os.fsync(fd)
        else:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        self._drop(src)
        self._drop(dst)
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        self._drop(path)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def truncate(self, path: str, size: int) -> None:
        self._drop(path)
        os.truncate(path, size)

    def close(self) -> None:
        for path in list(self._fds):
            self._drop(path)


@dataclass(eq=False)
class _File:
    data: bytearray = field(default_factory=bytearray)
    synced: bytes = b""  # what a power loss keeps for sure (the content at the last fsync)


class MemFileSystem:
    """A disk in memory with crash, power-loss and full-disk semantics (see the module doc).

    ``_names`` is what processes see; ``_durable`` is what a power loss keeps: for each
    directory, its entries as of its last fsync. ``version`` changes whenever what a power
    loss keeps for sure may have changed (so a caller can cache :meth:`durable_copy`'s
    reading)."""

    def __init__(self, space: int | None = None) -> None:
        self._names: dict[str, _File] = {}
        self._dirs: set[str] = {"."}
        self._durable: dict[str, dict[str, _File]] = {}  # dir -> {name: file} at its last fsync
        self.space = space  # bytes that may still be written (None = unbounded)
        self.fsyncs = 0
        self.version = 0

    def _spend(self, n: int) -> None:
        if self.space is not None:
            if n > self.space:
                raise OSError(errno.ENOSPC, "No space left on device (simulated)")
            self.space -= n

    def makedirs(self, path: str) -> None:
        p = path
        while p and p not in self._dirs:
            self._dirs.add(p)
            p = parent(p) if "/" in p else ""

    def listdir(self, path: str) -> list[str]:
        pre = path.rstrip("/") + "/"
        out = {k[len(pre):].split("/", 1)[0] for k in self._names if k.startswith(pre)}
        out |= {d[len(pre):].split("/", 1)[0] for d in self._dirs if d.startswith(pre)}
        return sorted(out)

    def exists(self, path: str) -> bool:
        return path in self._names or path in self._dirs

    def read(self, path: str) -> bytes:
        f = self._names.get(path)
        if f is None:
            raise FileNotFoundError(path)
        return bytes(f.data)

    def append(self, path: str, data: bytes) -> None:
        if parent(path) not in self._dirs:
            raise FileNotFoundError(parent(path))
        self._spend(len(data))
        self._names.setdefault(path, _File()).data += data

    def write_new(self, path: str, data: bytes) -> None:
        if parent(path) not in self._dirs:
            raise FileNotFoundError(parent(path))
        self._spend(len(data))
        f = _File(bytearray(data), bytes(data))  # write_new fsyncs its file (not the directory)
        self._names[path] = f
        self.fsyncs += 1
        self.version += 1

    def fsync(self, path: str) -> None:
        f = self._names.get(path)
        if f is None:
            raise FileNotFoundError(path)
        f.synced = bytes(f.data)
        self.fsyncs += 1
        self.version += 1

    def fsync_dir(self, path: str) -> None:
        pre = path.rstrip("/") + "/"
        self._durable[path] = {k: f for k, f in self._names.items()
                               if k.startswith(pre) and "/" not in k[len(pre):]}
        self.fsyncs += 1
        self.version += 1

    def rename(self, src: str, dst: str) -> None:
        f = self._names.pop(src, None)
        if f is None:
            raise FileNotFoundError(src)
        self._names[dst] = f
        self.version += 1  # a directory never fsynced keeps the names it has

    def remove(self, path: str) -> None:
        self._names.pop(path, None)
        self.version += 1

    def truncate(self, path: str, size: int) -> None:
        f = self._names[path]
        del f.data[size:]
        f.synced = f.synced[:size]
        self.version += 1

    def close(self) -> None:
        pass

    # -- failures ----------------------------------------------------------------------

    def crash(self) -> None:
        """A process crash: the page cache keeps every write (nothing to do)."""

    def _surviving_names(self) -> dict[str, _File]:
        """The names a power loss keeps: each directory's entries as of its last fsync (a
        directory never fsynced keeps the names it has, as if its entries had reached the
        disk: only fsync_dir makes a *change* certain)."""
        names: dict[str, _File] = {}
        dirs_synced = set(self._durable)
        for path, f in self._names.items():
            if parent(path) not in dirs_synced:
                names[path] = f
        for entries in self._durable.values():
            names.update(entries)
        return names

    def unsynced(self) -> bool:
        """Whether processes see anything a power loss could take back (bytes or names)."""
        names = self._surviving_names()
        return names != self._names or any(f.data != f.synced for f in names.values())

    def durable_copy(self) -> MemFileSystem:
        """A new filesystem holding what every power loss keeps: the surviving names, each
        with its fsynced bytes only. (Files under two names stay one file.)"""
        out = MemFileSystem()
        out._dirs = set(self._dirs)
        copies: dict[int, _File] = {}

        def copy(f: _File) -> _File:
            c = copies.get(id(f))
            if c is None:
                c = copies[id(f)] = _File(bytearray(f.synced), f.synced)
            return c

        out._names = {path: copy(f) for path, f in self._surviving_names().items()}
        out._durable = {d: {k: copy(f) for k, f in entries.items()} for d, entries in self._durable.items()}
        return out

    def power_loss(self, rng: random.Random, zeros: random.Random | None = None) -> None:
        """Keep fsynced data plus a random prefix of the rest of each file; revert names to
        their directories' last fsync (see :meth:`_surviving_names`). With ``zeros``, a file
        that keeps unsynced bytes reads back as zeros from a random point in them to its end
        in about a quarter of the cases, drawn from ``zeros`` (``rng`` draws as without it)."""
        names = self._surviving_names()
        done: set[int] = set()
        for path in sorted(names):  # by name, not by a set of files: the draws replay exactly
            f = names[path]
            if id(f) in done:
                continue
            done.add(id(f))
            keep = len(f.synced)
            extra = len(f.data) - keep
            if extra > 0 and f.data[:keep] == f.synced:
                kept = rng.randint(0, extra)
                f.data = bytearray(f.data[:keep + kept])
                if zeros is not None and kept and zeros.random() < 0.25:
                    start = keep + zeros.randint(0, kept - 1)
                    f.data[start:] = bytes(len(f.data) - start)
            else:
                f.data = bytearray(f.synced)
            f.synced = bytes(f.data)
        self._names = names
        self.version += 1

    def corrupt(self, path: str, offset: int, bit: int = 0) -> None:
        """Flip one bit of ``path``, on the disk (tests, and the simulator's bit rot)."""
        f = self._names[path]
        f.data[offset] ^= 1 << bit
        if offset < len(f.synced):
            f.synced = f.synced[:offset] + bytes((f.synced[offset] ^ (1 << bit),)) + f.synced[offset + 1:]
        self.version += 1


__all__ = ["FileSystem", "MemFileSystem", "OsFileSystem", "join", "parent"]
