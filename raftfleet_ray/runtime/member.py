"""The member actor: a thin asyncio shell around the pure Raft core.

``MemberHost`` is a plain class (made a Ray actor in ``options.py``) hosting the members
of one or more groups, keyed by group name. For each member it

- drives the core's clock from the event loop (ticks computed from the monotonic clock),
- writes what a ``Ready`` asks to storage *before* sending what depends on it,
- sends peer messages as batched one-way Ray calls that never wait on a peer,
- answers a client call when the core replies (commands at apply, reads when the
  ReadIndex round or the lease allows).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .. import codec
from ..config import RaftConfig
from ..raft import Message, Ok, RaftNode, Raised, Ready, Rejected
from ..storage import MemoryStorage, Storage
from .names import member_id, parse_member_id

log = logging.getLogger(__name__)


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


def encode_result(result: Ok | Raised | Rejected) -> tuple:
    """A reply as the client receives it. Values are pickled here, one by one, so that one
    unpicklable return value fails only its own caller, not the whole batch."""
    match result:
        case Ok(value):
            try:
                return ("ok", codec.dumps(value))
            except Exception as exc:  # noqa: BLE001
                return ("error", f"the result ({type(value).__name__}) cannot be pickled: {exc}")
        case Raised(exc):
            try:
                return ("raised", codec.dumps(exc))
            except Exception:  # noqa: BLE001
                return ("raised", codec.dumps(RuntimeError(repr(exc))))
        case Rejected(reason, leader):
            return ("rejected", reason, leader)
    raise TypeError(f"unexpected result {result!r}")


def _done(value: Any) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


_MAX_WAITING = 1000


class Router:
    """Outgoing peer messages, batched per destination actor and flushed once per event-loop
    turn: one Ray call carries everything for that actor. Sends never wait on a peer (Erlang
    casts): a dead or slow peer costs nothing but lost messages, which Raft retransmits.

    Answers ride back on the call itself: while a host handles a batch from actor X, what it
    sends to X (append acks, vote and heartbeat responses) is returned as the call's result
    instead of being sent as a new call. Measured here, a Ray call's reply arrives in about
    half the time of a second one-way call, so a replication round costs one round trip."""

    def __init__(self, own_actor: str, resolve: Callable[[str], Any], local: Callable[[list], None]):
        self._own = own_actor
        self._resolve = resolve
        self._local = local
        self._out: dict[str, list[tuple[str, Message]]] = {}
        self._scheduled = False
        self._handles: dict[str, Any] = {}
        self._failed: dict[str, float] = {}
        self._capture_for: str | None = None
        self._captured: list[tuple[str, Message]] = []
        self._resolving: set[str] = set()
        self._waiting: dict[str, list[tuple[str, Message]]] = {}

    def send(self, msg: Message) -> None:
        actor, group = parse_member_id(msg.to)
        if actor == self._capture_for:
            self._captured.append((group, msg))
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

    def forget(self, actor: str) -> None:
        self._handles.pop(actor, None)

    def _handle(self, actor: str) -> Any:
        """The peer's handle, or None while it is being looked up (or was just found missing).

        The lookup is a GCS call: it runs on a thread, never on the event loop, which a slow
        GCS would otherwise freeze for every member of this host."""
        h = self._handles.get(actor)
        if h is not None:
            return h
        now = time.monotonic()
        if actor not in self._resolving and now - self._failed.get(actor, -1e9) >= 1.0:
            self._resolving.add(actor)
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, self._resolve, actor).add_done_callback(
                lambda f, a=actor: loop.call_soon_threadsafe(self._resolved, a, f)
            )
        return None

    def _resolved(self, actor: str, f: Any) -> None:
        self._resolving.discard(actor)
        waiting = self._waiting.pop(actor, [])
        if f.exception() is not None:
            self._failed[actor] = time.monotonic()  # missing or dead: drop; Raft resends
            return
        self._failed.pop(actor, None)
        self._handles[actor] = f.result()
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
            try:
                ref = h.deliver.remote(self._own, batch)
            except Exception:  # noqa: BLE001
                self.forget(actor)
                continue
            asyncio.ensure_future(self._answers(actor, ref))

    async def _answers(self, actor: str, ref: Any) -> None:
        try:
            answers = await ref
        except Exception:  # noqa: BLE001 - the peer died or failed: as if the message was lost
            self.forget(actor)
            return
        if answers:
            self._local(answers)


class Member:
    """One group's member inside a host: the core, its storage, its clock, its callers."""

    def __init__(
        self,
        group: str,
        mid: str,
        config: RaftConfig,
        router: Router,
        *,
        bootstrap: bool,
        storage: Storage | None = None,
        seed: int | None = None,
    ) -> None:
        self.group = group
        self.id = mid
        self.config = config
        self._router = router
        self.storage = storage or MemoryStorage()
        core = config.to_core()
        self.node = RaftNode(
            mid,
            core,
            lambda: ArgDecoding(config.data()),
            random.Random(seed),
            members=(mid,) if bootstrap else (),
            dumps=codec.dumps,
            loads=codec.loads,
        )
        self._futures: dict[int, asyncio.Future] = {}
        self._next_req = 0
        self.removed = False
        self._stopped = False
        self._tick_task: asyncio.Task | None = None
        self._next_tick_at = time.monotonic() + config.tick_interval
        self._lease = self.node.config.lease_ticks > 0
        if bootstrap:
            self.handle(self.node.campaign())  # a 1-member group elects itself at once

    def start(self) -> None:
        self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop())

    def stop(self) -> None:
        self._stopped = True
        if self._tick_task is not None:
            self._tick_task.cancel()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_result(Rejected("removed", None))
        self._futures.clear()

    async def _tick_loop(self) -> None:
        interval = self.config.tick_interval
        self._next_tick_at = time.monotonic() + interval
        while not self._stopped:
            await asyncio.sleep(max(0.0, self._next_tick_at - time.monotonic()))
            try:
                self._catch_up_clock()
            except Exception:  # a member whose clock stopped would never elect or heartbeat again
                log.exception("group %s: member %s: tick failed", self.group, self.id)

    def _catch_up_clock(self) -> None:
        """Feed the core the ticks that real time says are due.

        With a lease, ticks must keep up with real time even after a stall, and before any
        input is handled (a read served from a lease after a pause, before the missed ticks,
        would trust a lease the followers' timers have already ended). Without a lease,
        catching up at once only causes spurious elections, so the catch-up is capped."""
        now = time.monotonic()
        if now < self._next_tick_at:
            return
        interval = self.config.tick_interval
        due = 1 + int((now - self._next_tick_at) / interval)
        self._next_tick_at += due * interval
        core = self.node.config
        for _ in range(due if core.lease_ticks > 0 else min(due, core.heartbeat_ticks)):
            self.handle(self.node.tick())
            if self._stopped:
                return

    # -- driving the core ----------------------------------------------------------------

    def handle(self, rd: Ready) -> None:
        while True:
            if rd.needs_persist():
                # Durable first: anything in messages_after_persist may depend on it.
                self.storage.write(rd.hard_state, rd.snapshot, rd.entries)
            for m in rd.messages:
                self._router.send(m)
            for m in rd.messages_after_persist:
                self._router.send(m)
            for rep in rd.replies:
                fut = self._futures.pop(rep.req, None)
                if fut is not None and not fut.done():
                    fut.set_result(rep.result)
            if rd.removed:
                self.removed = True
                log.info("group %s: member %s was removed from the group", self.group, self.id)
            if not rd.persist_seq:
                return
            rd = self.node.on_persisted(rd.persist_seq)

    def deliver(self, msg: Message) -> None:
        if not self._stopped:
            if self._lease:
                self._catch_up_clock()
            self.handle(self.node.step(msg))

    def _new_request(self) -> tuple[int, asyncio.Future]:
        self._next_req += 1
        fut = asyncio.get_running_loop().create_future()
        self._futures[self._next_req] = fut
        return self._next_req, fut

    def commands(self, items: list[tuple[Any, bytes]]) -> list[asyncio.Future]:
        """Propose ``(cmd_id, arg)`` pairs together: one append per follower carries them all."""
        reqs = [self._new_request() for _ in items]
        self.handle(self.node.propose_batch([(r, c, a) for (r, _), (c, a) in zip(reqs, items, strict=True)]))
        return [f for _, f in reqs]

    def query(self, arg: bytes) -> asyncio.Future:
        if self._lease:
            self._catch_up_clock()
        req, fut = self._new_request()
        self.handle(self.node.read(req, arg))
        return fut

    def admin(self, op: str, *args: Any) -> asyncio.Future:
        req, fut = self._new_request()
        self.handle(getattr(self.node, op)(req, *args))
        return fut


class MemberHost:
    """The Ray actor class hosting members (one group per actor for now)."""

    def __init__(self, actor_name: str, node_id: str, resolve: Callable[[str], Any] | None = None) -> None:
        """``resolve`` maps a peer host's actor name to its handle; by default a Ray named-actor
        lookup (tests pass fakes, so the shell runs without Ray)."""
        self.actor_name = actor_name
        self.node_id = node_id
        self.members: dict[str, Member] = {}
        self._router: Router | None = None
        self._resolve = resolve
        # Counters for operators and benchmarks: how well calls are being batched.
        self.counters = {"submit_calls": 0, "submit_ops": 0, "deliver_calls": 0, "deliver_msgs": 0}

    def _get_router(self) -> Router:
        if self._router is None:
            resolve = self._resolve
            if resolve is None:
                import ray

                from .names import NAMESPACE

                def resolve(name: str) -> Any:
                    return ray.get_actor(name, namespace=NAMESPACE)

            self._router = Router(self.actor_name, resolve, self._deliver_local)
        return self._router

    def _member(self, group: str) -> Member:
        m = self.members.get(group)
        if m is None:
            raise KeyError(f"actor {self.actor_name} hosts no member of group {group!r}")
        return m

    async def start_member(self, group: str, config: RaftConfig, bootstrap: bool) -> str:
        """Start this host's member of ``group``: a 1-member group that elects itself at once
        (``bootstrap``), or a passive joiner that waits for the leader to add it."""
        if group in self.members:
            return self.members[group].id
        mid = member_id(self.actor_name, group)
        m = Member(group, mid, config, self._get_router(), bootstrap=bootstrap)
        self.members[group] = m
        m.start()
        return mid

    async def stop_member(self, group: str) -> bool:
        m = self.members.pop(group, None)
        if m is None:
            return False
        m.stop()
        return True

    def ping(self) -> str:
        return self.actor_name

    def stats(self) -> dict[str, int]:
        """Call counters of this host (batching efficiency), plus its process memory."""
        return {**self.counters, **self.process_info()}

    def process_info(self) -> dict[str, int]:
        """pid, RSS and USS (bytes) of this actor's process, from /proc (Linux)."""
        import os

        info = {"pid": os.getpid(), "rss": 0, "uss": 0}
        try:
            with open("/proc/self/smaps_rollup") as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("Rss", "Private_Clean", "Private_Dirty"):
                        kb = int(rest.split()[0]) * 1024
                        info["rss" if key == "Rss" else "uss"] += kb
        except OSError:
            pass
        return info

    def hosted(self) -> dict[str, str]:
        return {g: m.id for g, m in self.members.items() if not m.removed}

    # -- peer traffic --------------------------------------------------------------------

    async def deliver(self, sender: str, batch: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """Peer messages from the host ``sender``; returns what this host answers to it."""
        self.counters["deliver_calls"] += 1
        self.counters["deliver_msgs"] += len(batch)
        router = self._get_router()
        router.capture(sender)
        try:
            self._deliver_local(batch)
        finally:
            answers = router.captured()
        return answers

    def _deliver_local(self, batch: list[tuple[str, Message]]) -> None:
        for group, msg in batch:
            m = self.members.get(group)
            if m is not None:
                m.deliver(msg)

    # -- client calls ----------------------------------------------------------------------

    async def submit(self, group: str, ops: list[tuple]) -> list[tuple]:
        """A batch of client operations: ("c", cmd_id, arg_bytes) or ("q", arg_bytes).
        Returns one encoded result per op, in order (see ``encode_result``)."""
        self.counters["submit_calls"] += 1
        self.counters["submit_ops"] += len(ops)
        m = self.members.get(group)
        if m is None or m.removed:
            return [("rejected", "removed" if m is not None else "no_member", None)] * len(ops)
        limit = m.config.max_command_bytes
        futs: list[asyncio.Future | None] = [None] * len(ops)
        cmds = []
        for i, op in enumerate(ops):
            if op[0] == "q":
                futs[i] = m.query(op[1])
            elif len(op[2]) > limit:
                futs[i] = _done(("too_large", len(op[2]), limit))
            else:
                cmds.append(i)
        if cmds:
            for i, fut in zip(cmds, m.commands([(ops[i][1], ops[i][2]) for i in cmds]), strict=True):
                futs[i] = fut
        results = await asyncio.gather(*futs)
        return [r if isinstance(r, tuple) else encode_result(r) for r in results]

    async def query_non_leader(self, group: str, arg: bytes) -> tuple:
        m = self._member(group)
        try:
            return encode_result(Ok(m.node.query_local(arg)))
        except Exception as exc:  # noqa: BLE001
            return encode_result(Raised(exc))

    async def status(self, group: str) -> dict[str, Any] | None:
        m = self.members.get(group)
        if m is None:
            return None
        st = asdict(m.node.status())
        st["config"] = m.config
        st["node_id"] = self.node_id
        return st

    async def admin(self, group: str, op: str, *args: Any) -> tuple:
        """Membership and leadership calls on the core: add_member, remove_member,
        transfer_leadership (replied at commit or at once when refused)."""
        if op not in ("add_member", "remove_member", "transfer_leadership"):
            raise ValueError(f"unknown admin operation {op!r}")
        m = self._member(group)
        return encode_result(await m.admin(op, *args))

    async def force_remove_member(self, group: str, target: str) -> None:
        m = self._member(group)
        m.handle(m.node.force_remove_member(target))
