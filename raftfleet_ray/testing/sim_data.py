"""The simulator's replicated value: a key-value map whose user code misbehaves on request.

:class:`SimKV` is :class:`~raftfleet_ray.data.KeyValue` plus the ways a user's ``Data`` class
can fail inside the core (review findings 13.4 and 13.6):

- ``("boom", key, how, value)`` first writes ``value`` to ``key`` (so a rollback that misses
  shows in the clients' reads), then raises: an exception that pickles but does not unpickle
  (``how="unpicklable"``), ``SystemExit`` (``"exit"``), ``KeyboardInterrupt``
  (``"interrupt"``) or ``asyncio.CancelledError`` (``"cancel"``). The answer must be
  ``Raised``, the value unchanged on every replica, the member alive, and every snapshot that
  carries the answer (in the de-dup cache) loadable.
- ``("snapfail", flag)``: while ``flag`` is set, ``snapshot()`` raises. The member must keep
  its log and go on.

It takes its own snapshots (``snapshot()`` / ``restore()``), so that the custom-snapshot path
of the core runs in every seed.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from typing import Any

from raftfleet_ray.data import KeyValue

BOOM_KINDS = ("unpicklable", "exit", "interrupt", "cancel")


class Unpicklable(Exception):
    """Pickles, but its ``__init__`` wants two arguments and ``args`` holds one message: it
    does not unpickle (the classic pitfall of exceptions with custom ``__init__``)."""

    def __init__(self, key: str, value: Any) -> None:
        super().__init__(f"no funds for {key}={value!r}")


class SimKV(KeyValue):
    def __init__(self) -> None:
        super().__init__()
        self.snapfail = False

    def command(self, arg: Any) -> Any:
        match arg:
            case ("boom", key, how, value):
                self.items[key] = value  # a change made before raising: must be rolled back
                if how == "unpicklable":
                    raise Unpicklable(key, value)
                if how == "exit":
                    sys.exit(3)
                if how == "interrupt":
                    raise KeyboardInterrupt
                raise asyncio.CancelledError
            case ("snapfail", flag):
                self.snapfail = bool(flag)
                return self.snapfail
        return super().command(arg)

    def snapshot(self) -> bytes:
        if self.snapfail:
            raise RuntimeError("SimKV: snapshots refused (snapfail)")
        return pickle.dumps(dict(self.items))

    @classmethod
    def restore(cls, blob: bytes) -> SimKV:
        kv = cls()
        kv.items = pickle.loads(blob)
        return kv


__all__ = ["BOOM_KINDS", "SimKV", "Unpicklable"]
