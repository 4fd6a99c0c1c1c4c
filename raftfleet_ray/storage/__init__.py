"""Durable storage for members: hard state, snapshots and log entries.

- ``image.py``: the storage contract (the core's ``Ready`` writes), implemented once;
- ``memory.py``: ``MemoryStorage``, that contract in process memory (persistence off);
- ``log.py``: ``HostLog``, the write-ahead log on disk shared by the members of one host
  process, with group commit, CRC-framed records, snapshot files and rotation;
- ``fs.py``: the file operations, on the real disk or in memory with crash, power-loss and
  full-disk semantics (the simulator and the tests run the real log over it).
"""

from .base import DurableState, Storage
from .fs import FileSystem, MemFileSystem, OsFileSystem
from .image import MemberImage, StorageError
from .log import CorruptLogError, HostLog, MemberLog, Recovered
from .memory import MemoryStorage

__all__ = [
    "CorruptLogError",
    "DurableState",
    "FileSystem",
    "HostLog",
    "MemFileSystem",
    "MemberImage",
    "MemberLog",
    "MemoryStorage",
    "OsFileSystem",
    "Recovered",
    "Storage",
    "StorageError",
]
