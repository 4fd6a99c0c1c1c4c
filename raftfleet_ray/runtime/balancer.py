"""The reconciler: the one actor that creates, moves, repairs and stops members.

Control flows one way (DESIGN §3, CONVENTIONS §12): the public API changes desired state in
the ClusterActor and wakes this actor; each round it

1. reads the desired state (``ClusterActor.reconcile_view``: groups, their desired layout,
   active and draining nodes);
2. asks Ray which nodes are alive: a node Ray reports dead is dead for good, so it is purged
   from the desired state at once and its members are replaced;
3. observes every node in one call to its agent (``NodeAgent.observe``: every member's
   status); a live node whose agent has not answered for ``node_purge_failure_time_window``
   is drained (its members are moved away through their leaders, which is safe);
4. plans one step per group (``placement.planner.plan``, pure) and carries the steps out
   through the agents and the groups' leaders, at most ``FleetConfig.max_moves_in_flight``
   membership changes at a time, ``max_moves_per_node`` per node;
5. reports groups seen with a leader (``mark_created``) and draining nodes found empty
   (``node_drained``), and has every agent stop the members of removed groups.

A round follows the previous one after ``balancing_interval`` seconds, or at once when
woken (a group added or removed, a node activated, deactivated or lost, a member's host
died), and soon again while the last round still had work. It keeps no state that
matters: a restarted balancer rebuilds everything from the ClusterActor and observation
(the little it remembers, how long a group has had no leader, only delays a repair).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import ray

from ..placement import planner
from ..placement.planner import (
    AddLearner,
    ClusterView,
    Create,
    ForceRemove,
    History,
    Nothing,
    Observed,
    Promote,
    RemoveGroup,
    RemoveMember,
    StopMember,
    Transfer,
    Wait,
)
from .cluster_state import CreationView, GroupSpec, ReconcileView
from .directory import get_directory
from .metrics import Metrics, process_metrics
from .names import NAMESPACE, node_prefix, node_prefix_of_member, parse_member_id

log = logging.getLogger(__name__)

SOON = 0.2  # seconds to the next round while there is work
OBSERVE_TIMEOUT = 10.0
START_TIMEOUT = 120.0
"""Seconds for an agent to start a member. In the default mode that is a new Ray actor, and
Ray starts worker processes one at a time per CPU of a node: a second each on a busy 2-core
machine, so tens of seconds while dozens start at once (12 groups of 3 on 3 nodes: 30 s)."""
BIRTH_CALL_TIMEOUT = 10.0
"""Seconds for a host to take a new member's first configuration (a method call)."""
CALL_TIMEOUT = 10.0
"""Seconds for a call to the ClusterActor or to an agent that only reads."""
FIRST_COMMIT_TIMEOUT = 10.0
"""Seconds for a new group's leader to commit its first entry on a majority: an election and
one replication round, normally milliseconds."""


def _cluster_actor() -> Any:
    from .cluster_actor import CLUSTER_ACTOR_NAME

    return ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE)


def _rid() -> str:
    return uuid.uuid4().hex


def _pickled_error(cause: BaseException) -> bytes:
    try:
        return cloudpickle.dumps(cause)
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        return cloudpickle.dumps(RuntimeError(repr(cause)))


@dataclass(slots=True)
class RoundReport:
    """What one round saw and did (for logs, tests and ``explain_placement``)."""

    started: float = 0.0
    seconds: float = 0.0
    groups: int = 0
    planned: Counter = field(default_factory=Counter)  # step kinds planned, Nothing and Wait included
    actions: Counter = field(default_factory=Counter)  # steps carried out
    failures: Counter = field(default_factory=Counter)
    dead_nodes: list[str] = field(default_factory=list)


class Balancer:
    """Plain class; ``factory.get_or_create_balancer`` makes it the detached singleton."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics or process_metrics()
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._history: dict[str, History] = {}
        self._scanned: set[str] = set()  # nodes whose files were looked at for unknown groups
        self._newest_files: dict[str, tuple[tuple[int, int], str, Any]] = {}  # this round's look
        self._silent_since: dict[str, float] = {}
        self._planned: dict[str, tuple[float, str, str]] = {}  # group -> (when, action, outcome)
        self._last = RoundReport()
        self._rounds = 0
        self._round_lock: asyncio.Lock | None = None
        self._idle_rounds = 0  # consecutive rounds in which no step succeeded (backoff)
        self._last_obs: dict[str, list[Observed]] = {}  # the last round's view, for explain()
        self._last_cview: ClusterView | None = None
        self._last_view: ReconcileView | None = None
        # Groups being created: add_consensus_group waits here (wait_created), not by polling.
        self._created: dict[str, asyncio.Event] = {}
        self._create_error: dict[str, bytes] = {}
        # Groups with an action in progress (a round's, or the creation fast path's): one step
        # per group at a time, whoever takes it.
        self._busy: set[str] = set()
        self._fast_tried: set[str] = set()  # groups the fast path tried once: rounds do the rest

    # -- the loop ------------------------------------------------------------------------

    def ensure_running(self) -> int:
        """Start the loop if this incarnation has not started it yet (Ray restarts the actor
        after a crash; the agents call this now and then). Returns the rounds run so far."""
        if self._event is None:
            self._event = asyncio.Event()
            self._round_lock = asyncio.Lock()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self._rounds

    def wake(self) -> int:
        """Desired or observed state changed: start a round now (and the loop if needed)."""
        self.ensure_running()
        assert self._event is not None
        self._idle_rounds = 0
        self._event.set()
        return self._rounds

    async def wait_created(self, name: str, timeout: float) -> tuple[str, bytes | None]:
        """Wake, and wait until group ``name`` has been created (its first member leads):
        ``("ok", None)``, ``("error", pickled exception)`` if its creation failed, or
        ``("timeout", None)``."""
        ev = self._created.setdefault(name, asyncio.Event())
        self.ensure_running()
        if name not in self._busy and name not in self._fast_tried:
            self._fast_tried.add(name)
            asyncio.get_running_loop().create_task(self._create_fast(name))
        else:
            self.wake()
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            return "timeout", None
        finally:
            if self._created.get(name) is ev and ev.is_set():
                self._created.pop(name, None)
        err = self._create_error.pop(name, None)
        return ("error", err) if err is not None else ("ok", None)

    def _creation_done(self, name: str, error: bytes | None = None) -> None:
        if error is not None:
            self._create_error[name] = error
        ev = self._created.get(name)
        if ev is not None:
            ev.set()

    async def _create_fast(self, name: str) -> None:
        """Create a new group now, without a round: a round observes every member of every
        group, so creating groups one at a time through rounds cost O(groups) each, O(groups²)
        in all (1,000 groups took 205 s). Taken only when it is sure to be the step a round
        would take: the group is registered, never created, no node runs a member of it (every
        active node's agent answers, and says so), and members are not persisted (a group added
        again may then have to be restored from its files: a round decides that). Anything else,
        and any failure, wakes a round instead."""
        self._busy.add(name)
        try:
            cluster = _cluster_actor()
            cv: CreationView | None = await asyncio.wait_for(cluster.creation_view.remote(name), CALL_TIMEOUT)
            if cv is None or cv.created or cv.fleet_config.persistence_dir_parent is not None or not cv.desired:
                if cv is not None and cv.created:
                    self._creation_done(name)
                return
            nodes = sorted({n for ns in cv.active_nodes.values() for n in ns})
            found = await asyncio.gather(
                *(asyncio.wait_for(self._agent_call(n, "members_of", name), CALL_TIMEOUT) for n in nodes),
                return_exceptions=True)
            if any(isinstance(f, BaseException) or f for f in found):
                return  # a silent agent, or a member already there: the round decides
            act = Create(cv.desired[0], nodes=tuple(cv.desired))
            outcome = await self._do(name, cv.spec, act, None, ClusterView(frozenset(nodes), frozenset(), {}))
            self._metrics.reconcile_action("Create", outcome)
            self._planned[name] = (time.time(), planner.describe(act), outcome)
        except Exception as exc:  # noqa: BLE001 - the round will retry; the caller still waits
            log.warning("balancer: group %s: creation fast path failed: %r", name, exc)
        finally:
            self._busy.discard(name)
            if not (self._created.get(name) is None or self._created[name].is_set()):
                self.wake()  # not created: a round takes over

    async def wait_round(self, timeout: float = 60.0) -> int:
        """Wake and return once a round that started after this call has finished."""
        start = self._rounds
        self.wake()
        deadline = time.monotonic() + timeout
        while self._rounds < start + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self._rounds

    async def _loop(self) -> None:
        assert self._event is not None
        while True:
            self._event.clear()
            busy = False
            interval = 60.0
            try:
                busy, interval = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a reconcile loop never dies (CONVENTIONS §7)
                log.exception("balancer: round failed; going on")
            # Soon again while steps succeed; backing off (doubling up to the interval) while
            # they keep failing or waiting, so a stuck group does not spin the loop.
            delay = min(interval, SOON * 2 ** self._idle_rounds) if busy else interval
            try:
                await asyncio.wait_for(self._event.wait(), delay)
            except TimeoutError:
                pass

    # -- one round -----------------------------------------------------------------------

    async def round(self) -> tuple[bool, float]:
        """One reconcile round; returns (there is more work, balancing_interval)."""
        assert self._round_lock is not None
        async with self._round_lock:
            return await self._round()

    async def _round(self) -> tuple[bool, float]:
        rep = RoundReport(started=time.time())
        t0 = time.monotonic()
        cluster = _cluster_actor()
        view: ReconcileView = await cluster.reconcile_view.remote()
        fleet = view.fleet_config
        loop = asyncio.get_running_loop()
        ray_nodes = await loop.run_in_executor(None, ray.nodes)
        alive = {n["NodeID"] for n in ray_nodes if n.get("Alive")}
        dead_ray = {n["NodeID"] for n in ray_nodes if not n.get("Alive")}
        zone_of = {n: z for z, ns in view.active_nodes.items() for n in ns} | dict(view.draining)

        # 2. Dead nodes leave the desired state at once (Ray never revives a node id).
        for node in sorted(n for n in zone_of if n not in alive):
            log.warning("balancer: node %s is dead (Ray): purged, its members will be replaced", node[:12])
            await cluster.remove_node.remote(_rid(), node, True)
            rep.dead_nodes.append(node)
        if rep.dead_nodes:
            view = await cluster.reconcile_view.remote()
            zone_of = {n: z for z, ns in view.active_nodes.items() for n in ns} | dict(view.draining)

        # 3. Observe every live node that may run members (active, draining, or running
        # members anyway: any node with an agent).
        nodes = sorted(n for n in alive if n in zone_of)
        observed, answered = await self._observe(nodes)
        now = time.monotonic()
        for node in nodes:
            if node in answered:
                self._silent_since.pop(node, None)
            else:
                since = self._silent_since.setdefault(node, now)
                if now - since > fleet.node_purge_failure_time_window and node in view.active_nodes.get(zone_of[node], []):
                    log.warning("balancer: the agent of node %s has not answered for %.0f s: draining it",
                                node[:12], now - since)
                    await cluster.deactivate_node.remote(_rid(), node)

        # 4b. With persistence: groups found in files that the fleet does not know (a whole
        # cluster restarted, so the ClusterActor is new) are registered again, once per
        # node the balancer sees answer; the Create step below restores them.
        if fleet.persistence_dir_parent is not None and not view.cleanup_pending:
            await self._register_from_files(sorted(n for n in answered if n not in self._scanned), view)

        # 5a. Removed groups: every agent stops their members and acks (names become reusable).
        if view.cleanup_pending:
            await asyncio.gather(*(self._agent_call(n, "cleanup_removed") for n in answered), return_exceptions=True)
        by_group: dict[str, list[Observed]] = {}
        for node, members in observed.items():
            for g, o in members.items():
                # A quarantined member takes no part in its group: to the planner it is a
                # member whose status is unknown (never a leader, never a survivor to repair
                # from); replacing it is the planner's call.
                by_group.setdefault(g, []).append(Observed(o.member, node, None if o.quarantine else o.status))
        prefixes = {node_prefix(n): n for n in alive | dead_ray}
        silent = {n for n in nodes if n not in answered}
        if silent:
            await self._observe_behind_silent_agents(by_group, silent, prefixes)
        orphans: dict[str, list[str]] = {}
        for g, obs in by_group.items():
            if g not in view.groups:
                for o in obs:
                    orphans.setdefault(o.node, []).append(g)
        if orphans and not view.cleanup_pending:
            # Members of groups the fleet does not know (e.g. left over by a balancer that
            # crashed mid-action): only the balancer creates members, so none of these is of
            # a group added since the view was read.
            await asyncio.gather(*(self._agent_call(n, "stop_members", gs) for n, gs in orphans.items()),
                                 return_exceptions=True)

        # 4. One step per group.
        cview = ClusterView(frozenset(answered), frozenset(dead_ray), prefixes)
        self._last_obs, self._last_cview, self._last_view = by_group, cview, view
        actions: list[tuple[str, GroupSpec, planner.Action, str | None]] = []
        created_now: list[str] = []
        for g, spec in view.groups.items():
            if g in self._busy:
                continue  # an action of the creation fast path is under way
            obs = by_group.get(g, [])
            lead = planner._leader(obs)
            if lead is not None and g not in view.created:
                created_now.append(g)
            if (lead is not None or g in view.created) and g in self._created:
                self._creation_done(g)  # created by an earlier incarnation, or seen leading
            hist = self._history.setdefault(g, History())
            act = planner.plan(view.layout.get(g, []), obs, cview, created=g in view.created or lead is not None,
                               history=hist, now=now, election_timeout=spec.config.election_timeout,
                               persistent=fleet.persistence_dir_parent is not None)
            leader_id = lead.member if lead is not None else None
            rep.planned[type(act).__name__] += 1
            actionable = not isinstance(act, Nothing | Wait)
            if actionable:
                actions.append((g, spec, act, leader_id))
            self._planned[g] = (time.time(), planner.describe(act), "pending" if actionable else "-")
        self._fast_tried &= set(view.groups)
        for g in list(self._history):
            if g not in view.groups:
                del self._history[g]
                self._planned.pop(g, None)
        if created_now:
            await cluster.mark_created.remote(_rid(), created_now)

        # What the files on the answering nodes could restore: asked once per round, and only
        # when a group is to be created (never once per group: one call per agent).
        self._newest_files = {}
        if fleet.persistence_dir_parent is not None and any(isinstance(a[2], Create) for a in actions):
            self._newest_files = await self._newest_files_by_group(sorted(answered))
        await self._execute(actions, fleet, cview, rep)
        ok = sum(rep.actions.values()) - sum(rep.failures.values())
        self._idle_rounds = 0 if ok or rep.dead_nodes else min(self._idle_rounds + 1, 10)

        # 5b. Draining nodes found empty are inactive now: by their agent, or, for one that
        # does not answer, by every leader's configuration (none lists a member there).
        in_configs = {cview.node_of(m) for obs in by_group.values() if (ld := planner._leader(obs))
                      for m in (*ld.status["members"], *ld.status.get("learners", ()))}
        for node in view.draining:
            empty = not observed.get(node) if node in answered else node not in in_configs
            if empty:
                log.info("balancer: node %s is drained", node[:12])
                await cluster.node_drained.remote(_rid(), node)
        rep.groups = len(view.groups)
        rep.seconds = time.monotonic() - t0
        self._last = rep
        self._rounds += 1
        self._metrics.reconcile_round(rep.seconds)
        if rep.actions:
            log.info("balancer: round %d: %d groups, %s in %.2f s%s", self._rounds, rep.groups,
                     dict(rep.actions), rep.seconds, f", failures {dict(rep.failures)}" if rep.failures else "")
        # A group without a leader is watched closely (with the backoff) rather than at the
        # balancing interval: its repair needs several observations spanning 2 election
        # timeouts, and should follow within seconds of the failure.
        leaderless = any(h.no_leader_rounds for h in self._history.values())
        return bool(actions) or bool(rep.dead_nodes) or leaderless, fleet.balancing_interval

    async def _observe(self, nodes: list[str]) -> tuple[dict[str, dict], set[str]]:
        directory = get_directory()

        async def one(node: str) -> tuple[str, dict | None]:
            agent = await directory.agent(node)
            if agent is None:
                return node, None
            try:
                return node, await asyncio.wait_for(agent.observe.remote(), OBSERVE_TIMEOUT)
            except Exception:  # noqa: BLE001 - dead, restarting or stuck
                directory.forget_agent(node)
                return node, None

        results = await asyncio.gather(*(one(n) for n in nodes))
        observed = {n: r for n, r in results if r is not None}
        return observed, set(observed)

    async def _observe_behind_silent_agents(
        self, by_group: dict[str, list[Observed]], silent: set[str], prefixes: dict[str, str]
    ) -> None:
        """Members on live nodes whose agent does not answer are still members (often the
        leader): ask their hosts directly, found through the configurations the observed
        members report, one call per host."""
        wanted: dict[str, dict[str, str]] = {}  # host -> {group: member id}
        for g, obs in by_group.items():
            seen = {o.member for o in obs}
            for o in obs:
                st = o.status
                if st is None:
                    continue
                for m in (*st["members"], *st.get("learners", ()), *([st["leader"]] if st["leader"] else [])):
                    if m not in seen and prefixes.get(node_prefix_of_member(m)) in silent:
                        wanted.setdefault(parse_member_id(m)[0], {})[g] = m
        directory = get_directory()

        async def ask(host: str, groups: dict[str, str]) -> None:
            h = await directory.host(host)
            if h is None:
                return
            try:
                sts = await asyncio.wait_for(h.statuses.remote(sorted(groups), True), OBSERVE_TIMEOUT)
            except Exception:  # noqa: BLE001 - that host is gone or stuck: unknown
                return
            for g, mid in groups.items():
                st = sts.get(g)
                if st is not None and st["from_"] == mid:
                    quarantined = st.get("quarantine") is not None  # as in the round: status unknown
                    by_group[g].append(Observed(mid, prefixes[node_prefix_of_member(mid)], None if quarantined else st))

        await asyncio.gather(*(ask(h, gs) for h, gs in wanted.items()))

    async def _register_from_files(self, nodes: list[str], view: ReconcileView) -> None:
        if not nodes:
            return
        cluster = _cluster_actor()
        found = await asyncio.gather(*(self._agent_call(n, "restorable") for n in nodes), return_exceptions=True)
        known = set(view.groups)
        for node, f in zip(nodes, found, strict=True):
            if isinstance(f, BaseException):
                continue
            self._scanned.add(node)
            for g, items in f.items():
                live = [it for it in items if not it[3] and it[4][0] == "dir"]
                if g in known or not live:
                    continue
                n_replica = max(it[2] for it in live) or 3
                try:
                    config = await self._agent_call(node, "config_of", live[0][4], g)
                    await cluster.add_group.remote(_rid(), g, n_replica, config)
                except Exception as exc:  # noqa: BLE001 - e.g. added meanwhile, or unreadable
                    log.warning("balancer: group %s found in files on %s not registered: %r", g, node[:12], exc)
                    continue
                known.add(g)
                log.warning("balancer: group %s (n_replica=%d) found in files on node %s: registered, to be "
                            "restored", g, n_replica, node[:12])

    async def _newest_files_by_group(self, answered: list[str]) -> dict[str, tuple[tuple[int, int], str, Any]]:
        """``{group: ((last term, last index), node, source)}``: where the newest files of
        every group restorable from the answering nodes are."""
        found = await asyncio.gather(*(self._agent_call(n, "restorable") for n in answered), return_exceptions=True)
        best: dict[str, tuple[tuple[int, int], str, Any]] = {}
        for node, f in zip(answered, found, strict=True):
            if isinstance(f, BaseException):
                continue
            for g, items in f.items():
                for term, index, _n, _retired, source in items:
                    if g not in best or (term, index) > best[g][0]:
                        best[g] = ((term, index), node, source)
        return best

    async def _restore_source(self, g: str) -> tuple[str, Any] | None:
        """The node and durable state of the newest files of ``g`` (this round's look)."""
        newest = self._newest_files.get(g)
        if newest is None:
            return None
        state = await self._agent_call(newest[1], "restore_state", newest[2], g)
        return (newest[1], state) if state is not None else None

    async def _agent_call(self, node: str, method: str, *args: Any) -> Any:
        agent = await get_directory().agent(node)
        if agent is None:
            raise RuntimeError(f"node {node[:12]} has no agent")
        return await getattr(agent, method).remote(*args)

    # -- carrying out actions ------------------------------------------------------------

    async def _execute(self, actions: list, fleet: Any, cview: ClusterView, rep: RoundReport) -> None:
        total = asyncio.Semaphore(fleet.max_moves_in_flight)
        per_node: dict[str, asyncio.Semaphore] = {}

        def node_sem(node: str | None) -> asyncio.Semaphore:
            key = node or "?"
            if key not in per_node:
                per_node[key] = asyncio.Semaphore(fleet.max_moves_per_node)
            return per_node[key]

        async def run(g: str, spec: GroupSpec, act: planner.Action, leader: str | None) -> None:
            node = getattr(act, "node", None) or (cview.node_of(act.member) if hasattr(act, "member") else None)
            if g in self._busy:
                return
            self._busy.add(g)
            try:
                await step(g, spec, act, leader, node)
            finally:
                self._busy.discard(g)

        async def step(g: str, spec: GroupSpec, act: planner.Action, leader: str | None, node: str | None) -> None:
            async with total, node_sem(node):
                kind = type(act).__name__
                try:
                    outcome = await self._do(g, spec, act, leader, cview)
                except Exception as exc:  # noqa: BLE001 - one group must never stop the round
                    outcome = f"failed: {exc!r}"[:300]
                    log.warning("balancer: group %s: %s failed: %r", g, planner.describe(act), exc)
                ok = outcome == "ok"
                self._metrics.reconcile_action(kind, outcome)
                rep.actions[kind] += 1
                if not ok:
                    rep.failures[kind] += 1
                self._planned[g] = (time.time(), planner.describe(act), outcome)

        await asyncio.gather(*(run(*a) for a in actions))

    async def _do(self, g: str, spec: GroupSpec, act: planner.Action, leader: str | None, cview: ClusterView) -> str:
        from .node_agent import admin

        cluster = _cluster_actor()
        if isinstance(act, Create):
            node, restore = act.node, None
            if self._last_view is not None and self._last_view.fleet_config.persistence_dir_parent is not None:
                # raft_fleet: the first member goes where the newest files of the group are.
                src = await self._restore_source(g)
                if src is not None:
                    node, restore = src
            if act.restore_only and restore is None:
                return "refused: no files of the group on the answering nodes (waiting for one that has them)"
            if restore is None and len(act.nodes) > 1 and spec.n_replica > 1:
                return await self._create_whole(g, spec, act, cluster)
            try:
                await self._agent_call(node, "start_member", g, spec.config, True, spec.n_replica, restore)
            except Exception as exc:
                blob = _pickled_error(getattr(exc, "cause", None) or exc)
                await cluster.set_group_error.remote(_rid(), g, blob)
                self._creation_done(g, blob)
                raise
            # Its first member leads a 1-member group from the start: the group exists.
            await cluster.mark_created.remote(_rid(), [g])
            self._creation_done(g)
            log.info("balancer: group %s: %s on node %s", g, "restored from files" if restore is not None else "created",
                     node[:12])
            return "ok"
        if isinstance(act, AddLearner):
            joiner = await self._agent_call(act.node, "start_member", g, spec.config, False, spec.n_replica)
            # promote=True: the leader makes it a voter the moment it has caught up, not a round
            # later (meanwhile the group has a voter fewer than it should).
            res = await admin(g, "add_learner", joiner, True, leader_hint=leader, tries=3)
            if res[0] != "ok":
                await self._agent_call(act.node, "stop_member", g, joiner)  # no orphan left behind
                return f"refused: {res[1]}"
            return "ok"
        if isinstance(act, Promote | RemoveMember | Transfer):
            op = {Promote: "promote_learner", RemoveMember: "remove_member", Transfer: "transfer_leadership"}[type(act)]
            res = await admin(g, op, act.member, leader_hint=leader, tries=3)
            if res[0] != "ok":
                return f"refused: {res[1]}"
            if isinstance(act, RemoveMember):
                node = cview.node_of(act.member)
                if node in cview.answered:
                    await self._agent_call(node, "stop_member", g, act.member)
            return "ok"
        if isinstance(act, ForceRemove):
            directory = get_directory()
            for survivor in act.survivors:
                host = await directory.host(parse_member_id(survivor)[0])
                if host is not None:
                    for d in act.dead:
                        await host.force_remove_member.remote(g, d)
            log.warning("balancer: group %s: force-removed dead member(s) %s (no leader for long)", g, ", ".join(act.dead))
            return "ok"
        if isinstance(act, StopMember):
            await self._agent_call(act.node, "stop_member", g, act.member)
            return "ok"
        if isinstance(act, RemoveGroup):
            log.error("balancer: group %s: %s", g, act.why)
            await cluster.remove_group.remote(_rid(), g)
            return "ok"
        return "nothing"

    async def _create_whole(self, g: str, spec: GroupSpec, act: Create, cluster: Any) -> str:
        """A new group born whole (DESIGN §3, group birth): a voter on each of its desired nodes
        (up to n_replica), started in parallel as passive members; then every one gets the
        whole first configuration and the desired leader campaigns at once; the group is
        created once its leader committed its first entry, i.e. a majority holds it durably.
        (raft_fleet starts the leader alone and adds followers later: on Ray that left
        acknowledged writes on one node for seconds, and a node death in that window lost them.)"""
        nodes = list(act.nodes[: spec.n_replica])
        started = await asyncio.gather(
            *(asyncio.wait_for(self._agent_call(n, "start_member", g, spec.config, False, spec.n_replica),
                               START_TIMEOUT) for n in nodes),
            return_exceptions=True)
        voters = [mid for mid in started if isinstance(mid, str)]
        failures = [e for e in started if isinstance(e, BaseException)]
        if len(voters) < len(nodes) // 2 + 1:
            # Fewer than a majority of the first configuration could start: none is kept (a
            # member of a configuration that names members which never started could never
            # elect). Nothing was acknowledged: the next round tries again.
            await self._stop_started(g, nodes, started)
            # Only an error of the group itself (its Data class cannot be built, say) is its
            # caller's answer; a timeout or a node going away is the fleet's trouble: retried.
            definite = [e for e in failures if not isinstance(e, TimeoutError | ray.exceptions.RayActorError)]
            if not voters and definite:
                cause = getattr(definite[0], "cause", None) or definite[0]
                blob = _pickled_error(cause)
                await cluster.set_group_error.remote(_rid(), g, blob)
                self._creation_done(g, blob)
                raise definite[0]
            return f"failed: {len(failures)} of {len(nodes)} members did not start ({failures[0]!r})"[:300]
        lead = voters[0]  # the desired leader's node comes first, unless it failed to start
        directory = get_directory()
        hosts = await asyncio.gather(*(directory.host(parse_member_id(m)[0]) for m in voters))
        if any(h is None for h in hosts):
            await self._stop_started(g, nodes, started)
            return "failed: a new member's host could not be found"
        # All at once: a follower that hears the leader before its own call only voted or took
        # the leader's no-op, which carries the same configuration (RaftNode.bootstrap).
        await asyncio.wait_for(asyncio.gather(*(h.begin.remote(g, voters, m == lead)
                                                for m, h in zip(voters, hosts, strict=True))),
                               BIRTH_CALL_TIMEOUT)
        if not await asyncio.wait_for(hosts[0].wait_commit.remote(g, 1, FIRST_COMMIT_TIMEOUT), FIRST_COMMIT_TIMEOUT + 5.0):
            # Not yet: the members stay (an election may just be slow); the next round sees a
            # leader and marks the group created. Tearing them down could drop what a client
            # already wrote through that leader.
            return "pending: the first leader has not committed its first entry yet"
        self._creation_done(g)  # the caller may go on: the group exists (a majority holds it)
        await asyncio.wait_for(cluster.mark_created.remote(_rid(), [g]), CALL_TIMEOUT)
        log.info("balancer: group %s: created with voters on %s", g, ", ".join(n[:12] for n in nodes))
        return "ok"

    async def _stop_started(self, g: str, nodes: list[str], started: list[Any]) -> None:
        await asyncio.gather(*(asyncio.wait_for(self._agent_call(n, "stop_member", g, mid), START_TIMEOUT)
                               for n, mid in zip(nodes, started, strict=True) if isinstance(mid, str)),
                             return_exceptions=True)

    # -- inspection ----------------------------------------------------------------------

    def process_info(self) -> dict[str, int]:
        """pid, RSS, USS and CPU time of the balancer's process (``procinfo.process_info``)."""
        from .procinfo import process_info

        return process_info()

    def last_round(self) -> RoundReport:
        return self._last

    def rounds(self) -> int:
        return self._rounds

    def planned(self, name: str) -> tuple[float, str, str] | None:
        """(when, the step planned or taken last, its outcome) for group ``name``."""
        return self._planned.get(name)

    async def explain(self, name: str) -> dict[str, Any]:
        """Desired members with each node's zone and rendezvous rank, actual members with
        their role and lag, the step the planner would take now and why: as the reconciler
        saw the group in its last round (a round is run first if none ran yet)."""
        from ..placement.rendezvous import node_hash

        if self._last_view is None or name not in self._last_view.groups:
            # Not seen yet (a group created by the fast path since the last round): look again.
            self.wake()
            await self.wait_round()
        view, cview = self._last_view, self._last_cview
        if view is None or cview is None:
            return {"group": name, "registered": None, "why": "the reconciler has not observed the fleet yet"}
        if name not in view.groups:
            return {"group": name, "registered": False}
        zone_of = {n: z for z, ns in view.active_nodes.items() for n in ns} | dict(view.draining)
        obs = self._last_obs.get(name, [])
        desired = view.layout.get(name, [])
        h = self._history.get(name)
        hist = History(h.no_leader_rounds, h.no_leader_since) if h else History()
        lead = planner._leader(obs)
        act = planner.plan(desired, obs, cview, created=name in view.created or lead is not None, history=hist,
                           now=time.monotonic(), election_timeout=view.groups[name].config.election_timeout)

        def rank(node: str) -> int | None:
            z = zone_of.get(node)
            if z is None or node not in view.active_nodes.get(z, []):
                return None
            return sorted(view.active_nodes[z], key=lambda n: (node_hash(n, name), n)).index(node)

        lead_st = lead.status if lead else None
        voters = set(lead_st["members"]) if lead_st else set()
        learners = set(lead_st.get("learners", ())) if lead_st else set()
        members = []
        for o in sorted(obs, key=lambda o: o.member):
            st = o.status
            members.append({
                "member": o.member, "node": o.node, "zone": zone_of.get(o.node),
                "role": st["state_name"] if st else "no answer",
                "kind": "voter" if o.member in voters else ("learner" if o.member in learners else "not in the configuration"),
                "applied_index": st["applied_index"] if st else None,
                "lag": (lead_st["commit_index"] - st["applied_index"]) if (st and lead_st) else None,
            })
        last = self._planned.get(name)
        return {
            "group": name,
            "registered": True,
            "observed_at": self._last.started,
            "n_replica": view.groups[name].n_replica,
            "desired": [{"node": n, "zone": zone_of.get(n), "rank": rank(n), "desired_leader": i == 0}
                        for i, n in enumerate(desired)],
            "members": members,
            "leader": lead.member if lead else None,
            "next_step": planner.describe(act),
            "last_step": {"at": last[0], "step": last[1], "outcome": last[2]} if last else None,
        }


async def kick_balancer(wake: bool = False) -> int:
    """Make sure the balancer exists and its loop runs (``wake``: and start a round now);
    returns its round count."""
    from .factory import balancer_handle

    b = balancer_handle()
    return await (b.wake.remote() if wake else b.ensure_running.remote())


__all__ = ["Balancer", "RoundReport", "kick_balancer"]
