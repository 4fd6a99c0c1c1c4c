"""Recording what clients asked and what they were told, for the linearizability checker.

A test drives clients against a cluster (simulated or real) and records every
operation twice: once when the client sends it (:meth:`History.invoke`) and once
when the answer arrives (:meth:`History.ok`). An operation whose answer never
arrives (a timeout, a dead actor, a crashed client) stays *unknown*: it may have
taken effect at any time after it was sent, or never. That is the Jepsen/Knossos
model, and it is why a timeout must never be recorded as a failure (see
CONVENTIONS.md rule 11). Only an answer that proves the operation can never take
effect may be recorded with :meth:`History.fail`.

Times are whatever clock the test uses (simulated ticks or ``time.monotonic()``);
only their order matters, and every client must read the same clock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

KINDS: frozenset[str] = frozenset({"read", "write", "cas"})
"""The operation kinds of the key-value register model."""


@dataclass(slots=True)
class Operation:
    """One client operation on one key of a key-value register.

    ``kind`` is ``"read"`` (``arg`` is ``None``, ``result`` the value read),
    ``"write"`` (``arg`` the value written, ``result`` ``None``) or ``"cas"``
    (``arg`` is ``(expected, new)``, ``result`` a ``bool``).

    ``complete is None`` means the outcome is unknown: the operation may or may
    not have taken effect, at any time after ``invoke``, and ``result`` is
    meaningless. ``failed`` means the system answered that the operation
    definitely did not and will never take effect; the checker ignores such
    operations, so a failed write whose value is later read is a violation.

    Example::

        Operation(id=0, client=1, key="k", kind="write", arg=5, invoke=1.0, complete=2.0)
    """

    id: int
    client: int
    key: Any
    kind: str  # "read" | "write" | "cas"
    arg: Any  # write: the value; cas: (expected, new); read: None
    invoke: float  # time the client first sent it (retries keep this time)
    complete: float | None = None  # time the answer arrived; None = outcome unknown
    result: Any = None  # read: value read; write: None; cas: bool. Meaningless if complete is None
    failed: bool = False  # definite "did not happen" answer; the op is left out of the check

    @property
    def unknown(self) -> bool:
        """True if the outcome is unknown (no answer, and not a definite failure)."""
        return self.complete is None and not self.failed

    def describe(self) -> str:
        """A short human-readable form, e.g. ``#3 c1 cas(1, 2) -> True [1.0, 2.5]``."""
        if self.kind == "read":
            call = "read()"
        elif self.kind == "write":
            call = f"write({self.arg!r})"
        elif self.kind == "cas":
            try:
                expected, new = self.arg
                call = f"cas({expected!r}, {new!r})"
            except (TypeError, ValueError):
                call = f"cas({self.arg!r})"
        else:
            call = f"{self.kind}({self.arg!r})"
        if self.failed:
            outcome, end = " -> failed", "" if self.complete is None else f"{self.complete:g}"
        elif self.complete is None:
            outcome, end = " -> ?", "?"
        elif self.kind == "write":
            outcome, end = "", f"{self.complete:g}"
        else:
            outcome, end = f" -> {self.result!r}", f"{self.complete:g}"
        return f"#{self.id} c{self.client} {call}{outcome} [{self.invoke:g}, {end}]"


class History:
    """An append-only log of client operations, shared by all clients of a test.

    Operation ids are dense indices into :attr:`operations`. Recording is
    thread-safe (clients may run in threads or in Ray-driven callbacks).

    Errors: :meth:`invoke` raises ``ValueError`` for an unknown ``kind``;
    :meth:`ok`, :meth:`fail` and :meth:`unknown` raise ``KeyError`` for an id
    that was never issued and ``ValueError`` if the operation already has a
    definite outcome or if the answer time is before the invoke time.

    Example::

        h = History()
        w = h.invoke(client=0, key="x", kind="write", arg=1, time=0.0)
        r = h.invoke(client=1, key="x", kind="read", arg=None, time=0.5)
        h.ok(w, None, time=1.0)
        h.ok(r, 1, time=1.5)            # the read saw the concurrent write
        t = h.invoke(client=0, key="x", kind="cas", arg=(1, 2), time=2.0)
        h.unknown(t)                     # timed out: may or may not have happened
        assert check_history(h)          # from raftfleet_ray.testing.linearizability
    """

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def invoke(self, client: int, key: Any, kind: str, arg: Any, time: float) -> int:
        """Record that ``client`` sent an operation at ``time``; return its id.

        Call it once per logical operation: retries of the same command (same
        command id) belong to the same operation and keep the first invoke time,
        because the first send may already have taken effect.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown operation kind {kind!r}; expected one of {sorted(KINDS)}")
        if kind == "cas" and not (isinstance(arg, tuple | list) and len(arg) == 2):
            raise ValueError(f"cas arg must be (expected, new), got {arg!r}")
        with self._lock:
            op_id = len(self.operations)
            self.operations.append(
                Operation(id=op_id, client=client, key=key, kind=kind, arg=arg, invoke=time)
            )
        return op_id

    def ok(self, op_id: int, result: Any, time: float) -> None:
        """Record the answer to ``op_id``, received at ``time``.

        An answer may arrive after :meth:`unknown` was recorded (the client gave
        up, then a late reply came in); it then turns the operation back into a
        completed one, which only makes the check stricter.
        """
        with self._lock:
            self._close(op_id, time).result = result

    def fail(self, op_id: int, time: float) -> None:
        """Record a *definite* failure: the operation never took effect and never will.

        Use it only when the system guarantees this (e.g. the command was
        rejected before being proposed); a timeout is :meth:`unknown`, not a failure.
        """
        with self._lock:
            self._close(op_id, time).failed = True

    def _close(self, op_id: int, time: float) -> Operation:
        """The open operation ``op_id``, now completed at ``time`` (caller holds the lock)."""
        op = self._get(op_id)
        self._check_open(op)
        if time < op.invoke:
            raise ValueError(f"{op.describe()}: answer at {time} precedes invoke")
        op.complete = time
        return op

    def unknown(self, op_id: int) -> None:
        """Record explicitly that the outcome of ``op_id`` is unknown.

        Equivalent to never answering it; it exists so client code states its
        intent and so that an id typo fails loudly.
        """
        with self._lock:
            self._check_open(self._get(op_id))

    def by_key(self) -> dict[Any, list[Operation]]:
        """The operations grouped by key, each list in id (invoke-record) order.

        Keys appear in the order they were first used, so results are stable.
        """
        with self._lock:
            groups: dict[Any, list[Operation]] = {}
            for op in self.operations:
                groups.setdefault(op.key, []).append(op)
            return groups

    def _get(self, op_id: int) -> Operation:
        if not 0 <= op_id < len(self.operations):
            raise KeyError(f"no operation with id {op_id}")
        return self.operations[op_id]

    @staticmethod
    def _check_open(op: Operation) -> None:
        if op.complete is not None:
            raise ValueError(f"{op.describe()} already has an outcome")
