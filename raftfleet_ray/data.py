"""The replicated value: the ``Data`` protocol and two ready-made classes.

A ``Data`` class is deterministic: ``__init__()`` builds the empty value,
``command(arg)`` changes it and returns an answer, ``query(arg)`` reads it. Every
replica runs the same commands in the same order, so anything non-deterministic (the
wall clock, randomness) must come in through ``arg``. A ``command`` that raises is
answered with that exception and the value is left as it was, on every replica.

Snapshots pickle the object (cloudpickle in the Ray runtime); a class may define
``snapshot() -> bytes`` and ``classmethod restore(bytes)`` to choose its own format.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Data(Protocol):
    def command(self, arg: Any) -> Any: ...

    def query(self, arg: Any) -> Any: ...


class Counter:
    """An integer. Commands: ``"inc"``, ``("add", n)``, ``("set", n)``; they return the new value
    (``"inc"`` and ``("add", n)`` return the value *before* the change, as raft_fleet's test
    counter does, so sequential clients can check that no increment is lost or doubled).
    Queries: anything returns the value."""

    def __init__(self) -> None:
        self.value = 0

    def command(self, arg: Any) -> Any:
        match arg:
            case "inc":
                before = self.value
                self.value += 1
                return before
            case ("add", int() as n):
                before = self.value
                self.value += n
                return before
            case ("set", int() as n):
                self.value = n
                return n
        raise ValueError(f"Counter: unknown command {arg!r}; use 'inc', ('add', n) or ('set', n)")

    def query(self, arg: Any) -> Any:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counter) and other.value == self.value

    def __repr__(self) -> str:
        return f"Counter({self.value})"


class KeyValue:
    """A dict. Commands: ``("put", k, v)`` -> previous value or None, ``("delete", k)`` -> previous
    value or None, ``("cas", k, expected, new)`` -> True if it swapped. Queries: ``("get", k)``,
    ``("keys",)``, ``("len",)``."""

    def __init__(self) -> None:
        self.items: dict[Any, Any] = {}

    def command(self, arg: Any) -> Any:
        match arg:
            case ("put", k, v):
                before = self.items.get(k)
                self.items[k] = v
                return before
            case ("delete", k):
                return self.items.pop(k, None)
            case ("cas", k, expected, new):
                if self.items.get(k) == expected:
                    self.items[k] = new
                    return True
                return False
        raise ValueError(
            f"KeyValue: unknown command {arg!r}; use ('put', k, v), ('delete', k) or ('cas', k, old, new)"
        )

    def query(self, arg: Any) -> Any:
        match arg:
            case ("get", k):
                return self.items.get(k)
            case ("keys",):
                return sorted(self.items, key=repr)
            case ("len",):
                return len(self.items)
        raise ValueError(f"KeyValue: unknown query {arg!r}; use ('get', k), ('keys',) or ('len',)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyValue) and other.items == self.items

    def __repr__(self) -> str:
        return f"KeyValue({self.items!r})"
