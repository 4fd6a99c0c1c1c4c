"""The client side of ``command`` / ``query``: leader cache, discovery, retries, coalescing.

One ``Client`` per process and Ray cluster runs an asyncio loop on a background thread. Sync callers
(drivers, tasks, threads) and async callers (async actors) both submit to it, so that
concurrent commands from one process to one leader travel in one Ray call: while a batch
is in flight the next one fills up (group commit). That is what lets one group take
tens of thousands of commands per second over Ray, whose raw call rate to one actor is a
few thousand per second here.

Concurrent operations bound for one host actor travel together even when they are for
different groups (``submit_many``): with many groups per host, that is what keeps the number
of Ray calls per command low when callers are spread over many groups.

Semantics follow raft_fleet's ``call_with_retry`` (reference §3.9), with two fixes: the
``not_leader`` hint is followed instead of ignored, and discovery asks all members at
once instead of one node after another. Discovery never lists the cluster's actors: it
asks the members seen last time, then the node agents' directories
(``runtime/directory.py``). Per-group state (the leader cache) is bounded. A command keeps one command id across every
retry, so the group applies it at most once (within ``max_retained_command_results``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import ray

from . import codec, errors
from .raft.types import SessionId
from .runtime import env
from .runtime.directory import LRU, get_directory, shared
from .runtime.names import parse_member_id
from .runtime.per_cluster import PerCluster
from .runtime.transport import Channel, Channels, connect
from .runtime.wire import (
    ClientOp,
    MemberStatus,
    Quarantine,
    RaisedReply,
    RejectedReply,
    Reply,
    TooLargeReply,
    UnpicklableReply,
    ValueReply,
)

log = logging.getLogger(__name__)

_UNKNOWN_OUTCOME = ("not_leader", "leadership_lost", "removed", "no_member")
"""Rejections after which a command may or may not have been applied: retry, same id."""

DISCOVERY_TIMEOUT = 2.0
DISCOVERY_CONCURRENCY = 32
"""Leader discoveries one process runs at once (each asks a few members and agents). After a
node loss every group of the process may need one: unbounded, their thousands of status
calls swamped the hosts, every one timed out, and the retries kept it so (a collapse that
benchmarks.fleet saw on this 2-core machine: 1 of 1,000 groups answered within 120 s)."""
MAX_BATCH = 4096
MAX_INFLIGHT_BATCHES = 1


@dataclass(slots=True)
class _Leader:
    mid: str
    handle: Any


class _Batcher:
    """Coalesces the operations bound for one host actor, for any of its groups, into
    ``submit_many`` calls (one batch in flight at a time: while it is out, the next fills)."""

    def __init__(self, handle: Any, channel: Any = None) -> None:
        self.handle = handle
        self._channel = channel  # () -> an open Channel to the host, or None (then a Ray call)
        self._queue: deque[tuple[tuple[str, ClientOp], asyncio.Future]] = deque()
        self._inflight = 0

    def submit(self, group: str, op: ClientOp) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(((group, op), fut))
        if self._inflight < MAX_INFLIGHT_BATCHES:
            self._launch()
        return fut

    def _launch(self) -> None:
        # Ops whose caller gave up (timed out) are not sent: the caller's retry carries the
        # same command id, and a stale copy arriving much later could outlive the de-dup
        # window.
        batch = []
        while self._queue and len(batch) < MAX_BATCH:
            op, fut = self._queue.popleft()
            if not fut.done():
                batch.append((op, fut))
        if not batch:
            return
        self._inflight += 1
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[tuple[str, ClientOp], asyncio.Future]]) -> None:
        try:
            ch = self._channel() if self._channel is not None else None
            items = [item for item, _ in batch]
            try:
                ref = ch.call("submit_many", items) if ch is not None else self.handle.submit_many.remote(items)
            except ValueError:  # over a connection's frame limit: a Ray call carries any size
                ref = self.handle.submit_many.remote(items)
            results = await ref
        except Exception as exc:  # noqa: BLE001 - a dead or failing actor or connection: every caller retries
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
        finally:
            self._inflight -= 1
            if self._queue and self._inflight < MAX_INFLIGHT_BATCHES:
                self._launch()


class Client:
    """Process-wide client state for one Ray cluster. Use ``get_client()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: run on that (running) loop instead of a thread of its own; the fleet
        simulator's clients do, on its virtual-time loop (only the async calls then work)."""
        self.closed = False
        self._thread: threading.Thread | None = None
        if loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="raftfleet-client", daemon=True)
            self._thread.start()
        else:
            self._loop = loop
        self._leaders: LRU[str, _Leader] = LRU()
        self._batchers: LRU[str, _Batcher] = LRU()  # host actor name -> its batcher
        self.directory = get_directory()
        self._cmd_prefix = env.current().new_id()[:12]
        self._cmd_seq = itertools.count(1)
        self._outstanding: set[int] = set()  # seqs of commands still in flight
        # group -> when this process's session with it began (µs; SessionId.since): on first
        # use, and anew (above the group's floor) after the group said the session expired.
        self._session_since: dict[str, int] = {}
        self._outstanding_lock = threading.Lock()
        self._sync_callers = 0  # blocking callers inside call_sync right now
        self._refresher: concurrent.futures.Future | None = None
        # One discovery per group at a time (a retry joins the one in flight), and at most
        # DISCOVERY_CONCURRENCY of them (the semaphore is made on the client loop).
        self._discovering: dict[Hashable, asyncio.Future] = {}
        self._discovery_slots: asyncio.Semaphore | None = None
        # Direct connections to hosts (runtime/transport.py), opened on the client loop at a
        # host's first batch; Ray calls carry its batches until one is open, and for good if
        # this process has no fleet secret (the fleet simulator). host -> channel.
        self._channels = Channels(self._open_channel, env.current().mono)
        self._secret: bytes | None = None
        self._direct_off = False

    # -- running coroutines from any thread or loop ------------------------------------------

    def close(self) -> None:
        """Stop this client's loop and thread (the process moved to another Ray cluster, whose
        client is a new one): calls still running on it end with ``CancelledError``."""
        if self.closed:
            return
        self.closed = True
        self.forget_all()
        if self._thread is None or self._loop.is_closed():
            return  # a loop it was given is not its own to stop

        def stop() -> None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_soon(self._loop.stop)  # after the cancelled tasks have run once

        self._loop.call_soon_threadsafe(stop)

    def _check_open(self, coro: Any) -> None:
        if self.closed:
            coro.close()  # never to be awaited: say so now rather than warn at collection
            # A caller holding the client of a cluster this process has left: its loop is gone.
            raise ConnectionError("raftfleet_ray: this client belongs to a Ray cluster this process is no "
                                  "longer connected to; call get_client() again")

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the client loop and block the calling thread for its result."""
        self._check_open(coro)
        if threading.current_thread() is self._thread:
            raise RuntimeError("raftfleet_ray: a blocking call was made from the client loop itself")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def run_async(self, coro: Any) -> Any:
        """Await ``coro`` on the client loop from another event loop (an async actor)."""
        self._check_open(coro)
        if asyncio.get_running_loop() is self._loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call_sync(
        self,
        group: str,
        op: ClientOp,
        *,
        operation: str,
        timeout: float,
        retry: int,
        retry_interval: float,
        on_missing: Any = None,
    ) -> Any:
        """``call`` for a blocking caller. With a cached leader, a lone caller calls it straight
        from this thread, and overlapping callers hand their ops to its batcher (no coroutine,
        task or timer per op on the client loop). Anything but a final answer falls back to
        ``call`` with the same op: this was the cached-leader part of raft_fleet's first try."""
        lead = self._leaders.get(group)
        first_sleep = False
        quarantine: Quarantine | None = None
        if lead is not None:
            with self._outstanding_lock:
                self._sync_callers += 1
                alone = self._sync_callers == 1
            try:
                if alone and not self._channels.is_open(parse_member_id(lead.mid)[0]):
                    # Nobody to batch with: call the leader from this thread, skipping the two
                    # thread hops through the client loop.
                    res = self._direct(lead, group, op, timeout)
                else:
                    res = self._via_batcher(lead, group, op, timeout)
            finally:
                with self._outstanding_lock:
                    self._sync_callers -= 1
            if res is TimeoutError:
                # This was a whole try: it counts against `retry`, keeping the documented bound.
                res, first_sleep = None, True
                retry -= 1
            if isinstance(res, Quarantine):
                quarantine = res  # the cached leader was quarantined: ask the others (same op)
            elif res is not None and not isinstance(res, RejectedReply):
                return self._outcome(res, group, operation)
            if self._leaders.get(group) is lead:
                self._leaders.pop(group)
            if retry < 0:
                raise errors.NoLeaderError(group, operation=operation, detail=f"the leader did not answer within {timeout}s")
        return self.run(
            self.call(group, op, operation=operation, timeout=timeout, retry=retry,
                      retry_interval=retry_interval, on_missing=on_missing, first_sleep=first_sleep,
                      quarantine=quarantine)
        )

    @staticmethod
    def _direct(lead: _Leader, group: str, op: ClientOp, timeout: float) -> Any:
        """One op as its own Ray call from the caller's thread: its result, ``TimeoutError``,
        or None if the leader's actor failed."""
        ref = lead.handle.submit.remote(group, [op])
        try:
            return ray.get(ref, timeout=timeout)[0]
        except ray.exceptions.GetTimeoutError:
            return TimeoutError
        except Exception:  # noqa: BLE001 - the leader's actor died: rediscover, same try
            return None

    def _via_batcher(self, lead: _Leader, group: str, op: ClientOp, timeout: float) -> Any:
        """The op joins the leader's next batch on the client loop; same results as ``_direct``."""
        cf: concurrent.futures.Future = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._submit_to, lead, group, op, cf)
        try:
            return cf.result(timeout)
        except concurrent.futures.TimeoutError:
            cf.cancel()
            return TimeoutError
        except Exception:  # noqa: BLE001 - the leader's actor died: rediscover, same try
            return None

    def _submit_to(self, lead: _Leader, group: str, op: ClientOp, cf: concurrent.futures.Future) -> None:
        fut = self._batcher(lead).submit(group, op)
        # A caller that gives up cancels cf; cancel the queued op with it so it is not sent.
        cf.add_done_callback(lambda c: self._loop.call_soon_threadsafe(fut.cancel) if c.cancelled() else None)

        def done(f: asyncio.Future) -> None:
            if cf.done():
                return
            if f.cancelled():
                cf.cancel()
            elif f.exception() is not None:
                cf.set_exception(f.exception())
            else:
                cf.set_result(f.result())

        fut.add_done_callback(done)

    @staticmethod
    def _outcome(res: Reply, group: str, operation: str) -> Any:
        """The final answers: a value, the command's own exception, or a definite error."""
        match res:
            case ValueReply(value):
                return codec.loads(value)
            case RaisedReply(exc):
                raise codec.loads(exc)
            case TooLargeReply(size, limit):
                raise errors.CommandTooLargeError(group, size=size, limit=limit)
            case UnpicklableReply(message):
                raise errors.RaftFleetError(f"{operation} on group {group!r}: {message}")
        raise errors.RaftFleetError(f"{operation} on group {group!r}: unexpected reply {res!r}")

    def new_command_id(self, group: str) -> SessionId:
        """A command id in this process's client session with ``group`` (Raft thesis §6.3):
        the group keeps its result until every earlier command of this process is finished,
        however many other commands pass meanwhile. Call ``done_command`` when the caller is
        finished."""
        with self._outstanding_lock:
            seq = next(self._cmd_seq)
            self._outstanding.add(seq)
            since = self._session_since.setdefault(group, int(env.current().wall() * 1e6))
            return SessionId(self._cmd_prefix, seq, min(self._outstanding), since)

    def session_expired(self, group: str, floor: int) -> None:
        """``group`` evicted our session: the next command starts a new one, which must
        begin after ``floor`` (the newest session the group evicted) to count as new."""
        with self._outstanding_lock:
            self._session_since[group] = max(int(env.current().wall() * 1e6), floor + 1)

    def done_command(self, cmd_id: SessionId) -> None:
        with self._outstanding_lock:
            self._outstanding.discard(cmd_id.seq)

    # -- leader cache and discovery ----------------------------------------------------------

    def cached_leader(self, group: str) -> _Leader | None:
        return self._leaders.get(group)

    def forget_group(self, group: str) -> None:
        self._leaders.pop(group)
        self.directory.known_members.pop(group)

    def forget_all(self) -> None:
        """Drop every cached leader and stop the refresher (the fleet was torn down)."""
        self._leaders.clear()
        self._batchers.clear()
        self.directory.known_members.clear()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._channels.close_all)
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def leader_from_id(self, mid: str) -> _Leader | None:
        """A handle for the member ``mid`` (a leader hint), or None if its host is gone."""
        h = await self.directory.host(parse_member_id(mid)[0])
        return None if h is None else _Leader(mid, h)

    async def member_handles(self, group: str) -> dict[str, Any]:
        """Every live member host of ``group`` (by host actor name), from the agents' directories."""
        return await self.directory.hosts_of(group)

    async def statuses(self, group: str, timeout: float = DISCOVERY_TIMEOUT) -> dict[str, MemberStatus | None]:
        """status() of every member of ``group``, asked in parallel; None = no answer."""
        return await self.directory.statuses(group, timeout)

    async def discover(self, group: str, on_missing: Any = None) -> _Leader | None:
        """Find the leader: ask the members (those seen last time first), take the leader
        with the highest term, else follow a hint. ``on_missing``: a coroutine function
        awaited when no member answers at all (it may raise, e.g. NotFoundError for a group
        that does not exist). Concurrent discoveries of one group on this loop share one."""
        mid, sts = await asyncio.shield(shared(self._discovering, group, lambda: self._find_leader(group)))
        if on_missing is not None and not any(sts.values()):
            # No member at all, or none that answers (e.g. an orphan of a failed start).
            await on_missing()
        lead = await self.leader_from_id(mid) if mid else None
        if lead is not None:
            self._leaders.put(group, lead)
        return lead

    async def _find_leader(self, group: str) -> tuple[str | None, dict[str, dict | None]]:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            if self._discovery_slots is None:
                self._discovery_slots = asyncio.Semaphore(DISCOVERY_CONCURRENCY)
            async with self._discovery_slots:
                return await self.directory.find_leader(group, DISCOVERY_TIMEOUT)
        return await self.directory.find_leader(group, DISCOVERY_TIMEOUT)  # an actor's own loop

    # -- the leader cache refresher (raft_fleet's LeaderPidCacheRefresher, reference §3.10) --

    def ensure_refresher(self, interval: Any, registered: Any) -> None:
        """Start, once per process, the loop that every ``await interval()`` seconds checks
        every cached leader: an entry whose group is no longer registered (``await
        registered()`` -> set of names) is dropped, one that no longer leads is looked up
        again. Unlike raft_fleet, groups this process never used are not looked up: the
        client's state stays bounded by the groups it uses."""
        if self._refresher is None:
            self._refresher = asyncio.run_coroutine_threadsafe(self._refresh_loop(interval, registered), self._loop)

    async def _refresh_loop(self, interval: Any, registered: Any) -> None:
        while True:
            try:
                await asyncio.sleep(await interval())
                await self.refresh_leaders(registered)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - it runs again at the next interval
                log.debug("leader cache refresh failed: %r", exc)
                await asyncio.sleep(5.0)

    async def refresh_leaders(self, registered: Any = None) -> int:
        """One pass of the refresher; returns how many entries were looked up again."""
        groups = self._leaders.keys()
        if not groups:
            return 0
        if registered is not None:
            known = await registered()
            for g in [g for g in groups if g not in known]:
                self.forget_group(g)
            groups = [g for g in groups if g in known]
        sem = asyncio.Semaphore(16)
        stale = [0]

        async def check(g: str) -> None:
            lead = self._leaders.get(g)
            if lead is None:
                return
            async with sem:
                try:
                    st = await asyncio.wait_for(lead.handle.status.remote(g), DISCOVERY_TIMEOUT)
                except Exception:  # noqa: BLE001 - its host is gone
                    st = None
                if st is None or st.state_name != "leader":
                    stale[0] += 1
                    self._leaders.pop(g)
                    await self.discover(g)

        await asyncio.gather(*(check(g) for g in groups))
        return stale[0]

    # -- the retry loop --------------------------------------------------------------------

    def _batcher(self, lead: _Leader) -> _Batcher:
        host = parse_member_id(lead.mid)[0]
        b = self._batchers.get(host)
        if b is None or b.handle is not lead.handle:
            b = _Batcher(lead.handle, lambda host=host, h=lead.handle: None if self._direct_off
                         else self._channels.get(host, h))
            self._batchers.put(host, b)
        return b

    async def _open_channel(self, host: str, handle: Any) -> Channel | None:
        """A direct connection to ``host`` (on the client loop), or None if it takes none or
        this process has no fleet secret (the fleet simulator: Ray calls for good)."""
        if self._secret is None:
            where = await env.current().in_thread(env.current().transport)
            if where is None:
                self._direct_off = True
                return None
            self._secret = where[1]
        endpoint = await asyncio.wait_for(handle.endpoint.remote(), DISCOVERY_TIMEOUT)
        if endpoint is None:
            return None
        return Channel(await connect(endpoint[0], endpoint[1], self._secret))

    async def call(
        self,
        group: str,
        op: ClientOp,
        *,
        operation: str,
        timeout: float,
        retry: int,
        retry_interval: float,
        on_missing: Any = None,
        first_sleep: bool = False,
        quarantine: Quarantine | None = None,
    ) -> Any:
        """Send ``op`` to the leader of ``group`` with raft_fleet's retry rules.

        Blocks at most about ``timeout * (retry + 1) + retry_interval * retry`` plus leader
        discovery. Raises ``NoLeaderError`` when every try failed (the outcome of a command is
        then unknown: it may have been applied once), ``MemberQuarantinedError`` (a
        ``NoLeaderError``) when the last member asked had been quarantined by its host, the
        exception a command raised, or the ``RaftFleetError`` for a definite refusal.
        ``quarantine``: what a first try outside this loop was answered (``call_sync``)."""
        last_problem = "no member of the group answered"
        if quarantine is not None:
            last_problem = f"{quarantine.member} was quarantined: {quarantine.cause}"
        for attempt in range(retry + 1):
            if attempt or first_sleep:
                await asyncio.sleep(retry_interval)
            lead = self._leaders.get(group) or await self.discover(group, on_missing)
            hops = 0
            while lead is not None and hops < 4:
                hops += 1
                fut = self._batcher(lead).submit(group, op)
                try:
                    # Cancelling fut on timeout is harmless: the batcher skips done futures.
                    res = await asyncio.wait_for(fut, timeout)
                except TimeoutError:
                    last_problem = f"the leader did not answer within {timeout}s"
                    quarantine = None
                    self._leaders.pop(group)
                    break
                except Exception as exc:  # noqa: BLE001 - the leader's actor died or failed
                    last_problem = f"the leader failed: {type(exc).__name__}"
                    quarantine = None
                    self._leaders.pop(group)
                    self.directory.forget_host(parse_member_id(lead.mid)[0])
                    break
                if isinstance(res, Quarantine):
                    # Its host quarantined the member (it raised): an unknown outcome, as for a
                    # leader that died; the others elect a new leader, found at the next try.
                    quarantine = res
                    last_problem = f"{res.member} was quarantined: {res.cause}"
                    self._leaders.pop(group)
                    break
                quarantine = None
                if not isinstance(res, RejectedReply):
                    if isinstance(res, ValueReply | RaisedReply):
                        self._leaders.put(group, lead)
                    return self._outcome(res, group, operation)
                reason, hint = res.reason, res.leader
                self._leaders.pop(group)
                if reason == "session_expired":
                    self._leaders.put(group, lead)  # it leads; only our session is gone
                    self.session_expired(group, res.session_floor or 0)
                if reason not in _UNKNOWN_OUTCOME:
                    raise errors.from_reject_reason(reason, group=group, operation=operation)
                last_problem = f"{lead.mid} answered {reason}"
                lead = await self.leader_from_id(hint) if hint and hint != lead.mid else None
                if lead is not None:
                    self._leaders.put(group, lead)
        if quarantine is not None:
            raise errors.MemberQuarantinedError(group, member=quarantine.member, cause=quarantine.cause,
                                                operation=operation)
        raise errors.NoLeaderError(group, operation=operation, detail=last_problem)


_client: PerCluster[Client] = PerCluster(Client, close=Client.close)


def get_client() -> Client:
    """This process's client for the Ray cluster it is connected to: made at first use, and
    again (the old one closed) once the process is connected to another cluster, whose
    leaders, hosts and groups the old one knows nothing of."""
    return _client.get()

