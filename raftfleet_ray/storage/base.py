"""The storage contract every backend follows (it mirrors ``raftfleet_ray.raft.Ready``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..raft.types import Entry, HardState, Snapshot


@dataclass(slots=True)
class DurableState:
    """What a restarted member is rebuilt from."""

    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)


class Storage(Protocol):
    def write(
        self, hard_state: HardState | None, snapshot: Snapshot | None, entries: list[Entry]
    ) -> None:
        """Apply one Ready's writes in order: hard state, then snapshot (drops the entries it
        covers, all of them if they conflict), then entries (an entry at index i replaces every
        stored entry >= i). Returns once they are durable."""
        ...

    def load(self) -> DurableState: ...

    def last_index(self) -> int: ...
