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
5. reports groups seen with a leader (``mark_created``), their configurations
   (``record_configs``), groups found lost (``mark_lost``) or no longer lost, and draining
   nodes found empty (``node_drained``), and has every agent stop the members of removed
   groups.

The reconciler never removes a group (only ``remove_consensus_group`` does) and never infers
death from silence (CONVENTIONS §18): a group that cannot elect a leader because a majority
of its voters is definitely gone is restored from files when that is safe, else marked lost
and left to the operator's ``repair`` (below), which says what it may lose.

Every call it makes is bounded (the ``*_TIMEOUT`` constants; CONVENTIONS §16), and one
stuck group delays only itself: each group is planned in its own try/except, each step runs
as a task of its own that the round waits for at most ``ROUND_STEP_WAIT`` seconds, and a
group whose step is still running is left out of later rounds until it ends.

A round follows the previous one after ``balancing_interval`` seconds, or at once when
woken (a group added or removed, a node activated, deactivated or lost, a member's host
died), and soon again while the last round still had work. It keeps no state that
matters: a restarted balancer rebuilds everything from the ClusterActor and observation
(the little it remembers, how long a group has had no leader, only delays a restore or a
lost mark).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import cloudpickle

from ..placement import planner
from ..placement.bugs import CREATED_WITH_ONE_VOTER, LONE_MEMBER_UNSEEN, SILENCE_IS_DEATH
from ..placement.planner import (
    AddLearner,
    ClusterView,
    Config,
    Create,
    FileCopy,
    History,
    MarkLost,
    Nothing,
    Observed,
    Promote,
    RemoveMember,
    RepairPlan,
    Restore,
    StopMember,
    Transfer,
    Wait,
)
from . import env
from .cluster_state import CreationView, GroupSpec, ReconcileView
from .directory import get_directory
from .metrics import Metrics, process_metrics
from .names import node_prefix, node_prefix_of_member, parse_member_id
from .wire import (
    CreationOutcome,
    MemberObservation,
    RejectedReply,
    RepairOutcome,
    Reply,
    ValueReply,
    start_refusal,
)

log = logging.getLogger(__name__)

SOON = 0.2  # seconds to the next round while there is work
OBSERVE_TIMEOUT = 10.0
"""One agent's ``observe`` (a status call per host on its node)."""
CLUSTER_CALL_TIMEOUT = 10.0
"""One ClusterActor call: it checkpoints to the GCS before it answers, and may be restarting."""
AGENT_CALL_TIMEOUT = 15.0
"""One call that starts or stops a member through its node's agent (it may start a process,
and a stop waits until the retirement is durable)."""
CLEANUP_TIMEOUT = 60.0
"""An agent stopping every member of removed or unknown groups on its node, one by one."""
FILES_TIMEOUT = 30.0
"""An agent reading what its node's files hold (a whole log, the first time)."""
HOST_CALL_TIMEOUT = 10.0
"""One call on a member host (a status, a force-removal)."""
ADMIN_TIMEOUT = 10.0
"""One membership call on a group's leader (it answers at commit)."""
ADMIN_TRIES = 3
RAY_NODES_TIMEOUT = 10.0
"""Ray's node table (a GCS call on a thread)."""
STEP_TIMEOUT = 60.0
"""One step, every call it makes together."""
ROUND_STEP_WAIT = 10.0
"""How long a round waits for the steps it started; a step still running goes on, and keeps
its group out of later rounds until it ends: one stuck group delays only itself."""
REPAIR_WAIT = 60.0
"""How long ``repair`` waits for a step of the reconciler under way on the group."""
COMMIT_RECORD_INTERVAL = 5.0
"""Seconds between two records of the commit indexes seen (with the configurations, which
are recorded at once when they change): a lost mark measures what a recovery may lose against
them, a lower bound that must outlive this actor, but one write per command would cost too
much."""
START_TIMEOUT = 120.0
"""Seconds for an agent to start a member. In the default mode that is a new Ray actor, and
Ray starts worker processes one at a time per CPU of a node: a second each on a busy 2-core
machine, so tens of seconds while dozens start at once (12 groups of 3 on 3 nodes: 30 s)."""
BIRTH_GRACE = 20.0
"""Seconds a group's birth waits for its slower members' starts once a majority has started:
a start still running then counts as failed (the group is born with the members that started,
and the reconciler adds the others as learners)."""
BIRTH_CALL_TIMEOUT = 10.0
"""Seconds for a host to take a new member's first configuration (a method call)."""
BEGIN_TRIES = 3
"""A group birth's ``begin`` call is asked this many times (``BIRTH_CALL_TIMEOUT`` each) before
the birth fails: it is idempotent, and a lost one would leave the group without a leader."""
FIRST_COMMIT_TIMEOUT = 10.0
"""Seconds for a new group's leader to commit its first entry on a majority: an election and
one replication round, normally milliseconds."""


def _rid() -> str:
    return env.current().new_id()


def _pickled_error(cause: BaseException) -> bytes:
    """``cause`` pickled for the group's creator; one that does not survive the round trip
    (it does not pickle, or pickles but does not unpickle) as a RuntimeError naming it."""
    try:
        blob = cloudpickle.dumps(cause)
        cloudpickle.loads(blob)
        return blob
    except Exception:  # noqa: BLE001
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
        self._found_in_files: dict[str, dict[tuple, FileCopy]] = {}  # group -> its copies read so far
        self._newest_files: dict[str, FileCopy] = {}  # this round's look
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
        self._quarantined: list[tuple[str, str, str]] = []  # (group, node, member): this round's
        self._fast_tried: set[str] = set()  # groups the fast path tried once: rounds do the rest
        self._cluster_handle: Any = None  # this incarnation's handle of the ClusterActor
        self._inflight: dict[str, asyncio.Task] = {}  # group -> its step still running
        # group -> when its last step (or creation fast path) ended: a round that began
        # observing before then plans on a picture that step has made stale.
        self._acted_at: dict[str, float] = {}
        # Seconds spent in each phase of group births, in all (``creation_profile``).
        self._phases: Counter[str] = Counter()
        self._drain_said: dict[str, float] = {}  # node -> when a stuck drain was last explained
        self._node_work: dict[tuple[str, str], asyncio.Task] = {}  # (node, kind) -> cleanup running
        self._moves: asyncio.Semaphore | None = None  # max_moves_in_flight, across rounds
        self._node_moves: dict[str, asyncio.Semaphore] = {}  # max_moves_per_node
        self._recorded: dict[str, Config] = {}  # configurations this incarnation knows recorded
        self._recorded_commits: dict[str, int] = {}
        self._commits_recorded_at = -1e9
        self._last_configs: dict[str, Config] = {}  # the last round's view, for explain()
        self._last_files: dict[str, tuple[FileCopy, ...]] = {}

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

    async def wait_created(self, name: str, timeout: float) -> CreationOutcome:
        """Wake, and wait until group ``name`` has been created (a majority holds its first
        entry), its creation failed, or ``timeout`` seconds passed."""
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
            return CreationOutcome(False)
        finally:
            if self._created.get(name) is ev and ev.is_set():
                self._created.pop(name, None)
        err = self._create_error.pop(name, None)
        return CreationOutcome(err is None, err)

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
        self._phases["births"] += 1
        try:
            with self._phase("creation_view"):
                cv: CreationView | None = await self._cluster("creation_view", name)
            if cv is None or cv.created or cv.fleet_config.persistence_dir_parent is not None or not cv.desired:
                if cv is not None and cv.created:
                    self._creation_done(name)
                return
            nodes = sorted({n for ns in cv.active_nodes.values() for n in ns})
            with self._phase("members_of"):
                found = await asyncio.gather(
                    *(self._agent_call(n, "members_of", name, timeout=CLUSTER_CALL_TIMEOUT) for n in nodes),
                    return_exceptions=True)
            if any(isinstance(f, BaseException) or f for f in found):
                return  # a silent agent, or a member already there: the round decides
            act = Create(cv.desired[0], nodes=tuple(cv.desired))
            outcome = await self._do(name, cv.spec, act, None, ClusterView(frozenset(nodes), frozenset(), {}))
            self._metrics.reconcile_action("Create", outcome)
            self._planned[name] = (env.current().wall(), planner.describe(act), outcome)
        except Exception as exc:  # noqa: BLE001 - the round will retry; the caller still waits
            log.warning("balancer: group %s: creation fast path failed: %r", name, exc)
        finally:
            self._busy.discard(name)
            self._step_ended(name, None)
            if not (self._created.get(name) is None or self._created[name].is_set()):
                self.wake()  # not created: a round takes over

    async def wait_round(self, timeout: float = 60.0) -> int:
        """Wake and return once a round that started after this call has finished."""
        start = self._rounds
        self.wake()
        deadline = env.current().mono() + timeout
        while self._rounds < start + 2 and env.current().mono() < deadline:
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
        e = env.current()
        rep = RoundReport(started=e.wall())
        t0 = e.mono()
        view: ReconcileView = await self._cluster("reconcile_view")
        fleet = view.fleet_config
        persistent = fleet.persistence_dir_parent is not None
        alive, dead_ray = await _ray_nodes()
        zone_of = _zone_of(view)

        # 2. Dead nodes leave the desired state at once (Ray never revives a node id).
        for node in sorted(n for n in zone_of if n not in alive):
            log.warning("balancer: node %s is dead (Ray): purged, its members will be replaced", node[:12])
            try:
                await self._cluster("remove_node", _rid(), node, True)
                rep.dead_nodes.append(node)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("balancer: purging dead node %s failed: %r", node[:12], exc)
        if rep.dead_nodes:
            view = await self._cluster("reconcile_view")
            zone_of = _zone_of(view)

        # 3. Observe every live node that may run members (active, draining, or running
        # members anyway: any node with an agent).
        nodes = sorted(n for n in alive if n in zone_of)
        observed, answered, by_group, cview = await self._look(nodes, alive, dead_ray)
        now = e.mono()
        active = {n for ns in view.active_nodes.values() for n in ns}
        # Only while most active nodes answer can one silent node be told from the reconciler's
        # own trouble (a GCS hiccup silences every agent at once): draining them all would
        # take every group's placement away (found by the fleet simulator).
        heard_most = 2 * len(active & answered) > len(active)
        for node in nodes:
            if node in answered:
                self._silent_since.pop(node, None)
                continue
            since = self._silent_since.setdefault(node, now)
            if heard_most and now - since > fleet.node_purge_failure_time_window and node in active:
                # Drained, never purged: its members may be alive, so they move away through
                # their leaders (silence is not death).
                log.warning("balancer: the agent of node %s has not answered for %.0f s: draining it",
                            node[:12], now - since)
                try:
                    await self._cluster("deactivate_node", _rid(), node)
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("balancer: draining silent node %s failed: %r", node[:12], exc)

        # 4b. With persistence: groups found in files that the fleet does not know (a whole
        # cluster restarted, so the ClusterActor is new) are registered again, once per
        # node the balancer sees answer; they are restored only when that is safe (plan).
        if persistent and not view.cleanup_pending:
            try:
                await self._register_from_files(sorted(n for n in answered if n not in self._scanned), view)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("balancer: registering groups found in files failed: %r", exc)

        # 5a. Removed groups: every agent stops their members and acks (names become reusable).
        # Planning does not wait for it: a node's cleanup runs in the background, one at a
        # time per node, so a stuck agent holds up no round.
        if view.cleanup_pending:
            for n in answered:
                self._in_background(n, "cleanup", lambda n=n: self._agent_call(n, "cleanup_removed",
                                                                               timeout=CLEANUP_TIMEOUT))
        if not view.cleanup_pending:
            await self._stop_orphans(view, by_group)

        # 4. One step per group, each planned on its own (one bad group never stops the round).
        configs = await self._configs_of(view, by_group)
        files: dict[str, tuple[FileCopy, ...]] = {}
        if persistent and any(planner.wants_files(by_group.get(g, []), cview, configs.get(g), created=g in view.created)
                              for g in view.groups):
            files, read = await self._read_files(sorted(answered))
            cview = replace(cview, files_unread=frozenset(answered - read))
        self._last_obs, self._last_cview, self._last_view = by_group, cview, view
        self._last_configs, self._last_files = configs, files
        actions: list[tuple[str, GroupSpec, planner.Action, str | None]] = []
        acted_since: list[str] = []
        created_now: list[str] = []
        to_record: dict[str, Config] = {}
        commits: dict[str, int] = {}
        found_again: list[str] = []
        lost_now: dict[str, tuple[str, int]] = {}
        for g, spec in view.groups.items():
            if g in self._busy:
                continue  # the creation fast path is creating it now
            try:
                obs = by_group.get(g, [])
                lead = planner._leader(obs)
                if lead is not None:
                    assert lead.status is not None
                    config = (tuple(lead.status.members), tuple(lead.status.learners))
                    if self._recorded.get(g) != config:
                        to_record[g] = config
                    if lead.status.commit_index > self._recorded_commits.get(g, 0):
                        commits[g] = lead.status.commit_index
                    if g in view.lost:
                        found_again.append(g)  # a leader again: whatever happened, it is not lost
                if lead is not None and g not in view.created:
                    created_now.append(g)
                if (lead is not None or g in view.created) and g in self._created:
                    self._creation_done(g)  # created by an earlier incarnation, or seen leading
                step = self._inflight.get(g)
                if step is not None and not step.done():
                    rep.planned["InFlight"] += 1
                    continue  # its step still runs: planning again would step on it
                if step is not None or self._acted_at.get(g, -math.inf) >= t0:
                    # Its last step ended after this round began: what the round observed (and
                    # the view it read) predates that step. A birth that ended here was planned
                    # on as "never created, members without configuration", and a passive voter
                    # of the group just born was stopped (fleet simulator, chaos seed 4094). A
                    # step still listed as in flight but done ended just now (its callback is due).
                    rep.planned["Acted"] += 1
                    acted_since.append(g)
                    continue
                hist = self._history.setdefault(g, History())
                act = planner.plan(**self._plan_input(g, view, by_group, cview, configs, files), history=hist, now=now)
                rep.planned[type(act).__name__] += 1
                actionable = not isinstance(act, Nothing | Wait | MarkLost)
                if isinstance(act, MarkLost) and (g not in view.lost or view.lost[g].reason != act.why):
                    lost_now[g] = (act.why, hist.highest_commit)  # new, or its reason changed
                elif actionable:
                    actions.append((g, spec, act, lead.member if lead is not None else None))
                self._planned[g] = (e.wall(), planner.describe(act), "pending" if actionable else "-")
            except Exception:  # noqa: BLE001 - one group must never stop the round (CONVENTIONS §16)
                log.exception("balancer: group %s: planning failed; going on", g)
                rep.failures["plan"] += 1
        # Only steps that ended during this round matter to the next one.
        self._acted_at = {g: t for g, t in self._acted_at.items() if t >= t0}
        for g in list(self._history):
            if g not in view.groups:
                del self._history[g]
                self._planned.pop(g, None)
                self._recorded.pop(g, None)
                self._recorded_commits.pop(g, None)

        # What this round learnt goes to the ClusterActor, each report a bounded call of its own.
        if created_now:
            await self._report("mark_created", created_now)
        if now - self._commits_recorded_at < COMMIT_RECORD_INTERVAL:
            commits = {}
        if (to_record or commits) and await self._report("record_configs", to_record, commits):
            self._recorded.update(to_record)
            self._recorded_commits.update(commits)
            if commits:
                self._commits_recorded_at = now
        if found_again and await self._report("clear_lost", found_again):
            log.warning("balancer: group(s) %s lead again: no longer lost", ", ".join(found_again))
        if lost_now:
            ok = await self._report("mark_lost", lost_now)
            for g, (why, _) in lost_now.items():
                self._metrics.reconcile_action("MarkLost", "ok" if ok else "failed")
                log.error("balancer: group %s is LOST: %s. Kept; only an operator recovers it (raftfleet repair "
                          "%s --unsafe) or removes it", g, why, g)
        self._metrics.lost_groups(len((set(view.lost) - set(found_again)) | set(lost_now)))

        # What the files on the answering nodes could restore: asked once per round, and only
        # when a group is to be created (never once per group: one call per agent).
        self._newest_files = {}
        if persistent and any(isinstance(a[2], Create) for a in actions):
            self._newest_files = await self._newest_files_by_group(sorted(answered))
        await self._execute(actions, fleet, cview, rep)
        ok = sum(rep.actions.values()) - sum(rep.failures.values())
        self._idle_rounds = 0 if ok or rep.dead_nodes else min(self._idle_rounds + 1, 10)

        # Quarantined members that their group's configuration no longer holds: stopped (their
        # host keeps them, and reports them, until then).
        for g, node, mid in self._quarantined:
            lead = planner._leader(by_group.get(g, []))
            if g not in view.groups or (lead is not None and lead.status is not None
                                        and mid not in (*lead.status.members, *lead.status.learners)):
                self._in_background(node, f"stop {g}", lambda n=node, g=g, m=mid: self._agent_call(n, "stop_member", g, m))

        # 5b. Draining nodes found empty are inactive now: by their agent, or, for one that
        # does not answer, by every group's leader (none lists a member there). A group whose
        # leader is not seen may have one there (silence is not death): then nothing is known.
        leaders = {g: planner._leader(by_group.get(g, [])) for g in view.groups}
        every_group_led = all(ld is not None for ld in leaders.values())
        in_configs = {cview.node_of(m) for ld in leaders.values() if ld is not None
                      for m in (*ld.status.members, *ld.status.learners)}
        for node in view.draining:
            empty = not observed.get(node) if node in answered else (every_group_led and node not in in_configs)
            if empty:
                log.info("balancer: node %s is drained", node[:12])
                await self._report("node_drained", node)
            elif node not in answered and now - self._drain_said.get(node, -1e9) >= 30.0:
                # Said now and then: why a drain the operator waits for does not end.
                self._drain_said[node] = now
                unseen = sorted(g for g, ld in leaders.items() if ld is None)
                held = sorted(g for g, ld in leaders.items() if ld is not None and node in
                              {cview.node_of(m) for m in (*ld.status.members, *ld.status.learners)})
                log.warning("balancer: draining node %s, whose agent does not answer, is not empty yet: %s", node[:12],
                            "; ".join([f"no leader observed of {planner._names(unseen)}"] * bool(unseen)
                                      + [f"a member there is in the configuration of {planner._names(held)}"]
                                      * bool(held)))
        rep.groups = len(view.groups)
        rep.seconds = e.mono() - t0
        self._last = rep
        self._rounds += 1
        self._metrics.reconcile_round(rep.seconds)
        if rep.actions:
            log.info("balancer: round %d: %d groups, %s in %.2f s%s", self._rounds, rep.groups,
                     dict(rep.actions), rep.seconds, f", failures {dict(rep.failures)}" if rep.failures else "")
        # A group without a leader is watched closely (with the backoff) rather than at the
        # balancing interval: its restore or lost mark needs several observations spanning 2
        # election timeouts, and should follow within seconds of the failure.
        leaderless = any(h.no_leader_rounds for h in self._history.values())
        return bool(actions) or bool(rep.dead_nodes) or bool(acted_since) or leaderless, fleet.balancing_interval

    def _in_background(self, node: str, kind: str, start: Any) -> None:
        """Run ``start()`` (a bounded call) as a task, unless the last one of this kind for
        this node is still running; a failure is logged (the next round tries again)."""
        key = (node, kind)
        running = self._node_work.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(start())
        self._node_work[key] = task

        def done(t: asyncio.Task) -> None:
            if self._node_work.get(key) is t:
                del self._node_work[key]
            if not t.cancelled() and t.exception() is not None:
                log.info("balancer: %s on node %s failed: %r", kind, node[:12], t.exception())

        task.add_done_callback(done)

    async def _look(
        self, nodes: list[str], alive: set[str], dead_ray: set[str]
    ) -> tuple[dict[str, dict[str, MemberObservation]], set[str], dict[str, list[Observed]], ClusterView]:
        """Observe ``nodes`` (one bounded call per agent), and the members behind the agents
        that did not answer: (per-node answers, answering nodes, members per group, the
        cluster view the planner judges members by)."""
        observed, answered = await self._observe(nodes)
        by_group: dict[str, list[Observed]] = {}
        self._quarantined = []
        for node, members in observed.items():
            for g, o in members.items():
                if o.quarantine is not None:
                    # Its host answers that it takes no part in its group any more: gone, as a
                    # member its agent no longer lists (CONVENTIONS §18), so the planner
                    # replaces it through the leader; stopped once out of the configuration.
                    self._quarantined.append((g, node, o.member))
                    continue
                by_group.setdefault(g, []).append(Observed(o.member, node, o.status))
        prefixes = {node_prefix(n): n for n in alive | dead_ray}
        silent = {n for n in nodes if n not in answered}
        if silent and SILENCE_IS_DEATH not in env.current().bugs:  # planted: only answering agents' reports
            await self._observe_behind_silent_agents(by_group, silent, prefixes)
        return observed, answered, by_group, ClusterView(frozenset(answered), frozenset(dead_ray), prefixes)

    def _plan_input(
        self, g: str, view: ReconcileView, by_group: dict[str, list[Observed]], cview: ClusterView,
        configs: dict[str, Config], files: dict[str, tuple[FileCopy, ...]],
    ) -> dict[str, Any]:
        """Everything ``planner.plan`` takes for group ``g`` but its history and the time:
        the one place that builds it, for the round and for ``explain`` alike."""
        obs = by_group.get(g, [])
        return {
            "desired": view.layout.get(g, []),
            "observed": obs,
            "cluster": cview,
            "created": g in view.created or planner._leader(obs) is not None,
            "election_timeout": view.groups[g].config.election_timeout,
            "persistent": view.fleet_config.persistence_dir_parent is not None,
            "last_config": configs.get(g),
            "files": files.get(g, ()),
            "bugs": env.current().bugs,
        }

    async def _stop_orphans(self, view: ReconcileView, by_group: dict[str, list[Observed]]) -> None:
        """Members of groups the fleet does not know (e.g. left over by a balancer that crashed
        mid-action) are stopped, in the background. The round's view was read before its
        observation, and the creation fast path starts members of groups added since: so a
        group is an orphan only if the ClusterActor, asked after the observation, does not know
        it either, and the fast path is not creating it (a group is registered before any of
        its members starts)."""
        candidates = sorted(g for g in by_group if g not in view.groups and g not in self._busy)
        if not candidates:
            return
        try:
            unknown = set(await self._cluster("unknown_groups", candidates))
        except Exception as exc:  # noqa: BLE001 - unsure: stop nothing; the next round asks again
            log.warning("balancer: checking %d unknown group(s) failed: %r", len(candidates), exc)
            return
        orphans: dict[str, list[str]] = {}
        for g in sorted(unknown - self._busy):
            for o in by_group[g]:
                orphans.setdefault(o.node, []).append(g)
        for n, gs in orphans.items():
            self._in_background(n, "orphans", lambda n=n, gs=gs: self._agent_call(n, "stop_members", gs,
                                                                                  timeout=CLEANUP_TIMEOUT))

    async def _configs_of(self, view: ReconcileView, by_group: dict[str, list[Observed]]) -> dict[str, Config]:
        """The recorded last configurations of the groups without a leader now (the only
        ones the planner judges by it: one call, for those only)."""
        leaderless = sorted(g for g in view.groups if planner._leader(by_group.get(g, [])) is None)
        if not leaderless:
            return {}
        try:
            configs = await self._cluster("configs_of", leaderless)
        except Exception as exc:  # noqa: BLE001 - what this incarnation recorded itself will do
            log.warning("balancer: reading the recorded configurations failed: %r", exc)
            return {g: self._recorded[g] for g in leaderless if g in self._recorded}
        self._recorded.update(configs)
        return configs

    async def _report(self, method: str, *args: Any) -> bool:
        """A report to the ClusterActor (a new request id); False if it failed (logged: the
        next round reports again what it sees then)."""
        try:
            await self._cluster(method, _rid(), *args)
            return True
        except Exception as exc:  # noqa: BLE001 - level-triggered: the next round sees it again
            log.warning("balancer: %s failed: %r", method, exc)
            return False

    async def _cluster(self, method: str, *args: Any, timeout: float = CLUSTER_CALL_TIMEOUT) -> Any:
        """One call to the ClusterActor, bounded (its handle is looked up on a thread, once
        per incarnation of this actor, again after a failure)."""

        async def call() -> Any:
            if self._cluster_handle is None:
                e = env.current()
                self._cluster_handle = await e.in_thread(e.cluster_actor)
            return await getattr(self._cluster_handle, method).remote(*args)

        try:
            return await asyncio.wait_for(call(), timeout)
        except Exception:
            self._cluster_handle = None  # restarting, or gone: look it up again next time
            raise

    async def _observe(self, nodes: list[str]) -> tuple[dict[str, dict[str, MemberObservation]], set[str]]:
        directory = get_directory()

        async def ask(node: str) -> dict | None:
            agent = await directory.agent(node)
            return None if agent is None else await agent.observe.remote()

        async def one(node: str) -> tuple[str, dict | None]:
            try:  # the lookup included: Ray's node table or a lookup may hang too
                return node, await asyncio.wait_for(ask(node), OBSERVE_TIMEOUT)
            except Exception:  # noqa: BLE001 - dead, restarting, stuck, or unsure: silent
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
        members report and the last configuration recorded of each group (a 1-member group
        on that node has no other member to report it), one call per host."""
        wanted: dict[str, dict[str, str]] = {}  # host -> {group: member id}
        recorded = {} if LONE_MEMBER_UNSEEN in env.current().bugs else self._recorded  # planted (placement/bugs.py)
        known: dict[str, list[tuple[str, ...]]] = {g: [cfg[0], cfg[1]] for g, cfg in recorded.items()}
        for g, obs in by_group.items():
            for o in obs:
                st = o.status
                if st is not None:
                    known.setdefault(g, []).append((*st.members, *st.learners,
                                                    *([st.leader] if st.leader else [])))
        for g, lists in known.items():
            seen = {o.member for o in by_group.get(g, [])}
            for m in {m for ms in lists for m in ms}:
                if m not in seen and prefixes.get(node_prefix_of_member(m)) in silent:
                    wanted.setdefault(parse_member_id(m)[0], {})[g] = m
        async def ask(host: str, groups: dict[str, str]) -> None:
            try:
                sts = await self._host_call(host, "statuses", sorted(groups), True, timeout=OBSERVE_TIMEOUT)
            except Exception:  # noqa: BLE001 - that host is gone or stuck: unknown
                return
            for g, mid in groups.items():
                st = sts.get(g)
                if st is not None and st.from_ == mid:
                    quarantined = st.quarantine is not None  # as in the round: status unknown
                    by_group.setdefault(g, []).append(
                        Observed(mid, prefixes[node_prefix_of_member(mid)], None if quarantined else st))

        await asyncio.gather(*(ask(h, gs) for h, gs in wanted.items()))

    async def _register_from_files(self, nodes: list[str], view: ReconcileView) -> None:
        """Register the groups found in the files of ``nodes`` that the fleet does not know
        (the whole fleet restarted over its disks): as *created*, with the configuration their
        newest file ends with, so that they are only ever restored, and only safely (a
        majority of that configuration's files; ``planner.plan``), never started empty."""
        if not nodes:
            return
        files, read = await self._read_files(nodes)
        self._scanned |= read
        for g, copies in files.items():  # gathered over rounds: the nodes come back one by one
            found = self._found_in_files.setdefault(g, {})
            found.update({(c.member, c.node, c.source): c for c in copies})
        known = set(view.groups)
        for g, by_key in sorted(self._found_in_files.items()):
            copies = tuple(by_key.values())
            if g in known:
                del self._found_in_files[g]  # registered (by us or by the user): nothing to keep
                continue
            # Judged only once the files of a majority of the newest configuration are read:
            # the copy read first may be the one member a removal had not retired yet, while
            # the others, on machines not back yet, say the group was removed (the fleet
            # simulator found a removed group coming back so after a whole-cluster restart).
            newest_config = max(copies, key=lambda c: (c.term, c.index)).config[0]
            seen = {c.member for c in copies}
            if newest_config and not planner.meets_every_quorum(sum(v in seen for v in newest_config), len(newest_config)):
                continue
            # Retired ties win: a member is retired (durably) when its group is removed, at
            # the group's last position. A group whose newest copy is retired was removed:
            # never brought back (issue 14 finding 2). (ClusterState refuses, too, a name
            # removed while it lived.)
            # Retired by a majority of that configuration also means removed: the leader may
            # have appended past the followers before it was stopped, so its copy can be the
            # newest and still unretired (remove_consensus_group waits for the retirements).
            newest = max(copies, key=lambda c: (c.term, c.index, c.retired))
            retired = {c.member for c in copies if c.retired}
            if newest_config and 2 * sum(v in retired for v in newest_config) > len(newest_config):
                continue
            if newest.retired or newest.source[0] != "dir":
                continue
            n_replica = max(c.n_replica for c in copies if not c.retired) or 3
            try:
                config = await self._agent_call(newest.node, "config_of", newest.source, g, timeout=FILES_TIMEOUT)
                registered = await self._cluster("register_found_group", _rid(), g, n_replica, config, newest.config)
            except Exception as exc:  # noqa: BLE001 - e.g. unreadable: said, and the others go on
                log.warning("balancer: group %s found in files on %s not registered: %r", g, newest.node[:12], exc)
                continue
            if not registered:
                log.info("balancer: files of group %s on node %s ignored: it was removed (or is known)", g,
                         newest.node[:12])
                continue
            known.add(g)
            log.warning("balancer: group %s (n_replica=%d) found in files on node %s: registered, to be restored "
                        "once the files of a majority of its last configuration can be read", g, n_replica,
                        newest.node[:12])

    async def _read_files(self, nodes: list[str]) -> tuple[dict[str, tuple[FileCopy, ...]], set[str]]:
        """What the files on ``nodes`` hold, per group (one bounded call per agent), and the
        nodes that answered."""
        found = await asyncio.gather(*(self._agent_call(n, "restorable", timeout=FILES_TIMEOUT) for n in nodes),
                                     return_exceptions=True)
        out: dict[str, list[FileCopy]] = {}
        read: set[str] = set()
        for node, f in zip(nodes, found, strict=True):
            if isinstance(f, BaseException):
                log.info("balancer: the files of node %s could not be read: %r", node[:12], f)
                continue
            read.add(node)
            for g, copies in f.items():
                out.setdefault(g, []).extend(copies)
        return {g: tuple(c) for g, c in out.items()}, read

    async def _newest_files_by_group(self, answered: list[str]) -> dict[str, FileCopy]:
        """The newest files of every group restorable from the answering nodes."""
        files, _ = await self._read_files(answered)
        best: dict[str, FileCopy] = {}
        for g, copies in files.items():
            for c in copies:
                if g not in best or (c.term, c.index) > (best[g].term, best[g].index):
                    best[g] = c
        return best

    async def _restore_source(self, g: str) -> Any:
        """The durable state of the newest files of ``g`` (this round's look), or None."""
        newest = self._newest_files.get(g)
        if newest is None:
            return None
        return await self._agent_call(newest.node, "restore_state", newest.source, g, timeout=FILES_TIMEOUT)

    async def _agent_call(self, node: str, method: str, *args: Any, timeout: float = AGENT_CALL_TIMEOUT) -> Any:
        """One call to a node's agent, its lookup included, bounded by ``timeout``."""

        async def call() -> Any:
            agent = await get_directory().agent(node)
            if agent is None:
                raise RuntimeError(f"node {node[:12]} has no agent")
            return await getattr(agent, method).remote(*args)

        return await asyncio.wait_for(call(), timeout)

    async def _host_call(self, host: str, method: str, *args: Any, timeout: float = HOST_CALL_TIMEOUT) -> Any:
        """One call to a member host, its lookup included, bounded by ``timeout``."""

        async def call() -> Any:
            handle = await get_directory().host(host)
            if handle is None:
                raise RuntimeError(f"host {host} is gone")
            return await getattr(handle, method).remote(*args)

        return await asyncio.wait_for(call(), timeout)

    async def _admin(self, group: str, op: str, *args: Any, leader_hint: str | None = None,
                     tries: int = ADMIN_TRIES) -> Reply:
        """A membership call (add_learner, promote_learner, remove_member,
        transfer_leadership) on the leader of ``group``, following not-leader hints and
        waiting out an uncommitted membership change; every call bounded."""
        directory = get_directory()
        lead = leader_hint
        for _ in range(tries):
            if lead is None:
                lead, _ = await asyncio.wait_for(directory.find_leader(group), ADMIN_TIMEOUT)
                if lead is None:
                    await asyncio.sleep(0.2)
                    continue
            try:
                res = await self._host_call(parse_member_id(lead)[0], "admin", group, op, *args, timeout=ADMIN_TIMEOUT)
            except RuntimeError:  # its host is gone: find the leader again
                lead = None
                continue
            if isinstance(res, RejectedReply) and res.reason in ("not_leader", "leadership_lost"):
                lead = res.leader if res.leader and res.leader != lead else None
                if lead is None:
                    await asyncio.sleep(0.2)
                continue
            if isinstance(res, RejectedReply) and res.reason == "uncommitted_membership_change":
                await asyncio.sleep(0.2)
                continue
            return res
        return RejectedReply("not_leader")

    # -- carrying out actions ------------------------------------------------------------

    async def _execute(self, actions: list, fleet: Any, cview: ClusterView, rep: RoundReport) -> None:
        """Start each step as a task of its own, at most ``max_moves_in_flight`` at once (and
        ``max_moves_per_node`` per node) across rounds, and wait for them at most
        ``ROUND_STEP_WAIT`` seconds: a step still running goes on, and its group stays out of
        the next rounds until it ends (CONVENTIONS §16: one stuck group delays only itself)."""
        if self._moves is None:
            self._moves = asyncio.Semaphore(fleet.max_moves_in_flight)
        loop = asyncio.get_running_loop()
        tasks = []
        for g, spec, act, leader in actions:
            task = loop.create_task(self._run_step(g, spec, act, leader, cview, fleet, rep))
            self._inflight[g] = task
            task.add_done_callback(lambda t, g=g: self._step_ended(g, t))
            tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=ROUND_STEP_WAIT)

    def _step_ended(self, g: str, task: asyncio.Task | None) -> None:
        self._acted_at[g] = env.current().mono()
        if task is not None and self._inflight.get(g) is task:
            self._inflight.pop(g)

    async def _run_step(self, g: str, spec: GroupSpec, act: planner.Action, leader: str | None, cview: ClusterView,
                        fleet: Any, rep: RoundReport) -> None:
        node = getattr(act, "node", None) or (cview.node_of(act.member) if hasattr(act, "member") else None)
        key = node or "?"
        if key not in self._node_moves:
            self._node_moves[key] = asyncio.Semaphore(fleet.max_moves_per_node)
        assert self._moves is not None
        async with self._moves, self._node_moves[key]:
            kind = type(act).__name__
            try:
                outcome = await asyncio.wait_for(self._do(g, spec, act, leader, cview), STEP_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - one group must never stop the round
                outcome = f"failed: {exc!r}"[:300]
                log.warning("balancer: group %s: %s failed: %r", g, planner.describe(act), exc)
            self._metrics.reconcile_action(kind, outcome)
            rep.actions[kind] += 1
            if outcome != "ok":
                rep.failures[kind] += 1
            self._planned[g] = (env.current().wall(), planner.describe(act), outcome)

    async def _do(self, g: str, spec: GroupSpec, act: planner.Action, leader: str | None, cview: ClusterView) -> str:
        if isinstance(act, Create):
            restore = None
            if self._last_view is not None and self._last_view.fleet_config.persistence_dir_parent is not None:
                # raft_fleet: a group added again starts from the newest of its files.
                restore = await self._restore_source(g)
            return await self._birth(g, spec, list(act.nodes or (act.node,)), restore)
        if isinstance(act, Restore):
            # Safe (planner.plan): the newest files of a majority of its last configuration,
            # and no member of it runs or may run.
            state = await self._agent_call(act.node, "restore_state", act.source, g, timeout=FILES_TIMEOUT)
            if state is None:
                return "refused: the files to restore from are gone"
            # No longer lost from here: its new incarnation starts (if it fails to, the next
            # round finds it lost again).
            await self._cluster("clear_lost", _rid(), [g])
            outcome = await self._birth(g, spec, list(act.nodes or (act.node,)), state)
            if outcome == "ok":
                log.warning("balancer: group %s: restored from the files of %s on node %s (index %d, term %d)", g,
                            act.member, act.node[:12], act.index, act.term)
            return outcome
        if isinstance(act, AddLearner):
            joiner = await self._agent_call(act.node, "start_member", g, spec.config, False, spec.n_replica)
            # promote=True: the leader makes it a voter the moment it has caught up, not a round
            # later (meanwhile the group has a voter fewer than it should).
            res = await self._admin(g, "add_learner", joiner, True, leader_hint=leader)
            if not isinstance(res, ValueReply):
                await self._agent_call(act.node, "stop_member", g, joiner)  # no orphan left behind
                return f"refused: {_refusal(res)}"
            return "ok"
        if isinstance(act, Promote | RemoveMember | Transfer):
            op = {Promote: "promote_learner", RemoveMember: "remove_member", Transfer: "transfer_leadership"}[type(act)]
            res = await self._admin(g, op, act.member, leader_hint=leader)
            if not isinstance(res, ValueReply):
                return f"refused: {_refusal(res)}"
            if isinstance(act, RemoveMember):
                node = cview.node_of(act.member)
                if node in cview.answered:
                    await self._agent_call(node, "stop_member", g, act.member)
            return "ok"
        if isinstance(act, StopMember):
            await self._agent_call(act.node, "stop_member", g, act.member)
            return "ok"
        return "nothing"

    async def _birth(self, g: str, spec: GroupSpec, nodes: list[str], restore: Any = None) -> str:
        """A group born whole (DESIGN §3, group birth): a voter on each of its desired
        ``nodes`` (up to n_replica), started in parallel as passive members; then every one
        gets the whole first configuration and the desired leader campaigns at once; the group
        is created once its leader committed its first entry, i.e. a majority holds it durably.
        (raft_fleet starts the leader alone and adds followers later: on Ray that left
        acknowledged writes on one node for seconds, and a node death in that window lost them.)

        ``restore`` (a ``DurableState`` read from files): a restore is born whole too. The
        leader starts from it and the other voters, left passive (they never campaign), get it
        from the leader, so the group acknowledges nothing until a majority of its new
        configuration holds the restored state (a restore on one voter, then lost with that node, would roll back acknowledged
        writes and bring a second incarnation from older files)."""
        nodes = list(nodes[: spec.n_replica])
        if CREATED_WITH_ONE_VOTER in env.current().bugs:  # planted (placement/bugs.py): followers come later
            nodes = nodes[:1]
        with self._phase("start_members"):
            started = await self._start_members(g, spec, nodes)
        voters = [mid for mid in started if isinstance(mid, str)]
        failures = [e for e in started if isinstance(e, BaseException)]
        if len(voters) < len(nodes) // 2 + 1:
            # Fewer than a majority of the first configuration could start: none is kept (a
            # member of a configuration that names members which never started could never
            # elect). Nothing was acknowledged: the next round tries again.
            await self._stop_started(g, nodes, started)
            # Only an error of the group itself (its Data class cannot be built, say) is its
            # caller's answer; a timeout or a node going away is the fleet's trouble: retried.
            definite = [c for c in map(start_refusal, failures) if c is not None]
            if not voters and definite:
                blob = _pickled_error(definite[0])
                await self._cluster("set_group_error", _rid(), g, blob)
                self._creation_done(g, blob)
                raise definite[0]
            return f"failed: {len(failures)} of {len(nodes)} members did not start ({failures[0]!r})"[:300]
        lead = voters[0]  # the desired leader's node comes first, unless it failed to start
        directory = get_directory()
        with self._phase("host_lookup"):
            hosts = await asyncio.gather(*(directory.host(parse_member_id(m)[0]) for m in voters))
        if any(h is None for h in hosts):
            await self._stop_started(g, nodes, started)
            return "failed: a new member's host could not be found"
        if restore is not None:
            # The new incarnation's configuration is recorded before it can act: the old one,
            # recorded last, names only dead members, and a round that then sees none of the
            # new members (their agents silent) would judge the group by it alone: lost, or
            # restored a second time beside the first (fleet simulator, chaos seed 2020).
            try:
                await self._cluster("record_configs", _rid(), {g: (tuple(voters), ())})
            except Exception as exc:  # noqa: BLE001 - nothing was begun: nothing acknowledged, retried
                await self._stop_started(g, nodes, started)
                return f"failed: recording the new configuration: {exc!r}"[:300]
            self._recorded[g] = (tuple(voters), ())
        # All at once: a follower that hears the leader before its own call only voted or took
        # the leader's no-op, which carries the same configuration (RaftNode.bootstrap).
        # A restore: only the leader gets the configuration (with the restored state); the
        # others stay passive, so none of them can campaign and lead with an empty log.
        async def begin(m: str, h: Any) -> int:
            # Asked again when its answer does not come in time: begin is idempotent, and a
            # lost begin of the leader would leave the new group with no member that campaigns
            # (fleet simulator, chaos seed 4061 with persistence: a restore stuck for good).
            for attempt in range(BEGIN_TRIES):
                try:
                    return await asyncio.wait_for(h.begin.remote(g, voters, m == lead, restore if m == lead else None),
                                                  BIRTH_CALL_TIMEOUT)
                except TimeoutError:
                    if attempt == BEGIN_TRIES - 1:
                        raise
            raise AssertionError("unreachable")

        with self._phase("begin"):
            firsts = await asyncio.gather(*(begin(m, h) for m, h in zip(voters, hosts, strict=True)
                                            if restore is None or m == lead))
        with self._phase("first_commit"):
            committed = await asyncio.wait_for(hosts[0].wait_commit.remote(g, firsts[0], FIRST_COMMIT_TIMEOUT),
                                               FIRST_COMMIT_TIMEOUT + 5.0)
        if not committed:
            # Not yet: the members stay (an election may just be slow); the next round sees a
            # leader and marks the group created. Tearing them down could drop what a client
            # already wrote through that leader.
            return "pending: the first leader has not committed its first entry yet"
        self._creation_done(g)  # the caller may go on: the group exists (a majority holds it)
        with self._phase("mark_created"):
            await self._cluster("mark_created", _rid(), [g])
        log.info("balancer: group %s: %s with voters on %s", g, "restored" if restore is not None else "created",
                 ", ".join(n[:12] for n in nodes))
        return "ok"

    async def _start_members(self, g: str, spec: GroupSpec, nodes: list[str]) -> list[Any]:
        """Start a passive member of ``g`` on each of ``nodes`` in parallel: each one's member
        id, or the exception its start failed with. Once a majority has started, the others
        get ``BIRTH_GRACE`` seconds more: a start still running then counts as failed (a stuck
        agent or host must not hold a group's birth for ``START_TIMEOUT``: the fleet simulator
        saw a creation wait past its caller's deadline), and the member it may still start is
        stopped when it does (the reconciler adds that node's member later, as a learner)."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._agent_call(n, "start_member", g, spec.config, False, spec.n_replica,
                                                   timeout=START_TIMEOUT)) for n in nodes]
        need = len(nodes) // 2 + 1
        pending: set[asyncio.Task] = set(tasks)
        grace_end: float | None = None
        while pending:
            ok = sum(1 for t in tasks if t.done() and not t.cancelled() and t.exception() is None)
            if ok >= need and grace_end is None:
                grace_end = loop.time() + BIRTH_GRACE
            left = None if grace_end is None else grace_end - loop.time()
            if left is not None and left <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        out: list[Any] = []
        for n, t in zip(nodes, tasks, strict=True):
            if t in pending:
                out.append(TimeoutError(f"the start on node {n[:12]} took more than {BIRTH_GRACE:.0f} s after a "
                                        "majority had started"))
                t.add_done_callback(lambda t, n=n: self._stop_late(g, n, t))
            else:
                out.append(t.exception() or t.result())
        return out

    def _stop_late(self, g: str, node: str, task: asyncio.Task) -> None:
        """A member whose start outlasted its group's birth: stopped once it has started (it is
        in no configuration: the group was born without it)."""
        if task.cancelled() or task.exception() is not None:
            return
        mid = task.result()
        self._in_background(node, f"stop late {g}", lambda: self._agent_call(node, "stop_member", g, mid))

    async def _stop_started(self, g: str, nodes: list[str], started: list[Any]) -> None:
        await asyncio.gather(*(self._agent_call(n, "stop_member", g, mid, timeout=START_TIMEOUT)
                               for n, mid in zip(nodes, started, strict=True) if isinstance(mid, str)),
                             return_exceptions=True)

    # -- inspection ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        t = env.current().mono()
        try:
            yield
        finally:
            self._phases[name] += env.current().mono() - t

    def creation_profile(self) -> dict[str, float]:
        """Seconds spent in each phase of group births since this actor started, in all, and
        ``births``: how many fast-path creations began (``benchmarks.creation`` reports it)."""
        return dict(self._phases)

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
        zone_of = _zone_of(view)
        obs = self._last_obs.get(name, [])
        desired = view.layout.get(name, [])
        h = self._history.get(name)
        hist = History(h.no_leader_rounds, h.no_leader_since, h.highest_commit) if h else History()
        lead = planner._leader(obs)
        # From exactly what the round planned with (the same inputs, built by the same
        # function), on a copy of the group's history: the step the round would take now.
        inputs = self._plan_input(name, view, self._last_obs, cview, self._last_configs, self._last_files)
        act = planner.plan(**inputs, history=hist, now=env.current().mono())
        step = self._inflight.get(name)
        in_flight = step is not None and not step.done()

        def rank(node: str) -> int | None:
            z = zone_of.get(node)
            if z is None or node not in view.active_nodes.get(z, []):
                return None
            return sorted(view.active_nodes[z], key=lambda n: (node_hash(n, name), n)).index(node)

        lead_st = lead.status if lead else None
        voters = set(lead_st.members) if lead_st else set()
        learners = set(lead_st.learners) if lead_st else set()
        members = []
        for o in sorted(obs, key=lambda o: o.member):
            st = o.status
            members.append({
                "member": o.member, "node": o.node, "zone": zone_of.get(o.node),
                "role": st.state_name if st else "no answer",
                "kind": "voter" if o.member in voters else ("learner" if o.member in learners else "not in the configuration"),
                "applied_index": st.applied_index if st else None,
                "lag": (lead_st.commit_index - st.applied_index) if (st and lead_st) else None,
            })
        last = self._planned.get(name)
        mark = view.lost.get(name)
        return {
            "group": name,
            "registered": True,
            "observed_at": self._last.started,
            "n_replica": view.groups[name].n_replica,
            "desired": [{"node": n, "zone": zone_of.get(n), "rank": rank(n), "desired_leader": i == 0}
                        for i, n in enumerate(desired)],
            "members": members,
            "leader": lead.member if lead else None,
            "lost": {"reason": mark.reason, "since": mark.since, "highest_commit_index": mark.highest_commit}
            if mark else None,
            "next_step": ("in flight: " + last[1]) if in_flight and last else planner.describe(act),
            "last_step": {"at": last[0], "step": last[1], "outcome": last[2]} if last else None,
        }

    # -- the operator's recovery of a lost group -------------------------------------------

    async def repair(self, name: str, unsafe: bool = False) -> RepairOutcome:
        """Recover lost group ``name`` (``repair_consensus_group``): from its most up-to-date
        voter still running, else from the newest files on the answering nodes, else afresh
        (``planner.plan_repair``), never beside a member that may still run. Unsafe: what it
        keeps may lack acknowledged entries, and the answer says how many at least.

        Returns a ``RepairOutcome``: ``"repaired"`` with the plan carried out,
        ``"refused"`` with the reason and the plan (the group is not lost; or ``unsafe`` is
        False: nothing is done, the plan says what would be), ``"not_found"``, or
        ``"failed"`` (a call failed midway: the group stays lost; run it again).

        Under the round lock, after any step of a round on the group has ended: the planner
        never acts on a group while it is being repaired."""
        self.ensure_running()
        assert self._round_lock is not None
        async with self._round_lock:
            step = self._inflight.get(name)
            if step is not None and not step.done():
                await asyncio.wait([step], timeout=REPAIR_WAIT)
                if not step.done():
                    return RepairOutcome("refused", "a step of the reconciler on this group is still running; "
                                                    "try again shortly")
            view: ReconcileView = await self._cluster("reconcile_view")
            if name not in view.groups:
                return RepairOutcome("not_found")
            mark = view.lost.get(name)
            if mark is None:
                return RepairOutcome("refused", "the group is not lost (it has a leader, or may still elect one: "
                                                "no majority of its voters is known dead); nothing to repair. "
                                                "`raftfleet explain` shows what the reconciler sees")
            plan, answered = await self._repair_plan(name, view, mark.highest_commit)
            if plan.blocked:
                return RepairOutcome("refused", plan.describe(), plan)
            if not unsafe:
                return RepairOutcome("refused", f"it would {plan.describe()}. That is unsafe: rerun with "
                                                f"unsafe=True (`raftfleet repair {name} --unsafe`) to do it", plan)
            try:
                await self._carry_out_repair(name, view, plan, answered)
            except Exception as exc:  # noqa: BLE001 - said to the operator, who may run it again
                log.error("balancer: group %s: repair failed midway: %r", name, exc)
                self._metrics.reconcile_action("Repair", "failed")
                return RepairOutcome("failed", f"{exc!r}"[:300], plan)
            self._history.pop(name, None)
            self._metrics.reconcile_action("Repair", "ok")
            log.error("balancer: group %s repaired by the operator: %s", name, plan.describe())
        self.wake()
        return RepairOutcome("repaired", mark.reason, plan, mark.since)

    async def _repair_plan(self, name: str, view: ReconcileView, highest_commit: int) -> tuple[RepairPlan, set[str]]:
        """A fresh look at the group (every node's agent, the files on the answering ones):
        the plan it gives, and the nodes that answered."""
        alive, dead_ray = await _ray_nodes()
        nodes = sorted(n for n in alive if n in _zone_of(view))
        _, answered, by_group, cview = await self._look(nodes, alive, dead_ray)
        configs = await self._cluster("configs_of", [name])
        files: tuple[FileCopy, ...] = ()
        if view.fleet_config.persistence_dir_parent is not None:
            found, _ = await self._read_files(sorted(answered))
            files = found.get(name, ())
        h = self._history.get(name)
        seen = max(highest_commit, h.highest_commit if h else 0)
        return planner.plan_repair(by_group.get(name, []), cview, configs.get(name), files, seen), answered

    async def _carry_out_repair(self, name: str, view: ReconcileView, plan: RepairPlan, answered: set[str]) -> None:
        """Stop first, then recover: a new incarnation starts only once every member of the
        old one is stopped (never two at once)."""
        spec = view.groups[name]
        for member, node in plan.stop:
            await self._agent_call(node, "stop_member", name, member)
        state = None
        if plan.source == "survivor":
            assert plan.member is not None
            host = parse_member_id(plan.member)[0]
            for m in plan.force_remove:
                await self._host_call(host, "force_remove_member", name, m)
        elif plan.source == "files":
            assert plan.node is not None and plan.file_source is not None
            state = await self._agent_call(plan.node, "restore_state", plan.file_source, name, timeout=FILES_TIMEOUT)
            if state is None:
                raise RuntimeError(f"the files of {plan.member} on node {plan.node[:12]} are gone")
        if plan.source != "survivor":
            desired = [n for n in view.layout.get(name, []) if n in answered] or sorted(answered)
            if not desired:
                raise RuntimeError("no answering node to start the group on")
            outcome = await self._birth(name, spec, desired, state)
            if not outcome.startswith(("ok", "pending")):
                raise RuntimeError(f"the group could not be started again: {outcome}")
        await self._cluster("clear_lost", _rid(), [name])


async def _ray_nodes() -> tuple[set[str], set[str]]:
    """(alive, dead) node ids from Ray's node table, the one source of node death (a GCS call
    on a thread, bounded)."""
    e = env.current()
    nodes = await asyncio.wait_for(e.in_thread(e.nodes), RAY_NODES_TIMEOUT)
    return {n["NodeID"] for n in nodes if n.get("Alive")}, {n["NodeID"] for n in nodes if not n.get("Alive")}


def _refusal(res: Reply) -> str:
    """Why an admin call did not succeed, in a word (a core reason) or its reply."""
    return res.reason if isinstance(res, RejectedReply) else repr(res)


def _zone_of(view: ReconcileView) -> dict[str, str]:
    """``{node: zone}`` of the active and draining nodes."""
    return {n: z for z, ns in view.active_nodes.items() for n in ns} | dict(view.draining)


async def kick_balancer(wake: bool = False) -> int:
    """Make sure the balancer exists and its loop runs (``wake``: and start a round now);
    returns its round count."""
    b = env.current().balancer()
    return await (b.wake.remote() if wake else b.ensure_running.remote())


__all__ = ["Balancer", "RoundReport", "kick_balancer"]
