"""The fleet simulator: the runtime's own classes over a simulated Ray, on virtual time.

``tests/sim`` checks the Raft core under faults; this checks the layer around it, where
groups were lost (issue 14). The real ``ClusterActor``, ``Balancer`` (reconciler and
planner), ``NodeAgent``\\ s, ``MemberHost``\\ s (router, clock, members) and ``Client`` run as
plain objects in one process: :class:`~raftfleet_ray.testing.simray.SimRay` carries their
calls (latency, lost answers, slow calls, silence, death noticed through Ray's node table),
:class:`~raftfleet_ray.testing.vloop.VirtualTimeLoop` runs their timers, and
:class:`SimEnv` is the runtime's door to both (``runtime.env``). Every random choice comes
from the seed, so a seed replays (with the same ``PYTHONHASHSEED``).

A run: four nodes in three zones; groups created (one at a time and in parallel; in the mixes
that kill no process, a 1-replica group too), one of them removed (``remove_consensus_group``
waits until its files are retired) and added again; a sequential counter client per group; then the faults of the mix
until ``duration``; then the faults stop, and the fleet must settle. Checked:

- **no acknowledged write lost**: each client's increments return the counter's value before
  them, so they must strictly increase, and a read must see every acknowledged increment
  (checked at each answer);
- **a group disappears only when removed, and never comes back**: every added group stays
  registered and is never marked lost (the faults never take a majority of a group: at most one
  node is killed per ``kill_gap`` seconds, replaced by a new node in its zone); a removed one is
  not registered again;
- **never two incarnations**: no two members of a group lead with disjoint configurations
  (checked every ``check_every`` virtual seconds);
- **convergence**: once the faults stop, every group has, within ``settle`` seconds, a leader
  and n_replica voters, each on a live node of a distinct zone, no learner, none quarantined.

Mixes: ``calm``; ``kills`` (node deaths, each followed by a new node in its zone, and one
operator drain); ``silence`` (agents that do not answer, one or all at once: a GCS hiccup; or a
whole node cut off; at most once a run, one agent gone for good on a live node); ``restarts`` (the reconciler, the ClusterActor, agents and hosts crash and
are restarted by "Ray"; with persistence, once, the whole cluster: a new GCS, and the machines
back one by one under their names with their disks); ``slow`` (slow and lost calls); ``chaos``
(all of them). ``persistent``: members keep their state in simulated files (per machine).

Run: ``python -m raftfleet_ray.testing.fleetsim --seeds 0:200 --mix chaos``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import codec, errors
from ..client import Client
from ..config import FleetConfig, RaftConfig
from ..data import Counter
from ..runtime import env as env_mod
from ..runtime.balancer import Balancer
from ..runtime.cluster_actor import CLUSTER_ACTOR_NAME, ClusterActor, MemoryStore
from ..runtime.directory import Directory
from ..runtime.factory import BALANCER_NAME
from ..runtime.member import MemberHost
from ..runtime.metrics import Metrics
from ..runtime.names import HOST_PREFIX, agent_name
from ..runtime.node_agent import NODE_NAME_PREFIX, NodeAgent
from ..runtime.wire import CommandOp, CreationOutcome, QueryOp
from ..storage.fs import MemFileSystem
from .simray import Faults, SimHandle, SimRay, ray_exceptions
from .vloop import VirtualTimeLoop

EPOCH = 1_800_000_000.0  # the simulated wall clock starts here (seconds since the epoch)
MIXES = ("calm", "kills", "silence", "restarts", "slow", "chaos")


class SimEnv:
    """``runtime.env.Env`` over a :class:`SimRay` and a virtual-time loop."""

    def __init__(self, simray: SimRay, loop: asyncio.AbstractEventLoop, rng: random.Random,
                 bugs: frozenset[str] = frozenset()) -> None:
        self.simray, self.loop, self.rng, self.bugs = simray, loop, rng, bugs
        self.shared_directory = Directory()  # one process here: every actor shares it
        self.threads = False
        self.disks: dict[str, MemFileSystem] = {}  # node -> its disk (what its processes wrote)

    def mono(self) -> float:
        return self.loop.time()

    def raft_now(self) -> float:
        return self.loop.time()

    def wall(self) -> float:
        return EPOCH + self.loop.time()

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)  # lookups answer at once here (no real thread on a virtual loop)

    def connected(self) -> bool:
        return True

    def nodes(self) -> list[dict[str, Any]]:
        return self.simray.nodes()

    def get_actor(self, name: str) -> SimHandle:
        h = self.simray.get_actor(name)
        if h is None:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return h

    def actor_names(self, prefix: str) -> list[str]:
        return sorted(n for n, a in self.simray.named.items() if a.alive and a.node.alive and n.startswith(prefix))

    def kill(self, handle: Any) -> None:
        self.simray.kill(handle)

    def start_member_host(self, name: str, node_id: str, zone: str, persist_dir: str | None) -> SimHandle:
        # As factory.start_member_host: a persistent host is restarted by Ray after a crash
        # (and recovers from its log); an in-memory one is not (its members are gone).
        return self.simray.create(lambda: MemberHost(name, node_id, resolve=self.get_actor, zone=zone, metrics=Metrics(),
                                                     persist_dir=persist_dir),
                                  node_id, name, restartable=persist_dir is not None)

    def filesystem(self, node_id: str) -> MemFileSystem:
        """The disk of the machine behind ``node_id`` (a node restarted under its name, with a
        new id, finds it again)."""
        node = self.simray.node_table.get(node_id)
        names = [r for r in (node.resources if node else {}) if r.startswith(NODE_NAME_PREFIX)]
        return self.disks.setdefault(names[0] if names else node_id, MemFileSystem())

    def cluster_actor(self) -> SimHandle:
        return self.get_actor(CLUSTER_ACTOR_NAME)

    def transport(self) -> tuple[str, bytes] | None:
        return None  # hosts and clients talk through the simulated Ray calls only

    def balancer(self) -> SimHandle:
        return self.get_actor(BALANCER_NAME)

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"


@dataclass(slots=True)
class SimConfig:
    mix: str = "chaos"
    groups: int = 4
    duration: float = 60.0  # virtual seconds of workload and faults
    settle: float = 90.0  # then, without faults, the fleet must converge within this
    kill_gap: float = 25.0  # at most one node death per this many seconds
    check_every: float = 0.25
    bugs: frozenset[str] = frozenset()
    persistent: bool = False  # members keep their state in (simulated) files
    solo: bool | None = None  # a 1-replica group too (default: in the mixes that kill no process)


@dataclass(slots=True)
class Outcome:
    seed: int
    mix: str
    bugs: frozenset[str] = frozenset()
    persistent: bool = False
    violations: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay(self) -> str:
        hs = os.environ.get("PYTHONHASHSEED", "<unset: set it to replay exactly>")
        bugs = "".join(f" --bug {b}" for b in sorted(self.bugs)) + (" --persistent" if self.persistent else "")
        return (f"PYTHONHASHSEED={hs} python -m raftfleet_ray.testing.fleetsim --seeds {self.seed} "
                f"--mix {self.mix}{bugs}")


class Violation(AssertionError):
    pass


class FleetSim:
    """One run (see the module doc)."""

    def __init__(self, seed: int, cfg: SimConfig) -> None:
        self.seed, self.cfg = seed, cfg
        self.rng = random.Random(seed)
        self.loop = VirtualTimeLoop()
        self.simray = SimRay(random.Random(self.rng.getrandbits(64)), Faults())
        self.env = SimEnv(self.simray, self.loop, random.Random(self.rng.getrandbits(64)), cfg.bugs)
        self.out = Outcome(seed, cfg.mix, cfg.bugs, cfg.persistent)
        self.zone_of: dict[str, str] = {}
        self.store = MemoryStore()  # the GCS's KV: survives ClusterActor restarts
        self.fleet = FleetConfig(balancing_interval=1.0, node_purge_failure_time_window=10.0,
                                 persistence_dir_parent="/data" if cfg.persistent else None)
        self.raft = RaftConfig(data=Counter, quiesce_after=None)
        self.live: set[str] = set()  # groups added and not removed
        self.removed: set[str] = set()  # groups removed (for good)
        self.replicas: dict[str, int] = {}  # n_replica of each group added
        self.agent_gone = False  # one agent silent for good (at most once a run)
        self.acked: dict[str, int] = {}  # group -> the highest acknowledged counter value (+1)
        self.stop = False
        self.failure: Violation | None = None  # found by a background task (client, monitor)
        self.main_task: asyncio.Task | None = None
        self.next_node = 0
        self.restarted = False  # the whole cluster restarted once (at most once a run)
        self.drained = False  # an operator drained a node (at most once a run)
        self.restarting = False  # ... and its fleet is not back yet: groups may be unregistered
        self.unregistered: set[str] = set()  # live groups a restarted fleet has not found yet
        self.recovering: set[str] = set()  # groups not whole since the cluster restarted
        self.creating: set[str] = set()  # added, creation not confirmed (no restart meanwhile:
        # a group not yet created has no files, and the new GCS never heard of it)
        self.hit: set[str] = set()  # groups a node death hit since they were last whole

    # -- the cluster ------------------------------------------------------------------------

    def _node(self, zone: str, name: str | None = None) -> str:
        """A new node (a new Ray node id) in ``zone``; its machine is ``name`` (a new one
        unless given: a machine restarted under its name keeps its disk)."""
        self.next_node += 1
        node = f"{self.next_node:02d}" + f"{self.rng.getrandbits(200):050x}"[:54]
        self.simray.add_node(node, zone, {f"{NODE_NAME_PREFIX}{name or f'm{self.next_node}'}": 1.0})
        self.zone_of[node] = zone
        return node

    async def _activate(self, node: str) -> None:
        zone = self.zone_of[node]
        agent = self.simray.create(lambda: NodeAgent(node, zone), node, agent_name(node))
        await self._call(agent, "start", self.fleet)
        await self._call("cluster", "add_node", self.env.new_id(), node, zone)

    async def setup(self) -> None:
        self.next_node += 1
        head = f"{self.next_node:02d}" + "0" * 54
        self.simray.add_node(head, None)
        self.head = head
        await self._start_control_plane()
        for zone in ("z1", "z2", "z3", "z1"):
            await self._activate(self._node(zone))
        await self._call("balancer", "ensure_running")

    async def _start_control_plane(self) -> None:
        """The ClusterActor and the reconciler, on a head node (a new one after a restart)."""
        if not self.simray.node_table[self.head].alive:
            self.next_node += 1
            self.head = f"{self.next_node:02d}" + "0" * 54
            self.simray.add_node(self.head, None)
        self.cluster = self.simray.create(lambda: ClusterActor(store=self.store, clock=self.env.wall), self.head,
                                          CLUSTER_ACTOR_NAME)
        self.balancer = self.simray.create(Balancer, self.head, BALANCER_NAME)
        await self._call("cluster", "configure", self.env.new_id(), self.fleet)

    def hosts(self) -> list[MemberHost]:
        return [a.obj for a in self.simray.actors
                if a.alive and a.node.alive and a.name is not None and a.name.startswith(HOST_PREFIX)]

    # -- workload ---------------------------------------------------------------------------

    async def _call(self, target: SimHandle | str, method: str, *args: Any) -> Any:
        """The driver's call, as the API makes it: bounded, and retried with the same
        arguments (request ids make the ClusterActor's commands idempotent) until answered.
        ``target``: a handle, or "cluster"/"balancer" (looked up at each try: they are new
        actors after a cluster restart)."""
        while True:
            handle = getattr(self, target) if isinstance(target, str) else target
            try:
                return await asyncio.wait_for(getattr(handle, method).remote(*args), 10.0)
            except (TimeoutError, ray_exceptions.RayActorError):
                await asyncio.sleep(1.0)

    async def add(self, name: str, n_replica: int = 3) -> None:
        while self.restarting:  # the driver waits for the cluster to be back
            await asyncio.sleep(1.0)
        self.creating.add(name)
        self.replicas[name] = n_replica
        await self._call("cluster", "add_group", self.env.new_id(), name, n_replica, self.raft)
        self.live.add(name)
        self.removed.discard(name)
        # Creation is bounded only once the faults stop (silent agents may hold it up). As
        # add_consensus_group does: the reconciler's answer, or if that call is lost or its
        # actor restarts, the desired state's.
        deadline = self.loop.time() + max(self.cfg.duration - self.loop.time(), 0.0) + self.cfg.settle
        outcome = "timeout"
        while self.loop.time() < deadline:
            try:
                got: CreationOutcome = await asyncio.wait_for(self.balancer.wait_created.remote(name, 10.0), 12.0)
                outcome = "ok" if got.created else "error" if got.error is not None else "timeout"
                if outcome == "error":
                    break
            except Exception:  # noqa: BLE001 - lost, or the reconciler restarted
                try:
                    outcome = "ok" if await asyncio.wait_for(self.cluster.is_created.remote(name), 5.0) else "timeout"
                except Exception:  # noqa: BLE001
                    outcome = "timeout"
            if outcome != "timeout":
                break
        self.creating.discard(name)
        if outcome != "ok":
            b: Balancer = self.simray.obj(self.balancer)
            raise Violation(f"group {name}: creation answered {outcome} at {self.loop.time():.1f} s; the "
                            f"reconciler's last step for it: {b.planned(name)}")
        self.out.stats["created"] = self.out.stats.get("created", 0) + 1

    async def remove(self, name: str) -> None:
        """As ``remove_consensus_group``: recorded, then waited for until no node runs a member
        (with persistence: until every member's files are retired), at most 30 s. Only a
        removal that finished so is acknowledged, and must hold through every restart; one that
        a cluster restart or the bound interrupts has an unknown outcome (the group may come
        back from files that still say it lives: the API warns of exactly that)."""
        self.live.discard(name)
        self.acked.pop(name, None)
        restarts = self.out.stats.get("cluster_restarts", 0)
        await self._call("cluster", "remove_group", self.env.new_id(), name)
        await self._call("balancer", "wake")
        deadline = self.loop.time() + 30.0
        while self.loop.time() < deadline and self.out.stats.get("cluster_restarts", 0) == restarts:
            if not await self._call("cluster", "cleanup_ongoing", name):
                if self.out.stats.get("cluster_restarts", 0) == restarts:
                    self.removed.add(name)
                return
            await asyncio.sleep(0.1)
        self._count("removals_unfinished")

    async def client(self, name: str, c: Client) -> None:
        """A sequential counter client: increments, and now and then a read."""
        while not self.stop:
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            if name not in self.live:
                return
            try:
                if self.rng.random() < 0.2:
                    v = await c.call(name, QueryOp(codec.dumps(None)), operation="query", timeout=0.5, retry=3,
                                     retry_interval=0.5)
                    if name in self.live and v < self.acked.get(name, 0):
                        raise Violation(f"group {name}: a read saw {v} after increments were acknowledged up to "
                                        f"{self.acked[name]}: acknowledged writes are lost")
                    self._count("reads")
                    continue
                cmd = c.new_command_id(name)
                try:
                    before = await c.call(name, CommandOp(cmd, codec.dumps("inc")), operation="command", timeout=0.5,
                                          retry=3, retry_interval=0.5)
                finally:
                    c.done_command(cmd)
            except (errors.NoLeaderError, errors.NotFoundError, errors.GroupLostError):
                self._count("unknown_outcomes")
                continue
            if name not in self.live:
                return
            if before < self.acked.get(name, 0):
                raise Violation(f"group {name}: an increment applied to {before}, below the {self.acked[name]} "
                                "increments acknowledged before it: acknowledged writes are lost")
            self.acked[name] = before + 1
            self._count("acked")

    def _count(self, key: str) -> None:
        self.out.stats[key] = self.out.stats.get(key, 0) + 1

    # -- faults -----------------------------------------------------------------------------

    def _wants(self, kind: str) -> bool:
        return self.cfg.mix in (kind, "chaos")

    async def faults(self) -> None:
        mix = self.cfg.mix
        if self._wants("slow"):
            self.simray.faults.p_slow, self.simray.faults.slow_lo, self.simray.faults.slow_hi = 0.01, 0.2, 3.0
            self.simray.faults.p_lost = 0.002
        last_kill = -1e9
        while self.loop.time() < self.cfg.duration and mix != "calm":
            await asyncio.sleep(self.rng.uniform(1.0, 5.0))
            now = self.loop.time()
            r = self.rng.random()
            if self._wants("kills") and r < 0.1 and not self.drained:
                await self._drain_a_node()
            elif self._wants("kills") and r < 0.4 and now - last_kill >= self.cfg.kill_gap and not self.hit & self.live \
                    and not self.recovering & self.live and self.placeable():
                # One fault at a time: a group still coming back from a whole-cluster restart
                # may need the files of the node that would die (chaos seed 4063, persistent).
                last_kill = now
                await self._kill_a_node()
            elif self._wants("silence") and r < 0.7:
                await self._silence()
            elif self._wants("restarts") and self.cfg.persistent and r > 0.9 and not self.restarted \
                    and not self.hit & self.live and not self.creating:
                await self._restart_cluster()
            elif self._wants("restarts"):
                self._restart_something()
        self.simray.faults.p_slow = self.simray.faults.p_lost = 0.0

    async def _restart_cluster(self) -> None:
        """The whole cluster restarts (a planned restart, or a power cut of every machine):
        every process dies, the GCS comes back empty (a new ClusterActor, which knows no
        group), and the machines come back one by one under their names, with new node ids
        and their disks. With persistence the fleet registers its groups from their files and
        restores them; nothing acknowledged may be lost, nothing removed may come back."""
        self.restarted = True
        self.restarting = True
        self._count("cluster_restarts")
        self.hit |= self.live  # no node death until every group is whole again
        machines = [(n, self.zone_of[n], self._machine(n)) for n in sorted(self.zone_of)
                    if self.simray.node_table[n].alive]
        # Aimed: one machine is cut off for a few seconds first (its members fall behind while
        # the others go on acknowledging writes), and comes back first, alone for a while: a
        # restore must not trust its files without those of a majority.
        lagger = self.rng.choice(machines)
        cut = [SimHandle(self.simray, a) for a in self.simray.actors
               if a.alive and a.node.node_id == lagger[0]]
        for h in cut:
            self.simray.silence(h, True)
        await asyncio.sleep(self.rng.uniform(1.0, 6.0))
        machines = [lagger] + [m for m in machines if m is not lagger]
        for node in list(self.simray.node_table):
            if self.simray.node_table[node].alive:
                self.simray.kill_node(node)
        if self.rng.random() < 0.5:
            self.store.data.clear()  # the GCS is new too (else: its KV survived, a GCS with storage)
        self.unregistered |= self.live  # until the new fleet finds them in their files
        self.recovering |= self.live  # until each is whole again
        await asyncio.sleep(self.rng.uniform(1.0, 10.0))
        await self._start_control_plane()
        for i, (_, zone, name) in enumerate(machines):
            await self._activate(self._node(zone, name))
            await self._call("balancer", "ensure_running")
            await asyncio.sleep(self.rng.uniform(5.0, 15.0) if i == 0 else self.rng.uniform(0.0, 5.0))
        self.restarting = False

    def _machine(self, node: str) -> str:
        return next(r for r in self.simray.node_table[node].resources if r.startswith(NODE_NAME_PREFIX)
                    ).split(":", 1)[1]

    async def _drain_a_node(self) -> None:
        """An operator drains a node (``deactivate``): its members move away through their
        leaders, and it takes no new ones."""
        active = [n for ns in self.simray.obj(self.cluster).reconcile_view().active_nodes.values() for n in ns]
        if len(active) < 4:
            return  # keep three zones' worth of nodes
        node = self.rng.choice(sorted(active))
        self.drained = True
        self._count("drains")
        await self._call("cluster", "deactivate_node", self.env.new_id(), node)

    async def _kill_a_node(self) -> None:
        zones = [n for n, z in self.zone_of.items() if self.simray.node_table[n].alive]
        victim = self.rng.choice(sorted(zones))
        self.hit |= self.live  # until each is whole again, no other node dies
        self.simray.kill_node(victim)
        self._count("node_kills")
        new = self._node(self.zone_of[victim])  # the autoscaler brings a node in its zone
        await asyncio.sleep(self.rng.uniform(1.0, 8.0))
        await self._activate(new)

    async def _silence(self) -> None:
        alive = sorted(n for n in self.zone_of if self.simray.node_table[n].alive)
        r = self.rng.random()
        if r < 0.3:  # a GCS hiccup: no agent answers (actor calls between hosts still pass)
            handles = [h for n in alive if (h := self.simray.get_actor(agent_name(n))) is not None]
        else:  # one node's agent, or the whole node (busy cores, a network partition)
            node = self.rng.choice(alive)
            if 0.65 <= r < 0.8 and not self.agent_gone and self.rng.random() < 0.5:
                # Aimed: the agent gone for good is the one of the node of a 1-replica group's
                # member, which no other member can report.
                node = next((n for h in self.hosts() for m in h.members.values() if m.group == "solo"
                             for n in alive if n.startswith(h.node_id[:8])), node)
            handles = [h for h in (self.simray.get_actor(agent_name(node)),) if h is not None]
            if r < 0.65:
                handles += [SimHandle(self.simray, a) for a in self.simray.actors
                            if a.alive and a.node.node_id == node and (a.name or "").startswith(HOST_PREFIX)]
        for h in handles:
            self.simray.silence(h, True)
        self._count("silences")
        if 0.65 <= r < 0.8 and not self.agent_gone:
            # An agent gone for good (killed, not restarted) on a node Ray says is alive: the
            # node is drained, its members moved away through their leaders, hidden ones too.
            self.agent_gone = True
            self._count("agents_gone")
            return
        await asyncio.sleep(self.rng.uniform(2.0, 45.0))
        for h in handles:
            self.simray.silence(h, False)

    def _restart_something(self) -> None:
        r = self.rng.random()
        if r < 0.4:
            self.simray.crash(self.balancer)
            self._count("balancer_restarts")
        elif r < 0.55:
            self.simray.crash(self.cluster)
            self._count("cluster_actor_restarts")
        elif r < 0.75:
            hosts = [a for a in self.simray.actors if a.alive and a.node.alive and (a.name or "").startswith(HOST_PREFIX)]
            # A host process dies (OOM, say): restarted from its files with persistence, else
            # its members are gone and replaced: a loss, within the budget of node deaths.
            lossy = not self.cfg.persistent
            if hosts and not (lossy and (self.hit & self.live or not self.placeable())):
                if lossy:
                    self.hit |= self.live
                self.simray.crash(SimHandle(self.simray, self.rng.choice(hosts)))
                self._count("host_crashes")
        else:
            alive = sorted(n for n in self.zone_of if self.simray.node_table[n].alive)
            h = self.simray.get_actor(agent_name(self.rng.choice(alive)))
            if h is not None:
                self.simray.crash(h)
                self._count("agent_restarts")

    # -- checks -----------------------------------------------------------------------------

    def check(self) -> None:
        if self.restarting:
            return  # the whole cluster is down or coming back: its control plane is not there yet
        cluster: ClusterActor = self.simray.obj(self.cluster)
        groups = cluster.consensus_groups()
        self.unregistered -= set(groups)
        for g in sorted(self.live - self.unregistered):
            if g not in groups:
                raise Violation(f"group {g} was added and never removed, but the fleet no longer has it")
        for g in sorted(self.removed):
            if g in groups:
                raise Violation(f"group {g} was removed, and is registered again")
        # After a whole-cluster restart a group is truly lost (every process gone, too few
        # files readable) until a majority of its machines is back: then it must come back.
        lost = {g: mark for g, mark in cluster.lost_groups().items() if g not in self.recovering}
        if lost:
            g, mark = sorted(lost.items())[0]
            raise Violation(f"group {g} marked lost ({mark.reason}), though no fault took a majority of its voters")
        leaders: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for h in self.hosts():
            for g, m in h.members.items():
                if m.node.role == "leader":
                    leaders.setdefault(g, []).append((m.id, frozenset(m.node.members)))
        for g, ls in leaders.items():
            for i, (a, ca) in enumerate(ls):
                for b, cb in ls[i + 1:]:
                    if not (ca & cb):
                        raise Violation(f"group {g} has two incarnations: {a} and {b} both lead, with disjoint "
                                        f"configurations {sorted(ca)} and {sorted(cb)}")

    def converged(self) -> str | None:
        """None once every live group has its desired placement (the ClusterActor's layout:
        one voter on each desired node, no learner) and one leader; else what is not yet."""
        layout = self.simray.obj(self.cluster).reconcile_view().layout
        members: dict[str, list[Any]] = {}
        for h in self.hosts():
            for g, m in h.members.items():
                members.setdefault(g, []).append(m)
        for g in sorted(self.live):
            lead = [m for m in members.get(g, []) if m.node.role == "leader"]
            if len(lead) != 1:
                return f"group {g}: {len(lead)} leaders"
            voters, learners = lead[0].node.members, lead[0].node.learners
            on = sorted(next((n for n in self.zone_of if n.startswith(v.split("|")[1])), "?") for v in voters)
            want = sorted(layout.get(g, []))
            if learners or on != want:
                return (f"group {g}: voters on nodes {[n[:8] for n in on]}, learners {list(learners)}; desired "
                        f"{[n[:8] for n in want]}")
        return None

    def placeable(self) -> bool:
        """Whether every live group has n_replica desired nodes: then the fleet promises that
        it survives a node death (once whole again after the last fault: ``hit``). A group a
        drain left with 2 desired nodes survives none (it needs both), through no fault of the
        fleet; a group the fleet left with fewer voters than it promised is the fleet's fault,
        and a death then must be allowed, or the planted created_with_one_voter hides."""
        layout = self.simray.obj(self.cluster).reconcile_view().layout
        return all(len([n for n in layout.get(g, ()) if self._heard(n)]) >= self.replicas.get(g, 3) for g in self.live)

    def _heard(self, node: str) -> bool:
        """Whether ``node``'s agent answers (is there and not silenced): a desired node whose
        agent is silent cannot get a member, so a group may miss its voter there, and a death
        then is a second fault (chaos seed 4043, persistent: a group born on 2 of its 3 desired
        nodes, the third silent, lost one of the 2)."""
        h = self.simray.get_actor(agent_name(node))
        return h is not None and not self.simray.is_silent(h)

    def whole(self) -> set[str]:
        """The live groups whose leader has n_replica voters, each of them running."""
        running = {m.id: m for h in self.hosts() for m in h.members.values()}
        return {g for m in running.values() if (g := m.group) in self.live and m.node.role == "leader"
                and len(m.node.members) == self.replicas.get(g, 3) and all(v in running for v in m.node.members)}

    async def monitor(self) -> None:
        while not self.stop:
            self.check()
            whole = self.whole()
            self.hit -= whole
            self.recovering -= whole
            await asyncio.sleep(self.cfg.check_every)

    def _background(self, coro: Any) -> asyncio.Task:
        """A task whose violation ends the run at once."""

        async def guarded() -> None:
            try:
                await coro
            except Violation as v:
                if self.failure is None:
                    self.failure = v
                    if self.main_task is not None:
                        self.main_task.cancel()

        return asyncio.ensure_future(guarded())

    # -- a run ------------------------------------------------------------------------------

    async def main(self) -> None:
        await self.setup()
        c = Client(loop=self.loop)
        names = [f"g{i}" for i in range(self.cfg.groups)]
        await self.add(names[0])
        solo = self.cfg.mix in ("calm", "silence", "slow") if self.cfg.solo is None else self.cfg.solo
        # A 1-replica group has no other member to report it: a silent agent on its node hides
        # it (a drain of that node never finished; found on a real cluster).
        await asyncio.gather(*(self.add(n) for n in names[1:]), *([self.add("solo", 1)] if solo else []))
        names += ["solo"] * solo
        tasks = [self._background(self.monitor()), asyncio.ensure_future(self.faults())]
        clients = {n: self._background(self.client(n, c)) for n in names}
        # One group removed and added again, mid-run (once the fleet knows it: not while a
        # restarted cluster has not found it in its files yet).
        await asyncio.sleep(self.rng.uniform(5.0, self.cfg.duration / 2))
        victim = self.rng.choice(names)
        while self.restarting or victim in self.unregistered:
            await asyncio.sleep(1.0)
        await self.remove(victim)
        await clients[victim]
        await asyncio.sleep(self.rng.uniform(1.0, 10.0))
        again = victim + "b"
        names.append(again)
        await self.add(again)
        clients[again] = self._background(self.client(again, c))
        await tasks[1]  # the faults end at `duration`
        deadline = self.loop.time() + self.cfg.settle
        why = self.converged()
        while why is not None and self.loop.time() < deadline:
            await asyncio.sleep(1.0)
            self.check()
            why = self.converged()
        if why is not None:
            raise Violation(f"not converged {self.cfg.settle:.0f} s after the faults stopped: {why}")
        self.stop = True


def run(seed: int, cfg: SimConfig | None = None, inspect: Callable[[FleetSim], None] | None = None) -> Outcome:
    """One seeded run; violations are reported in the outcome, never raised. ``inspect`` is
    called with the simulation after a violation, before anything is torn down (debugging)."""
    cfg = cfg or SimConfig()
    sim = FleetSim(seed, cfg)
    t0 = time.monotonic()
    logging.disable(logging.CRITICAL)  # the runtime's reports of the faults it meets
    try:
        with env_mod.use_env(sim.env):
            main = sim.main_task = sim.loop.create_task(sim.main())
            try:
                sim.loop.run_until_complete(asyncio.wait_for(main, cfg.duration + cfg.settle + 200.0))
            except Violation as v:
                sim.out.violations.append(str(v))
            except Exception as exc:  # noqa: BLE001 - anything else is a failed run too
                sim.out.violations.append(f"the run failed: {exc!r}")
            except asyncio.CancelledError:
                pass  # a background check found a violation: it is in sim.failure
            if sim.failure is not None:
                sim.out.violations.insert(0, str(sim.failure))
            try:
                if sim.out.violations and inspect is not None:
                    inspect(sim)
            finally:
                sim.simray.shutdown()  # no call is answered, none runs: nothing starts new work
                for _ in range(10):  # cancelled tasks may have started others
                    pending = asyncio.all_tasks(sim.loop)
                    if not pending:
                        break
                    for t in pending:
                        t.cancel()
                    sim.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        logging.disable(logging.NOTSET)
        sim.loop.close()
    sim.out.seconds = time.monotonic() - t0
    sim.out.stats["calls"] = sim.simray.calls
    return sim.out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0:20", help="one seed, or a range a:b")
    p.add_argument("--mix", default="chaos", choices=MIXES)
    p.add_argument("--bug", action="append", default=[], help="plant a bug (placement/bugs.py)")
    p.add_argument("--persistent", action="store_true", help="members keep their state in files")
    a = p.parse_args(argv)
    lo, _, hi = a.seeds.partition(":")
    seeds = range(int(lo), int(hi)) if hi else [int(lo)]
    failed = 0
    for s in seeds:
        o = run(s, SimConfig(mix=a.mix, bugs=frozenset(a.bug), persistent=a.persistent))
        if not o.ok:
            failed += 1
            print(f"seed {s}: VIOLATION {o.violations[0]}\n  replay: {o.replay()}", flush=True)
        else:
            print(f"seed {s}: ok ({o.seconds:.1f} s, {o.stats})", flush=True)
    print(f"{len(seeds) - failed}/{len(seeds)} passed ({a.mix})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
