"""The replicated de-duplication cache: a retried command is applied once.

Two kinds of command ids:

- any hashable id: rafted_value's cache of the last ``max_retained_command_results``
  results (FIFO). A retry that comes after that many other commands is applied again;
  with batching, 100 commands can pass in milliseconds, so the Ray client does not rely
  on it;
- ``SessionId(client, seq, low)``: client sessions (Raft thesis §6.3). Results are kept
  per client until the client says it is done with them: ``low`` is the client's smallest
  sequence number still in flight, so every result below it can go, and a copy of such a
  command that arrives late (a retry still in flight when the caller gave up) is
  recognised and not applied. The number of sessions is bounded (``max_sessions``, least
  recently used first out).

  An evicted session's results are gone, so a late retry of one of its commands could not be
  told from a new command. Each session says when it began (``since``, the client's clock
  when it first wrote to this group) and the cache keeps one number: the newest ``since`` of
  any session it evicted (the *watermark*). A command of a session it does not hold whose
  ``since`` is not above the watermark is refused as ``EXPIRED`` (its outcome is unknown; the
  client starts a new session, with a ``since`` above the watermark), never applied a second
  time. Exact, in constant memory; the price is that a brand-new session whose ``since`` is
  not above the watermark (a client clock far behind the others) has its first command
  refused once.

Pure and deterministic: it only changes when entries are applied, in log order, so every
replica holds the same cache, and it travels in snapshots.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .types import Result, SessionId

STALE = object()
"""``lookup`` result for a session command the client is already done with."""

EXPIRED = object()
"""``lookup`` result for a command of a session that was evicted (see the module doc)."""


class DedupCache:
    def __init__(self, max_results: int, max_sessions: int) -> None:
        self._max_results = max_results
        self._max_sessions = max_sessions
        self._fifo: OrderedDict[Any, Result] = OrderedDict()
        # client -> (since, low, {seq: result}); order = least recently used first
        self._sessions: OrderedDict[str, tuple[int, int, dict[int, Result]]] = OrderedDict()
        self.watermark = -1  # the newest `since` of an evicted session (-1: none evicted yet)

    @staticmethod
    def key(cmd_id: Any) -> Any:
        """What identifies a command across retries (a session id's ``low`` may differ)."""
        return (cmd_id.client, cmd_id.seq) if isinstance(cmd_id, SessionId) else cmd_id

    def lookup(self, cmd_id: Any) -> Result | object | None:
        """The cached result, ``STALE``, ``EXPIRED``, or None (new, or a plain id forgotten). Read-only."""
        if isinstance(cmd_id, SessionId):
            sess = self._sessions.get(cmd_id.client)
            if sess is None:
                return EXPIRED if cmd_id.since <= self.watermark else None
            since, low, results = sess
            if cmd_id.since != since:
                # An older incarnation of the session (the client started anew after an
                # expiry): its results went with it. A newer one starts afresh (observe).
                return EXPIRED if cmd_id.since < since else None
            if cmd_id.seq < low:
                return STALE
            return results.get(cmd_id.seq)
        return self._fifo.get(cmd_id)

    def observe(self, cmd_id: Any) -> None:
        """At apply time, before ``lookup``: a session command moves its client's ``low``."""
        if not isinstance(cmd_id, SessionId) or self.lookup(cmd_id) is EXPIRED:
            return
        sess = self._sessions.pop(cmd_id.client, None)
        if sess is not None and sess[0] < cmd_id.since:
            self._forget(sess[0])  # replaced by a newer incarnation of the session
            sess = None
        since, low, results = sess if sess is not None else (cmd_id.since, 0, {})
        if cmd_id.low > low:
            low = cmd_id.low
            results = {s: r for s, r in results.items() if s >= low}
        self._sessions[cmd_id.client] = (since, low, results)  # most recently used last
        while len(self._sessions) > self._max_sessions:
            _, (gone_since, _, _) = self._sessions.popitem(last=False)
            self._forget(gone_since)

    def _forget(self, since: int) -> None:
        # Every command of the forgotten session has since <= the watermark from now on.
        self.watermark = max(self.watermark, since)

    def put(self, cmd_id: Any, result: Result) -> None:
        if isinstance(cmd_id, SessionId):
            self._sessions[cmd_id.client][2][cmd_id.seq] = result
            return
        self._fifo[cmd_id] = result
        while len(self._fifo) > self._max_results:
            self._fifo.popitem(last=False)

    def dump(self) -> tuple:
        return ("v3", list(self._fifo.items()),
                [(c, since, low, list(r.items())) for c, (since, low, r) in self._sessions.items()], self.watermark)

    def load(self, state: Any) -> None:
        self.watermark = -1
        if isinstance(state, tuple) and state and state[0] == "v3":
            _, fifo, sessions, self.watermark = state
            self._fifo = OrderedDict(fifo)
            self._sessions = OrderedDict((c, (since, low, dict(r))) for c, since, low, r in sessions)
        elif isinstance(state, tuple) and state and state[0] == "v2":  # before `since`
            _, fifo, sessions = state
            self._fifo = OrderedDict(fifo)
            self._sessions = OrderedDict((c, (0, low, dict(r))) for c, low, r in sessions)
        else:  # a snapshot from before sessions: the FIFO items only
            self._fifo = OrderedDict(state)
            self._sessions = OrderedDict()

    def __contains__(self, cmd_id: Any) -> bool:
        r = self.lookup(cmd_id)
        return r is not None and r is not STALE and r is not EXPIRED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DedupCache) and self.dump() == other.dump()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __len__(self) -> int:
        return len(self._fifo) + sum(len(r) for _, _, r in self._sessions.values())
