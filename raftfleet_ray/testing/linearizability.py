"""A linearizability checker for key-value register histories (Wing & Gong, Lowe's WGL).

A history is *linearizable* if every operation can be given a single instant
between its invoke and its completion such that, in the order of those instants,
the operations obey a sequential register: ``read`` returns the current value,
``write(v)`` sets it, ``cas((expected, new))`` returns ``True`` and sets ``new``
if the value equals ``expected``, and otherwise returns ``False`` and changes
nothing.

Linearizability is *local* (Herlihy & Wing 1990, theorem 1): a history is
linearizable iff each key's sub-history is, so :func:`check_history` checks keys
one by one (the "P-compositionality" of Lowe and of Porcupine), which keeps each
search small.

Per key, :func:`check_register` runs a depth-first search over configurations
``(operations already linearized, register value)``, memoizing the
configurations that failed, as in Lowe's WGL / Knossos / Porcupine. Reductions
that each keep some valid order whenever one exists keep it fast on real
histories (details and arguments in ``_Search``):

* a read or a failed cas that fits now is linearized at once, alone;
* operations with unknown outcome are only tried, as a short block, right
  before a completed operation that does not fit without them; of several with
  the same effect only the earliest invoked is tried;
* a configuration that used a *superset* of the unknown operations of a failed
  one, with the same completed ones and the same value, fails too.

Unknown outcomes follow Jepsen/Knossos: such an operation completes at +infinity,
may take effect at any time after its invoke or never, and any result is
acceptable. Unknown reads are dropped up front; they cannot constrain anything.
Operations recorded as definitely failed (``Operation.failed``) are ignored, so
they must not have taken effect.

The search is exponential in the worst case (the problem is NP-complete). If it
explores more than ``max_states`` configurations it raises
:class:`CheckerBudgetExceeded` rather than guess an answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raftfleet_ray.testing.history import KINDS, History, Operation

__all__ = [
    "CheckResult",
    "CheckerBudgetExceeded",
    "brute_force_register",
    "check_history",
    "check_register",
]

# Transition codes of the register model, on interned values (small ints), so the
# search compares and hashes ints only, whatever the user's values are.
_READ = 0  # completed read of a: fits iff value == a; value unchanged
_WRITE = 1  # write a (completed or unknown): always fits; value := a
_CAS_OK = 2  # cas(a, b) -> True: fits iff value == a; value := b
_CAS_FAIL = 3  # cas(a, _) -> False: fits iff value != a; value unchanged

_NO = -1  # "does not fit" (interned values are >= 0)

_TAIL = 8  # how many operations of the best partial order the explanation shows


class CheckerBudgetExceeded(Exception):
    """The search explored more than ``max_states`` configurations without an answer.

    This is neither a pass nor a failure: the history is too concurrent (usually
    many overlapping operations with unknown outcome) to decide within the budget.
    Raise the budget, shorten the history, or reduce timeouts in the test.

    Attributes: ``key`` (the register being checked), ``explored``, ``max_states``.
    """

    def __init__(self, key: Any, explored: int, max_states: int) -> None:
        super().__init__(
            f"linearizability check of key {key!r} gave up after exploring {explored} "
            f"configurations (max_states={max_states}); the result is unknown"
        )
        self.key = key
        self.explored = explored
        self.max_states = max_states


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a linearizability check; truthy iff linearizable.

    On failure ``key`` is the first key found not linearizable and
    ``explanation`` describes the deepest point the search reached: the last
    operations it could order, the register value there, and why each operation
    that could come next does not fit.

    Example::

        result = check_history(history)
        assert result, result.explanation
    """

    ok: bool
    key: Any = None
    explanation: str = ""

    def __bool__(self) -> bool:
        return self.ok


class _Interner:
    """Maps register values to dense ints, by equality (unhashable values allowed)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}
        self._unhashable: list[int] = []  # indices of values that could not be hashed

    def __call__(self, value: Any) -> int:
        try:
            found = self._index.get(value)
        except TypeError:
            found = None
            hashable = False
        else:
            hashable = True
        if found is not None:
            return found
        # A hashable value may still equal an unhashable one (custom __eq__), so compare
        # against those by hand before giving it a new index.
        for i in self._unhashable:
            if self.values[i] == value:
                return i
        if not hashable:
            for i, known in enumerate(self.values):
                if known == value:
                    return i
        i = len(self.values)
        self.values.append(value)
        if hashable:
            self._index[value] = i
        else:
            self._unhashable.append(i)
        return i


_Group = tuple[list[int], int]  # unknown-op indices sorted by invoke, and their bitset


@dataclass(slots=True)
class _Prepared:
    """One key's operations in the form the search wants.

    Completed operations are indexed 0..c-1 and unknown ones 0..u-1, each sorted by
    invoke time, so that the linearized sets are two bitsets and the candidates
    for "next" are found by a short scan from the first unlinearized operation.

    Unknown operations are grouped by effect. Members of a group differ only in
    invoke time, so any of them can be replaced by the earliest unused one (it may
    take effect wherever a later one may); the search only ever takes that one, so
    the used members of a group are always a prefix of it.
    """

    completed: list[Operation]
    c_invoke: list[float]
    c_complete: list[float]
    c_code: list[tuple[int, int, int]]
    c_pure: list[bool]  # never changes the value when it fits (read, cas -> False)
    unknown: list[Operation]
    u_invoke: list[float]
    u_writes: dict[int, _Group]  # written value -> group
    u_cas: dict[int, list[tuple[int, _Group]]]  # expected value -> [(new value, group)]
    values: list[Any]
    initial: int


def _validate(op: Operation) -> None:
    if op.kind not in KINDS:
        raise ValueError(f"{op.describe()}: unknown kind {op.kind!r}")
    if op.kind == "cas" and not (isinstance(op.arg, tuple | list) and len(op.arg) == 2):
        raise ValueError(f"{op.describe()}: cas arg must be (expected, new)")
    if op.complete is not None and not op.failed:
        if op.complete < op.invoke:
            raise ValueError(f"{op.describe()}: completes before it is invoked")
        if op.kind == "cas" and not isinstance(op.result, bool):
            raise ValueError(f"{op.describe()}: a completed cas must return a bool")


def _prepare(ops: Iterable[Operation], initial: Any) -> _Prepared:
    intern = _Interner()
    init = intern(initial)
    completed: list[Operation] = []
    unknown: list[Operation] = []
    for op in ops:
        _validate(op)
        if op.failed:
            continue  # definitely never happened: leaving it out enforces that
        if op.complete is not None:
            completed.append(op)
        elif op.kind == "write":
            unknown.append(op)
        elif op.kind == "cas" and op.arg[0] != op.arg[1]:
            unknown.append(op)
        # else: an unknown read, or an unknown cas(x, x), cannot change the value and
        # has no result to explain, so it constrains nothing.
    completed.sort(key=lambda o: (o.invoke, o.complete, o.id))
    unknown.sort(key=lambda o: (o.invoke, o.id))

    c_code: list[tuple[int, int, int]] = []
    c_pure: list[bool] = []
    for op in completed:
        if op.kind == "read":
            c_code.append((_READ, intern(op.result), 0))
            c_pure.append(True)
        elif op.kind == "write":
            c_code.append((_WRITE, intern(op.arg), 0))
            c_pure.append(False)
        else:
            expected, new = intern(op.arg[0]), intern(op.arg[1])
            if op.result:
                c_code.append((_CAS_OK, expected, new))
                c_pure.append(expected == new)
            else:
                c_code.append((_CAS_FAIL, expected, 0))
                c_pure.append(True)
    writes: dict[int, list[int]] = {}
    cas: dict[tuple[int, int], list[int]] = {}
    for k, op in enumerate(unknown):
        if op.kind == "write":
            writes.setdefault(intern(op.arg), []).append(k)
        else:
            cas.setdefault((intern(op.arg[0]), intern(op.arg[1])), []).append(k)

    def group(members: list[int]) -> _Group:
        return members, sum(1 << k for k in members)

    u_cas: dict[int, list[tuple[int, _Group]]] = {}
    for (expected, new), members in cas.items():
        u_cas.setdefault(expected, []).append((new, group(members)))
    return _Prepared(
        completed=completed,
        c_invoke=[o.invoke for o in completed],
        c_complete=[o.complete for o in completed if o.complete is not None],
        c_code=c_code,
        c_pure=c_pure,
        unknown=unknown,
        u_invoke=[o.invoke for o in unknown],
        u_writes={value: group(members) for value, members in writes.items()},
        u_cas=u_cas,
        values=intern.values,
        initial=init,
    )


def _apply(code: tuple[int, int, int], value: int) -> int:
    """The register value after a completed operation, or ``_NO`` if it cannot happen now."""
    kind, a, b = code
    if kind == _READ:
        return value if value == a else _NO
    if kind == _WRITE:
        return a
    if kind == _CAS_OK:
        return b if value == a else _NO
    return value if value != a else _NO  # _CAS_FAIL


# A child configuration: (completed bitset, unknown bitset, value, the operations taken,
# in order: zero or more unknown ones, then one completed one).
_Child = tuple[int, int, int, tuple[Operation, ...]]
# A block of unknown operations: (value after it, unknown bitset after it, its operations).
_Block = tuple[int, int, tuple[Operation, ...]]


@dataclass(slots=True)
class _Best:
    """The deepest configuration reached, kept to explain a failure."""

    depth: int = -1
    cmask: int = 0
    umask: int = 0
    value: int = 0
    length: int = 0
    tail: tuple[Operation, ...] = ()


class _Search:
    """Lowe's WGL depth-first search over one register, with the reductions below.

    A configuration is (completed ops linearized, unknown ops linearized, value).
    Each step linearizes one completed operation, possibly preceded by a *block*
    of unknown ones. Three reductions keep the branching small; each keeps at
    least one valid order whenever one exists:

    * A completed op that never changes the value (read, cas -> False) and fits
      now is taken alone: moving it to the front of any valid order keeps the
      order valid (nothing has to precede it, and it changes nothing).
    * A block is only tried right before a completed op X that does not fit the
      current value. If X fits already, the block can be moved after X (X cannot
      change the value) or dropped (X is a write or successful cas, which sets
      the value regardless; unknown ops are optional). Moving unknown ops later
      is always allowed: they never complete, so nothing must follow them.
    * A block is an optional unknown write followed by a chain of unknown cas
      that each succeed and never revisit a value: anything before the last write
      is overwritten, a failing cas changes nothing, and a loop in the chain can
      be cut out. Each group contributes its first unused member (see _Prepared),
      and blocks that a shorter one reaching the same value replaces are dropped
      (see _undominated).

    Failed configurations are memoized; since unknown ops are optional, a
    configuration that has used a superset of the unknown ops of a failed one
    (same completed ops, same value) fails too.
    """

    # Failed unknown-op sets kept per (completed set, value) for the superset test;
    # past this many, only exact repeats are caught (cheaper, and still sound).
    _SUBSUME_LIMIT = 64

    def __init__(self, p: _Prepared, key: Any, max_states: int) -> None:
        self.p = p
        self.key = key
        self.max_states = max_states
        self.explored = 0

    def _count(self, n: int = 1) -> None:
        self.explored += n
        if self.explored > self.max_states:
            raise CheckerBudgetExceeded(self.key, self.explored, self.max_states)

    def _free(self, grp: _Group, umask: int, horizon: float) -> int:
        """The group's first unused member if it may take effect now, else -1."""
        members, grp_mask = grp
        used = (umask & grp_mask).bit_count()  # used members are a prefix of the group
        if used == len(members) or self.p.u_invoke[members[used]] > horizon:
            return -1
        return members[used]

    def blocks(self, umask: int, value: int, horizon: float) -> list[_Block]:
        """Every block of unknown ops that may take effect now and changes the value."""
        p = self.p
        unknown = p.unknown
        out: list[_Block] = []
        # Starts: the value as it is (for a cas chain), or each unknown write of another value.
        starts: list[tuple[int, int, tuple[Operation, ...], frozenset[int]]] = [
            (value, umask, (), frozenset((value,)))
        ]
        for written, grp in p.u_writes.items():
            k = self._free(grp, umask, horizon) if written != value else -1
            if k >= 0:
                block = (written, umask | (1 << k), (unknown[k],))
                out.append(block)
                starts.append((*block, frozenset((value, written))))
        todo = starts[::-1]
        while todo:
            at, mask, ops, seen = todo.pop()
            for new, grp in p.u_cas.get(at, ()):
                if new in seen:
                    continue
                k = self._free(grp, mask, horizon)
                if k >= 0:
                    self._count()  # pathological cas graphs have many chains
                    block = (new, mask | (1 << k), (*ops, unknown[k]))
                    out.append(block)
                    todo.append((*block, seen | {new}))
        return _undominated(out)

    def children(self, cmask: int, umask: int, value: int) -> tuple[list[_Child], float]:
        """The configurations to try after this one, in order, and the current horizon.

        The horizon is the earliest completion among the completed ops not yet
        linearized: nothing invoked after it may be linearized next.
        ``cmask`` must not be complete.
        """
        p = self.p
        c_invoke, c_complete, c_code = p.c_invoke, p.c_complete, p.c_code
        c = len(c_invoke)
        # Everything below the lowest unlinearized completed op is linearized, so the
        # scan starts there; it stops at the first op invoked after some unlinearized
        # op completed, since that one (and every later-invoked one) must wait for it.
        j = (~cmask & (cmask + 1)).bit_length() - 1
        horizon = math.inf
        children: list[_Child] = []
        blocked: list[int] = []
        while j < c:
            if not (cmask >> j) & 1:
                if c_invoke[j] > horizon:
                    break
                if c_complete[j] < horizon:
                    horizon = c_complete[j]
                after = _apply(c_code[j], value)
                if after == _NO:
                    blocked.append(j)
                elif p.c_pure[j]:
                    return [(cmask | (1 << j), umask, after, (p.completed[j],))], horizon
                else:
                    children.append((cmask | (1 << j), umask, after, (p.completed[j],)))
            j += 1
        if blocked and p.unknown:
            for final, umask2, ops in sorted(self.blocks(umask, value, horizon), key=_block_len):
                for j in blocked:
                    after = _apply(c_code[j], final)
                    if after != _NO:
                        children.append((cmask | (1 << j), umask2, after, (*ops, p.completed[j])))
        return children, horizon

    def run(self) -> _Best | None:
        """Search; return None if linearizable, else the deepest configuration reached."""
        p = self.p
        full = (1 << len(p.completed)) - 1
        if full == 0:
            return None
        # (completed set, value) -> unknown sets of configurations that failed (for the
        # superset test, capped), plus every failed configuration exactly.
        failed: dict[tuple[int, int], list[int]] = {}
        failed_exact: set[tuple[int, int, int]] = set()
        self._count()
        best = _Best(0, 0, 0, p.initial)
        # Frames: [cmask, umask, value, children, next child index, ops that led here].
        root = self.children(0, 0, p.initial)[0]
        stack: list[list[Any]] = [[0, 0, p.initial, root, 0, ()]]
        while stack:
            frame = stack[-1]
            children = frame[3]
            if frame[4] == len(children):
                stack.pop()
                cmask, umask, value = frame[0], frame[1], frame[2]
                failed_exact.add((cmask, value, umask))
                minimal = failed.setdefault((cmask, value), [])
                if len(minimal) < self._SUBSUME_LIMIT:
                    minimal.append(umask)
                continue
            cmask, umask, value, ops = children[frame[4]]
            frame[4] += 1
            if cmask == full:
                return None  # every completed op is ordered; unknown leftovers never happened
            if (cmask, value, umask) in failed_exact:
                continue
            minimal = failed.get((cmask, value))
            if minimal and any(f & umask == f for f in minimal):
                continue
            self._count()
            stack.append([cmask, umask, value, self.children(cmask, umask, value)[0], 0, ops])
            depth = cmask.bit_count()
            if depth > best.depth:
                path = [op for f in stack[1:] for op in f[5]]
                best = _Best(depth, cmask, umask, value, len(path), tuple(path[-_TAIL:]))
        return best

    def explain(self, best: _Best) -> str:
        """Describe the deepest configuration and why nothing could follow it."""
        p = self.p
        values = p.values
        lines = [
            f"key {self.key!r} is not linearizable.",
            f"The search got furthest with {best.depth} of {len(p.completed)} completed "
            f"operations ordered; the register then holds {values[best.value]!r}.",
        ]
        if best.tail:
            shown = "last operations" if best.length > len(best.tail) else "operations"
            lines.append(f"The {shown} of that order:")
            lines.extend(f"  {op.describe()}" for op in best.tail)
        children, horizon = self.children(best.cmask, best.umask, best.value)
        taken = {id(ch[3][-1]) for ch in children}
        lines.append("None of the operations that may come next leads to a valid order:")
        for j, op in enumerate(p.completed):
            if (best.cmask >> j) & 1 or p.c_invoke[j] > horizon:
                continue
            if id(op) in taken:
                why = "fits, but no order of the remaining operations works after it"
            else:
                why = _why_not(p.c_code[j], values[best.value], values)
            lines.append(f"  {op.describe()}: {why}")
        free = [
            p.unknown[k]
            for grp in [*p.u_writes.values(), *(g for gs in p.u_cas.values() for _, g in gs)]
            if (k := self._free(grp, best.umask, horizon)) >= 0
        ]
        if free:
            free.sort(key=lambda o: o.id)
            lines.append(
                "Operations with unknown outcome that could take effect first do not help:"
            )
            lines.extend(f"  {op.describe()}" for op in free[:_TAIL])
            if len(free) > _TAIL:
                lines.append(f"  ... and {len(free) - _TAIL} more")
        blockers = [
            op
            for j, op in enumerate(p.completed)
            if not (best.cmask >> j) & 1 and p.c_complete[j] == horizon
        ]
        if blockers:
            lines.append(
                f"Nothing invoked after t={horizon:g} may come first, because "
                f"{blockers[0].describe()} had completed by then."
            )
        return "\n".join(lines)


def _block_len(block: _Block) -> int:
    return len(block[2])


def _undominated(blocks: list[_Block]) -> list[_Block]:
    """Drop blocks that another block reaching the same value makes unnecessary.

    Exchange arguments, for blocks ending at the same value v (s is the current one):

    * A single ``cas(s, v)`` beats every other block B: if a valid order used B now
      and the cas later, the cas later found the value s (or changed nothing and
      can go), so B can take its place there; the cas cannot stand in for B later.
    * A single ``write(v)`` beats every longer block that starts with a write:
      such a block sets v from any value, so it can stand in for the write later.
      It does not beat a cas chain starting from s, which needs s later.

    Small value domains with many unknown ops otherwise give hundreds of
    equivalent blocks per step.
    """
    if len(blocks) < 2:
        return blocks
    by_value: dict[int, list[_Block]] = {}
    for block in blocks:
        by_value.setdefault(block[0], []).append(block)
    kept: list[_Block] = []
    for group in by_value.values():
        singles = [b for b in group if len(b[2]) == 1]
        direct_cas = [b for b in singles if b[2][0].kind == "cas"]
        if direct_cas:
            kept.extend(direct_cas)
        elif singles:  # a single write
            kept.extend(b for b in group if len(b[2]) == 1 or b[2][0].kind == "cas")
        else:
            kept.extend(group)
    return kept


def _why_not(code: tuple[int, int, int], now: Any, values: list[Any]) -> str:
    kind, a, _ = code
    if kind == _READ:
        return f"reads {values[a]!r} but the register holds {now!r}"
    if kind == _CAS_OK:
        return f"succeeded, so it needs {values[a]!r}, but the register holds {now!r}"
    return f"failed, so it needs a value other than {values[a]!r}, which the register holds"


def check_register(
    ops: list[Operation], initial: Any = None, *, max_states: int = 2_000_000
) -> CheckResult:
    """Check that the operations on one register are linearizable.

    ``ops`` are the operations of a single key (see :meth:`History.by_key`), in
    any order; ``initial`` is the register's value before any of them.

    Errors: ``ValueError`` for a malformed operation (unknown kind, a cas arg
    that is not a pair, a completed cas whose result is not a bool, completion
    before invoke); :class:`CheckerBudgetExceeded` if more than ``max_states``
    configurations are explored (the answer is then unknown, not "no").

    Example::

        w = Operation(0, client=0, key="x", kind="write", arg=1, invoke=0, complete=1)
        r = Operation(1, client=1, key="x", kind="read", arg=None, invoke=2, complete=3,
                      result=None)
        check_register([w, r])   # CheckResult(ok=False, ...): a stale read
    """
    key = ops[0].key if ops else None
    search = _Search(_prepare(ops, initial), key, max_states)
    best = search.run()
    if best is None:
        return CheckResult(True)
    return CheckResult(False, key, search.explain(best))


def check_history(
    history: History | list[Operation], initial: Any = None, *, max_states: int = 2_000_000
) -> CheckResult:
    """Check a whole key-value history, key by key; every key starts at ``initial``.

    Returns the first failing key's result (keys in order of first use), or a
    passing result. ``max_states`` is the budget per key.

    Errors: as :func:`check_register`; :class:`CheckerBudgetExceeded` names its key.

    Example::

        result = check_history(history)
        assert result, f"seed={seed}\\n{result.explanation}"
    """
    if isinstance(history, History):
        groups = history.by_key()
    else:
        groups = {}
        for op in history:
            groups.setdefault(op.key, []).append(op)
    for ops in groups.values():
        result = check_register(ops, initial, max_states=max_states)
        if not result:
            return result
    return CheckResult(True)


def brute_force_register(ops: Iterable[Operation], initial: Any = None) -> bool:
    """Decide linearizability of one register by trying every order; for tests only.

    Tries every permutation of the completed operations plus every subset of the
    unknown ones, keeping those that respect real time (``a`` before ``b``
    whenever ``a.complete < b.invoke``), and replays each on a sequential
    register. It shares no code with :func:`check_register`, so the two can
    check each other. Exponential: keep histories to about 8 operations.

    Example::

        assert brute_force_register(ops) == bool(check_register(ops))
    """
    pending = tuple(op for op in ops if not op.failed)

    def step(op: Operation, value: Any) -> tuple[bool, Any]:
        known = op.complete is not None
        if op.kind == "read":
            return (not known or op.result == value), value
        if op.kind == "write":
            return True, op.arg
        expected, new = op.arg
        if not known:
            return True, new if value == expected else value
        if op.result:
            return value == expected, new
        return value != expected, value

    def search(remaining: tuple[Operation, ...], value: Any) -> bool:
        # Stopping here drops the remaining unknown ops: they never took effect.
        if all(op.complete is None for op in remaining):
            return True
        for i, op in enumerate(remaining):
            if any(
                other.complete is not None and other.complete < op.invoke for other in remaining
            ):
                continue  # something still unordered finished before op began
            fits, after = step(op, value)
            if fits and search(remaining[:i] + remaining[i + 1 :], after):
                return True
        return False

    return search(pending, initial)
