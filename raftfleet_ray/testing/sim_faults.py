"""Fault mixes for the simulator, and the concrete fault plan one seed draws from a mix.

A *mix* names which kinds of trouble a run may see (message loss, partitions, crashes,
power loss, membership changes, leadership transfers, lease reads). The *plan* is what
one seed makes of it: the cluster size, the core configuration and every rate, each
drawn from the seed's own ``random.Random``. Drawing the rates per seed (TigerBeetle's
VOPR does the same) covers calm runs with one rare fault as well as storms, which a
single fixed rate never does.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from raftfleet_ray.raft.config import CoreConfig


@dataclass(frozen=True, slots=True)
class Mix:
    """Which fault families a run may draw from. Every family is off unless named."""

    name: str
    lossy: bool = False  # drops, duplicates, long delays
    partitions: bool = False  # symmetric and asymmetric partitions that start and heal
    crashes: bool = False  # process crashes: issued writes survive (the OS cache does)
    power_loss: bool = False  # power loss: only a prefix of the unsynced writes survives
    slow_disk: bool = False  # episodes of long write latency
    targeted: bool = False  # faults aimed at the dangerous moments (see FaultPlan.t_*)
    membership: bool = False  # add / remove members, one change at a time
    transfer: bool = False  # random leadership transfers
    lease: str = "off"  # "off" | "on" | "random": leader lease reads
    intensity: float = 1.0  # scales every fault rate: with all families on, each must be rarer
    # Stale traffic and false alarms: quiescence always on, failure reports about live members,
    # faults aimed at a quiesced leader waking up (late acks and Quiesces of before), and
    # (with lossy) many late copies of old messages.
    stale: bool = False


MIXES: dict[str, Mix] = {
    m.name: m
    for m in (
        Mix("calm"),
        Mix("lossy", lossy=True),
        Mix("partitions", lossy=True, partitions=True),
        Mix("crashes", crashes=True, targeted=True, lossy=True),
        Mix("power_loss", power_loss=True, slow_disk=True, targeted=True, crashes=True),
        Mix("membership", membership=True, crashes=True, lossy=True, targeted=True),
        Mix("transfer", transfer=True, partitions=True, targeted=True, crashes=True),
        Mix("lease", lease="on", lossy=True, partitions=True, crashes=True, targeted=True, stale=True),
        Mix("stale", lease="on", lossy=True, crashes=True, targeted=True, stale=True),
        Mix(
            "chaos",
            lossy=True,
            partitions=True,
            crashes=True,
            power_loss=True,
            slow_disk=True,
            targeted=True,
            membership=True,
            transfer=True,
            lease="random",
            intensity=0.4,
            stale=True,
        ),
    )
}
"""Every named mix, in a fixed order (a seed that picks its own mix indexes this order)."""

MIX_NAMES: tuple[str, ...] = tuple(MIXES)

MIX_WEIGHTS: dict[str, int] = {
    "calm": 1, "lossy": 1, "partitions": 1, "crashes": 2, "power_loss": 3,
    "membership": 1, "transfer": 1, "lease": 1, "chaos": 2, "stale": 2,
}
"""How often a seed picks each mix: the mixes that can expose a persistence or election
bug (power loss, crashes, everything at once) get more of the seeds."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything random about a run that is fixed at its start.

    Rates are events per time unit (exponential inter-arrival); ``p_*`` are probabilities
    per opportunity; the ``t_*`` probabilities aim a fault at a dangerous moment.
    """

    mix: str
    n_nodes: int
    config: CoreConfig
    fault_time: float  # length of the fault phase; then everything heals
    # Network.
    delay_lo: float
    delay_hi: float
    p_drop: float
    p_dup: float
    p_long: float  # a message is delayed 5-30 time units (it arrives long after its peers)
    partition_rate: float
    partition_len: tuple[float, float]
    # Nodes and disks.
    drift: float  # max relative tick-rate error of a node; with leases below lease_drift_bound(config)
    crash_rate: float
    power_rate: float
    downtime: tuple[float, float]
    disk_lo: float
    disk_hi: float
    slow_disk_rate: float
    # Targeted faults.
    t_ok_power: float  # the leader just answered Ok to a command: cut its power
    t_ack_power: float  # a follower just sent an append ack: cut its power
    t_vote_power: float  # a member just granted a vote: cut its power, restart fast, rival campaigns
    t_self_vote_power: float  # a member just became candidate / leader: cut its power
    t_new_leader: float  # a member just became leader: crash or isolate it soon
    t_transfer: float  # a transfer was just asked for: crash or isolate the leader
    t_first_commit: float  # a new leader just advanced its commit index: stop it
    t_append_crash: float  # the leader just appended a client command: stop it before it is sent
    t_leader_slow_disk: float  # a member just became leader: make its disk slow
    # Admin traffic.
    membership_interval: float  # 0 = no membership changes
    transfer_interval: float  # 0 = no transfers
    # Workload.
    n_clients: int
    n_keys: int
    max_nodes: int  # membership: never more members than this (and never fewer than 3)
    # The shell's failure detector (RaftNode.peer_down): a stopped member is reported to the
    # others ``detect_delay`` after it stops (Ray reporting a dead actor), and every
    # ``probe_interval`` each member probes the others and reports the ones it cannot reach
    # (the agents' node probes). 0 = no detector. Quiescence needs it: a quiesced follower
    # cannot notice by itself that its leader died.
    detect_delay: float = 0.0
    probe_interval: float = 0.0
    t_quiesce_isolate: float = 0.0  # a leader just quiesced: isolate it (its lease must be over)
    # Client sessions (sim_clients.py): the clients run in this many processes, one session
    # each (0 = one per client); after each operation a process restarts with a new session
    # with probability ``p_restart``.
    n_processes: int = 0
    p_restart: float = 0.0
    # A leader was just elected in a group with leases and drift: once it holds a lease, set
    # every clock to the edge of the drift (its own slow, the others fast), cut it off and
    # report it down, so the others elect a leader as early as their clocks allow while its
    # lease runs as long as its clock allows (FaultInjector._t_lease_isolate, lease_drift_bound).
    t_lease_isolate: float = 0.0
    # Late copies: on each send, with this probability, a copy of a random message of the last
    # few hundred is delivered again, late (any kind: acks, votes, Quiesce, snapshots...).
    p_replay: float = 0.0
    # False failure reports: peer_down about a member that is up and reachable, at this rate
    # (a probe that timed out on a busy node). Only a hint: it must never cost safety.
    false_report_rate: float = 0.0
    # A quiesced leader just woke: aim late copies of what it sent or heard before it quiesced
    # (FaultInjector.on_wake).
    t_wake: float = 0.0
    # A leader just got its lease: replay to one of its followers old vote traffic of a later
    # term, a response (which carries the term) and then a request of that term
    # (FaultInjector.on_lease; review finding 13.2).
    t_vote_replay: float = 0.0
    # A member just became candidate: its links stall (deliver later, all at once, any order).
    t_stall: float = 0.0
    # User code failing inside the core (sim_data.SimKV): this share of the client operations.
    p_boom: float = 0.0
    # Client processes restart without waiting for their commands to settle (sim_clients).
    reckless_restarts: bool = False
    # The seed of the storage faults' own generator (sim_storage.py: bit rot, client values
    # that hold record frames, zero-filled torn tails).
    storage_seed: int = 0


def lease_drift_bound(config: CoreConfig) -> float:
    """The clock drift a leader lease of ``config`` tolerates: safe while every member's tick
    period stays within ``[1 - d, 1 + d]`` time units, for every ``d`` strictly below this.
    1.0 without a lease (nothing to bound).

    With E = ``election_ticks`` and L = ``lease_ticks`` (the margin is E - L ticks), and
    ``p`` a member's tick period:

    - the leader uses a lease resting on a quorum's acks of messages it sent at its tick Q
      until its own tick Q + L: at most ``L * p_leader`` after the send (tick Q began at or
      before it);
    - a follower that received such a message refuses votes until its own clock has
      advanced E ticks from the receipt (``RaftNode._in_lease``) and does not campaign
      before that either. Its first tick may come right after the receipt, so that is at
      least ``(E - 1) * p_follower`` after the receipt, which is after the send. A new
      leader needs the vote of one of these followers (quorums intersect), and the vote
      still has to reach it (delay > 0), so it is elected after that;
    - hence no leader is elected while the lease is in use if ``L * p_leader <= (E - 1) *
      p_follower`` for every pair; the worst pair is ``p_leader = 1 + d`` and
      ``p_follower = 1 - d``: ``L (1 + d) <= (E - 1)(1 - d)``, i.e.
      ``d <= (E - 1 - L) / (E - 1 + L)``.

    With E = 10 and L = 5 (the plans' lease): d < 4 / 14 = 0.286. The margin of 5 ticks
    covers ~29% drift, not 5/15 = 33%: one tick is lost to the tick granularity.
    """
    E, L = config.election_ticks, config.lease_ticks
    if L <= 0:
        return 1.0
    return max(0.0, (E - 1 - L) / (E - 1 + L))


def _u(rng: random.Random, lo: float, hi: float) -> float:
    return rng.uniform(lo, hi)


def draw_plan(rng: random.Random, mix: Mix) -> FaultPlan:
    """Draw one run's plan from ``mix``. Consumes ``rng`` in a fixed order (replay depends on it)."""
    n_nodes = rng.choice((3, 3, 5))
    lease = mix.lease == "on" or (mix.lease == "random" and rng.random() < 0.5)
    # Small limits so that snapshots, chunked snapshot transfer, compaction and the
    # multi-message catch-up paths all run in every long enough seed.
    config = CoreConfig(
        election_ticks=10,
        heartbeat_ticks=2,
        lease_ticks=5 if lease else 0,
        max_retained_command_results=1000,
        max_entries_per_msg=rng.choice((1, 1, 2, 4, 8, 64)),
        max_inflight_msgs=rng.choice((1, 4, 64)),
        snapshot_interval=rng.randint(8, 40),
        log_retention=rng.randint(0, 10),
        snapshot_chunk_bytes=rng.choice((64, 128, 1024)),
        # Both are on in production; off in some runs so that the paths without them
        # (and an old leader that never steps down on its own) are checked too. A lease
        # needs check-quorum.
        pre_vote=rng.random() < 0.8,
        check_quorum=lease or rng.random() < 0.8,
    )
    lossy = mix.lossy
    p_drop = _u(rng, 0.0, 0.2) if lossy else 0.0
    p_dup = _u(rng, 0.0, 0.1) if lossy else 0.0
    p_long = _u(rng, 0.0, 0.05) if lossy else 0.0
    k = mix.intensity
    partition_rate = k * _u(rng, 0.005, 0.04) if mix.partitions else 0.0
    crash_rate = k * _u(rng, 0.002, 0.02) if mix.crashes else 0.0
    power_rate = k * _u(rng, 0.002, 0.02) if mix.power_loss else 0.0
    slow_disk_rate = k * _u(rng, 0.002, 0.02) if mix.slow_disk else 0.0
    t = mix.targeted

    def tp(lo: float, hi: float) -> float:
        # Each targeted fault is switched on in about two thirds of the runs, so a run
        # can also isolate one kind of danger.
        return k * _u(rng, lo, hi) if t and rng.random() < 0.67 else 0.0

    def tlog(lo: float, hi: float) -> float:
        # Log-uniform: most runs see this fault now and then, a few see it at nearly every
        # opportunity (a leader-churn storm, which is what Figure 8 needs).
        return k * math.exp(_u(rng, math.log(lo), math.log(hi))) if t and rng.random() < 0.67 else 0.0

    pw = mix.power_loss or mix.crashes
    plan = FaultPlan(
        mix=mix.name,
        n_nodes=n_nodes,
        config=config,
        fault_time=_u(rng, 250.0, 500.0),
        delay_lo=0.05,
        delay_hi=_u(rng, 0.2, 1.0),
        p_drop=p_drop,
        p_dup=p_dup,
        p_long=p_long,
        partition_rate=partition_rate,
        partition_len=(3.0, _u(rng, 10.0, 60.0)),
        drift=0.0 if lease or rng.random() < 0.5 else _u(rng, 0.0, 0.02),  # a lease's: drawn at the end
        crash_rate=crash_rate,
        power_rate=power_rate,
        downtime=(0.5, _u(rng, 5.0, 40.0)),
        disk_lo=0.01,
        disk_hi=_u(rng, 0.05, 0.5),
        slow_disk_rate=slow_disk_rate,
        t_ok_power=tp(0.005, 0.05) if pw else 0.0,
        t_ack_power=tp(0.02, 0.2) if pw else 0.0,
        t_vote_power=tp(0.05, 0.3) if pw else 0.0,
        t_self_vote_power=tp(0.05, 0.3) if pw else 0.0,
        t_new_leader=tlog(0.02, 0.8),
        t_transfer=tp(0.1, 0.5) if mix.transfer else 0.0,
        t_first_commit=tlog(0.02, 0.8),
        t_append_crash=tp(0.005, 0.03),
        t_leader_slow_disk=tp(0.1, 0.5) if mix.slow_disk else 0.0,
        membership_interval=_u(rng, 8.0, 30.0) if mix.membership else 0.0,
        transfer_interval=_u(rng, 10.0, 40.0) if mix.transfer else 0.0,
        n_clients=rng.randint(3, 5),
        n_keys=rng.randint(2, 4),
        max_nodes=5,
    )
    # The detector and quiescence come from a second generator seeded from the first, so
    # adding them left every earlier draw of a seed as it was.
    qrng = random.Random(rng.getrandbits(64))
    if qrng.random() < 0.7:
        plan = replace(plan, detect_delay=qrng.uniform(0.5, 5.0), probe_interval=qrng.uniform(2.0, 10.0))
        if qrng.random() < 0.7:
            # Short quiet periods, so that groups quiesce and wake many times in a run.
            plan = replace(plan, config=replace(config, quiesce_ticks=qrng.randint(2, 30)),
                           t_quiesce_isolate=qrng.uniform(0.1, 0.6) if t else 0.0)
    # Client sessions as the Ray client has them, and, with a lease, clock drift (drawn
    # after everything else, from the same second generator, for the same reason).
    # Half the seeds keep only a few sessions in the core's de-dup cache, so that it evicts
    # old ones; at least one per process is what keeps that safe (Workload._maybe_restart).
    n_proc = qrng.randint(1, plan.n_clients)
    plan = replace(plan, n_processes=n_proc, p_restart=qrng.choice((0.0, 0.02, 0.05)))
    if qrng.random() < 0.5:
        plan = replace(plan, config=replace(plan.config, max_sessions=n_proc + qrng.randint(0, 2)))
    if lease and qrng.random() < 0.75:
        # Drift within what the lease's margin tolerates (lease_drift_bound), up to 95% of it.
        plan = replace(plan, drift=lease_drift_bound(plan.config) * qrng.uniform(0.0, 0.95))
        if t and qrng.random() < 0.67:
            plan = replace(plan, t_lease_isolate=k * qrng.uniform(0.3, 0.9))
    # The size trigger of snapshots (rafted_value's log_file_expansion_factor), in half the
    # seeds, drawn last for the same reason. The simulator's entries count 64 bytes each and
    # its snapshots are a few hundred bytes, so these factors and floors snapshot every few
    # to few dozen entries; a floor of 0 snapshots at the first applied entry (no snapshot
    # yet). In a third of them the count trigger is off in effect, so the size trigger alone
    # decides.
    if qrng.random() < 0.5:
        cfg = replace(plan.config, snapshot_log_factor=qrng.uniform(0.5, 4.0),
                      snapshot_min_bytes=qrng.choice((0, 256, 1024)))
        if qrng.random() < 0.33:
            cfg = replace(cfg, snapshot_interval=1_000_000)
        plan = replace(plan, config=cfg)
    # The storage faults draw from a generator of their own (sim_storage.py), seeded last
    # from the second one, and so do the stale-traffic faults (a third one, seeded from the
    # second after it): every draw above, and every draw of the run from the first
    # generator, stay as they were.
    plan = replace(plan, storage_seed=qrng.getrandbits(64))
    return _draw_stale(plan, mix, random.Random(qrng.getrandbits(64)))


def _draw_stale(plan: FaultPlan, mix: Mix, rng: random.Random) -> FaultPlan:
    """Late copies, false reports, aimed wake-up faults, failing user code, reckless client
    restarts: from a third generator, so that adding them left every earlier draw as it was."""
    k = mix.intensity
    if mix.lossy:
        plan = replace(plan, p_replay=rng.uniform(0.0, 0.03) * (3.0 if mix.stale else 1.0))
    if mix.stale:
        cfg = plan.config
        if not cfg.quiesce_ticks or rng.random() < 0.5:
            cfg = replace(cfg, quiesce_ticks=rng.randint(2, 10))  # quiesce and wake often
        if cfg.lease_ticks and rng.random() < 0.5:
            # Without pre-vote a member cut off from its leader climbs terms: answers carrying
            # later terms than the leader's are then common (the stale traffic finding 13.2 is about).
            cfg = replace(cfg, pre_vote=False)
        plan = replace(plan, config=cfg, detect_delay=plan.detect_delay or rng.uniform(0.5, 5.0),
                       probe_interval=plan.probe_interval or rng.uniform(2.0, 10.0),
                       false_report_rate=k * rng.uniform(0.0, 0.05),
                       t_wake=k * rng.uniform(0.5, 1.0) if mix.targeted else 0.0,
                       t_stall=k * rng.uniform(0.1, 0.6) if mix.targeted else 0.0)
    if mix.targeted and plan.config.lease_ticks:
        plan = replace(plan, t_vote_replay=k * rng.uniform(0.3, 1.0))
    if rng.random() < 0.5:
        plan = replace(plan, p_boom=rng.uniform(0.01, 0.08))
    if plan.p_restart and rng.random() < 0.5:
        plan = replace(plan, reckless_restarts=True)
    return plan
