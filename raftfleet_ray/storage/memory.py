"""In-memory storage: durable for as long as the process lives (a member that loses its
process loses its state too). The contract's one implementation, ``MemberImage``, is this
backend: every write the log on disk would refuse is refused here too."""

from __future__ import annotations

from ..raft.types import Entry, HardState, Snapshot
from .base import DurableState
from .image import MemberImage


class MemoryStorage:
    synchronous = True  # a write is durable when write() returns: nothing to flush

    def __init__(self) -> None:
        self._image = MemberImage()

    def write(self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]) -> None:
        self._image.apply(hard_state, snapshot, entries)

    def load(self) -> DurableState:
        return self._image.durable_state()

    def last_index(self) -> int:
        return self._image.last_index()
