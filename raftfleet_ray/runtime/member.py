"""The member host: a thin asyncio shell around the pure Raft core.

``MemberHost`` is a plain class (made a Ray actor in ``factory.py``) hosting the members
of one or more groups, keyed by group name (``FleetConfig.members_per_host``). It

- drives the clocks of its awake members from one timer (``HostClock``): quiesced members
  cost nothing, and every awake member ticks in the same loop turn, so their heartbeats to
  one peer host leave in one call;
- writes what a ``Ready`` asks to storage *before* sending what depends on it: in memory
  at once, or (``FleetConfig.persistence_dir_parent``) into the host's write-ahead log
  (``storage/log.py``), flushed with one fsync per loop turn for every member of the host
  (group commit) before their ``messages_after_persist`` go out;
- with persistence, recovers its members from that log when Ray restarts its process
  (same name, same members, their votes and logs intact: they rejoin as themselves);
- sends peer messages as one batched one-way Ray call per peer host and loop turn, across
  all groups (``Router``), and handles a peer's batch for many groups in one pass;
- tells its members when a peer host dies (Ray fails the calls to it, and a long-polled
  ``watch`` call) or when the node agent reports a node unreachable: ``RaftNode.peer_down``;
- answers a client call when the core replies (commands at apply, reads when the
  ReadIndex round or the lease allows), for one group or many groups in one call;
- isolates its members from one another: every step it takes for one member (a peer message,
  a flush's completion, a tick, a client call, a recovery) runs in its own try/except, and a
  member that raises out of one is *quarantined* (``wire.Quarantine``): it takes no part in
  its group any more, its callers get the quarantine as their answer, its status and the
  node agent report it, and the host's other members go on untouched.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from .. import codec
from ..config import RaftConfig
from ..errors import MemberQuarantinedError
from ..placement.bugs import STOP_KEEPS_FILES_LIVE
from ..raft import (
    CANDIDATE,
    LEADER,
    EntryKind,
    Message,
    Ok,
    RaftNode,
    Raised,
    Ready,
    Rejected,
    restored_snapshot,
)
from ..raft.types import split_membership
from ..storage import HostLog, MemoryStorage, Storage, StorageError
from ..storage.base import DurableState
from . import env
from .metrics import GAUGE_INTERVAL, Metrics, process_metrics, record_ops
from .names import member_id, node_prefix_of_member, parse_member_id
from .transport import Channel, Channels, Listener, connect, serve_calls
from .wire import (
    ClientOp,
    CommandOp,
    LogSummary,
    MemberStatus,
    Quarantine,
    QueryOp,
    RaisedReply,
    RejectedReply,
    Reply,
    StartRefused,
    TooLargeReply,
    UnpicklableReply,
    ValueReply,
)

log = logging.getLogger(__name__)


FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)
"""What a member's failure never swallows: the process (or Ray, ``exit_actor``) is stopping or
the task is cancelled. Anything else escaping a member's step, ``BaseException`` subclasses
of user code included, quarantines that member only."""


def raft_clock() -> float:
    """The clock the members' ticks follow (``Env.raft_now``): seconds that keep counting
    while the machine is suspended (Linux ``CLOCK_BOOTTIME``; elsewhere ``time.monotonic``;
    virtual time under the fleet simulator). The leader lease is counted in ticks: were they
    to stand still through a suspend (``monotonic`` does, on Linux), a leader waking from one
    would trust a lease its followers' timers ended long ago, while they had elected another
    leader. After a suspend the ticks due are fed at once (catch_up_clock)."""
    return env.current().raft_now()


class ArgDecoding:
    """Wraps the user's ``Data`` so that command and query arguments travel as pickled
    bytes: the client encodes once (and can refuse an unpicklable or oversized argument
    with a clear error), the log holds bytes (exact batch sizes), every replica decodes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def command(self, arg: bytes) -> Any:
        return self.inner.command(codec.loads(arg))

    def query(self, arg: bytes) -> Any:
        return self.inner.query(codec.loads(arg))


def encode_result(result: Ok | Raised | Rejected) -> Reply:
    """A core result as the client receives it. Values are pickled here, one by one, so that
    one unpicklable return value fails only its own caller, not the whole batch."""
    match result:
        case Ok(value):
            try:
                return ValueReply(codec.dumps(value))
            except Exception as exc:  # noqa: BLE001
                return UnpicklableReply(f"the result ({type(value).__name__}) cannot be pickled: {exc}")
        case Raised(exc):
            try:
                return RaisedReply(codec.dumps(exc))
            except Exception:  # noqa: BLE001
                return RaisedReply(codec.dumps(RuntimeError(repr(exc))))
        case Rejected(reason, leader, session_floor):
            return RejectedReply(reason, leader, session_floor)
    raise TypeError(f"unexpected result {result!r}")


def _check_ops(ops: list[Any]) -> None:
    """A batch holds only ``CommandOp``/``QueryOp`` (else the caller's call fails, and no
    member is touched: a malformed batch is its sender's bug, not the member's)."""
    for op in ops:
        if not isinstance(op, CommandOp | QueryOp):
            raise TypeError(f"expected a CommandOp or QueryOp, got {type(op).__name__}")


def _done(value: Any) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


_MAX_WAITING = 1000

WATCH_SECONDS = 60.0
"""A ``watch`` call returns after this long and is made again: it exists to fail when its
host dies, and the bound keeps a dead watcher's call from waiting forever on the peer."""


def _is_dead_actor_error(exc: BaseException) -> bool:
    """True only for Ray's definite 'this actor is dead' (not a transient unavailability)."""
    try:
        from ray.exceptions import ActorDiedError
    except ImportError:  # pragma: no cover - the shell without Ray (unit tests use fakes)
        return False
    return isinstance(exc, ActorDiedError)


DIRECT_METHODS = frozenset({"deliver", "submit", "submit_many"})
"""What a host answers over a direct connection: peer batches and client operations."""
CHANNEL_PROBE_TIMEOUT = 5.0
"""Seconds for a peer's ``endpoint`` answer (when a connection is opened, or asking Ray whether a
peer whose connection closed is dead)."""


class Router:
    """Outgoing peer messages, batched per destination actor and flushed once per event-loop
    turn: one Ray call carries everything for that actor. Sends never wait on a peer (Erlang
    casts): a dead or slow peer costs nothing but lost messages, which Raft retransmits.

    Answers ride back on the call itself: while a host handles a batch from actor X, what it
    sends to X (append acks, vote and heartbeat responses) is returned as the call's result
    instead of being sent as a new call. Measured here, a Ray call's reply arrives in about
    half the time of a second one-way call, so a replication round costs one round trip."""

    def __init__(
        self,
        own_actor: str,
        resolve: Callable[[str], Any],
        local: Callable[[list], None],
        *,
        on_resolved: Callable[[str, Any], None] | None = None,
        on_dead: Callable[[str], None] | None = None,
        open_channel: Callable[[str, Any], Awaitable[Channel | None]] | None = None,
    ):
        self._own = own_actor
        # Direct connections (runtime/transport.py), when the host can open them: a peer's
        # batches go over its channel once it is open, over Ray calls until then.
        self._channels = Channels(open_channel, env.current().mono) if open_channel is not None else None
        self._resolve = resolve
        self._local = local
        self._on_resolved = on_resolved
        self._on_dead = on_dead
        self._out: dict[str, list[tuple[str, Message]]] = {}
        self._scheduled = False
        self._handles: dict[str, Any] = {}
        self._failed: dict[str, float] = {}
        self._capture_for: str | None = None
        self._captured: list[tuple[str, Message]] = []
        self._resolving: set[str] = set()
        self._waiting: dict[str, list[tuple[str, Message]]] = {}
        self._held: dict[str, list[tuple[str, Message]]] = {}

    def send(self, msg: Message) -> None:
        actor, group = parse_member_id(msg.to)
        if actor == self._capture_for:
            self._captured.append((group, msg))
            return
        held = self._held.get(actor)
        if held is not None:
            held.append((group, msg))
            return
        self._out.setdefault(actor, []).append((group, msg))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def capture(self, sender: str) -> None:
        """Until ``captured()``, messages for ``sender`` are kept to be returned to it."""
        self._capture_for = sender
        self._captured = []

    def captured(self) -> list[tuple[str, Message]]:
        out, self._captured, self._capture_for = self._captured, [], None
        return out

    def hold(self, actors: set[str]) -> None:
        """Until ``release()``, messages for ``actors`` are kept: they go back on the replies
        of calls from those actors that are waiting for this host's flush."""
        self._held = {a: [] for a in actors}

    def release(self) -> dict[str, list[tuple[str, Message]]]:
        out, self._held = self._held, {}
        return out

    @property
    def open_channels(self) -> int:
        """Peers reached over a direct connection now."""
        return self._channels.open_count if self._channels is not None else 0

    def forget(self, actor: str) -> None:
        self._handles.pop(actor, None)
        if self._channels is not None:
            self._channels.forget(actor)

    def known_handle(self, actor: str) -> Any:
        """The handle of ``actor`` if it was looked up already (no lookup is started)."""
        return self._handles.get(actor)

    def know(self, actor: str) -> None:
        """Make sure ``actor``'s handle is (being) looked up, so ``on_resolved`` runs for it."""
        h = self._handle(actor)
        if h is not None and self._on_resolved is not None:
            self._on_resolved(actor, h)

    def _handle(self, actor: str) -> Any:
        """The peer's handle, or None while it is being looked up (or was just found missing).

        The lookup is a GCS call: it runs on a thread, never on the event loop, which a slow
        GCS would otherwise freeze for every member of this host."""
        h = self._handles.get(actor)
        if h is not None:
            return h
        now = env.current().mono()
        if actor not in self._resolving and now - self._failed.get(actor, -1e9) >= 1.0:
            self._resolving.add(actor)
            # On a lookup thread (Env.in_thread), not the default executor: a lookup of a peer
            # on a node that just died can block for a minute, and must not hold up the
            # lookups of live peers.
            asyncio.ensure_future(env.current().in_thread(self._resolve, actor)).add_done_callback(
                lambda f, a=actor: self._resolved(a, f))
        return None

    def _resolved(self, actor: str, f: Any) -> None:
        self._resolving.discard(actor)
        waiting = self._waiting.pop(actor, [])
        if f.exception() is not None:
            self._failed[actor] = env.current().mono()  # missing or dead: drop; Raft resends
            return
        self._failed.pop(actor, None)
        self._handles[actor] = f.result()
        if self._on_resolved is not None:
            self._on_resolved(actor, f.result())
        if waiting:
            self._out.setdefault(actor, []).extend(waiting)
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        out, self._out = self._out, {}
        for actor, batch in out.items():
            if actor == self._own:
                self._local(batch)
                continue
            h = self._handle(actor)
            if h is None:
                waiting = self._waiting.setdefault(actor, [])
                if actor in self._resolving and len(waiting) < _MAX_WAITING:
                    waiting.extend(batch)  # kept (bounded) for a peer being looked up
                continue
            ch = self._channels.get(actor, h) if self._channels is not None else None
            try:
                try:
                    ref = ch.call("deliver", self._own, batch) if ch is not None else h.deliver.remote(self._own, batch)
                except ValueError:  # over a connection's frame limit (a large snapshot): by Ray
                    ch = None
                    ref = h.deliver.remote(self._own, batch)
            except Exception:  # noqa: BLE001
                self.forget(actor)
                continue
            asyncio.ensure_future(self._answers(actor, ref, h if ch is not None else None))

    async def _answers(self, actor: str, ref: Any, direct_to: Any = None) -> None:
        try:
            answers = await ref
        except Exception as exc:  # noqa: BLE001 - the peer died or failed: as if the message was lost
            if direct_to is not None and self._channels is not None:
                # A closed connection is not a death (silence is not death): Ray is asked, and
                # only its word that the actor is gone is taken, as for a Ray call.
                self._channels.drop(actor)
                asyncio.ensure_future(self._ask_ray_if_dead(actor, direct_to))
                return
            self.forget(actor)
            if self._on_dead is not None and _is_dead_actor_error(exc):
                self._on_dead(actor)
            return
        if answers:
            self._local(answers)

    async def _ask_ray_if_dead(self, actor: str, h: Any) -> None:
        try:
            await asyncio.wait_for(h.endpoint.remote(), CHANNEL_PROBE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - dead (reported), or unsure (nothing concluded)
            if _is_dead_actor_error(exc):
                self.forget(actor)
                if self._on_dead is not None:
                    self._on_dead(actor)


class HostClock:
    """One timer for all the awake members of a host.

    A member registers when it wakes (``wake``) and is dropped once it quiesces, so an idle
    host runs no timer at all. Each member's next tick is aligned to a grid of its tick
    interval, so members with the same interval tick in the same loop turn and their
    heartbeats to one peer host travel in one call (the Router flushes once per turn)."""

    def __init__(self) -> None:
        self._awake: dict[str, Member] = {}
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @staticmethod
    def next_grid_point(now: float, interval: float) -> float:
        return (math.floor(now / interval) + 1) * interval

    def wake(self, m: Member) -> None:
        if m.id in self._awake:
            return
        m._next_tick_at = self.next_grid_point(raft_clock(), m.config.tick_interval)
        self._awake[m.id] = m
        if self._event is None:
            self._event = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._event.set()

    def remove(self, m: Member) -> None:
        self._awake.pop(m.id, None)

    @property
    def awake(self) -> int:
        return len(self._awake)

    async def _run(self) -> None:
        event = self._event
        assert event is not None
        while True:
            try:
                if not self._awake:
                    event.clear()
                    await event.wait()
                    continue
                delay = min(m._next_tick_at for m in self._awake.values()) - raft_clock()
                if delay > 0:
                    event.clear()
                    try:
                        await asyncio.wait_for(event.wait(), delay)
                    except TimeoutError:
                        pass
                    continue
                now = raft_clock()
                for m in list(self._awake.values()):
                    if m._next_tick_at <= now:
                        try:
                            m.catch_up_clock(now)
                        except FATAL:
                            raise
                        except BaseException as exc:  # noqa: BLE001 - this member only: quarantined
                            # Not logged and skipped as before: a member whose ticks fail never
                            # elects or heartbeats again, yet would look alive to its group.
                            m.fault("tick", exc)
                    if m.stopped or m.node.quiesced:
                        self._awake.pop(m.id, None)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the clock of every member of this host: never dies
                log.exception("host clock failed; going on")
                await asyncio.sleep(0.05)


class Member:
    """One group's member inside a host: the core, its storage, its clock, its callers."""

    def __init__(
        self,
        group: str,
        mid: str,
        config: RaftConfig,
        router: Router,
        clock: HostClock,
        *,
        bootstrap: bool,
        storage: Storage | None = None,
        seed: int | None = None,
        on_removed: Callable[[Member], None] | None = None,
        on_persist: Callable[[Member, list[Message], int], None] | None = None,
        durable: DurableState | None = None,
        metrics: Metrics | None = None,
        on_fault: Callable[[Member, str, BaseException], None] | None = None,
    ) -> None:
        self.group = group
        self._on_fault = on_fault
        self._metrics = metrics or Metrics()
        self.id = mid
        self.config = config
        self._router = router
        self._clock = clock
        self._on_removed = on_removed
        self.storage = storage or MemoryStorage()
        # A storage that is not synchronous makes writes durable at the host's next flush:
        # what depends on them waits for it (on_persist), one fsync for the whole host.
        synchronous = getattr(self.storage, "synchronous", True)
        if not synchronous and on_persist is None:
            raise ValueError("a storage that is not synchronous needs on_persist")
        self._on_persist = None if synchronous else on_persist
        core = config.to_core()
        d = durable or DurableState()
        self.node = RaftNode(
            mid,
            core,
            lambda: ArgDecoding(config.data()),
            random.Random(seed),
            members=(mid,) if bootstrap else (),
            hard_state=d.hard_state,
            snapshot=d.snapshot,
            entries=d.entries,
            dumps=codec.dumps,
            loads=codec.loads,
        )
        self._futures: dict[int, asyncio.Future] = {}
        self._next_req = 0
        # Leader hooks (RaftConfig.leader_hook): what each request was, to tell the hook.
        self._hook: Any = None
        if config.leader_hook is not None:
            try:
                self._hook = config.leader_hook()
            except Exception:  # noqa: BLE001 - a broken hook never breaks the member
                log.exception("group %s: leader_hook %s() raised; hooks are off for member %s",
                              group, config.leader_hook.__qualname__, mid)
        self._kinds: dict[int, tuple] = {}
        self._was_leader = False
        self.begun: int | None = None  # what ``MemberHost.begin`` answered, once it ran
        self._role = self.node.role  # role changes are counted (elections, leader changes)
        self.removed = False
        self.stopped = False
        self._next_tick_at = 0.0
        self._lease = self.node.config.lease_ticks > 0
        self._started = False
        self._bootstrap = bootstrap
        self._commit_waiters: list[tuple[int, asyncio.Future]] = []  # (index, future): wait_commit

    def start(self) -> None:
        self._started = True
        if self._bootstrap:
            self.handle(self.node.campaign())  # a 1-member group elects itself at once
        self._clock.wake(self)

    def stop(self) -> None:
        self.stopped = True
        self._clock.remove(self)
        for fut in self._futures.values():
            if not fut.done():
                fut.set_result(Rejected("removed", None))
        self._futures.clear()
        self._kinds.clear()
        for _, fut in self._commit_waiters:
            if not fut.done():
                fut.set_result(False)
        self._commit_waiters.clear()

    def wait_commit(self, index: int) -> asyncio.Future:
        """A future that turns True once this member's commit index reaches ``index`` (False if
        it stops first)."""
        fut = asyncio.get_running_loop().create_future()
        if self.node.commit_index >= index:
            fut.set_result(True)
        else:
            self._commit_waiters.append((index, fut))
        return fut

    def _wake_commit_waiters(self) -> None:
        commit = self.node.commit_index
        done = [w for w in self._commit_waiters if w[0] <= commit]
        self._commit_waiters = [w for w in self._commit_waiters if w[0] > commit]
        for _, fut in done:
            if not fut.done():
                fut.set_result(True)

    def fault(self, during: str, exc: BaseException) -> None:
        """``during`` (a tick, say) raised out of this member: its host quarantines it
        (``on_fault``); a member without a host stops."""
        if self._on_fault is not None:
            self._on_fault(self, during, exc)
            return
        log.error("group %s: member %s: %s raised; stopping it", self.group, self.id, during, exc_info=exc)
        self.stop()

    def quarantine(self, q: Quarantine) -> None:
        """Stop for good because of ``q``: the callers still waiting get ``q`` as their answer
        (an unknown outcome: the client retries elsewhere with the same command id)."""
        for fut in self._futures.values():
            if not fut.done():
                fut.set_result(q)
        self.stop()

    def catch_up_clock(self, now: float | None = None) -> None:
        """Feed the core the ticks that real time says are due.

        With a lease, ticks must keep up with real time even after a stall, and before any
        input is handled (a read served from a lease after a pause, before the missed ticks,
        would trust a lease the followers' timers have already ended). Without a lease,
        catching up at once only causes spurious elections, so the catch-up is capped.
        A quiesced core's clock stands still (its quiet time is not time), so nothing is due."""
        if now is None:
            now = raft_clock()
        interval = self.config.tick_interval
        if self.node.quiesced:
            self._next_tick_at = HostClock.next_grid_point(now, interval)
            return
        if now < self._next_tick_at:
            return
        due = 1 + int((now - self._next_tick_at) / interval)
        self._next_tick_at += due * interval
        core = self.node.config
        for _ in range(due if core.lease_ticks > 0 else min(due, core.heartbeat_ticks)):
            self.handle(self.node.tick())
            if self.stopped or self.node.quiesced:
                return

    # -- driving the core ----------------------------------------------------------------

    def handle(self, rd: Ready) -> None:
        while True:
            if rd.needs_persist():
                # Durable first: anything in messages_after_persist may depend on it.
                self.storage.write(rd.hard_state, rd.snapshot, rd.entries)
            for m in rd.messages:
                self._router.send(m)
            deferred = self._on_persist is not None
            if deferred:
                if rd.messages_after_persist or rd.persist_seq:
                    self._on_persist(self, rd.messages_after_persist, rd.persist_seq)  # type: ignore[misc]
            else:
                for m in rd.messages_after_persist:
                    self._router.send(m)
            for rep in rd.replies:
                fut = self._futures.pop(rep.req, None)
                if fut is not None and not fut.done():
                    fut.set_result(rep.result)
            if self._hook is not None:
                self._run_hooks(rd)
            if rd.removed:
                self.removed = True
                log.info("group %s: member %s was removed from the group", self.group, self.id)
                if self._on_removed is not None:
                    self._on_removed(self)
            if deferred or not rd.persist_seq:
                break
            rd = self.node.on_persisted(rd.persist_seq)
        if self._commit_waiters:
            self._wake_commit_waiters()
        if self.node.role != self._role:
            self._role = self.node.role
            if self._role == CANDIDATE:
                self._metrics.election(self.group)
            elif self._role == LEADER:
                self._metrics.leader_change(self.group)
        if self._started and not self.stopped and not self.node.quiesced:
            self._clock.wake(self)  # a no-op if already awake

    def _call_hook(self, name: str, *args: Any) -> None:
        fn = getattr(self._hook, name, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - logged with the group; the member goes on
            log.exception("group %s: leader hook %s raised (member %s)", self.group, name, self.id)

    def _run_hooks(self, rd: Ready) -> None:
        leader = self.node.role == LEADER
        if leader and not self._was_leader:
            self._call_hook("on_elected", self.node.data.inner)
        self._was_leader = leader
        for rep in rd.replies:
            kind = self._kinds.pop(rep.req, None)
            if kind is None or not leader or not isinstance(rep.result, Ok):
                continue
            data = self.node.data.inner
            if kind[0] == "c":
                self._call_hook("on_command_committed", codec.loads(kind[1]), rep.result.value, data)
            elif kind[0] == "q":
                self._call_hook("on_query_answered", data, codec.loads(kind[1]), rep.result.value)
            elif kind[0] in ("add_member", "add_learner"):
                self._call_hook("on_follower_added", data, kind[1])
            elif kind[0] == "remove_member":
                self._call_hook("on_follower_removed", data, kind[1])

    def persisted(self, msgs: list[Message], seq: int) -> None:
        """The host's flush made this member's writes up to ``seq`` durable."""
        if self.stopped:
            return
        for m in msgs:
            self._router.send(m)
        if seq:
            self.handle(self.node.on_persisted(seq))

    def deliver(self, msg: Message) -> None:
        if not self.stopped:
            if self._lease:
                self.catch_up_clock()
            self.handle(self.node.step(msg))

    def peer_down(self, peer: str) -> None:
        if not self.stopped:
            self.handle(self.node.peer_down(peer))

    def _new_request(self) -> tuple[int, asyncio.Future]:
        self._next_req += 1
        fut = asyncio.get_running_loop().create_future()
        self._futures[self._next_req] = fut
        return self._next_req, fut

    def commands(self, items: list[tuple[Any, bytes]]) -> list[asyncio.Future]:
        """Propose ``(cmd_id, arg)`` pairs together: one append per follower carries them all."""
        if self._lease:
            self.catch_up_clock()
        reqs = [self._new_request() for _ in items]
        if self._hook is not None:
            for (r, _), (_c, a) in zip(reqs, items, strict=True):
                self._kinds[r] = ("c", a)
        self.handle(self.node.propose_batch([(r, c, a) for (r, _), (c, a) in zip(reqs, items, strict=True)]))
        return [f for _, f in reqs]

    def query(self, arg: bytes) -> asyncio.Future:
        if self._lease:
            self.catch_up_clock()
        req, fut = self._new_request()
        if self._hook is not None:
            self._kinds[req] = ("q", arg)
        self.handle(self.node.read(req, arg))
        return fut

    def admin(self, op: str, *args: Any) -> asyncio.Future:
        req, fut = self._new_request()
        if self._hook is not None and args:
            self._kinds[req] = (op, args[0])
        self.handle(getattr(self.node, op)(req, *args))
        return fut

    def ops(self, ops: list[ClientOp]) -> list[asyncio.Future]:
        """Client operations: one future each (its result is a core ``Result`` or an already
        encoded ``Reply``)."""
        limit = self.config.max_command_bytes
        futs: list[asyncio.Future | None] = [None] * len(ops)
        cmds: list[CommandOp] = []
        at: list[int] = []
        for i, op in enumerate(ops):
            if isinstance(op, QueryOp):
                futs[i] = self.query(op.arg)
            elif len(op.arg) > limit:
                futs[i] = _done(TooLargeReply(len(op.arg), limit))
            else:
                cmds.append(op)
                at.append(i)
        if cmds:
            for i, fut in zip(at, self.commands([(c.cmd_id, c.arg) for c in cmds]), strict=True):
                futs[i] = fut
        return futs  # type: ignore[return-value]


def _log_position(st: DurableState) -> tuple[int, int]:
    """(last term, last index) of a durable state: which of several files is the newest."""
    if st.entries:
        return st.entries[-1].term, st.entries[-1].index
    if st.snapshot is not None:
        return st.snapshot.meta.term, st.snapshot.meta.index
    return 0, 0


def _encoded(r: Any) -> Reply | Quarantine:
    return r if isinstance(r, Reply | Quarantine) else encode_result(r)


@dataclass(slots=True)
class _Quarantined:
    """A quarantined member, as its host keeps it: the report, the member's last status (brief)
    and its config (None if it could not even be read)."""

    report: Quarantine
    status: MemberStatus
    config: RaftConfig | None


def _bare_status(mid: str) -> MemberStatus:
    """The status of a member whose core cannot tell its own (it was never built)."""
    return MemberStatus(from_=mid, members=(), leader=None, state_name="quarantined", current_term=0,
                        commit_index=0, applied_index=0, last_index=0)


def _core_status(node: RaftNode, node_id: str, host: str, config: Any = None) -> MemberStatus:
    """A member's ``MemberStatus`` from its core."""
    st = node.status()
    return MemberStatus(from_=st.from_, members=st.members, leader=st.leader, state_name=st.state_name,
                        current_term=st.current_term, commit_index=st.commit_index,
                        applied_index=st.applied_index, last_index=st.last_index, last_term=node.last_term,
                        learners=st.learners, caught_up_learners=st.caught_up_learners,
                        unresponsive_followers=st.unresponsive_followers, quiesced=st.quiesced,
                        snapshot_error=st.snapshot_error, node_id=node_id, host=host, config=config)


def _log_config(st: DurableState) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(voters, learners) a durable state ends with: its last configuration entry (a leader's
    no-op or a membership change; Raft uses the latest in its log, committed or not), else its
    snapshot's. What a majority of files must cover before a restore is safe."""
    for e in reversed(st.entries):
        if e.kind in (EntryKind.NOOP, EntryKind.MEMBERS) and e.data is not None:
            return split_membership(e.data)
    if st.snapshot is not None:
        return tuple(st.snapshot.meta.members), tuple(st.snapshot.meta.learners)
    return (), ()


def _restorable(r: Any) -> LogSummary:
    """What a host or an agent reports of one member's files."""
    info = r.info or ()
    term, index = _log_position(r.state)
    return LogSummary(term, index, info[2] if len(info) > 2 else 0, info[0] if info else "", _log_config(r.state))


class MemberHost:
    """The Ray actor class hosting members: one (the default) or many groups per process."""

    def __init__(self, actor_name: str, node_id: str, resolve: Callable[[str], Any] | None = None,
                 persist_dir: str | None = None, zone: str = "", metrics: Metrics | None = None) -> None:
        """``resolve`` maps a peer host's actor name to its handle; by default a Ray named-actor
        lookup (tests pass fakes, so the shell runs without Ray). ``persist_dir``: this host's
        write-ahead log directory (None: members keep their state in memory only). ``metrics``:
        by default this process's Ray metrics when running under Ray (``runtime/metrics.py``)."""
        self.actor_name = actor_name
        if metrics is None:
            metrics = process_metrics(node_id, zone) if resolve is None else Metrics()
        self._metrics = metrics
        self._gauges_task: asyncio.Task | None = None
        self._group_gauges: dict[str, tuple[int, int]] = {}
        self.persist_dir = persist_dir
        self._log: HostLog | None = None
        self._recovered = persist_dir is None
        self._to_flush: list[tuple[Member, list[Message], int]] = []
        self._flush_scheduled = False
        self._syncing = False  # a flush's fsync is running on the fsync thread
        self._flushes = 0  # flushes started; the writes in _to_flush go with the next one
        # deliver calls whose answers wait for the flush numbered here (what a follower sends
        # once its write is durable rides back on the leader's call, as in memory)
        self._replies: list[tuple[int, str, asyncio.Future]] = []
        self._fsync_thread: Any = None
        self._storage_failed: str | None = None
        self._synced_flushes = 0  # the number of the last flush whose fsync completed
        self._durable_waiters: list[tuple[int, asyncio.Future]] = []
        self.node_id = node_id
        self.members: dict[str, Member] = {}
        # Quarantined members, by group: out of ``members`` (nothing reaches them any more),
        # kept to be reported until the member is stopped (stop_member).
        self._quarantined: dict[str, _Quarantined] = {}
        self._router: Router | None = None
        self._resolve = resolve
        self._clock = HostClock()
        self._next_inc = 0
        self._closing: asyncio.Event | None = None
        self._watching: set[str] = set()
        self._listener: Listener | None = None
        self._listening: asyncio.Future | None = None
        self._secret: bytes | None = None
        # Counters for operators and benchmarks: how well calls are being batched.
        self.counters = {"submit_calls": 0, "submit_ops": 0, "deliver_calls": 0, "deliver_msgs": 0,
                         "peer_down_reports": 0, "fsyncs": 0, "recovered_members": 0, "quarantined": 0,
                         "direct_calls": 0}

    # -- persistence -----------------------------------------------------------------------

    def _ensure_recovered(self) -> None:
        """With persistence: open the log, once per process, and restart every member it
        holds (after Ray restarted this host). Runs on the event loop, at the first call."""
        if self._recovered:
            return
        self._recovered = True
        assert self.persist_dir is not None
        self._log = HostLog(env.current().filesystem(self.node_id), self.persist_dir)
        found = [r for r in self._log.open() if not r.retired]
        recovered = 0
        for rec in found:
            mid = str(rec.info[0]) if rec.info else f"{self.actor_name}#{rec.key}#?"
            config: RaftConfig | None = None
            # One member's unreadable state (its config, snapshot or Data class) quarantines
            # that member, not the whole host: the others recover and serve.
            try:
                self._next_inc = max(self._next_inc, int(mid.rsplit("#", 1)[1]))
                config = codec.loads(rec.info[1])
                m = self._new_member(rec.key, mid, config, bootstrap=False, durable=rec.state)
            except FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - this member only
                self._quarantine_record(rec.key, mid, config, _bare_status(mid), "recover", exc)
                continue
            self.members[rec.key] = m
            try:
                m.start()
            except FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - this member only
                self._quarantine(m, "recover", exc)
                continue
            recovered += 1
        if found:
            self.counters["recovered_members"] += recovered
            log.warning("host %s: recovered %d member(s) from %s%s", self.actor_name, recovered, self.persist_dir,
                        f" ({len(found) - recovered} quarantined)" if recovered < len(found) else "")

    def _new_member(self, group: str, mid: str, config: RaftConfig, *, bootstrap: bool,
                    durable: DurableState | None = None) -> Member:
        storage = self._log.storage(group) if self._log is not None else None
        if self._metrics.enabled and self._gauges_task is None:
            self._gauges_task = asyncio.get_running_loop().create_task(self._gauges_loop())
        return Member(group, mid, config, self._get_router(), self._clock, bootstrap=bootstrap,
                      seed=int(env.current().new_id()[:16], 16),
                      storage=storage, on_removed=self._member_removed, on_persist=self._defer, durable=durable,
                      metrics=self._metrics, on_fault=self._quarantine)

    # -- fault isolation -------------------------------------------------------------------

    def _quarantine(self, m: Member, during: str, exc: BaseException) -> Quarantine:
        """``during`` raised out of member ``m`` (a bug, its Data class, a hook raising a
        BaseException, its storage): quarantine it. Its core may be half-way through a step,
        so nothing more of it is trusted: it leaves ``members`` (no message reaches it, no call
        is served), stops (no tick, nothing sent), and its waiting callers get the report.
        Its files stay as they are (retired only when it is stopped)."""
        known = self._quarantined.get(m.group)
        if known is not None and known.report.member == m.id:
            return known.report  # it raised again on its way out
        try:
            st = _core_status(m.node, self.node_id, self.actor_name)
        except Exception:  # noqa: BLE001 - the core is broken: report what is known
            st = _bare_status(m.id)
        if self.members.get(m.group) is m:
            del self.members[m.group]
        q = self._quarantine_record(m.group, m.id, m.config, st, during, exc)
        m.quarantine(q)
        self._tell_peers(q, (*st.members, *st.learners))
        return q

    def _tell_peers(self, q: Quarantine, peers: tuple[str, ...]) -> None:
        """Tell the hosts of the quarantined member's peers that it is gone for good: its host
        says so, a definite report (not silence). A quiesced group runs no timer, so without
        it the group would wait for a quarantined leader as for a dead host it did not watch.
        Best effort: a peer host not talked to yet is skipped (its election timer will do)."""
        router = self._get_router()
        for actor in sorted({parse_member_id(p)[0] for p in peers if p != q.member} - {self.actor_name}):
            handle = router.known_handle(actor)
            if handle is not None and hasattr(handle, "members_down"):
                asyncio.ensure_future(self._report_members_down(handle, [q.member]))

    @staticmethod
    async def _report_members_down(handle: Any, members: list[str]) -> None:
        try:
            await handle.members_down.remote(members)
        except Exception:  # noqa: BLE001 - that peer host is gone or busy: its own timers will do
            pass

    def _quarantine_record(self, group: str, mid: str, config: RaftConfig | None, status: MemberStatus,
                           during: str, exc: BaseException) -> Quarantine:
        q = Quarantine.of(exc, group=group, member=mid, host=self.actor_name, node_id=self.node_id, during=during)
        self._quarantined[group] = _Quarantined(q, status, config)
        self.counters["quarantined"] += 1
        self._metrics.quarantine(group, during)
        log.error("group %s: %s; the host's other members go on", group, q.describe(), exc_info=exc)
        return q

    def quarantined(self) -> dict[str, Quarantine]:
        """``{group: Quarantine}`` of this host's quarantined members."""
        return {g: r.report for g, r in self._quarantined.items()}

    def _quarantined_error(self, group: str, operation: str) -> MemberQuarantinedError:
        q = self._quarantined[group].report
        return MemberQuarantinedError(group, member=q.member, cause=q.cause, operation=operation)

    # -- metrics ---------------------------------------------------------------------------

    def set_gauges(self) -> None:
        """Members, leaders, awake members and the largest apply lag of this host; the log
        length and apply lag of each group it leads (set again only when they changed; a
        group no longer led here is set to 0 once)."""
        metrics = self._metrics
        leaders = 0
        max_lag = 0
        seen: set[str] = set()
        for g, m in self.members.items():
            node = m.node
            max_lag = max(max_lag, node.commit_index - node.applied_index)
            if node.role != LEADER:
                continue
            leaders += 1
            seen.add(g)
            value = (node.last_index - node.first_index + 1, node.last_index - node.applied_index)
            if self._group_gauges.get(g) != value:
                self._group_gauges[g] = value
                metrics.group_gauges(g, *value)
        for g in [g for g in self._group_gauges if g not in seen]:
            del self._group_gauges[g]
            metrics.group_gauges(g, 0, 0)
        metrics.host_gauges(len(self.members), leaders, self._clock.awake, max_lag)
        metrics.quarantined_members(len(self._quarantined))

    async def _gauges_loop(self) -> None:
        while True:
            try:
                self.set_gauges()
            except Exception:  # noqa: BLE001 - metrics never stop the host
                log.exception("host %s: setting gauges failed", self.actor_name)
            await asyncio.sleep(GAUGE_INTERVAL)

    def _defer(self, m: Member, msgs: list[Message], seq: int) -> None:
        self._to_flush.append((m, msgs, seq))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Group commit: one fsync for every write of every member since the last flush,
        then what waited on them goes out. One flush at a time: the fsync runs on this
        host's fsync thread while the loop goes on (its new writes wait for the next flush).
        A storage failure (a full disk) stops every member here: none acknowledges anything
        more, and the reconciler replaces them."""
        self._flush_scheduled = False
        if self._syncing:
            return  # _synced starts the next flush
        assert self._log is not None
        batch, self._to_flush = self._to_flush, []
        self._flushes += 1
        number = self._flushes
        try:
            self._log.write_out()
        except StorageError as exc:
            self._storage_failure(exc)
            return
        self._syncing = True
        loop = asyncio.get_running_loop()
        if env.current().threads:
            if self._fsync_thread is None:
                self._fsync_thread = ThreadPoolExecutor(1, thread_name_prefix="raftfleet-fsync")
            fut = loop.run_in_executor(self._fsync_thread, self._log.fsync_written)
        else:  # under the fleet simulator: no thread on a virtual-time loop
            fut = loop.create_future()
            try:
                fut.set_result(self._log.fsync_written())
            except Exception as exc:  # noqa: BLE001 - handled in _synced, as from the thread
                fut.set_exception(exc)
        fut.add_done_callback(lambda f, b=batch, n=number: self._synced(b, f, n))  # on the loop's thread

    def _synced(self, batch: list[tuple[Member, list[Message], int]], fut: asyncio.Future, number: int = 0) -> None:
        self._syncing = False
        assert self._log is not None
        exc = fut.exception()
        if exc is None:
            try:
                self._log.finish_sync()
            except StorageError as e:
                exc = e
        if exc is not None:
            self._storage_failure(exc)
            return
        self.counters["fsyncs"] = self._log.fsyncs
        self._synced_flushes = max(self._synced_flushes, number)
        for _n, waiter in [w for w in self._durable_waiters if w[0] <= number]:
            if not waiter.done():
                waiter.set_result(None)
        self._durable_waiters = [w for w in self._durable_waiters if w[0] > number]
        seqs: dict[int, tuple[Member, list[Message], int]] = {}
        for m, msgs, seq in batch:
            prev = seqs.get(id(m))
            seqs[id(m)] = (m, (prev[1] if prev else []) + list(msgs), max(seq, prev[2] if prev else 0))
        waiting = [r for r in self._replies if r[0] <= number]
        router = self._get_router()
        if waiting:
            self._replies = [r for r in self._replies if r[0] > number]
            router.hold({sender for _, sender, _ in waiting})
        try:
            for m, msgs, seq in seqs.values():
                try:
                    m.persisted(msgs, seq)
                except FATAL:
                    raise
                except BaseException as exc:  # noqa: BLE001 - this member only: the others' writes are durable too
                    self._quarantine(m, "persisted", exc)
        finally:
            if waiting:
                held = router.release()
                for _, sender, reply in waiting:
                    if not reply.done():
                        reply.set_result(held.pop(sender, []))
        if (self._to_flush or self._log.pending()) and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _storage_failure(self, exc: BaseException) -> None:
        self._storage_failed = str(exc)
        for _, waiter in self._durable_waiters:
            if not waiter.done():
                waiter.set_exception(StorageError(self._storage_failed))
        self._durable_waiters.clear()
        for _, _, reply in self._replies:
            if not reply.done():
                reply.set_result([])
        self._replies.clear()
        log.error("host %s: %s; stopping its %d member(s)", self.actor_name, exc, len(self.members))
        for m in list(self.members.values()):
            m.stop()
        self.members.clear()
        self._to_flush.clear()

    def _get_router(self) -> Router:
        if self._router is None:
            resolve = self._resolve if self._resolve is not None else env.current().get_actor
            # Direct connections only on Ray itself (tests and the simulator pass ``resolve``).
            self._router = Router(self.actor_name, resolve, self._deliver_local,
                                  on_resolved=self._watch_peer, on_dead=self._peer_host_dead,
                                  open_channel=self._open_channel if self._resolve is None else None)
        return self._router

    # -- direct connections (runtime/transport.py) -------------------------------------------

    async def endpoint(self) -> tuple[str, int] | None:
        """Where this host accepts direct connections from its peers and from clients
        (``(address, port)`` on its node's Ray address), or None if it takes none (outside
        Ray). The listener starts at the first call."""
        if self._resolve is not None:
            return None
        if self._listening is None:
            self._listening = asyncio.ensure_future(self._listen())
        try:
            await asyncio.shield(self._listening)
        except Exception:
            self._listening = None  # asked again at the next call
            raise
        return self._listener.address if self._listener is not None else None

    async def _listen(self) -> None:
        where = await env.current().in_thread(env.current().transport)
        if where is None:
            return
        address, self._secret = where
        listener = Listener(self._secret, lambda conn: serve_calls(conn, self, DIRECT_METHODS, self._direct_call))
        await listener.start(address)
        self._listener = listener
        log.info("host %s: direct connections on %s:%d", self.actor_name, *listener.address)

    def _direct_call(self) -> None:
        self.counters["direct_calls"] += 1

    async def _open_channel(self, actor: str, h: Any) -> Channel | None:
        """A direct connection to peer host ``actor`` (handle ``h``), or None if it takes none."""
        endpoint = await asyncio.wait_for(h.endpoint.remote(), CHANNEL_PROBE_TIMEOUT)
        if endpoint is None:
            return None
        if self._secret is None:
            where = await env.current().in_thread(env.current().transport)
            if where is None:
                return None
            self._secret = where[1]
        return Channel(await connect(endpoint[0], endpoint[1], self._secret))

    def _member(self, group: str, operation: str = "a call") -> Member:
        m = self.members.get(group)
        if m is None:
            if group in self._quarantined:
                raise self._quarantined_error(group, operation)
            raise KeyError(f"actor {self.actor_name} hosts no member of group {group!r}")
        return m

    async def start_member(self, group: str, config: RaftConfig, bootstrap: bool, n_replica: int = 0) -> str:
        """Start this host's member of ``group``: a 1-member group that elects itself at once
        (``bootstrap``), or a passive member that waits for its configuration (``begin``) or
        for a leader to add it. Every start is a new member with a new id (a member that lost
        its state never comes back under its old identity)."""
        self._ensure_recovered()
        if self._storage_failed is not None:
            raise StorageError(self._storage_failed)
        existing = self.members.get(group)
        if existing is not None and not existing.removed:
            return existing.id
        self._quarantined.pop(group, None)  # a new member replaces a quarantined one
        self._next_inc += 1
        mid = member_id(self.actor_name, group, self._next_inc)
        try:  # the group's own code runs here (its Data class): its error is its creator's answer
            m = self._new_member(group, mid, config, bootstrap=bootstrap)
        except Exception as exc:
            raise StartRefused(exc) from exc
        if self._log is not None:
            self._log.drop(group)  # a retired member of an earlier group of that name goes
            self._log.register(group, (mid, codec.dumps(config), n_replica))  # cloudpickle if it must
        self.members[group] = m
        m.start()
        return mid

    async def begin(self, group: str, voters: list[str], lead: bool, restore: DurableState | None = None) -> int:
        """Group birth, second step: this host's brand-new member of ``group`` gets the group's
        first configuration (every voter, started in the first step by ``start_member``), and
        the one that should lead campaigns at once (``RaftNode.bootstrap``). Returns the index
        whose commit means the group exists: its first entry, or, for a restore, the first
        entry after the restored state.

        ``restore`` (for the one that leads): the durable state of an earlier incarnation
        (``restore_state``), raft_fleet's restore from files. Its value and de-dup cache become
        this member's snapshot at the files' index, for the whole new configuration. The other
        voters are not begun: passive, they never campaign (two empty voters would be a
        majority that could elect one of them with an empty log), and get the state from the
        leader, so nothing is acknowledged before a majority holds it.

        Idempotent: the reconciler calls it again when an answer does not come in time (the
        call may have been lost, or may run late); once it ran, it answers the same again and
        does nothing more (a lost begin of a restore's leader left its group without one)."""
        m = self._member(group)
        if m.begun is not None:
            return m.begun
        if restore is None:
            m.handle(m.node.bootstrap(tuple(voters)))
        else:
            try:  # the group's own code runs here (its Data class applies the restored log)
                snap = restored_snapshot((restore.hard_state, restore.snapshot, restore.entries), m.config.to_core(),
                                         lambda: ArgDecoding(m.config.data()), tuple(voters), random.Random(),
                                         dumps=codec.dumps, loads=codec.loads)
            except Exception as exc:
                raise StartRefused(exc) from exc
            m.handle(m.node.bootstrap(tuple(voters), restored=snap))
            log.warning("group %s: restored from files at index %d as member %s of %d voter(s)", group,
                        snap.meta.index, m.id, len(voters))
            if m._hook is not None:
                m._call_hook("on_restored_from_files", m.node.data.inner)
        if lead:
            m.handle(m.node.campaign())
        m.begun = m.node.last_index + 1 if restore is not None else 1
        return m.begun

    async def wait_commit(self, group: str, index: int, timeout: float) -> bool:
        """True once this host's member of ``group`` has committed ``index`` (for the leader:
        a majority holds it durably), False if it did not within ``timeout`` seconds."""
        m = self._member(group)
        try:
            return await asyncio.wait_for(asyncio.shield(m.wait_commit(index)), timeout)
        except TimeoutError:
            return False

    async def restorable(self) -> dict[str, LogSummary]:
        """What the files of the retired members in this host's log hold: groups that were
        removed and can be restored if added again."""
        self._ensure_recovered()
        if self._log is None:
            return {}
        return {r.key: _restorable(r) for r in self._log.members() if r.retired}

    async def restorable_state(self, group: str) -> DurableState | None:
        self._ensure_recovered()
        if self._log is None:
            return None
        return next((r.state for r in self._log.members() if r.key == group and r.retired), None)

    def _member_removed(self, m: Member) -> None:
        # A member that a committed configuration dropped never serves again: free it now.
        # (Its node agent learns from hosted() that it is gone.)
        if self.members.get(m.group) is m:
            del self.members[m.group]
        m.stop()
        self._drop_files(m.group)

    def _drop_files(self, group: str) -> None:
        if self._log is not None and self._storage_failed is None:
            self._log.drop(group)  # durable with the next flush; until then a restart recovers it
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def stop_member(self, group: str) -> bool:
        """Stop this host's member of ``group`` (a quarantined one too: its report goes). With
        persistence its files stay, retired: a group removed and added again is restored from
        them (raft_fleet). Returns once the retirement is durable: files left unretired would
        bring a removed group back when they are found after a restart (issue 14)."""
        self._ensure_recovered()
        m = self.members.pop(group, None)
        if self._quarantined.pop(group, None) is None and m is None:
            return False
        if m is not None:
            m.stop()
        if self._log is not None and self._storage_failed is None:
            if STOP_KEEPS_FILES_LIVE not in env.current().bugs:  # planted only by the fleet simulator
                self._log.retire(group)
            await self.durable()
        return True

    async def durable(self) -> None:
        """Return once everything this host wrote to its log so far is fsynced (a no-op in
        memory). The agent calls it before it kills an emptied host, so that what the host's
        last stops and removals wrote survives the process. Raises ``StorageError`` if the
        log failed."""
        if self._log is None:
            return
        if self._storage_failed is not None:
            raise StorageError(self._storage_failed)
        if not self._log.pending() and not self._syncing and not self._flush_scheduled:
            return  # every write is out and fsynced
        # The next flush to start writes out what is buffered now (the one running, if any,
        # covers only what it wrote out before).
        target = self._flushes + (1 if self._log.pending() or self._flush_scheduled else 0)
        if self._log.pending() and not self._flush_scheduled and not self._syncing:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self._synced_flushes >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._durable_waiters.append((target, waiter))
        await waiter

    def ping(self) -> str:
        return self.actor_name

    async def watch(self, seconds: float = WATCH_SECONDS) -> bool:
        """Long-polled by peer hosts: returns after ``seconds`` (they call again), and fails in
        the caller the moment this actor dies, which is how they learn of it without probing."""
        self._ensure_recovered()
        if self._closing is None:
            self._closing = asyncio.Event()
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass
        return True

    def stats(self) -> dict[str, int]:
        """Call counters of this host (batching efficiency), members, awake members, memory."""
        lst, router = self._listener, self._router
        direct = {"direct_connections": lst.accepted if lst else 0, "direct_refused": lst.refused if lst else 0,
                  "direct_peers": router.open_channels if router else 0}
        return {**self.counters, **direct, "members": len(self.members), "awake": self._clock.awake,
                **self.process_info()}

    def process_info(self) -> dict[str, int]:
        """pid, RSS, USS and CPU time of this actor's process (``procinfo.process_info``)."""
        from .procinfo import process_info

        return process_info()

    def hosted(self) -> dict[str, str]:
        """``{group: member id}`` of the members here, quarantined ones included (they stay
        until stopped, and their node agent reports them)."""
        self._ensure_recovered()
        return {**{g: r.report.member for g, r in self._quarantined.items()},
                **{g: m.id for g, m in self.members.items() if not m.removed}}

    # -- peer liveness -----------------------------------------------------------------

    def _watch_peer(self, actor: str, handle: Any) -> None:
        """Keep a ``watch`` call open on a peer host we talk to: when it dies, Ray fails the
        call at once, and the members whose peers lived there are told (a quiesced group
        sends nothing, so it would not notice otherwise)."""
        if actor in self._watching or not hasattr(handle, "watch"):
            return
        self._watching.add(actor)
        asyncio.get_running_loop().create_task(self._watch_loop(actor, handle))

    async def _watch_loop(self, actor: str, handle: Any) -> None:
        try:
            while True:
                try:
                    await handle.watch.remote()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    if _is_dead_actor_error(exc):
                        self._peer_host_dead(actor)
                        return
                    # Unavailable (its node is failing or cut off): report it as down too, it is
                    # only a hint, and again at every failed retry, so that a member that went
                    # quiet again meanwhile still hears of it.
                    self._report_down(lambda peer: parse_member_id(peer)[0] == actor, f"host {actor} (unavailable)")
                    await asyncio.sleep(1.0)
        finally:
            self._watching.discard(actor)

    def _peer_host_dead(self, actor: str) -> None:
        self._get_router().forget(actor)
        self._report_down(lambda peer: parse_member_id(peer)[0] == actor, f"host {actor}")

    def _report_down(self, match: Callable[[str], bool], what: str) -> int:
        n = 0
        for m in list(self.members.values()):
            for peer in m.node.members:
                if peer != m.id and match(peer):
                    try:
                        m.peer_down(peer)
                    except FATAL:
                        raise
                    except BaseException as exc:  # noqa: BLE001 - this member only
                        self._quarantine(m, "peer_down", exc)
                        break
                    n += 1
        if n:
            self.counters["peer_down_reports"] += n
            log.info("%s is down: told %d member(s) of %s", what, n, self.actor_name)
        return n

    def members_down(self, members: list[str]) -> int:
        """A peer host reports members of its own that are gone for good (it quarantined
        them): tell every member here whose group has one of them (``RaftNode.peer_down``).
        Returns how many were reported."""
        self._ensure_recovered()
        gone = set(members)
        return self._report_down(lambda peer: peer in gone, f"member(s) {', '.join(sorted(gone))}")

    def peers_down_on_node(self, node_prefix: str) -> int:
        """The node agent reports a node unreachable: tell every member whose peers live
        there. Returns how many peers were reported."""
        return self._report_down(lambda peer: node_prefix_of_member(peer) == node_prefix, f"node {node_prefix}")

    # -- peer traffic --------------------------------------------------------------------

    async def deliver(self, sender: str, batch: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """Peer messages from the host ``sender``, for any of our groups; returns what this
        host answers to it (it rides back on the call's reply)."""
        self._ensure_recovered()
        self.counters["deliver_calls"] += 1
        self.counters["deliver_msgs"] += len(batch)
        router = self._get_router()
        if sender not in self._watching:
            # Followers answer on the leader's calls and may never call it themselves: watch
            # every host that calls us too, or a quiesced follower would not see its leader die.
            router.know(sender)
        router.capture(sender)
        deferred = len(self._to_flush)
        try:
            self._deliver_local(batch)
        finally:
            answers = router.captured()
        if len(self._to_flush) > deferred and self._storage_failed is None:
            # What this batch made us write goes out once it is durable: wait for that flush
            # (the next one to start) and return it on this reply rather than in a new call.
            reply = asyncio.get_running_loop().create_future()
            self._replies.append((self._flushes + 1, sender, reply))
            answers = answers + await reply
        return answers

    def _deliver_local(self, batch: list[tuple[str, Message]]) -> None:
        members = self.members
        for group, msg in batch:
            m = members.get(group)
            if m is not None:
                # One member's failure must not drop the rest of the batch (other groups'
                # messages, and this call's answers for them): it is quarantined, and the
                # next messages for its group find no member.
                try:
                    m.deliver(msg)
                except FATAL:
                    raise
                except BaseException as exc:  # noqa: BLE001 - this member only
                    self._quarantine(m, "deliver", exc)

    # -- client calls ----------------------------------------------------------------------

    async def submit(self, group: str, ops: list[ClientOp]) -> list[Reply | Quarantine]:
        """A batch of client operations on one group. Returns one reply per op, in order
        (``encode_result``), or the member's ``Quarantine`` (an unknown outcome: the client asks
        another member)."""
        _check_ops(ops)
        self._ensure_recovered()
        self.counters["submit_calls"] += 1
        self.counters["submit_ops"] += len(ops)
        t0 = time.monotonic()
        m = self.members.get(group)
        out: list[Reply | Quarantine]
        if m is None and group in self._quarantined:
            out = [self._quarantined[group].report] * len(ops)
        elif m is None or m.removed:
            out = [RejectedReply("removed" if m is not None else "no_member")] * len(ops)
        else:
            try:
                futs = m.ops(ops)
            except FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - this member only
                futs = [_done(self._quarantine(m, "submit", exc))] * len(ops)
            out = [_encoded(r) for r in await asyncio.gather(*futs)]
        if self._metrics.enabled:
            record_ops(self._metrics, group, ops, out, time.monotonic() - t0)
        return out

    async def submit_many(self, items: list[tuple[str, ClientOp]]) -> list[Reply | Quarantine]:
        """Client operations for many groups in one call: ``[(group, op), ...]`` -> one encoded
        result per item, in order. Each group's commands still go in one append; a group whose
        member fails answers its items with its ``Quarantine``, the others are served."""
        _check_ops([op for _, op in items])
        self._ensure_recovered()
        self.counters["submit_calls"] += 1
        self.counters["submit_ops"] += len(items)
        t0 = time.monotonic()
        by_group: dict[str, list[int]] = {}
        for i, (group, _) in enumerate(items):
            by_group.setdefault(group, []).append(i)
        futs: list[Any] = [None] * len(items)
        for group, idx in by_group.items():
            m = self.members.get(group)
            if m is None or m.removed:
                rec = self._quarantined.get(group) if m is None else None
                answer = rec.report if rec is not None else RejectedReply("removed" if m is not None else "no_member")
                for i in idx:
                    futs[i] = _done(answer)
                continue
            try:
                group_futs = m.ops([items[i][1] for i in idx])
            except FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - this group only: the batch's others are served
                group_futs = [_done(self._quarantine(m, "submit", exc))] * len(idx)
            for i, fut in zip(idx, group_futs, strict=True):
                futs[i] = fut
        out = [_encoded(r) for r in await asyncio.gather(*futs)]
        if self._metrics.enabled:
            dt = time.monotonic() - t0
            for group, idx in by_group.items():
                record_ops(self._metrics, group, [items[i][1] for i in idx], [out[i] for i in idx], dt)
        return out

    async def query_non_leader(self, group: str, arg: bytes) -> Reply:
        m = self._member(group, "query_non_leader")
        try:
            return encode_result(Ok(m.node.query_local(arg)))
        except Exception as exc:  # noqa: BLE001
            return encode_result(Raised(exc))

    def _status(self, m: Member, brief: bool = False) -> MemberStatus:
        """``brief``: without the group's config (the reconciler knows its RaftConfig)."""
        return _core_status(m.node, self.node_id, self.actor_name, None if brief else m.config)

    def _quarantined_status(self, group: str, brief: bool = False) -> MemberStatus:
        """A quarantined member's status: its last one, as a member that leads nothing and
        follows no one (``state_name`` ``"quarantined"``, ``leader`` None: leader discovery
        never picks it), with ``quarantine`` saying why."""
        rec = self._quarantined[group]
        return replace(rec.status, state_name="quarantined", leader=None, unresponsive_followers=(),
                       caught_up_learners=(), quiesced=False, node_id=self.node_id, host=self.actor_name,
                       quarantine=rec.report, config=None if brief else rec.config)

    async def status(self, group: str) -> MemberStatus | None:
        self._ensure_recovered()
        m = self.members.get(group)
        if m is None:
            return self._quarantined_status(group) if group in self._quarantined else None
        return self._status(m)

    async def statuses(self, groups: list[str] | None = None, brief: bool = False) -> dict[str, MemberStatus]:
        """The status of every member here (or of ``groups``), quarantined ones included, in
        one call; ``brief``: without the configs (what the reconciler observes every round)."""
        self._ensure_recovered()
        names = [*self.members, *self._quarantined] if groups is None else groups
        out: dict[str, MemberStatus] = {}
        for g in names:
            m = self.members.get(g)
            if m is not None:
                out[g] = self._status(m, brief)
            elif g in self._quarantined:
                out[g] = self._quarantined_status(g, brief)
        return out

    async def admin(self, group: str, op: str, *args: Any) -> Reply:
        """Membership and leadership calls on the core: add_member, remove_member,
        transfer_leadership (replied at commit or at once when refused)."""
        if op not in ("add_member", "add_learner", "promote_learner", "remove_member", "transfer_leadership"):
            raise ValueError(f"unknown admin operation {op!r}")
        m = self._member(group, op)
        try:
            fut = m.admin(op, *args)
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - this member only
            self._quarantine(m, op, exc)
            raise self._quarantined_error(group, op) from exc
        res = await fut
        if isinstance(res, Quarantine):
            raise MemberQuarantinedError(group, member=res.member, cause=res.cause, operation=op)
        return encode_result(res)

    async def force_remove_member(self, group: str, target: str) -> None:
        m = self._member(group, "force_remove_member")
        try:
            m.handle(m.node.force_remove_member(target))
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - this member only
            self._quarantine(m, "force_remove_member", exc)
            raise self._quarantined_error(group, "force_remove_member") from exc
