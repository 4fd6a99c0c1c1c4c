"""What goes wrong in a simulator run, and when: random faults, targeted faults, admin traffic.

*Random* faults arrive as Poisson processes at the rates the seed drew (:mod:`.sim_faults`):
crashes, power losses, slow-disk episodes and partitions of four shapes (isolate one
member, split in two, one-way links, a bridge member between two sides).

*Targeted* faults are aimed at the moments where a shortcut in the core would lose data,
which random faults hit too rarely: right after a follower acknowledged entries, after a
vote was granted, after a leader answered Ok, just after an election, right after a new
leader's first commit (Figure 8), during a leadership transfer. The simulator calls the
``on_*`` hooks; each decides, with the seed's probabilities, whether to strike.

*Admin* traffic: membership changes (a joiner is built with no members and then added by
the leader; never fewer than 3 or more than ``max_nodes`` members, one change at a time)
and leadership transfers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raftfleet_ray.raft.types import (
    AppendEntriesResponse,
    Ok,
    Quiesce,
    Rejected,
    RequestVote,
    RequestVoteResponse,
    Result,
)
from raftfleet_ray.testing.sim_checker import SimViolation

if TYPE_CHECKING:
    from raftfleet_ray.testing.simulator import SimNode, Simulator


class FaultInjector:
    """The fault and admin schedule of one run; all its randomness is the simulator's rng."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.rng = sim.rng
        self.plan = sim.plan
        self.power = sim.mix.power_loss  # aimed faults cut power only if the mix has power loss
        self.targeted = 0
        self.targeted_kinds: dict[str, int] = {}  # the first two words of each aim -> how many
        # (follower, leader) -> (term, newer than this send tick, call): the call runs right after
        # the follower sends a successful ack of a message the leader sent after that tick, in
        # that term (Simulator._send -> on_watched_ack): that ack backs the lease the longest.
        self.ack_watch: dict[tuple[str, str], tuple[int, int, Callable[[], None]]] = {}
        self.member_changes = 0
        self.transfers = 0
        self.transfers_done = 0  # answered Ok (the target took over)
        self._last_ack: dict[tuple[str, str], int] = {}  # (follower, leader) -> match last acked
        self.admin_req: Any = None
        self._admin_busy_until = -1.0
        self._admin_no = 0
        self._pending_joiner: str | None = None
        self._joiner_reusable = False  # its last add was refused before anything was appended
        self._joiners = 0

    def start(self) -> None:
        p = self.plan
        rng = self.rng
        call_later = self.sim.call_later
        for rate, fn in (
            (p.partition_rate, self._f_partition),
            (p.crash_rate, self._f_crash),
            (p.power_rate, self._f_power),
            (p.slow_disk_rate, self._f_slow_disk),
            (p.false_report_rate, self._f_false_report),
        ):
            if rate:
                call_later(rng.expovariate(rate), fn, rate)
        if p.membership_interval:
            call_later(rng.uniform(5.0, p.membership_interval), self._admin_membership, None)
        if p.transfer_interval:
            call_later(rng.uniform(5.0, p.transfer_interval), self._admin_transfer, None)

    # ===================================================================================
    # Random faults

    def _pick_victim(self) -> SimNode | None:
        sim = self.sim
        live = sim.up_nodes()
        members = [sn for sn in sim.nodes.values() if not sn.removed]
        # Leave at least one member up; a majority down for a while is fine (and tested).
        if len(live) <= 1 or len(members) - len(live) >= len(members) // 2 + 1:
            return None
        return self.rng.choice(live)

    def _f_crash(self, rate: float) -> None:
        if self.sim.healing:
            return
        self.sim.call_later(self.rng.expovariate(rate), self._f_crash, rate)
        sn = self._pick_victim()
        if sn is not None:
            self.sim.stop_for(sn, False, self.rng.uniform(*self.plan.downtime))

    def _f_power(self, rate: float) -> None:
        if self.sim.healing:
            return
        self.sim.call_later(self.rng.expovariate(rate), self._f_power, rate)
        sn = self._pick_victim()
        if sn is not None:
            self.sim.stop_for(sn, True, self.rng.uniform(*self.plan.downtime))

    def _f_slow_disk(self, rate: float) -> None:
        sim = self.sim
        if sim.healing:
            return
        rng = self.rng
        sim.call_later(rng.expovariate(rate), self._f_slow_disk, rate)
        live = sim.up_nodes()
        if live:
            sn = rng.choice(live)
            sn.disk.slow_until = sim.now + rng.uniform(5.0, 30.0)
            sim.note(f"slow disk {sn.id} until {sn.disk.slow_until:.1f}")

    def _f_false_report(self, rate: float) -> None:
        """A failure report about a member that is up and reachable (a probe that timed out on
        a busy node): ``peer_down`` is a hint that speeds elections up, never a protocol fact."""
        sim = self.sim
        if sim.healing:
            return
        rng = self.rng
        sim.call_later(rng.expovariate(rate), self._f_false_report, rate)
        live = sim.up_nodes()
        if len(live) < 2:
            return
        a, b = rng.sample(live, 2)
        sim.note(f"false report: {b.id} down, to {a.id}")
        sim.after(a, a.core.peer_down(b.id))

    def _f_partition(self, rate: float) -> None:
        sim = self.sim
        if sim.healing:
            return
        rng = self.rng
        sim.call_later(rng.expovariate(rate), self._f_partition, rate)
        ids = [sn.id for sn in sim.nodes.values() if not sn.removed]
        if len(ids) < 2:
            return
        duration = rng.uniform(*self.plan.partition_len)
        kind = rng.randrange(4)
        if kind == 0:
            x = rng.choice(ids)
            sim.block(sim.isolation(x), duration, f"isolate {x}")
        elif kind == 1:
            rng.shuffle(ids)
            k = rng.randint(1, len(ids) // 2)
            a, b = ids[:k], ids[k:]
            sim.block(_cut(a, b), duration, f"split {a}|{b}")
        elif kind == 2:
            pairs = []
            for _ in range(rng.randint(1, 3)):
                x, y = rng.sample(ids, 2)
                pairs.append((x, y))
            sim.block(pairs, duration, f"one-way {pairs}")
        elif len(ids) >= 3:
            # A bridge: two sides that only one member hears both of (the topology that
            # makes leaders flap without pre-vote and check-quorum).
            rng.shuffle(ids)
            bridge, rest = ids[0], ids[1:]
            k = max(1, len(rest) // 2)
            a, b = rest[:k], rest[k:]
            sim.block(_cut(a, b), duration, f"bridge {bridge} between {a}|{b}")

    # ===================================================================================
    # Targeted faults: hooks

    def on_new_leader(self, sn: SimNode) -> None:
        """``sn`` just won an election."""
        p = self.plan
        rng = self.rng
        if sn.rival is not None and self.sim.mix.targeted:
            # Figure 8 set-up (S5 is away while S1 replicates): keep the rival and this leader
            # apart, or the leader's appends would overwrite the rival's entries right away.
            sim = self.sim
            sim.block([(sn.id, sn.rival), (sn.rival, sn.id)], rng.uniform(10.0, 30.0),
                      f"keep rival {sn.rival} from {sn.id}")
        if p.t_leader_slow_disk and rng.random() < p.t_leader_slow_disk:
            # A leader whose own writes lag behind its followers' acks: only a core that waits
            # for its own disk before counting itself keeps commits durable on a majority.
            sn.disk.slow_until = self.sim.now + rng.uniform(5.0, 30.0)
            self.sim.note(f"aim: slow disk of new leader {sn.id}")
        if p.t_self_vote_power and rng.random() < p.t_self_vote_power:
            # Elected on a vote that may not be durable yet (its own, if votes count before
            # they are persisted): cut its power before the write lands and silence what it
            # sent, so the members it did not reach may elect a rival in the same term.
            self._aim(f"power loss of new leader {sn.id}", self._t_power_sever, (sn.id, rng.uniform(0.1, 2.0)))
        elif p.t_new_leader and rng.random() < p.t_new_leader:
            # Figure 8: a leader that goes away soon after its election leaves entries of its
            # term on a minority, which a later leader must overwrite, never commit by count.
            delay = rng.uniform(0.0, 3.0)
            r = rng.random()
            if r < 0.5:
                self._aim(f"stop new leader {sn.id} before its no-op leaves", self._t_stop_sever,
                          (sn.id, rng.uniform(1.0, 20.0)))
            elif r < 0.75:
                self._aim(f"crash new leader {sn.id}", self._t_crash, (sn.id, rng.uniform(1.0, 20.0)), delay)
            else:
                self._aim(f"isolate new leader {sn.id}", self._t_isolate, (sn.id, rng.uniform(5.0, 30.0)), delay)
        if p.t_lease_isolate and rng.random() < p.t_lease_isolate:
            # Thesis §6.4.1: the lease's margin must cover the followers' clocks running fast.
            self._aim(f"isolate lease holder {sn.id} with clocks at the drift bound", self._t_lease_isolate,
                      (sn.id, sn.core.term, 10), rng.uniform(2.0, 15.0))

    def on_first_commit(self, sn: SimNode) -> None:
        """A new leader advanced its commit index for the first time in its term."""
        p = self.plan
        if not p.t_first_commit:
            return
        # Figure 8 is about this moment: what it just committed must be safe whatever
        # happens next. Stop it before anything else it sent arrives, long enough for the
        # others to elect a leader without it; often so when it inherited uncommitted
        # entries of earlier terms.
        chance = max(p.t_first_commit, 0.7) if sn.inherited else p.t_first_commit
        if sn.rival is None and self.rng.random() < chance:
            self._aim(f"stop leader {sn.id} after its first commit", self._t_stop_sever,
                      (sn.id, self.rng.uniform(5.0, 30.0)))

    def on_rival_commit(self, sn: SimNode) -> None:
        """Figure 8 itself: leader ``sn`` committed up to an index where a rival holds an
        entry of a higher term (see ``Simulator._figure8_rival``). Only if the commit rule
        was followed (an entry of the leader's own term is on a majority too) can the rival
        never win; stop the leader silently and let the rival try."""
        if self.sim.mix.targeted and sn.rival is not None:
            self._aim(f"stop leader {sn.id}: it committed over rival {sn.rival}'s entries", self._t_stop_sever,
                      (sn.id, self.rng.uniform(10.0, 30.0)))
            self.sim.restart_soon(sn.rival, self.rng.uniform(0.1, 2.0))

    def on_quiesce(self, sn: SimNode) -> None:
        """Leader ``sn`` just quiesced its group (``t_quiesce_isolate`` is on)."""
        if self.rng.random() < self.plan.t_quiesce_isolate:
            # Its clock stands still now: cut it off from its group (not from the clients), so
            # that the failure reports make the others elect a leader and write without it,
            # and a client with a stale guess then reads from it. Only a lease that ended when
            # it quiesced keeps that read from answering an old value.
            self._aim(f"isolate quiesced leader {sn.id}", self._t_isolate, (sn.id, self.rng.uniform(10.0, 40.0)),
                      self.rng.uniform(0.0, 2.0))

    def on_wake(self, sn: SimNode) -> None:
        """Leader ``sn`` was quiesced and just woke (``t_wake`` is on). Its clock stood still,
        so what it sent and heard in its last awake tick looks current: aim late copies of that
        at it, or at one of its followers, then cut it off and report it down, so that the
        others elect a leader while it may (wrongly) think it holds a lease (review finding 13.1)."""
        if self.rng.random() >= self.plan.t_wake:
            return
        sim = self.sim
        term = sn.core.term
        if self.plan.config.lease_ticks and self.rng.random() < 0.75 and self._wake_quiesce(sn):
            return
        acks = [m for m in sim.recent if type(m) is AppendEntriesResponse and m.to == sn.id and m.term == term
                and m.success]
        if acks:
            self._aim(f"late acks to woken leader {sn.id}", self._t_wake_acks, (sn.id, term, acks[-4:]))

    def _wake_quiesce(self, sn: SimNode) -> bool:
        sim = self.sim
        members = sn.core.members
        last = sn.core.last_index
        # Caught-up followers only (a member still being sent a snapshot backs no lease, and one
        # behind cannot win the election this is about).
        followers = [f for f in members if f != sn.id and f in sim.nodes and sim.nodes[f].up
                     and sim.nodes[f].core.last_index == last]
        need = len(members) // 2  # followers whose acks, with its own, give the leader a quorum
        if not followers or len(followers) < len(members) - 1:
            return False  # a leader alone in its configuration: no follower's guard to aim at
        # The first in line to campaign once the leader is reported down (RaftNode.peer_down
        # orders the survivors by id): if its vote guard is wrongly gone it wins within a tick or
        # two, while the lease its ack backs still runs.
        keep = min(followers)
        keeps = [keep] + self.rng.sample([f for f in followers if f != keep], need - 1)
        quiesces = [m for m in sim.recent if type(m) is Quiesce and m.frm == sn.id and m.to == keep
                    and m.term == sn.core.term and m.index == last]  # woken by a read or a message
        if not quiesces:
            return False
        self._aim(f"late Quiesce from woken leader {sn.id} to {keep}", self._t_wake_quiesce,
                  (sn.id, sn.core.term, tuple(keeps), quiesces[-1]))
        return True

    def _t_wake_acks(self, arg: tuple[str, int, list[AppendEntriesResponse]]) -> None:
        """Nothing the leader sends arrives any more; late copies of the acks it had before it
        quiesced arrive; the others hear that it is down."""
        nid, term, acks = arg
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up or sn.core.term != term:
            return
        duration = self.rng.uniform(10.0, 40.0)
        sim.block([(nid, o) for o in sim.nodes if o != nid], duration, f"cut off what woken leader {nid} sends")
        for m in acks:
            sim.deliver_later(m, self.rng.uniform(0.0, 2.0))
        for o in sim.up_nodes():
            if o.id != nid:
                sim.after(o, o.core.peer_down(nid))

    def _t_wake_quiesce(self, arg: tuple[str, int, tuple[str, ...], Quiesce]) -> None:
        """The leader keeps only ``keeps`` (with it, a bare quorum): once they acked its first
        heartbeats (their acks back the lease), a late copy of the old Quiesce reaches the first
        of them, then a (false) report that the leader is down, and nothing more of the
        leader's reaches it for a while; the others, cut off from the leader, campaign."""
        nid, term, keeps, quiesce = arg
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up or sn.core.term != term:
            return
        duration = self.rng.uniform(15.0, 40.0)
        sim.block([pair for o in sim.nodes if o != nid and o not in keeps for pair in ((nid, o), (o, nid))], duration,
                  f"keep woken leader {nid} with {list(keeps)} only")
        # The late copy arrives right after ``keep`` acknowledged a heartbeat the leader sent
        # since it woke: that ack backs the lease for the longest time (Simulator._send calls
        # on_watched_ack).
        self.ack_watch[(keeps[0], nid)] = (term, quiesce.sent_tick, lambda: self._t_wake_quiesce_arrives(
            (nid, term, keeps[0], quiesce)))

    def on_watched_ack(self, m: AppendEntriesResponse) -> None:
        key = (m.frm, m.to)
        term, stamp, call = self.ack_watch[key]
        if m.term != term:
            del self.ack_watch[key]
        elif m.success and m.sent_tick > stamp:
            del self.ack_watch[key]
            self.sim.call_later(0.0, lambda _: call(), None)

    def _t_wake_quiesce_arrives(self, arg: tuple[str, int, str, Quiesce]) -> None:
        nid, term, keep, quiesce = arg
        sim = self.sim
        k = sim.nodes[keep]
        if sim.healing or not k.up or not sim.nodes[nid].up:
            return
        if k.core.last_index != quiesce.index:
            return  # the log moved on meanwhile: the copy would be refused for that alone
        sim.after(k, k.core.step(quiesce))
        sim.block([(nid, keep)], self.rng.uniform(5.0, 20.0), f"what {nid} sends {keep}")
        if k.up:
            sim.after(k, k.core.peer_down(nid))
        for o in sim.up_nodes():
            if o.id not in (nid, keep) and o.id in sim.nodes[nid].core.members:
                sim.after(o, o.core.peer_down(nid))

    def on_lease(self, sn: SimNode) -> None:
        """Leader ``sn`` holds a lease for the first time in its term (``t_vote_replay`` is on).
        Its followers refuse votes for an election timeout after they heard from it (thesis
        §4.2.3), *whatever the term a request comes in*: review finding 13.2 found a follower
        that reached a later term by another way (the answer to an old request of its) and then
        granted that term's vote at an equal term. Set that up with real messages only: cut one
        follower ``c`` off from the leader (it campaigns, its term climbs when pre-vote is off)
        and, while ``c`` is a candidate of a later term and the leader still holds its lease,
        deliver a late copy of an old request of another follower ``f`` to ``c`` (``c`` answers
        with its term) and then a late copy of ``c``'s vote request to ``f``."""
        if self.rng.random() >= self.plan.t_vote_replay:
            return
        sim = self.sim
        followers = [m for m in sn.core.members if m != sn.id and m in sim.nodes and sim.nodes[m].up]
        if len(followers) < 2:
            return
        # A follower that has sent another one a request (it led, or pre-campaigned, before):
        # a late copy of that request is what draws an answer carrying the later term.
        pairs = [(c, f) for c in followers for f in followers if f != c and (f, c) in sim.last_request]
        if not pairs:
            return
        c, f = self.rng.choice(pairs)
        self._aim(f"late vote traffic: cut {c} from lease holder {sn.id}, replay at {f}", self._t_vote_cut,
                  (sn.id, sn.core.term, c, f))

    def _t_vote_cut(self, arg: tuple[str, int, str, str]) -> None:
        lid, term, c, f = arg
        sim = self.sim
        if sim.healing:
            return
        duration = self.rng.uniform(20.0, 50.0)
        sim.block([(lid, c), (c, lid)], duration, f"cut {c} from lease holder {lid}")
        # The clients only read meanwhile: the leader stays awake (and leasing) and its log
        # stays where it was, so the cut-off member's log stays as current as the others'.
        sim.workload.read_only_until = max(sim.workload.read_only_until, sim.now + duration)
        sim.call_later(self.rng.uniform(5.0, 15.0), self._t_vote_replay, (lid, term, c, f, 30))

    def _t_vote_replay(self, arg: tuple[str, int, str, str, int]) -> None:
        lid, term, c, f, tries = arg
        sim = self.sim
        lead, cand = sim.nodes[lid], sim.nodes[c]
        if sim.healing or not lead.up or lead.core.term != term or not lead.core.holds_lease():
            return
        if cand.up and cand.core.role == "candidate" and cand.core.term > term:
            hit = False
            for v in [f] + [m for m in lead.core.members if m not in (lid, c, f)] if not self.ack_watch else ():
                old = sim.last_request.get((v, c))
                vc = sim.nodes[v].core if v in sim.nodes and sim.nodes[v].up else None
                asks = [m for m in sim.recent_votes if type(m) is RequestVote and not m.pre_vote and m.frm == c
                        and m.to == v and m.term == cand.core.term]
                if old is None or vc is None or not asks or (cand.core.last_term, cand.core.last_index) < (
                        vc.last_term, vc.last_index):
                    continue
                # Right after v's next ack to the leader (the lease then runs longest on it).
                self.ack_watch[(v, lid)] = (term, -1, lambda old=old, ask=asks[-1]: self._t_vote_old(old, ask, lid))
                hit = True
            if hit:
                return
        if tries > 1:
            sim.call_later(self.rng.uniform(0.5, 2.0), self._t_vote_replay, (lid, term, c, f, tries - 1))

    def _t_vote_old(self, old: Any, ask: RequestVote, lid: str) -> None:
        self.sim.note(f"replay {old!r} to {ask.frm}")
        self.sim.deliver_later(old, 0.0)
        self.sim.call_later(self.plan.delay_hi, self._t_vote_ask, (ask, lid, 6))

    def _t_vote_ask(self, arg: tuple[RequestVote, str, int]) -> None:
        """Once the follower took the later term from the answer, the late copy of the vote
        request of that term arrives (while the candidate still campaigns in it, its log still
        current: otherwise the vote is refused for other reasons and proves nothing), and what
        the follower sends the leader stalls a while (the leader still counts its last ack)."""
        ask, lid, tries = arg
        sim = self.sim
        c, f = sim.nodes[ask.frm], sim.nodes[ask.to]
        if sim.healing or not (c.up and f.up) or c.core.role != "candidate" or c.core.term != ask.term:
            return
        if f.core.term == ask.term and (c.core.last_term, c.core.last_index) >= (f.core.last_term, f.core.last_index):
            sim.note(f"replay {ask!r}")
            sim.deliver_later(ask, self.plan.delay_lo)
            sim.stall([(f.id, lid)], self.rng.uniform(3.0, 8.0), f"{f.id}->{lid}")
        elif tries > 1 and f.core.term < ask.term:
            sim.call_later(0.2, self._t_vote_ask, (ask, lid, tries - 1))

    def on_candidate(self, sn: SimNode) -> None:
        p = self.plan
        rng = self.rng
        if p.t_self_vote_power and rng.random() < p.t_self_vote_power * 0.5:
            # The candidate's vote for itself may still be on its way to the disk.
            self._aim(f"power loss of candidate {sn.id}", self._t_power_sever, (sn.id, rng.uniform(0.1, 2.0)))
        if p.t_stall and rng.random() < p.t_stall:
            # Its vote traffic stalls, each way for its own while, then arrives all at once in
            # any order: its request, and its answers to others' campaigns (which carry its new
            # term), reach a voter long after, maybe after that voter followed another leader
            # and acknowledged it (thesis §4.2.3: the vote guard must hold at any term).
            sim = self.sim
            others = [o for o in sn.core.members if o != sn.id and o in sim.nodes]
            for o in rng.sample(others, rng.randint(1, len(others))) if others else ():
                sim.stall([(sn.id, o)], rng.uniform(1.0, 15.0), f"{sn.id}->{o}")
                sim.stall([(o, sn.id)], rng.uniform(0.0, 10.0), f"{o}->{sn.id}")

    def on_ack(self, m: AppendEntriesResponse) -> None:
        """A follower sent a successful append ack (``t_ack_power`` is on)."""
        key = (m.frm, m.to)
        if m.match_index <= self._last_ack.get(key, 0):
            return  # nothing new acknowledged (a heartbeat ack)
        self._last_ack[key] = m.match_index
        if self._decisive_ack(m) and self.rng.random() < self.plan.t_ack_power:
            # The ack claims the entries are durable: cut the follower's power and cut the
            # leader off from everyone but it, so that a new leader is elected by members
            # that may lack what was just committed.
            self._aim(f"power loss after ack {m.frm}->{m.to}", self._t_ack_power, (m.frm, m.to))

    def on_vote(self, m: RequestVoteResponse) -> None:
        """A member granted its (real, not pre-) vote (``t_vote_power`` is on)."""
        if self.rng.random() < self.plan.t_vote_power:
            self._aim(f"power loss after vote {m.frm}->{m.to}", self._t_vote_power, (m.frm, m.to))

    def on_ok(self, sn: SimNode) -> None:
        """``sn`` answered Ok to a client command (``t_ok_power`` is on)."""
        if self.rng.random() < self.plan.t_ok_power * self._ok_danger(sn):
            # The client now believes the command is durable on a majority: test that.
            self._aim(f"power loss after Ok by {sn.id}", self._t_ok_power, sn.id)

    def on_append(self, sn: SimNode) -> None:
        """Leader ``sn`` just appended (and sent) a client command (``t_append_crash`` is on)."""
        if self.rng.random() < self.plan.t_append_crash:
            # Stop it now and lose what it sent: the entry exists on its log alone.
            self._aim(f"stop leader {sn.id} after append", self._t_stop_sever, (sn.id, self.rng.uniform(1.0, 20.0)))

    # ===================================================================================
    # Targeted faults: what they do

    def _aim(self, what: str, fn: Callable[[Any], None], arg: Any, delay: float = 0.0) -> None:
        self.targeted += 1
        kind = what.split(" ", 2)[0] + " " + what.split(" ", 2)[1] if " " in what else what
        self.targeted_kinds[kind] = self.targeted_kinds.get(kind, 0) + 1
        self.sim.note(f"aim: {what}")
        # At `now` but after the current event: what the member just sent is already out.
        self.sim.call_later(delay, fn, arg)

    def _decisive_ack(self, m: AppendEntriesResponse) -> bool:
        """The ack may be the one that commits (the leader has not committed it yet), and
        more so while the follower's own disk is still behind what it acknowledged."""
        leader = self.sim.nodes.get(m.to)
        if leader is None or not leader.up or leader.core.commit_index >= m.match_index:
            return False
        return bool(self.sim.nodes[m.frm].disk.pending) or self.rng.random() < 0.1

    def _ok_danger(self, sn: SimNode) -> float:
        """How much an Ok from ``sn`` is worth a power cut: most when what it committed is
        not on a majority of disks (only a leader that counted an unsynced copy gets there),
        then while it still has writes in flight."""
        if self._undurable_commit(sn):
            return 20.0
        return 5.0 if sn.disk.pending else 0.5

    def _undurable_commit(self, sn: SimNode) -> bool:
        core = sn.core
        commit = core.commit_index
        durable_last = self.sim.durable_last
        if durable_last(sn.id) >= commit:
            return False
        members = core.members
        holders = sum(1 for m in members if m in self.sim.nodes and durable_last(m) >= commit)
        return 2 * holders <= len(members)

    def _t_crash(self, arg: tuple[str, float]) -> None:
        nid, downtime = arg
        if not self.sim.healing:
            self.sim.stop_for(self.sim.nodes[nid], self.power, downtime)

    def _t_isolate(self, arg: tuple[str, float]) -> None:
        nid, duration = arg
        if not self.sim.healing:
            self.sim.block(self.sim.isolation(nid), duration, f"isolate {nid}")

    def _t_lease_isolate(self, arg: tuple[str, int, int]) -> None:
        """A leader that holds a lease: its clock turns as slow as the drift allows, every other
        clock as fast, and it is cut off from its group (not from the clients): first what it
        sends, then, once the acks of its last heartbeats are in (its lease rests on just what
        the followers last heard), what it receives; and the failure detector reports it at
        once. The followers' vote guards end as early as their clocks allow, the lease as late
        as its clock allows: a lease longer than the margin lets a new leader be elected (and a
        client read a stale value from the old one) while it is still in use.

        It strikes only when the others can elect at once (all up, none cut off from another);
        until then it looks again every few time units, ``tries`` times at most."""
        nid, term, tries = arg
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up or sn.core.term != term or sn.core.role != "leader":
            return
        others = [m for m in sn.core.members if m != nid]
        ready = sn.core.holds_lease() and all(m in sim.nodes and sim.nodes[m].up for m in others) and not any(
            (a, b) in sim.blocked for a in sn.core.members for b in sn.core.members if a != b
        )
        if not ready:
            if tries > 1:
                sim.call_later(self.rng.uniform(1.0, 3.0), self._t_lease_isolate, (nid, term, tries - 1))
            return
        d = self.plan.drift
        periods = {o.id: o.period for o in sim.nodes.values()}
        for o in sim.nodes.values():
            o.period = 1.0 + d if o is sn else 1.0 - d
        duration = self.rng.uniform(15.0, 40.0)
        sim.block([(nid, o) for o in sim.nodes if o != nid], duration, f"cut off lease holder {nid} (drift {d:.3f})")
        sim.call_later(self.plan.delay_hi, self._t_lease_isolate_in, (nid, duration - self.plan.delay_hi))
        # The clocks go back to their own rates with the partition: kept at the two edges for
        # good, they left a two-voter group without pre-vote leaderless for hundreds of time
        # units (the fast member with the shorter log kept deposing the slow one's campaigns).
        sim.call_later(duration, self._t_restore_clocks, periods)

    def _t_restore_clocks(self, periods: dict[str, float]) -> None:
        for nid, period in periods.items():
            self.sim.nodes[nid].period = period

    def _t_lease_isolate_in(self, arg: tuple[str, float]) -> None:
        nid, duration = arg
        sim = self.sim
        if sim.healing:
            return
        sim.block([(o, nid) for o in sim.nodes if o != nid], duration, f"cut off lease holder {nid} (its inputs)")
        if self.plan.detect_delay or self.plan.probe_interval:
            for o in sim.up_nodes():
                if o.id != nid:
                    sim.after(o, o.core.peer_down(nid))

    def _t_power_sever(self, arg: tuple[str, float]) -> None:
        """Power loss with a quick restart; what the member sent before is lost in flight."""
        self._sever_and_stop(arg, self.power)

    def _t_stop_sever(self, arg: tuple[str, float]) -> None:
        """Stop a member so that nothing it sent leaves: its newest entries stay its own
        (on its disk after a crash), a divergent suffix that a later leader must overwrite."""
        self._sever_and_stop(arg, self.power and self.rng.random() < 0.5)

    def _sever_and_stop(self, arg: tuple[str, float], power: bool) -> None:
        nid, downtime = arg
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up:
            return
        sim.block([(nid, o) for o in sim.nodes if o != nid], min(downtime, 3.0) + 0.5, f"sever {nid}")
        sim.stop_for(sn, power, downtime)

    def _t_ok_power(self, nid: str) -> None:
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up:
            return
        rng = self.rng
        commit = sn.core.commit_index
        others = [o for o in sn.core.members if o != nid and o in sim.nodes]
        decisive = self._undurable_commit(sn)
        sim.stop_for(sn, self.power, rng.uniform(0.2, 5.0))
        if not others or (not decisive and rng.random() < 0.3):
            return
        # Take away the followers that durably hold the acknowledged command, but no more
        # than a leader that counted an unsynced copy of its own could have relied on
        # (a majority minus itself): with a correct core the rest still hold a durable
        # copy, so they must not elect a leader that lacks it, and the group still works.
        holders = [o for o in others if sim.durable_last(o) >= commit]
        rng.shuffle(holders)
        isolated = holders[: len(others) // 2] or [rng.choice(others)]
        for x in isolated:
            sim.block(sim.isolation(x), rng.uniform(10.0, 40.0), f"isolate {x}")
        if self.power and rng.random() < 0.5:
            # A rack-wide power cut: the members left lose their unsynced writes too, so
            # only durable copies count in the election that follows.
            for o in others:
                osn = sim.nodes[o]
                if o not in isolated and osn.up and osn.disk.pending:
                    sim.stop_for(osn, True, rng.uniform(0.2, 5.0))

    def _t_ack_power(self, arg: tuple[str, str]) -> None:
        follower, leader = arg
        sim = self.sim
        sn = sim.nodes[follower]
        if sim.healing or not sn.up:
            return
        rng = self.rng
        # The ack is in flight to the leader and still arrives; the leader hears no one else.
        sim.block(sim.isolation(leader, allow_from=follower), rng.uniform(10.0, 40.0), f"isolate {leader}")
        sim.stop_for(sn, self.power, rng.uniform(0.2, 3.0))

    def _t_vote_power(self, arg: tuple[str, str]) -> None:
        voter, candidate = arg
        sim = self.sim
        sn = sim.nodes[voter]
        if sim.healing or not sn.up:
            return
        rng = self.rng
        # The vote still reaches the candidate, which may win with it; nothing else of the
        # candidate's gets through, so the others may elect a rival in the same term, and
        # the voter, if its vote was not durable, may vote again.
        sim.block(sim.isolation(candidate, allow_from=voter), rng.uniform(20.0, 40.0), f"isolate {candidate}")
        sim.stop_for(sn, self.power, rng.uniform(0.1, 1.0))

    # ===================================================================================
    # Admin traffic: membership changes and leadership transfers

    def _admin_membership(self, _: Any) -> None:
        sim = self.sim
        if sim.healing:
            return
        rng = self.rng
        p = self.plan
        sim.call_later(rng.uniform(0.5, 1.5) * p.membership_interval, self._admin_membership, None)
        if self._admin_busy_until > sim.now:
            return
        leader = sim.leader()
        if leader is None:
            return
        members = leader.core.members
        learners = leader.core.learners
        if learners and rng.random() < 0.7:
            # A learner votes only once caught up: the core refuses (learner_behind) until then.
            jid = learners[0]
            req = ("promote", self._admin_no, jid)
            sim.note(f"admin: {leader.id}.promote_learner({jid})")
            self._admin_submit(req)
            sim.after(leader, leader.core.promote_learner(req, jid))
            return
        if len(members) + len(learners) < p.max_nodes and (len(members) <= 3 or rng.random() < 0.5):
            jid = self._pending_joiner
            if jid is None or not self._joiner_reusable or jid in members or sim.nodes[jid].removed:
                # A fresh id for every add whose fate is unknown: an id that was in some
                # configuration, even one later overwritten, may still get a (stale) Removed
                # and stop, so it must never be added again (raft_fleet's ids are pids).
                if self._joiners >= 8:
                    return
                jid = f"j{self._joiners}"
                self._joiners += 1
                sim.add_node(jid, ())  # a joiner knows no members: it waits to be reached
                self._pending_joiner = jid
            elif not sim.nodes[jid].up:
                return  # the joiner is down; try again later
            self._joiner_reusable = False
            # Half the joins go through a learner (the reconciler's way), half straight in.
            op = "add_learner" if rng.random() < 0.5 else "add_member"
            req: tuple = ("add", self._admin_no, jid)
            sim.note(f"admin: {leader.id}.{op}({jid})")
            self._admin_submit(req)
            sim.after(leader, getattr(leader.core, op)(req, jid))
        elif len(members) > 3 or learners:
            victim = rng.choice([m for m in members + learners if m != leader.id])
            req = ("remove", self._admin_no, victim)
            sim.note(f"admin: {leader.id}.remove_member({victim})")
            self._admin_submit(req)
            sim.after(leader, leader.core.remove_member(req, victim))

    def _admin_submit(self, req: tuple) -> None:
        self._admin_no += 1
        self.admin_req = req
        # Outcome unknown after this long (a lost leader may still commit it): move on; the
        # core refuses a second change while one is uncommitted.
        self._admin_busy_until = self.sim.now + 30.0

    def on_admin_reply(self, req: tuple, result: Result) -> None:
        if req[0] == "transfer" and req[2] is not None and type(result) is Ok:
            # Thesis §3.10, and the truth of the answer: Ok only once the target leads a
            # later term than the one the transfer was asked in.
            _, _, target, term = req
            if not any(t > term and who == target for t, who in self.sim.checker.leaders.items()):
                raise SimViolation(f"transfer to {target} (asked in term {term}) answered Ok, but {target} "
                                   f"never led a later term")
            self.transfers_done += 1
        if req != self.admin_req:
            return
        self.admin_req = None
        self._admin_busy_until = self.sim.now
        if req[0] == "add" and type(result) is Rejected and result.reason != "leadership_lost":
            # Refused before anything was appended: the same joiner can be offered again.
            self._joiner_reusable = True
        if type(result) is Ok:
            self.member_changes += 1

    def _admin_transfer(self, _: Any) -> None:
        sim = self.sim
        if sim.healing:
            return
        rng = self.rng
        p = self.plan
        sim.call_later(rng.uniform(0.5, 1.5) * p.transfer_interval, self._admin_transfer, None)
        leader = sim.leader()
        if leader is None:
            return
        others = [m for m in leader.core.members if m != leader.id]
        target = rng.choice(others) if others and rng.random() < 0.9 else None
        req = ("transfer", self._admin_no, target, leader.core.term)
        self._admin_no += 1
        self.transfers += 1
        sim.note(f"admin: {leader.id}.transfer_leadership({target})")
        sim.after(leader, leader.core.transfer_leadership(req, target))
        if target is not None and p.t_transfer and rng.random() < p.t_transfer:
            delay = rng.uniform(0.0, 2.0)
            victim = leader.id if rng.random() < 0.6 else target
            if rng.random() < 0.5:
                self._aim(f"crash {victim} during transfer", self._t_crash, (victim, rng.uniform(1.0, 15.0)), delay)
            else:
                self._aim(f"isolate {victim} during transfer", self._t_isolate, (victim, rng.uniform(5.0, 30.0)), delay)


def _cut(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    """Every directed link between the two sides."""
    return [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]
