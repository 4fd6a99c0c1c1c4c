"""A deterministic simulator for one Raft group: fake network, disks and clock, seeded faults.

One integer seed decides everything: the fault mix (unless forced), the cluster size, the
core configuration, every fault rate, every message delay, every crash. All randomness
comes from one ``random.Random(seed)``; nothing reads the wall clock, iterates a set or
hashes a string into an order, so a seed replays exactly (TigerBeetle's VOPR, FoundationDB's
simulation). A run has two phases:

1. *faults* (a few hundred time units): messages are delayed, dropped, duplicated and
   reordered; partitions come and go; members crash (issued writes survive) or lose power
   (only a prefix of the unsynced writes survives) and restart from their disk; disks turn
   slow; members are added and removed; leadership is transferred; and faults are aimed at
   the dangerous moments (right after an acknowledgement, a vote, an election, a reply).
2. *heal*: everything is restarted and reconnected, and the group must converge: one
   leader, every client answered, every member at the same applied index.

Raft's safety properties are checked after every event (:mod:`.sim_checker`), plus a
direct durability check (a leader commits only what a majority holds on disk), liveness
at the end, and the clients' history must be linearizable (:mod:`.linearizability`).
The pieces: :mod:`.sim_faults` (mixes and the per-seed plan), :mod:`.sim_injector`
(random and targeted faults, admin traffic), :mod:`.sim_disk` (the fake disks),
:mod:`.sim_clients` (the workload). A failure raises :class:`SimViolation` with the seed, the event number, the last events and
the one-line command that replays it::

    python -m raftfleet_ray.testing.simulator --seed 1234 --mix crashes
    python -m raftfleet_ray.testing.simulator --seeds 0:1000 --jobs 2

A run whose linearizability search runs out of budget is *inconclusive*: reported, never
counted as a pass. A seed range (:func:`run_seeds`, ``--seeds``) lists its inconclusive seeds
with their count and share, and fails when more than 1% of them are inconclusive.

Library use::

    from raftfleet_ray.testing.simulator import Simulator, run_seeds
    result = Simulator(seed=7, mix="chaos").run()   # raises SimViolation on a failure
    found = run_seeds(range(0, 500), jobs=2)         # truthy iff the range passed
    assert found, found.summary()
"""

from __future__ import annotations

import argparse
import heapq
import logging
import pickle
import random
import sys
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from raftfleet_ray.raft.types import (
    AppendEntries,
    AppendEntriesResponse,
    EntryKind,
    InstallSnapshot,
    Ok,
    Ready,
    Reply,
    RequestVote,
    RequestVoteResponse,
    SessionId,
)
from raftfleet_ray.storage.log import BUGS as STORAGE_BUGS
from raftfleet_ray.testing.linearizability import CheckerBudgetExceeded, check_register
from raftfleet_ray.testing.sim_checker import SafetyChecker, SimViolation
from raftfleet_ray.testing.sim_clients import ClientOp, Workload
from raftfleet_ray.testing.sim_data import SimKV
from raftfleet_ray.testing.sim_disk import PendingWrite, SimDisk
from raftfleet_ray.testing.sim_faults import MIX_NAMES, MIX_WEIGHTS, MIXES, FaultPlan, draw_plan
from raftfleet_ray.testing.sim_injector import FaultInjector
from raftfleet_ray.testing.sim_storage import StorageFaults

__all__ = ["SeedRangeResult", "SimResult", "SimViolation", "Simulator", "replay_command", "run_seed", "run_seeds"]

# Event kinds. The heap holds (time, seq, kind, a, b): seq breaks ties in push order, so
# the payloads are never compared and the order never depends on anything but the seed.
EV_TICK = 0  # a = node id, b = incarnation
EV_MSG = 1  # a = peer message
EV_DISK = 2  # a = node id, b = incarnation: the oldest pending write becomes durable
EV_CALL = 3  # a = function, b = its argument
_EV_NAMES = ("tick", "msg", "disk", "call")

TRACE_LEN = 30
HEAL_TIME = 400.0  # time allowed to converge once healed; a healthy group needs a few tens
CHECK_EVERY = 5.0  # how often the heal phase looks for convergence
LIN_BUDGET = 300_000  # configurations the linearizability search may explore per key
MAX_INCONCLUSIVE = 0.01
"""A seed range fails when more than this fraction of its seeds could not be checked for
linearizability within the budget: a check that did not run is not a pass."""

LEADER = "leader"
CANDIDATE = "candidate"


def replay_command(seed: int, mix: str, bugs: frozenset[str] = frozenset(), check_durability: bool = True) -> str:
    """The one-line shell command that replays ``seed`` exactly."""
    cmd = f"python -m raftfleet_ray.testing.simulator --seed {seed} --mix {mix}"
    if bugs:
        cmd += f" --bugs {','.join(sorted(bugs))}"
    if not check_durability:
        cmd += " --no-durability-check"
    return cmd


class SimNode:
    """One member as the simulator sees it: its core (None while down), its disk, and
    what the checker last saw of it (role, term, commit and applied index)."""

    __slots__ = (
        "id", "boot_members", "core", "up", "removed", "inc", "disk", "period",
        "role", "term", "commit", "applied", "led_term", "inherited", "rival", "rival_index",
        "quiesced", "lease_term",
    )

    def __init__(self, node_id: str, boot_members: tuple[str, ...], period: float,
                 storage_bugs: frozenset[str] = frozenset()) -> None:
        self.id = node_id
        self.boot_members = boot_members  # () for a joiner: it waits to be reached
        self.core: Any = None
        self.up = False
        self.removed = False
        self.inc = 0  # incarnation: bumped when the process stops, so its old events die
        self.disk = SimDisk(storage_bugs)
        self.period = period  # tick period (1.0 plus this node's clock drift)
        self.role = "follower"
        self.term = 0
        self.commit = 0
        self.applied = 0
        self.led_term = -1  # the term in which this member last advanced its commit as leader
        self.inherited = False  # it became leader holding uncommitted entries of earlier terms
        self.rival: str | None = None  # ... and this member holds a higher-term entry among them,
        self.rival_index = 0  # first at this index
        self.quiesced = False
        self.lease_term = -1  # the last term in which it was seen holding a lease as leader


@dataclass(slots=True)
class SimResult:
    """What a run did (all counts). A run that returns passed every check."""

    seed: int
    mix: str
    n_nodes: int
    events: int
    time: float
    messages: int
    dropped: int
    leaders: int
    crashes: int
    power_losses: int
    restarts: int
    partitions: int
    targeted: int
    snapshots_sent: int
    member_changes: int
    transfers: int
    ops_ok: int
    ops_unknown: int
    commit_index: int
    lin_inconclusive: bool  # the linearizability search ran out of budget on some key: not checked
    lin_inconclusive_keys: tuple[str, ...]  # the keys it gave up on (the others were checked)
    quiesces: int  # times a member quiesced (leader or follower)
    lease: bool  # the core had leader leases on
    drift: float  # the plan's clock drift (each member's tick period within 1 +- drift)
    sessions: int  # client sessions opened (processes, plus their restarts)
    sessions_evicted: int  # sessions the core's de-dup cache evicted (max_sessions), replayed from the log
    digest: int  # CRC of the event trace (only with record_trace, else 0)


def _fingerprint(data: Any) -> Any:
    items = getattr(data, "items", None)
    if isinstance(items, dict):
        return dict(items)
    return pickle.dumps(data)


def _default_factory() -> Callable[..., Any]:
    from raftfleet_ray.raft.node import RaftNode

    return RaftNode


class Simulator:
    """One seeded run over one group. ``run()`` returns a :class:`SimResult` or raises
    :class:`SimViolation`.

    ``mix`` forces a fault mix (default: the seed picks one), ``bugs`` plants core bugs
    (``raft/bugs.py``), ``record_trace`` keeps the whole event trace (for the determinism
    test and debugging), ``node_factory`` replaces ``RaftNode`` (tests of the harness),
    ``check_durability=False`` turns off the direct "committed => durable on a majority"
    check, so that persistence bugs must show through their consequences (lost commits
    after power cuts), which is how the planted-bug test judges the fault injection.
    ``lin_budget`` is the linearizability search's budget per key (``max_states`` of
    :func:`.check_register`); a key it cannot decide within it makes the run
    *inconclusive* (``SimResult.lin_inconclusive``), which is neither a pass nor a failure.
    """

    def __init__(
        self,
        seed: int,
        mix: str | None = None,
        bugs: frozenset[str] = frozenset(),
        *,
        record_trace: bool = False,
        node_factory: Callable[..., Any] | None = None,
        heal_time: float = HEAL_TIME,
        check_durability: bool = True,
        lin_budget: int = LIN_BUDGET,
    ) -> None:
        self.seed = seed
        rng = random.Random(seed)
        # Drawn even when forced, so that `--seed N` and `--seed N --mix <its own mix>` replay alike.
        picked = rng.choices(MIX_NAMES, weights=[MIX_WEIGHTS[m] for m in MIX_NAMES])[0]
        if mix is not None and mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; known: {', '.join(MIX_NAMES)}")
        self.mix = MIXES[mix or picked]
        self.rng = rng
        self.bugs = frozenset(bugs)
        self.plan: FaultPlan = draw_plan(rng, self.mix)
        self.factory = node_factory or _default_factory()
        self.heal_time = heal_time
        self.check_durability = check_durability
        self.lin_budget = lin_budget
        self.record_trace = record_trace
        self.full_trace: list[str] = []
        self._digest = 0

        self.now = 0.0
        self._heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0
        self.events = 0
        self._ring: deque[tuple[int, float, int, Any, Any]] = deque(maxlen=TRACE_LEN)
        self.nodes: dict[str, SimNode] = {}
        self._targets: list[str] = []  # node ids clients may try (not removed), in creation order
        self.checker = SafetyChecker()
        self.healing = False

        p = self.plan
        self.p_drop = p.p_drop
        self.p_dup = p.p_dup
        self.p_long = p.p_long
        self.blocked: dict[tuple[str, str], int] = {}  # directed link -> partitions blocking it
        # directed link -> stalls holding it, and what it holds: a stalled link (a TCP connection
        # that stopped moving, a busy actor) delivers nothing until the stall ends, then all of
        # it at once, in any order.
        self.stalled: dict[tuple[str, str], int] = {}
        self._stall_queue: dict[tuple[str, str], list[Any]] = {}
        self._partitions: dict[int, list[tuple[str, str]]] = {}
        self._next_pid = 0
        self.workload = Workload(self, rng, p.n_clients, p.n_keys, idle_pauses=p.config.quiesce_ticks > 0,
                                 n_processes=p.n_processes, p_restart=p.p_restart, p_boom=p.p_boom,
                                 reckless_restarts=p.reckless_restarts)
        self.p_replay = p.p_replay
        # The last few hundred peer messages, for late copies (p_replay) and aimed replays, and
        # the vote traffic apart (it is rare among the appends, and aimed replays need it).
        self.recent: deque[Any] = deque(maxlen=256)
        self.recent_votes: deque[Any] = deque(maxlen=256)
        # (from, to) -> the newest request (append or pre-vote): its late copy draws an answer
        # that carries the addressee's term then
        self.last_request: dict[tuple[str, str], Any] = {}
        self.top_leader_term = 0  # the highest term that has had a leader
        self.faults = FaultInjector(self)
        # Storage faults: bit rot, client values that hold record frames, zero-filled torn
        # tails, a crash in a flush then a power loss; they draw from a generator of their
        # own (see sim_storage.py).
        self.storage = StorageFaults(self)
        self.workload.value_of = self.storage.value

        self.n_messages = 0
        self.n_dropped = 0
        self.n_leaders = 0
        self.n_crashes = 0
        self.n_power = 0
        self.n_restarts = 0
        self.n_partitions = 0
        self.n_snapshots = 0
        self.lin_inconclusive_keys: list[str] = []
        self.n_quiesces = 0

    # ===================================================================================
    # Running

    def run(self) -> SimResult:
        try:
            self._setup()
            self._run_until(self.plan.fault_time)
            self._heal()
            self._run_heal()
            self._final_checks()
        except SimViolation as v:
            self._decorate(v)
            raise
        except Exception as exc:  # noqa: BLE001 - any crash of the core is a finding too
            v = SimViolation(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            v.kind = "exception"
            self._decorate(v)
            raise v from exc
        return self._result()

    def _decorate(self, v: SimViolation) -> None:
        v.seed = self.seed
        v.mix = self.mix.name
        v.bugs = self.bugs
        v.event_no = self.events
        v.time = self.now
        v.trace = [self._describe_event(*ev) for ev in self._ring]
        v.replay = replay_command(self.seed, self.mix.name, self.bugs, self.check_durability)

    def _result(self) -> SimResult:
        leader = self.leader()
        return SimResult(
            seed=self.seed,
            mix=self.mix.name,
            n_nodes=self.plan.n_nodes,
            events=self.events,
            time=self.now,
            messages=self.n_messages,
            dropped=self.n_dropped,
            leaders=self.n_leaders,
            crashes=self.n_crashes,
            power_losses=self.n_power,
            restarts=self.n_restarts,
            partitions=self.n_partitions,
            targeted=self.faults.targeted,
            snapshots_sent=self.n_snapshots,
            member_changes=self.faults.member_changes,
            transfers=self.faults.transfers,
            ops_ok=self.workload.stats.ok,
            ops_unknown=self.workload.stats.unknown,
            commit_index=leader.core.commit_index if leader else 0,
            lin_inconclusive=bool(self.lin_inconclusive_keys),
            lin_inconclusive_keys=tuple(self.lin_inconclusive_keys),
            quiesces=self.n_quiesces,
            lease=self.plan.config.lease_ticks > 0,
            drift=self.plan.drift,
            sessions=self.workload.stats.sessions,
            sessions_evicted=self._session_evictions(),
            digest=self._digest,
        )

    def _push(self, t: float, kind: int, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b))

    def call_later(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, EV_CALL, fn, arg))

    def _run_until(self, until: float) -> None:
        heap = self._heap
        pop = heapq.heappop
        push = heapq.heappush
        ring = self._ring
        nodes = self.nodes
        while heap and heap[0][0] <= until:
            ev = pop(heap)
            t, _, kind, a, b = ev
            self.now = t
            self.events += 1
            ring.append((self.events, t, kind, a, b))
            if self.record_trace:
                self._record(t, kind, a, b)
            if kind == EV_MSG:
                self._deliver(a)
            elif kind == EV_TICK:
                sn = nodes[a]
                if sn.inc != b:
                    continue  # the incarnation that scheduled this tick is gone
                self._seq += 1
                push(heap, (t + sn.period, self._seq, EV_TICK, a, b))
                self.after(sn, sn.core.tick())
            elif kind == EV_DISK:
                sn = nodes[a]
                if sn.inc != b:
                    continue
                disk = sn.disk
                done = disk.complete_flush()
                if disk.buffered:
                    self._start_flush(sn)  # writes issued during this flush: the next one
                seq = 0
                for w in done:
                    for m in w.after_persist:
                        self._send(m)
                    seq = max(seq, w.persist_seq)
                if seq:
                    self.after(sn, sn.core.on_persisted(seq))
            else:
                a(b)
        self.now = max(self.now, until)

    # ===================================================================================
    # Members

    def _setup(self) -> None:
        p = self.plan
        ids = tuple(f"n{i}" for i in range(p.n_nodes))
        for nid in ids:
            self.add_node(nid, ids)
        self.faults.start()
        self.workload.start()
        if p.probe_interval:
            self.call_later(p.probe_interval, self._probe, None)

    def add_node(self, nid: str, boot: tuple[str, ...]) -> SimNode:
        drift = self.plan.drift
        period = 1.0 + (self.rng.uniform(-drift, drift) if drift else 0.0)
        sn = SimNode(nid, boot, period, self.bugs & STORAGE_BUGS)
        sn.disk.name, sn.disk.faults = nid, self.storage
        self.nodes[nid] = sn
        self._targets.append(nid)
        self._start(sn)
        return sn

    def _start(self, sn: SimNode) -> None:
        """Build the core from what is durable on the node's disk, and nothing else."""
        st = sn.disk.reopen()
        core = self.factory(
            sn.id,
            self.plan.config,
            SimKV,
            random.Random(self.rng.getrandbits(64)),
            members=sn.boot_members,
            hard_state=st.hard_state,
            snapshot=st.snapshot,
            entries=list(st.entries),
            bugs=self.bugs - STORAGE_BUGS,
        )
        sn.core = core
        sn.up = True
        sn.role = core.role
        sn.term = core.term
        sn.commit = core.commit_index
        sn.applied = core.applied_index
        sn.quiesced = False
        # What the member rebuilt must agree with everything seen before.
        first = core.first_index
        self.checker.check_log(sn.id, core.entries_from(first), core.term_at(first - 1))
        if core.snapshot_meta is not None:
            self.checker.on_snapshot(sn.id, core.snapshot_meta)
        if sn.applied:
            self.checker.on_state(sn.id, sn.applied, _fingerprint(core.data))
        self._push(self.now + self.rng.uniform(0.0, sn.period), EV_TICK, sn.id, sn.inc)

    def _stop(self, sn: SimNode, power: bool) -> None:
        """Stop the process. A crash keeps every issued write; a power loss keeps a prefix."""
        if not sn.up:
            return
        if power:
            sn.disk.power_loss(self.rng)
            self.n_power += 1
        else:
            sn.disk.crash()
            self.n_crashes += 1
        sn.up = False
        sn.core = None
        sn.inc += 1
        self.note(f"{'power loss' if power else 'crash'} {sn.id}")
        if self.plan.detect_delay:
            self.call_later(self.plan.detect_delay, self._report_down, (sn.id, sn.inc))

    # The shell's failure detector (RaftNode.peer_down), as the Ray runtime has it: Ray
    # reports a dead member's actor to its peers, and node probes find unreachable ones.

    def _report_down(self, arg: tuple[str, int]) -> None:
        nid, inc = arg
        sn = self.nodes[nid]
        if sn.up or sn.inc != inc:
            return  # back already
        for o in self.up_nodes():
            self.after(o, o.core.peer_down(nid))

    def _probe(self, _: Any) -> None:
        blocked = self.blocked
        for a in self.up_nodes():
            for b in self.nodes.values():
                if b is a or b.removed:
                    continue
                if not b.up or (a.id, b.id) in blocked or (b.id, a.id) in blocked:
                    self.after(a, a.core.peer_down(b.id))
                    if not a.up:
                        break
        self.call_later(self.plan.probe_interval, self._probe, None)

    def _restart(self, arg: tuple[str, int]) -> None:
        nid, inc = arg
        sn = self.nodes[nid]
        if sn.up or sn.removed or sn.inc != inc:
            return
        self.n_restarts += 1
        self.note(f"restart {nid}")
        self._start(sn)

    def stop_for(self, sn: SimNode, power: bool, downtime: float) -> None:
        if not sn.up:
            return
        self._stop(sn, power)
        self.call_later(downtime, self._restart, (sn.id, sn.inc))

    def _on_removed(self, sn: SimNode) -> None:
        # The member learned that a committed configuration dropped it: it stops for good.
        self.note(f"removed {sn.id}")
        sn.removed = True
        sn.up = False
        sn.core = None
        sn.inc += 1
        self._targets = [t for t in self._targets if t != sn.id]

    def _start_flush(self, sn: SimNode) -> None:
        """Group commit: one flush in flight per member; it covers every buffered write."""
        disk = sn.disk
        p = self.plan
        lat = self.rng.uniform(2.0, 10.0) if disk.slow_until > self.now else self.rng.uniform(p.disk_lo, p.disk_hi)
        disk.start_flush()
        self._seq += 1
        heapq.heappush(self._heap, (self.now + lat, self._seq, EV_DISK, sn.id, sn.inc))

    def up_nodes(self) -> list[SimNode]:
        return [sn for sn in self.nodes.values() if sn.up]

    def durable_last(self, nid: str) -> int:
        """The last index on ``nid``'s disk (log or snapshot)."""
        disk = self.nodes[nid].disk
        if disk.entries:
            return disk.entries[-1].index
        return disk.snapshot.meta.index if disk.snapshot is not None else 0

    def client_targets(self) -> list[str]:
        return self._targets

    def leader(self) -> SimNode | None:
        """The up member that leads in the highest term (the simulator is omniscient)."""
        best: SimNode | None = None
        for sn in self.nodes.values():
            if sn.up and sn.core.role == LEADER and (best is None or sn.core.term > best.core.term):
                best = sn
        return best

    # ===================================================================================
    # The hot path: carry out a Ready, then check what changed

    def after(self, sn: SimNode, rd: Ready) -> None:
        core = sn.core
        checker = self.checker
        # 1. Writes, in Ready order, into the log; one flush at a time covers them (group commit).
        if rd.persist_seq or rd.hard_state is not None or rd.snapshot is not None or rd.entries:
            w = PendingWrite(rd.hard_state, rd.snapshot, rd.entries, rd.messages_after_persist,
                             rd.persist_seq)
            if sn.disk.submit(w):
                self._start_flush(sn)
        elif rd.messages_after_persist:
            raise SimViolation(f"{sn.id}: messages_after_persist without a persist_seq")
        if rd.entries:
            first = rd.entries[0].index
            checker.on_entries(sn.id, rd.entries, core.term_at(first - 1))
        if rd.snapshot is not None:
            checker.on_snapshot(sn.id, rd.snapshot.meta)
        # 2. Messages that do not wait for the disk.
        for m in rd.messages:
            self._send(m)
        # 3. Answers.
        for r in rd.replies:
            self._reply(sn, r)
        # 4. Applied entries and the new role / indexes.
        if rd.applied:
            start = sn.applied
            if rd.snapshot is not None and rd.applied[0].index == rd.snapshot.meta.index + 1:
                start = rd.snapshot.meta.index
            checker.on_applied(sn.id, start, rd.applied)
        role = core.role
        term = core.term
        if term < sn.term:
            raise SimViolation(f"{sn.id}: term went back from {sn.term} to {term}")
        if role != sn.role or term != sn.term:
            old_role = sn.role
            sn.role = role
            sn.term = term
            if role == LEADER:
                self._on_new_leader(sn)
            elif role == CANDIDATE and old_role != CANDIDATE and not self.healing:
                self.faults.on_candidate(sn)
        c = core.commit_index
        if c != sn.commit:
            if c < sn.commit:
                raise SimViolation(f"{sn.id}: commit index went back from {sn.commit} to {c}")
            term_at = core.term_at
            checker.on_commit(sn.id, sn.commit, c, [term_at(i) for i in range(sn.commit + 1, c + 1)], term)
            sn.commit = c
            if role == LEADER:
                if self.check_durability:
                    self._check_durable_commit(sn, c)
                if sn.led_term != term:
                    sn.led_term = term
                    if not self.healing:
                        self.faults.on_first_commit(sn)
                if sn.rival is not None and c >= sn.rival_index:
                    if not self.healing:
                        self.faults.on_rival_commit(sn)
                    sn.rival = None
        a = core.applied_index
        if a != sn.applied:
            if a < sn.applied:
                raise SimViolation(f"{sn.id}: applied index went back from {sn.applied} to {a}")
            if a > c:
                raise SimViolation(f"{sn.id}: applied index {a} beyond commit index {c}")
            checker.on_state(sn.id, a, _fingerprint(core.data))
            sn.applied = a
        if core.quiesced != sn.quiesced:
            sn.quiesced = core.quiesced
            self.n_quiesces += sn.quiesced
            if sn.quiesced and role == LEADER and self.plan.t_quiesce_isolate and not self.healing:
                self.faults.on_quiesce(sn)
            elif not sn.quiesced and role == LEADER and self.plan.t_wake and not self.healing:
                self.faults.on_wake(sn)
        if role == LEADER and self.plan.t_vote_replay and sn.lease_term != term and not self.healing \
                and core.holds_lease():
            sn.lease_term = term
            self.faults.on_lease(sn)
        if role == LEADER and term < self.top_leader_term and self.plan.config.lease_ticks and core.holds_lease():
            # Thesis §6.4.1, checked after every event (not only at elections): once a later
            # term has a leader, no earlier leader may hold a lease, whatever came back late.
            raise SimViolation(f"lease: {sn.id}, leader of term {term}, holds a lease after a leader "
                               f"of term {self.top_leader_term} was elected ({self.checker.leaders[self.top_leader_term]})")
        if rd.removed:
            self._on_removed(sn)

    def _check_durable_commit(self, sn: SimNode, index: int) -> None:
        """Raft Fig. 2 / §5.3: a leader commits an entry only once a majority of the
        configuration holds it on stable storage. Checked against the simulated disks
        themselves, so any shortcut in the order of acks and writes shows at once, before
        a power cut ever has to make it visible."""
        core = sn.core
        term = core.term_at(index)
        members = core.config_at(index)
        holders = [m for m in members if m in self.nodes and self._durable_has(self.nodes[m].disk, index, term)]
        if 2 * len(holders) <= len(members):
            raise SimViolation(
                f"durability: leader {sn.id} committed index {index} (term {term}) but only {holders} "
                f"of {members} hold it on disk"
            )

    @staticmethod
    def _durable_has(disk: SimDisk, index: int, term: int | None) -> bool:
        snap = disk.snapshot
        if snap is not None and snap.meta.index >= index:
            return True
        ents = disk.entries
        if not ents or not ents[0].index <= index <= ents[-1].index:
            return False
        return ents[index - ents[0].index].term == term

    def _on_new_leader(self, sn: SimNode) -> None:
        core = sn.core
        self.n_leaders += 1
        self.checker.on_leader(sn.id, core.term)
        self.top_leader_term = max(self.top_leader_term, core.term)
        for o in self.nodes.values():
            # Thesis §6.4.1: while a leader's lease is valid no other member can be elected
            # (the voters that acknowledged it refuse votes for longer than the lease lasts).
            if o is not sn and o.up and o.core.term < core.term and o.core.holds_lease():
                raise SimViolation(f"lease: {sn.id} became leader of term {core.term} while {o.id}, "
                                   f"leader of term {o.core.term}, still holds a lease")
        first = core.first_index
        self.checker.check_log(sn.id, core.entries_from(first), core.term_at(first - 1))
        self.checker.check_leader_complete(sn.id, core.term, first, core.term_at)
        # Entries between the commit index and the new no-op are of earlier terms: the
        # Figure 8 situation (they may commit only with an entry of the new term).
        sn.inherited = core.commit_index < core.last_index - 1
        sn.rival, sn.rival_index = self._figure8_rival(sn) if sn.inherited else (None, 0)
        if not self.healing:
            self.faults.on_new_leader(sn)

    def _figure8_rival(self, sn: SimNode) -> tuple[str | None, int]:
        """A member (up or down) holding, at one of the new leader's inherited indexes, an
        entry of a *higher* term than the leader's: the Figure 8 set-up, in which only the
        current-term rule keeps the leader from committing what that rival may overwrite."""
        core = sn.core
        lo, hi = core.commit_index + 1, core.last_index - 1
        for o in self.nodes.values():
            if o is sn or o.removed:
                continue
            if o.up:
                term_at = o.core.term_at
            else:
                ents = o.disk.entries
                base = ents[0].index if ents else 0

                def term_at(i: int, ents: list = ents, base: int = base) -> int | None:
                    k = i - base
                    return ents[k].term if ents and 0 <= k < len(ents) else None

            for i in range(lo, hi + 1):
                t = term_at(i)
                if t is not None and t > (core.term_at(i) or 0):
                    return o.id, i
        return None, 0

    def restart_soon(self, nid: str, delay: float) -> None:
        """Bring a stopped member back after ``delay`` instead of its own downtime."""
        sn = self.nodes[nid]
        if not sn.up and not sn.removed:
            self.call_later(delay, self._restart, (nid, sn.inc))

    # ===================================================================================
    # Network

    def _send(self, m: Any) -> None:
        rng = self.rng
        self.n_messages += 1
        tm = type(m)
        if not self.healing:
            p = self.plan
            if tm is AppendEntriesResponse:
                if m.success and p.t_ack_power:
                    self.faults.on_ack(m)
                if self.faults.ack_watch and (m.frm, m.to) in self.faults.ack_watch:
                    self.faults.on_watched_ack(m)
            elif tm is RequestVoteResponse:
                if m.granted and not m.pre_vote and p.t_vote_power:
                    self.faults.on_vote(m)
            elif tm is InstallSnapshot:
                self.n_snapshots += 1
        if tm is RequestVote or tm is RequestVoteResponse:
            self.recent_votes.append(m)
            if tm is RequestVote and m.pre_vote:
                self.last_request[(m.frm, m.to)] = m
        elif tm is AppendEntries:
            self.last_request[(m.frm, m.to)] = m
        recent = self.recent
        recent.append(m)
        if self.p_replay and rng.random() < self.p_replay:
            # A late copy of some recent message, of any kind: the network may duplicate and
            # delay without bound, so whatever it brings back must be harmless.
            self.deliver_later(recent[rng.randrange(len(recent))], rng.uniform(self.plan.delay_lo, 40.0))
        if self.p_drop and rng.random() < self.p_drop:
            self.n_dropped += 1
            return
        p = self.plan
        if self.p_long and rng.random() < self.p_long:
            d = rng.uniform(5.0, 30.0)
        else:
            d = rng.uniform(p.delay_lo, p.delay_hi)
        self._seq += 1
        heapq.heappush(self._heap, (self.now + d, self._seq, EV_MSG, m, None))
        if self.p_dup and rng.random() < self.p_dup:
            self._seq += 1
            heapq.heappush(self._heap, (self.now + rng.uniform(p.delay_lo, p.delay_hi * 3), self._seq, EV_MSG, m, None))

    def deliver_later(self, m: Any, delay: float) -> None:
        """The network delivers (another copy of) ``m`` after ``delay``, through the partitions
        in force then."""
        self._push(self.now + delay, EV_MSG, m, None)

    def _deliver(self, m: Any) -> None:
        if self.blocked and (m.frm, m.to) in self.blocked:
            self.n_dropped += 1
            return
        if self.stalled and (m.frm, m.to) in self.stalled:
            self._stall_queue.setdefault((m.frm, m.to), []).append(m)
            return
        sn = self.nodes.get(m.to)
        if sn is None or not sn.up:
            return
        self.after(sn, sn.core.step(m))

    def _net_delay(self) -> float | None:
        """A client<->member delay, or None if the message is lost."""
        rng = self.rng
        if self.p_drop and rng.random() < self.p_drop:
            return None
        p = self.plan
        if self.p_long and rng.random() < self.p_long:
            return rng.uniform(5.0, 30.0)
        return rng.uniform(p.delay_lo, p.delay_hi)

    def block(self, pairs: list[tuple[str, str]], duration: float, what: str) -> None:
        pid = self._next_pid
        self._next_pid += 1
        self._partitions[pid] = pairs
        blocked = self.blocked
        for pr in pairs:
            blocked[pr] = blocked.get(pr, 0) + 1
        self.n_partitions += 1
        self.note(f"partition #{pid} {what} for {duration:.1f}")
        self.call_later(duration, self._unblock, pid)

    def _unblock(self, pid: int) -> None:
        pairs = self._partitions.pop(pid, None)
        if pairs is None:
            return  # already healed wholesale
        blocked = self.blocked
        for pr in pairs:
            n = blocked[pr] - 1
            if n:
                blocked[pr] = n
            else:
                del blocked[pr]
        self.note(f"heal partition #{pid}")

    def stall(self, pairs: list[tuple[str, str]], duration: float, what: str) -> None:
        for pr in pairs:
            self.stalled[pr] = self.stalled.get(pr, 0) + 1
        self.note(f"stall {what} for {duration:.1f}")
        self.call_later(duration, self._unstall, pairs)

    def _unstall(self, pairs: list[tuple[str, str]]) -> None:
        for pr in pairs:
            n = self.stalled.get(pr, 0) - 1
            if n > 0:
                self.stalled[pr] = n
                continue
            self.stalled.pop(pr, None)
            for m in self._stall_queue.pop(pr, ()):
                self.deliver_later(m, self.rng.uniform(0.0, 1.0))

    def isolation(self, nid: str, allow_from: str | None = None) -> list[tuple[str, str]]:
        pairs = []
        for other in self.nodes:
            if other == nid:
                continue
            pairs.append((nid, other))
            if other != allow_from:
                pairs.append((other, nid))
        return pairs

    # ===================================================================================
    # Clients and admin replies

    def client_send(self, node_id: str, req: tuple, op: ClientOp) -> None:
        d = self._net_delay()
        if d is not None:
            self.call_later(d, self._client_arrive, (node_id, req, op))

    def _client_arrive(self, arg: tuple[str, tuple, ClientOp]) -> None:
        node_id, req, op = arg
        sn = self.nodes.get(node_id)
        if sn is None or not sn.up:
            return  # nobody home: the client times out
        if op.kind == "read":
            self.after(sn, sn.core.read(req, op.query))
            return
        core = sn.core
        last = core.last_index
        self.after(sn, core.propose(req, op.cmd_id, op.cmd))
        if self.plan.t_append_crash and not self.healing and sn.up and core.last_index > last:
            self.faults.on_append(sn)

    def commands_settled(self) -> bool:
        """True when no client command can ever be applied again anywhere but where it already
        is in the committed log: no command on its way from a client to a member, and no
        command entry in any log, disk or message above the highest committed index. (Every
        entry that ever existed went through some Ready, so the checker's log map holds it;
        at an index up to the commit index only the committed entry can ever be applied.)
        The workload opens a new client session only then (``Workload._maybe_restart``)."""
        arrive = self._client_arrive
        for _, _, kind, a, b in self._heap:
            if kind == EV_CALL and a == arrive and b[2].is_command:
                return False
        top = max(len(self.checker.committed) - 1, max((sn.commit for sn in self.nodes.values()), default=0))
        return not any(
            i > top and e.kind == EntryKind.COMMAND for (i, _), (e, _) in self.checker.log_map.items()
        )

    def _session_evictions(self) -> int:
        """How many times the core's de-dup cache evicted a session: its LRU replayed over
        the applied log (every member applies the same log, so every cache evicts alike)."""
        cap = self.plan.config.max_sessions
        lru: dict[str, None] = {}
        evicted = 0
        for e in self.checker.applied:
            if e is None or e.kind != EntryKind.COMMAND or not isinstance(e.data.cmd_id, SessionId):
                continue
            client = e.data.cmd_id.client
            lru.pop(client, None)
            lru[client] = None
            if len(lru) > cap:
                del lru[next(iter(lru))]
                evicted += 1
        return evicted

    def _reply(self, sn: SimNode, r: Reply) -> None:
        req = r.req
        if req[0] == "c":
            if not self.healing and req[4] and self.plan.t_ok_power and type(r.result) is Ok:
                self.faults.on_ok(sn)
            d = self._net_delay()
            if d is not None:
                self.call_later(d, self.workload.on_reply, (req, sn.id, r.result))
        else:
            self.faults.on_admin_reply(req, r.result)

    # ===================================================================================
    # Heal, liveness, final checks

    def _heal(self) -> None:
        self.healing = True
        self.note("heal: reconnect, restart, no more faults")
        self.p_drop = self.p_dup = self.p_long = self.p_replay = 0.0
        self.blocked.clear()
        self._partitions.clear()
        for pr in list(self.stalled):
            self.stalled[pr] = 1
            self._unstall([pr])
        for sn in list(self.nodes.values()):
            sn.disk.slow_until = -1.0
            if not sn.up and not sn.removed:
                self.n_restarts += 1
                self._start(sn)
        self.workload.heal()

    def _run_heal(self) -> None:
        deadline = self.now + self.heal_time
        while True:
            self._run_until(min(self.now + CHECK_EVERY, deadline))
            problem = self._not_converged()
            if problem is None:
                return
            if self.now >= deadline:
                v = SimViolation(f"liveness: not converged {self.heal_time:g} time units after healing: {problem}\n"
                                 + self._status_dump())
                v.kind = "liveness"
                raise v

    def _not_converged(self) -> str | None:
        """None once the group has converged, else what is still missing."""
        if not self.workload.all_done():
            return "clients still waiting: " + "; ".join(self.workload.outstanding())
        leader = self.leader()
        if leader is None:
            return "no leader"
        lc = leader.core
        members = lc.members + lc.learners
        for m in members:
            sn = self.nodes.get(m)
            if sn is None or not sn.up:
                return f"member {m} is not up"
            if sn.core.term > lc.term:
                return f"member {m} has term {sn.core.term} above the leader's {lc.term}"
            if sn.id != leader.id and sn.core.role == LEADER:
                return f"two leaders: {leader.id} and {m}"
        if lc.commit_index != lc.last_index:
            return f"leader {leader.id} has uncommitted entries ({lc.commit_index} < {lc.last_index})"
        for m in members:
            core = self.nodes[m].core
            if core.applied_index != lc.commit_index:
                return f"member {m} applied {core.applied_index}, leader committed {lc.commit_index}"
        return None

    def _status_dump(self) -> str:
        lines = []
        for sn in self.nodes.values():
            if not sn.up:
                lines.append(f"  {sn.id}: {'removed' if sn.removed else 'down'}")
                continue
            c = sn.core
            lines.append(
                f"  {sn.id}: {c.role} term={c.term} leader={c.leader_id} members={c.members} "
                f"commit={c.commit_index} applied={c.applied_index} last={c.last_index}"
            )
        return "\n".join(lines)

    def _final_checks(self) -> None:
        for sn in self.nodes.values():
            if sn.up:
                core = sn.core
                first = core.first_index
                self.checker.check_log(sn.id, core.entries_from(first), core.term_at(first - 1))
        # Key by key (linearizability is local, Herlihy & Wing): a key the search cannot decide
        # within its budget is noted as not checked, and the other keys are still checked.
        for key, ops in self.workload.history.by_key().items():
            try:
                result = check_register(ops, None, max_states=self.lin_budget)
            except CheckerBudgetExceeded:
                self.lin_inconclusive_keys.append(key)
                continue
            if not result:
                v = SimViolation(f"linearizability: key {key!r} is not linearizable\n{result.explanation}")
                v.kind = "linearizability"
                raise v

    # ===================================================================================
    # Trace

    def note(self, what: str) -> None:
        self._ring.append((self.events, self.now, -1, what, None))
        if self.record_trace:
            self._record(self.now, -1, what, None)

    def _record(self, t: float, kind: int, a: Any, b: Any) -> None:
        line = self._describe_event(self.events, t, kind, a, b)
        self.full_trace.append(line)
        self._digest = zlib.crc32(line.encode(), self._digest)

    @staticmethod
    def _describe_event(n: int, t: float, kind: int, a: Any, b: Any) -> str:
        if kind == -1:
            return f"#{n} t={t:.4f} ** {a}"
        if kind == EV_MSG:
            text = repr(a)
        elif kind == EV_CALL:
            name = getattr(a, "__name__", repr(a))
            text = f"{name}({b!r})"
        else:
            text = f"{a} inc={b}"
        if len(text) > 300:
            text = text[:297] + "..."
        return f"#{n} t={t:.4f} {_EV_NAMES[kind]} {text}"


# =======================================================================================
# Batch running and the command line


def run_seed(
    seed: int,
    mix: str | None = None,
    bugs: frozenset[str] = frozenset(),
    check_durability: bool = True,
    lin_budget: int = LIN_BUDGET,
) -> dict[str, Any]:
    """Run one seed; return a picklable summary (``ok``, ``mix``, ``violation``, ``replay``, stats).

    ``ok`` means no violation was found; whether linearizability was decided is
    ``stats["lin_inconclusive"]`` (see :class:`SeedRangeResult` for how a range judges it)."""
    sim = Simulator(seed, mix, bugs, check_durability=check_durability, lin_budget=lin_budget)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"seed": seed, "mix": sim.mix.name, "ok": True, "violation": None, "kind": None}
    try:
        out["stats"] = asdict(sim.run())
    except SimViolation as v:
        out.update(ok=False, violation=str(v), kind=v.kind, replay=v.replay, description=v.description)
    out["seconds"] = time.perf_counter() - t0
    return out


def _quiet_core_logs() -> None:
    # The simulated user code fails on purpose (sim_data.SimKV: snapshots refused), and the
    # core logs each failure as the runtime needs it to; in a seed range that is only noise.
    logging.getLogger("raftfleet_ray.raft").setLevel(logging.CRITICAL)


def _run_seed_star(args: tuple[int, str | None, frozenset[str], bool, int]) -> dict[str, Any]:
    _quiet_core_logs()
    return run_seed(*args)


@dataclass(slots=True)
class SeedRangeResult:
    """What a range of seeds found. Truthy iff the range passed: no seed had a violation, and
    at most ``max_inconclusive`` of the seeds (1%) were *inconclusive*, i.e. the
    linearizability search ran out of budget, so their histories were not checked. A check
    that did not run is not a pass: a range where many seeds could not be checked fails.

    ``results`` holds every seed's :func:`run_seed` summary, in seed order.

    Example::

        found = run_seeds(range(0, 1000), jobs=2)
        assert found, found.summary()
    """

    seeds: int  # seeds asked for
    results: list[dict[str, Any]]
    elapsed: float
    jobs: int = 1
    max_inconclusive: float = MAX_INCONCLUSIVE

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def violations(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["ok"]]

    @property
    def inconclusive(self) -> list[int]:
        """The seeds that ran without a violation but whose history was not (wholly) checked."""
        return [r["seed"] for r in self.results if r["ok"] and r["stats"]["lin_inconclusive"]]

    @property
    def inconclusive_fraction(self) -> float:
        return len(self.inconclusive) / self.done if self.done else 0.0

    @property
    def too_inconclusive(self) -> bool:
        return self.inconclusive_fraction > self.max_inconclusive

    @property
    def ok(self) -> bool:
        return not self.violations and not self.too_inconclusive

    def __bool__(self) -> bool:
        return self.ok

    def sim_results(self) -> list[SimResult]:
        """The :class:`SimResult` of every seed that ran without a violation."""
        return [SimResult(**r["stats"]) for r in self.results if r["ok"]]

    def summary(self) -> str:
        """The report: counts, time per mix, every violation's replay command, the
        inconclusive seeds with their count and share, and the verdict."""
        n, bad, inc = self.done, self.violations, self.inconclusive
        rate = n / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            f"{n} seeds in {self.elapsed:.1f}s: {rate:.1f} seeds/s ({self.jobs} jobs), {len(bad)} violations, "
            f"{len(inc)} inconclusive ({100 * self.inconclusive_fraction:.2f}%, at most "
            f"{100 * self.max_inconclusive:g}% allowed)"
        ]
        per_mix: dict[str, list[float]] = {}
        for r in self.results:
            per_mix.setdefault(r["mix"], []).append(r["seconds"])
        for mix_name in MIX_NAMES:
            secs = per_mix.get(mix_name)
            if secs:
                lines.append(f"  {mix_name:11s} {len(secs):5d} seeds, {1000 * sum(secs) / len(secs):6.1f} ms/seed")
        stats = [r["stats"] for r in self.results if r["ok"]]
        if stats:
            leased = [st for st in stats if st["lease"]]
            drifting = [st["drift"] for st in leased if st["drift"] > 0]
            lines.append(f"  leases in {len(leased)} seeds, {len(drifting)} of them with clock drift (max "
                         f"{max(drifting, default=0.0):.3f}); de-dup cache evicted sessions in "
                         f"{sum(1 for st in stats if st['sessions_evicted'])} seeds")
        if inc:
            shown = ", ".join(str(s) for s in inc[:20]) + (", ..." if len(inc) > 20 else "")
            lines.append(f"  linearizability NOT CHECKED (search budget exhausted) for {len(inc)} of {n} seeds "
                         f"({100 * self.inconclusive_fraction:.2f}%): seeds {shown}")
        for r in bad:
            lines.append(f"  seed={r['seed']} mix={r['mix']} [{r['kind']}]: {r['replay']}")
        if self.done < self.seeds:
            lines.append(f"  stopped after {self.done} of {self.seeds} seeds")
        if bad:
            lines.append(f"FAIL: {len(bad)} of {n} seeds found a violation")
        if self.too_inconclusive:
            lines.append(f"FAIL: {len(inc)} of {n} seeds ({100 * self.inconclusive_fraction:.2f}%) were not checked "
                         f"for linearizability, more than {100 * self.max_inconclusive:g}%: raise the budget "
                         f"(--lin-budget) or make the histories smaller")
        if self.ok:
            lines.append("PASS")
        return "\n".join(lines)


def run_seeds(
    seeds: Iterable[int],
    mix: str | None = None,
    bugs: frozenset[str] = frozenset(),
    *,
    check_durability: bool = True,
    jobs: int = 1,
    stop: bool = False,
    lin_budget: int = LIN_BUDGET,
    max_inconclusive: float = MAX_INCONCLUSIVE,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SeedRangeResult:
    """Run every seed (in ``jobs`` worker processes), and judge the range: see
    :class:`SeedRangeResult`. ``stop``: stop at the first violation. ``on_result`` is called
    with each seed's summary as it arrives (in completion order), for progress reports.

    Example::

        found = run_seeds(range(1000, 1040), mix="chaos")
        assert found, found.summary()
    """
    seeds = list(seeds)
    work = [(s, mix, bugs, check_durability, lin_budget) for s in seeds]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    pool = None
    if jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(jobs)
        it = pool.imap_unordered(_run_seed_star, work, chunksize=4)
    else:
        it = map(_run_seed_star, work)
    try:
        for r in it:
            results.append(r)
            if on_result is not None:
                on_result(r)
            if stop and not r["ok"]:
                break
    finally:
        if pool is not None:
            pool.terminate()
    results.sort(key=lambda r: r["seed"])
    return SeedRangeResult(len(seeds), results, time.perf_counter() - t0, jobs, max_inconclusive)


def _parse_range(text: str) -> range:
    a, _, b = text.partition(":")
    return range(int(a), int(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m raftfleet_ray.testing.simulator",
        description="Deterministic Raft simulator: run one seed, or a range of seeds.",
    )
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--seed", type=int, help="run (replay) one seed")
    g.add_argument("--seeds", type=_parse_range, help="run seeds A:B (B excluded)")
    ap.add_argument("--mix", choices=MIX_NAMES, help="force a fault mix (default: the seed picks)")
    ap.add_argument("--bugs", default="", help="comma-separated planted bugs (raft/bugs.py), for tests")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for --seeds")
    ap.add_argument("--stop", action="store_true", help="with --seeds: stop at the first violation")
    ap.add_argument("--no-durability-check", action="store_true",
                    help="skip the direct 'committed => durable on a majority' check")
    ap.add_argument("--trace", action="store_true", help="with --seed: print the whole event trace")
    ap.add_argument("--digest", action="store_true", help="with --seed: print a CRC of the event trace")
    ap.add_argument("--lin-budget", type=int, default=LIN_BUDGET,
                    help=f"linearizability search budget per key (default {LIN_BUDGET}); a seed whose check "
                         f"runs out is inconclusive, and a range with more than {100 * MAX_INCONCLUSIVE:g}%% "
                         f"inconclusive seeds fails")
    args = ap.parse_args(argv)
    _quiet_core_logs()
    bugs = frozenset(b for b in args.bugs.split(",") if b)

    if args.seed is not None:
        sim = Simulator(args.seed, args.mix, bugs, record_trace=args.trace or args.digest,
                        check_durability=not args.no_durability_check, lin_budget=args.lin_budget)
        t0 = time.perf_counter()
        try:
            res = sim.run()
        except SimViolation as v:
            if args.trace:
                print("\n".join(sim.full_trace))
            print(f"VIOLATION {v}")
            return 1
        if args.trace:
            print("\n".join(sim.full_trace))
        if args.digest:
            print(f"digest={res.digest:08x} events={res.events}")
        stats = " ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in asdict(res).items()
            if k not in ("seed", "mix", "digest")
        )
        if res.lin_inconclusive:
            # Not a pass: the history of these keys was not checked.
            print(f"seed={args.seed} mix={res.mix} INCONCLUSIVE {time.perf_counter() - t0:.3f}s: linearizability "
                  f"not checked for keys {list(res.lin_inconclusive_keys)} (budget {args.lin_budget} per key) {stats}")
            return 1
        print(f"seed={args.seed} mix={res.mix} ok {time.perf_counter() - t0:.3f}s {stats}")
        return 0

    t0 = time.perf_counter()
    last = t0
    counts = {"done": 0, "violations": 0, "inconclusive": 0}

    def report(r: dict[str, Any]) -> None:
        nonlocal last
        counts["done"] += 1
        if not r["ok"]:
            counts["violations"] += 1
            print(f"VIOLATION seed={r['seed']} mix={r['mix']} [{r['kind']}] "
                  f"{r['description'].splitlines()[0]}\n  replay: {r['replay']}", flush=True)
        elif r["stats"]["lin_inconclusive"]:
            counts["inconclusive"] += 1
        now = time.perf_counter()
        if now - last >= 2.0:
            last = now
            print(f"  {counts['done']}/{len(args.seeds)} seeds, {counts['done'] / (now - t0):.1f} seeds/s, "
                  f"{counts['violations']} violations, {counts['inconclusive']} inconclusive",
                  file=sys.stderr, flush=True)

    found = run_seeds(args.seeds, args.mix, bugs, check_durability=not args.no_durability_check, jobs=args.jobs,
                      stop=args.stop, lin_budget=args.lin_budget, on_result=report)
    print(found.summary())
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
