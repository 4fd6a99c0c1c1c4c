"""Where the members of a group are, without listing every actor of the cluster.

Each node's agent knows which host on its node carries which group (it started them), so
finding a group's members is one small call per node, answered from a dictionary. Leader
lookups first ask the members seen last time (one status call per member), and go to the
agents only when those do not know a leader. Everything cached here is bounded (LRU), so
a process that touches many groups keeps a fixed amount of state.

Used by the client (``command``/``query`` discovery), the agents (adding followers) and the
repair functions; it imports nothing of the public face.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from . import env
from .names import agent_name, node_prefix, node_prefix_of_host, parse_member_id
from .per_cluster import PerCluster
from .wire import MemberStatus

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

STATUS_TIMEOUT = 2.0
NODES_TTL = 2.0  # seconds a list of alive nodes is reused
MAX_CACHED = 10_000
LOOKUP_TIMEOUT = 5.0
"""A caller waits this long for a named-actor lookup, then takes it as not found (for now).
Ray's lookup of an actor whose node just died can block for a minute or more."""
def shared(inflight: dict[Hashable, asyncio.Future], key: Hashable, start: Any) -> asyncio.Future:
    """The future of the call for ``key`` already running on this loop, else of ``start()``
    (a coroutine), registered in ``inflight`` until it is done: concurrent callers share one
    call. Await it through ``asyncio.shield`` so that one caller giving up cancels nothing."""
    loop = asyncio.get_running_loop()
    fut = inflight.get(key)
    if fut is None or fut.get_loop() is not loop:
        fut = asyncio.ensure_future(start())
        inflight[key] = fut

        def done(f: asyncio.Future) -> None:
            if inflight.get(key) is f:
                del inflight[key]
            if not f.cancelled():
                f.exception()  # retrieved: a call nobody waits for any more is not an error

        fut.add_done_callback(done)
    return fut


class LRU(Generic[K, V]):
    """A dict that forgets its least recently used keys beyond ``maxsize``."""

    def __init__(self, maxsize: int = MAX_CACHED) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.maxsize:
            self._d.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._d.pop(key, None)

    def clear(self) -> None:
        self._d.clear()

    def keys(self) -> list[K]:
        return list(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return key in self._d


class Directory:
    """Per-process view of where members are. Coroutines run on the caller's event loop;
    Ray lookups that block (``ray.get_actor``, ``ray.nodes``) run on a thread."""

    def __init__(self) -> None:
        self._hosts: LRU[str, Any] = LRU()
        # One lookup per name at a time, whoever asks: after a node loss a thousand groups
        # looking up the same few hosts must not fill the lookup threads (they did: every
        # command of the process then waited on lookups of the dead node's actors).
        self._inflight: dict[Hashable, asyncio.Future] = {}
        self._agents: dict[str, Any] = {}
        self._nodes: tuple[float, list[str]] = (0.0, [])
        self.known_members: LRU[str, tuple[str, ...]] = LRU()  # group -> member ids last seen

    # -- handles -------------------------------------------------------------------------

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        e = env.current()
        if not e.connected():
            # ray.nodes() and ray.get_actor() would connect anew (Ray's auto-init), from a
            # background thread, after the caller shut Ray down: refuse instead.
            raise ConnectionError("raftfleet_ray: Ray is not connected (ray.shutdown() was called)")
        return await e.in_thread(fn, *args)

    async def _lookup(self, name: str) -> Any:
        """The named actor's handle (``Env.get_actor`` on a lookup thread), shared by
        concurrent callers on this loop, bounded by ``LOOKUP_TIMEOUT`` (then ``TimeoutError``).
        ``ValueError``: no such actor."""
        fut = shared(self._inflight, name, lambda: self._in_thread(env.current().get_actor, name))
        return await asyncio.wait_for(asyncio.shield(fut), LOOKUP_TIMEOUT)

    async def _node_alive(self, prefix: str) -> bool:
        return any(node_prefix(n) == prefix for n in await self.alive_nodes())

    async def alive_nodes(self) -> list[str]:
        e = env.current()
        at, nodes = self._nodes
        if e.mono() - at < NODES_TTL:
            return nodes
        nodes = sorted(n["NodeID"] for n in await self._in_thread(e.nodes) if n.get("Alive"))
        self._nodes = (e.mono(), nodes)
        return nodes

    async def agent(self, node_id: str) -> Any | None:
        h = self._agents.get(node_id)
        if h is None:
            if node_id not in await self.alive_nodes():
                return None  # its node is dead: Ray's lookup could block for a long time
            try:
                h = await self._lookup(agent_name(node_id))
            except (ValueError, TimeoutError):
                return None  # no agent on that node (not activated, or it died)
            self._agents[node_id] = h
        return h

    def forget_agent(self, node_id: str) -> None:
        self._agents.pop(node_id, None)

    async def host(self, name: str) -> Any | None:
        """The handle of host ``name``, or None if it does not exist (any more)."""
        h = self._hosts.get(name)
        if h is None:
            prefix = node_prefix_of_host(name)
            if prefix and not await self._node_alive(prefix):
                return None  # its node is dead: Ray's lookup could block for a long time
            try:
                h = await self._lookup(name)
            except Exception:  # noqa: BLE001 - gone (or not found in time)
                return None
            self._hosts.put(name, h)
        return h

    def forget_host(self, name: str) -> None:
        self._hosts.pop(name)

    # -- members -------------------------------------------------------------------------

    async def locate(self, group: str, timeout: float = STATUS_TIMEOUT) -> dict[str, str]:
        """``{member id: host name}`` of every member of ``group`` that an agent knows of."""

        async def ask(node: str) -> dict[str, str]:
            agent = await self.agent(node)
            if agent is None:
                return {}
            try:
                return await asyncio.wait_for(agent.members_of.remote(group), timeout)
            except Exception:  # noqa: BLE001 - that agent is dead or busy: its members stay unknown
                self.forget_agent(node)
                return {}

        found: dict[str, str] = {}
        for part in await asyncio.gather(*(ask(n) for n in await self.alive_nodes())):
            found.update(part)
        return found

    async def hosts_of(self, group: str) -> dict[str, Any]:
        """``{host name: handle}`` of every live member of ``group``."""
        located = await self.locate(group)
        names = sorted(set(located.values()))
        handles = await asyncio.gather(*(self.host(n) for n in names))
        return {n: h for n, h in zip(names, handles, strict=True) if h is not None}

    async def _status(self, group: str, name: str, timeout: float, brief: bool = False) -> dict | None:
        """One member's status (``brief``: without its config, which is all leader discovery
        needs and the bulk of the reply)."""
        try:
            h = await self.host(name)
            if h is None:
                return None
            if brief:
                return (await asyncio.wait_for(h.statuses.remote([group], True), timeout)).get(group)
            return await asyncio.wait_for(h.status.remote(group), timeout)
        except Exception:  # noqa: BLE001 - dead, unreachable or slow: no answer
            self.forget_host(name)
            return None

    async def statuses(
        self, group: str, timeout: float = STATUS_TIMEOUT, hosts: list[str] | None = None
    ) -> dict[str, MemberStatus | None]:
        """``{host name: status or None}`` for the members of ``group`` (on ``hosts``, or all
        of them as the agents know them). None = did not answer."""
        follow = hosts is None
        if hosts is None:
            hosts = sorted(set((await self.locate(group)).values()))
        answers = await asyncio.gather(*(self._status(group, n, timeout) for n in hosts))
        out = dict(zip(hosts, answers, strict=True))
        if follow:
            # Members the configurations name but no agent listed (their node's agent is down
            # or restarting): ask their hosts directly.
            named = {parse_member_id(m)[0] for st in answers if st
                     for m in (*st.members, *st.learners)}
            extra = sorted(named - set(out))
            if extra:
                more = await asyncio.gather(*(self._status(group, n, timeout) for n in extra))
                out.update((n, st) for n, st in zip(extra, more, strict=True) if st is not None)
        self._remember(group, out)
        return out

    def _remember(self, group: str, sts: dict[str, dict | None]) -> None:
        best = best_leader(sts)
        members = best.members if best else [s.from_ for s in sts.values() if s]
        if members:
            self.known_members.put(group, tuple(members))

    async def find_leader(self, group: str, timeout: float = STATUS_TIMEOUT) -> tuple[str | None, dict[str, dict | None]]:
        """Who leads ``group``: the first member to say it leads, else a leader named by the
        member with the highest term (a hint); and the statuses seen. Asks the members seen
        last time first, then every member the agents know of, and returns at the first
        leader: a member that does not answer (its node just died, say) costs nothing then.
        A hint may be stale; callers that act on it get not_leader and ask again."""
        known = self.known_members.get(group)
        sts: dict[str, dict | None] = {}
        asked: set[str] = set()
        loop = asyncio.get_running_loop()

        def ask_status(name: str) -> asyncio.Task:
            asked.add(name)

            async def run() -> tuple[str, Any]:
                return "status", (name, await self._status(group, name, timeout, brief=True))

            return loop.create_task(run())

        def ask_agent(node: str) -> asyncio.Task:
            async def run() -> tuple[str, Any]:
                try:
                    agent = await self.agent(node)
                    if agent is None:
                        return "agent", {}
                    return "agent", await asyncio.wait_for(agent.members_of.remote(group), timeout)
                except Exception:  # noqa: BLE001 - that agent is dead or busy (or Ray is gone)
                    self.forget_agent(node)
                    return "agent", {}

            return loop.create_task(run())

        async def race(pending: set[asyncio.Task]) -> str | None:
            try:
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for t in done:
                        kind, payload = t.result()
                        if kind == "agent":
                            pending |= {ask_status(n) for n in set(payload.values()) if n not in asked}
                            continue
                        name, st = payload
                        sts[name] = st
                        if st is not None and st.state_name == "leader":
                            return st.from_
                return None
            finally:
                for t in pending:
                    t.cancel()

        lead = None
        if known:
            lead = await race({ask_status(n) for n in sorted({parse_member_id(m)[0] for m in known})})
        if lead is None and not any(st and st.leader for st in sts.values()):
            lead = await race({ask_agent(n) for n in await self.alive_nodes()})
        if lead is None:
            lead = leader_of(sts)
        self._remember(group, sts)
        return lead, sts


def best_leader(sts: dict[str, dict | None]) -> dict | None:
    """The status of the member that says it leads, in the highest term."""
    leaders = [s for s in sts.values() if s and s.state_name == "leader"]
    return max(leaders, key=lambda s: s.current_term) if leaders else None


def leader_of(sts: dict[str, dict | None]) -> str | None:
    """Who leads, from members' statuses: a member that says so (highest term), else the
    leader named by the member with the highest term (a hint)."""
    best = best_leader(sts)
    if best is not None:
        return best.from_
    hinted = [s for s in sts.values() if s and s.leader]
    return max(hinted, key=lambda s: s.current_term).leader if hinted else None


def established_leader(statuses: dict[str, dict | None]) -> str | None:
    """The leader that more than half of the answering members agree on (raft_fleet)."""
    answers = [s for s in statuses.values() if s is not None]
    votes: dict[str, int] = {}
    for s in answers:
        if s.leader:
            votes[s.leader] = votes.get(s.leader, 0) + 1
    for leader, n in votes.items():
        if 2 * n > len(answers):
            return leader
    return None


_directory: PerCluster[Directory] = PerCluster(Directory)


def get_directory() -> Directory:
    """The process's directory for the Ray cluster it is connected to (made again when it
    connects to another one: its handles and members belong to one cluster), or the one a
    simulator shares. Its coroutines may be awaited from any one event loop at a time."""
    shared_dir = env.current().shared_directory
    return shared_dir if shared_dir is not None else _directory.get()
