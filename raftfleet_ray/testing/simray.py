"""A simulated Ray for the fleet simulator: nodes, named actors and their calls, on virtual time.

The runtime's classes are plain classes (CONVENTIONS §6, §17); Ray only turns them into
actors and carries their calls. Here a :class:`SimRay` does the same in one process, on a
:class:`~raftfleet_ray.testing.vloop.VirtualTimeLoop`:

- a **node** is alive until :meth:`SimRay.kill_node`; Ray's node table
  (:meth:`SimRay.nodes`) says so, as ``ray.nodes()`` does, and a dead node never comes back
  (Ray never revives a node id);
- an **actor** is a plain object placed on a node, optionally named (namespace-free: names
  are global here). Its handle's ``h.method.remote(*args)`` is an awaitable that runs the
  method (sync or async) on the actor after a network delay and returns its answer after
  another; calls from one caller to one actor may overlap and reorder, as Ray async actors do;
- **faults**: a call to an actor that is dead, or on a dead node, fails with
  ``ray.exceptions.ActorDiedError`` after a delay (Ray reports the death; it never hangs);
  a call may be **lost** (the answer never comes: the caller's own timeout must save it) or
  **slow**; an actor may be **silenced** (its calls hang until it is heard again: an agent
  behind a GCS hiccup or two busy cores, silence that is not death) and **restarted** (a
  new incarnation of the same class and name, as Ray's ``max_restarts`` does, built by the
  factory it was created with).

Every random choice comes from the :class:`random.Random` passed in, so a seed replays.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray.exceptions
import ray.exceptions as ray_exceptions

_caller: contextvars.ContextVar[SimActor | None] = contextvars.ContextVar("simray_caller", default=None)
"""The actor whose code is running (tasks it starts inherit it): a dead actor's leftover
timers and tasks may still run on the shared loop, but nothing they send leaves."""


@dataclass(slots=True)
class Faults:
    """Rates of the call faults (probabilities per call; delays in seconds)."""

    delay_lo: float = 0.0002
    delay_hi: float = 0.002
    p_lost: float = 0.0  # the answer never comes
    p_slow: float = 0.0  # the call takes slow_lo..slow_hi seconds more
    slow_lo: float = 0.5
    slow_hi: float = 5.0
    death_notice: float = 0.05  # a call to a dead actor fails after this long


@dataclass(slots=True)
class SimNode:
    node_id: str
    zone: str | None
    alive: bool = True
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class SimActor:
    """One actor incarnation: the object, where it runs, and whether it is up."""

    obj: Any
    node: SimNode
    name: str | None
    factory: Callable[[], Any] | None  # rebuilds the object on a restart
    alive: bool = True
    silent: bool = False
    incarnation: int = 0
    calls: int = 0


class SimMethod:
    def __init__(self, handle: SimHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Future:
        return self._handle._ray._call(self._handle, self._name, args, kwargs)

    def options(self, **_: Any) -> SimMethod:
        return self


class SimHandle:
    """What a Ray actor handle is to the runtime: ``handle.method.remote(...)``."""

    def __init__(self, ray_: SimRay, actor: SimActor) -> None:
        self._ray = ray_
        self._actor = actor  # the incarnation it was made for; a restart keeps the handle valid

    def __getattr__(self, name: str) -> SimMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return SimMethod(self, name)

    def __repr__(self) -> str:
        return f"SimHandle({self._actor.name or type(self._actor.obj).__name__}@{self._actor.node.node_id[:8]})"


class SimRay:
    """Nodes, actors and calls on the running (virtual-time) loop. See the module doc."""

    def __init__(self, rng: random.Random, faults: Faults | None = None) -> None:
        self.rng = rng
        self.faults = faults or Faults()
        self.node_table: dict[str, SimNode] = {}
        self.named: dict[str, SimActor] = {}
        self.actors: list[SimActor] = []
        self.calls = 0
        self.lost = 0
        self.on_call: Callable[[SimActor, str], None] | None = None  # hook for the simulator's trace
        self.down = False  # shut down: calls are never answered (the end of a simulation)
        self._unanswered: list[asyncio.Future] = []  # lost answers, kept so their waiters stay alive

    # -- nodes ----------------------------------------------------------------------------

    def add_node(self, node_id: str, zone: str | None, resources: dict[str, float] | None = None) -> SimNode:
        if node_id in self.node_table:
            raise ValueError(f"node {node_id} exists (a node id is never reused)")
        node = SimNode(node_id, zone, resources=dict(resources or {}))
        if zone is not None:
            node.resources.setdefault(f"zone:{zone}", 1000.0)
        self.node_table[node_id] = node
        return node

    def kill_node(self, node_id: str) -> None:
        """A machine failure: every actor on it dies; Ray's node table says dead for good."""
        node = self.node_table[node_id]
        node.alive = False
        for a in self.actors:
            if a.node is node:
                a.alive = False

    def nodes(self) -> list[dict[str, Any]]:
        """As ``ray.nodes()``: one dict per node ever seen."""
        return [{"NodeID": n.node_id, "Alive": n.alive, "Resources": dict(n.resources), "Labels": dict(n.labels)}
                for n in self.node_table.values()]

    # -- actors ---------------------------------------------------------------------------

    def create(self, factory: Callable[[], Any], node_id: str, name: str | None = None, *,
               restartable: bool = True) -> SimHandle:
        """Build ``factory()`` as an actor on ``node_id`` (named ``name``, which must be free or
        belong to a dead actor). ``restartable``: a crash (:meth:`crash`) restarts it."""
        node = self.node_table[node_id]
        if not node.alive:
            raise ray.exceptions.ActorDiedError()
        if name is not None and name in self.named and self.named[name].alive:
            raise ValueError(f"actor name {name!r} is taken")
        actor = SimActor(factory(), node, name, factory if restartable else None)
        self.actors.append(actor)
        if name is not None:
            self.named[name] = actor
        return SimHandle(self, actor)

    def get_actor(self, name: str) -> SimHandle | None:
        """As ``ray.get_actor``: the handle of the live actor of that name, else None."""
        a = self.named.get(name)
        return SimHandle(self, a) if a is not None and a.alive and a.node.alive else None

    def kill(self, handle: SimHandle) -> None:
        """As ``ray.kill(handle, no_restart=True)``."""
        a = self._current(handle)
        a.alive = False

    def crash(self, handle: SimHandle) -> None:
        """The actor's process dies; a restartable one comes back at once as a new incarnation
        (its object rebuilt from its factory: whatever it kept in memory is gone)."""
        a = self._current(handle)
        a.alive = False
        if a.factory is not None and a.node.alive:
            b = SimActor(a.factory(), a.node, a.name, a.factory, incarnation=a.incarnation + 1)
            self.actors.append(b)
            if a.name is not None:
                self.named[a.name] = b

    def silence(self, handle: SimHandle, silent: bool = True) -> None:
        self._current(handle).silent = silent

    def is_silent(self, handle: SimHandle) -> bool:
        return self._current(handle).silent

    def obj(self, handle: SimHandle) -> Any:
        return self._current(handle).obj

    def _current(self, handle: SimHandle) -> SimActor:
        a = handle._actor
        if a.name is not None and self.named.get(a.name) is not None and self.named[a.name].node is a.node:
            return self.named[a.name]  # a restarted named actor: the handle follows it
        return a

    def shutdown(self) -> None:
        """The end of a simulation: from now on no call is carried."""
        self.down = True

    # -- calls ----------------------------------------------------------------------------

    def _delay(self) -> float:
        f = self.faults
        d = self.rng.uniform(f.delay_lo, f.delay_hi)
        if f.p_slow and self.rng.random() < f.p_slow:
            d += self.rng.uniform(f.slow_lo, f.slow_hi)
        return d

    def _call(self, handle: SimHandle, method: str, args: tuple, kwargs: dict) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        caller = _caller.get()
        if self.down or (caller is not None and not (caller.alive and caller.node.alive)):
            self._unanswered.append(fut)
            return fut  # sent by a process that is gone: it never leaves
        self.calls += 1
        if self.faults.p_lost and self.rng.random() < self.faults.p_lost:
            self.lost += 1
            self._unanswered.append(fut)
            return fut  # never answered
        loop.call_later(self._delay(), lambda: loop.create_task(self._run(handle, method, args, kwargs, fut)))
        return fut

    async def _run(self, handle: SimHandle, method: str, args: tuple, kwargs: dict, fut: asyncio.Future) -> None:
        actor = self._current(handle)
        while actor.silent and actor.alive and actor.node.alive:
            await asyncio.sleep(0.5)
        if not (actor.alive and actor.node.alive):
            await asyncio.sleep(self.faults.death_notice)
            if not fut.done():
                fut.set_exception(ray.exceptions.ActorDiedError())
            return
        actor.calls += 1
        if self.on_call is not None:
            self.on_call(actor, method)
        _caller.set(actor)  # this task runs the actor's code now, and so do the tasks it starts
        try:
            res = getattr(actor.obj, method)(*args, **kwargs)
            if inspect.isawaitable(res):
                res = await res
        except (asyncio.CancelledError, GeneratorExit):
            raise  # the simulation is ending: not an answer
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller, as Ray does
            died = not (actor.alive and actor.node.alive)
            answer_exc: BaseException | None = ray.exceptions.ActorDiedError() if died else exc
            res = None
        else:
            answer_exc = None
            if not (actor.alive and actor.node.alive):
                answer_exc = ray.exceptions.ActorDiedError()  # it died while working on it
        await asyncio.sleep(self._delay())
        if fut.done():
            return
        if answer_exc is not None:
            fut.set_exception(answer_exc)
        else:
            fut.set_result(res)


__all__ = ["Faults", "SimActor", "SimHandle", "SimNode", "SimRay", "ray_exceptions"]
