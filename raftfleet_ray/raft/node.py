"""The pure Raft core: one member of one consensus group.

A ``RaftNode`` is a state machine in the etcd-raft style. It is driven by ``tick()``,
``step(msg)``, ``propose(...)``, ``read(...)``, ``on_persisted(...)`` and the admin
calls, and after each input it hands back a ``Ready``: what to persist, what to send
now, what to send only once persisted, what was applied and whom to answer. It never
touches a clock, a socket, a file or a global random source, so the same code runs in
the Ray actors and in the deterministic simulator.

Section numbers in comments refer to the Raft paper (Ongaro & Ousterhout, "In Search
of an Understandable Consensus Algorithm", 2014) and, where marked "thesis", to
Ongaro's PhD thesis (2014).
"""

from __future__ import annotations

import logging
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import bugs as _bugs
from .config import CoreConfig
from .dedup import EXPIRED, STALE, DedupCache
from .types import (
    AppendEntries,
    AppendEntriesResponse,
    Command,
    CommandError,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    NodeId,
    Ok,
    Quiesce,
    Raised,
    Ready,
    Rejected,
    Removed,
    Reply,
    RequestVote,
    RequestVoteResponse,
    Result,
    Snapshot,
    SnapshotMeta,
    Status,
    TimeoutNow,
    membership_data,
    split_membership,
)

if TYPE_CHECKING:
    # Only for the annotation of the injected rng: the core never imports a randomness
    # source at run time (CONVENTIONS §3); the caller passes a seeded ``random.Random``.
    import random

log = logging.getLogger(__name__)

FOLLOWER = "follower"
PRE_CANDIDATE = "pre_candidate"
CANDIDATE = "candidate"
LEADER = "leader"
REMOVED = "removed"

_DEPARTED_KEPT = 1000  # removed member ids remembered (ids are never reused)

_PROBE = "probe"  # one append in flight until the follower's log position is known
_REPLICATE = "replicate"  # optimistic pipelining, bounded by max_inflight_msgs
_SNAPSHOT = "snapshot"  # the follower is behind the log start: stream the snapshot


@dataclass(slots=True)
class _Progress:
    """What the leader knows of one follower (etcd's Progress)."""

    match: int = 0
    next: int = 1
    state: str = _PROBE
    paused: bool = False  # probe: an append is in flight
    inflight: deque[int] = field(default_factory=deque)  # last index of each append in flight
    last_ack_tick: int = 0  # for check-quorum and unresponsive_followers
    acked_sent_tick: int = -(10**9)  # newest leader send tick the follower echoed (lease)
    read_ack: int = 0  # newest ReadIndex round it confirmed
    hb_match: int = -1  # match at the previous heartbeat (detects lost pipelined appends)
    snap: Snapshot | None = None  # snapshot being streamed
    snap_offset: int = 0
    snap_acked: bool = True  # the last chunk sent was answered


@dataclass(slots=True)
class _PendingRead:
    req: Any
    arg: Any
    index: int  # commit index when the read arrived (ReadIndex, thesis §6.4)
    ctx: int  # heartbeat round that must confirm leadership; 0 = confirmed (lease or single)


@dataclass(slots=True)
class _Transfer:
    target: NodeId
    req: Any
    deadline: int
    sent: bool = False  # TimeoutNow is out: from now on we wait for the target to take over


class RaftNode:
    """One Raft member. See ``raft/types.py`` for ``Ready`` and the message types."""

    def __init__(
        self,
        node_id: NodeId,
        config: CoreConfig,
        data_factory: Callable[[], Any],
        rng: random.Random,
        *,
        members: Sequence[NodeId] = (),
        hard_state: HardState | None = None,
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        dumps: Callable[[Any], bytes] = pickle.dumps,
        loads: Callable[[bytes], Any] = pickle.loads,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        unknown = set(bugs) - _bugs.ALL
        if unknown:
            raise ValueError(f"unknown planted bugs {sorted(unknown)}; known: {sorted(_bugs.ALL)}")
        self.id = node_id
        self.config = config
        self._data_factory = data_factory
        self._rng = rng
        self._dumps = dumps
        self._loads = loads
        self._bugs = frozenset(bugs)

        hs = hard_state or HardState()
        self.term = hs.term
        self.voted_for = hs.voted_for
        self.role = FOLLOWER
        self.leader_id: NodeId | None = None

        # The log: entries after `_base`, whose term is `_base_term` (snapshot or compaction point).
        self._base = 0
        self._base_term = 0
        self._log: list[Entry] = []
        self._snap: Snapshot | None = None
        # Membership history: (index, voters, learners) for every config-bearing entry still
        # in the log, after a first item for the base. Config is in effect from the moment it
        # is appended (thesis §4.1), so the current configuration is the last item. Learners
        # (thesis §4.2.1) get the log but neither vote nor count toward any quorum.
        self._configs: list[tuple[int, tuple[NodeId, ...], tuple[NodeId, ...]]] = [(0, tuple(members), ())]

        self.commit_index = 0
        self.applied_index = 0
        self.data: Any = data_factory()
        self._results = DedupCache(config.max_retained_command_results, config.max_sessions)
        # Members that a committed entry (or force_remove_member) dropped, oldest first: with
        # the configuration history still in the log, it tells a removed member that missed
        # its Removed message from a stranger. Kept in snapshots (the log that recorded the
        # removal may be compacted away), bounded to the newest _DEPARTED_KEPT ids.
        self._departed: dict[NodeId, None] = {}
        # Indexes since the snapshot whose command did not change the value: it raised, or it
        # was a duplicate answered from the de-dup cache. A rollback must skip exactly these.
        self._skipped: set[int] = set()
        # Estimated bytes of the entries applied since the snapshot (or since the start): the
        # size trigger of _maybe_snapshot. Counted only while that trigger is on.
        self._applied_bytes = 0
        # The last failure to take or install a snapshot (user code failed in Data.snapshot,
        # in pickling the value, or in restoring one), for status(); and after a failed
        # snapshot, the applied index before which none is tried again.
        self.snapshot_error: str | None = None
        self._snapshot_retry_at = 0

        if snapshot is not None:
            self._restore_snapshot(snapshot)
            self._snap = snapshot
            self._base, self._base_term = snapshot.meta.index, snapshot.meta.term
            self._configs = [(snapshot.meta.index, snapshot.meta.members, snapshot.meta.learners)]
            self.commit_index = self.applied_index = snapshot.meta.index
        for e in entries:
            if e.index <= self._base:
                continue
            if e.index != self.last_index + 1:
                raise ValueError(
                    f"{node_id}: durable log has a gap: entry {e.index} after {self.last_index}"
                )
            self._log.append(e)
            self._note_config(e)

        # Durability bookkeeping: everything handed back at construction is durable.
        self._durable_index = self.last_index
        self._persist_seq = 0
        self._persist_marks: dict[int, tuple[int, int, int, NodeId | None]] = {}
        self._hs_dirty = False
        self._durable_hs = (self.term, self.voted_for)

        # Timers, in ticks.
        self._now = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        # A restarted member behaves as if it had just heard from a leader: it grants no vote
        # for one election timeout. That keeps a leader lease safe across a voter restart (its
        # acks before the restart may back a lease). A member that never made a term durable
        # never acknowledged anything (acks wait for their term to be durable: _send), so it
        # backs no lease: a brand-new group elects its first leader at once (group birth).
        self._last_leader_contact = 0 if hs.term > 0 else -config.election_ticks

        # Candidate state.
        self._votes: dict[NodeId, bool] = {}
        self._self_vote_pending = False
        self._transfer_campaign = False

        # Leader state.
        self._progress: dict[NodeId, _Progress] = {}
        self._waiters: dict[Any, list[Any]] = {}  # cmd_id -> request tokens awaiting its result
        self._admin_waiters: dict[int, Any] = {}  # log index of a MEMBERS entry -> request
        self._reads: deque[_PendingRead] = deque()
        self._read_seq = 0  # newest ReadIndex round started
        self._read_round_open = False  # a round is in flight, newer reads wait for the next
        self._term_start_index = 0  # index of this leader's no-op: reads wait for its commit
        self._transfer: _Transfer | None = None
        self._auto_promote: dict[NodeId, None] = {}  # learners to promote once caught up (add_learner)

        # A transfer whose TimeoutNow went out before we stepped down: answered when the target
        # leads, or as failed at the deadline (thesis §3.10).
        self._transfer_wait: _Transfer | None = None
        self._lease_broken = False  # a TimeoutNow left in this term (see _send_timeout_now)

        # Follower state: a snapshot being received in chunks.
        self._incoming: tuple[SnapshotMeta, bytearray] | None = None

        # Quiescence (see _quiesce): while True no timer runs and ticks are ignored, so the
        # quiet time does not count as time at all. `_down` holds the peers the shell reported
        # dead or unreachable (peer_down), until a message from them arrives.
        self.quiesced = False
        self._idle_ticks = 0
        self._down: dict[NodeId, None] = {}
        # Leader: the first send tick whose acks may count toward the lease. The clock stands
        # still while quiesced, so a message sent at the quiesce tick and one sent on waking
        # carry the same tick; only what is sent from the next tick on is news (_quiesce).
        self._lease_floor = 0
        # Follower: the newest send tick of the current leader's messages it has seen in this
        # term. A Quiesce older than that is a late copy and is ignored (_handle_quiesce).
        self._leader_stamp = 0

        self._ready = Ready()

    # ------------------------------------------------------------------------------------
    # Inspection

    @property
    def members(self) -> tuple[NodeId, ...]:
        """The voters of the configuration in effect."""
        return self._configs[-1][1]

    @property
    def learners(self) -> tuple[NodeId, ...]:
        return self._configs[-1][2]

    def _in_config(self, member: NodeId) -> bool:
        return member in self._configs[-1][1] or member in self._configs[-1][2]

    @property
    def first_index(self) -> int:
        return self._base + 1

    @property
    def last_index(self) -> int:
        return self._log[-1].index if self._log else self._base

    @property
    def last_term(self) -> int:
        return self._log[-1].term if self._log else self._base_term

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snap.meta if self._snap else None

    def term_at(self, index: int) -> int | None:
        if index == self._base:
            return self._base_term
        if index < self._base or index > self.last_index:
            return None
        return self._log[index - self._base - 1].term

    def entry_at(self, index: int) -> Entry:
        return self._log[index - self._base - 1]

    def entries_from(self, lo: int, hi: int | None = None) -> list[Entry]:
        lo = max(lo, self._base + 1)
        hi = self.last_index if hi is None else min(hi, self.last_index)
        if lo > hi:
            return []
        return self._log[lo - self._base - 1 : hi - self._base]

    def config_at(self, index: int) -> tuple[NodeId, ...]:
        """The voters in effect at ``index``."""
        return self._cfg_at(index)[0]

    def _cfg_at(self, index: int) -> tuple[tuple[NodeId, ...], tuple[NodeId, ...]]:
        cfg = self._configs[0]
        for c in self._configs:
            if c[0] > index:
                break
            cfg = c
        return cfg[1], cfg[2]

    def status(self) -> Status:
        return Status(
            from_=self.id,
            members=self.members,
            leader=self.leader_id,
            unresponsive_followers=self._unresponsive() if self.role == LEADER else (),
            current_term=self.term,
            state_name=self.role,
            config=self.config,
            commit_index=self.commit_index,
            applied_index=self.applied_index,
            last_index=self.last_index,
            quiesced=self.quiesced,
            learners=self.learners,
            caught_up_learners=tuple(m for m in self.learners if self._learner_caught_up(m)) if self.role == LEADER else (),
            snapshot_error=self.snapshot_error,
        )

    def holds_lease(self) -> bool:
        """True while this member is leader with a valid lease (it may answer reads alone)."""
        return self.role == LEADER and self._lease_valid()

    def query_local(self, arg: Any) -> Any:
        """``query_non_leader``: the local applied value, possibly stale; works without a leader."""
        return self.data.query(arg)

    # ------------------------------------------------------------------------------------
    # Inputs

    def tick(self) -> Ready:
        if self.role == REMOVED or self.quiesced:
            # A quiesced member's clock stands still: the shell need not tick it at all, and
            # ticking it anyway changes nothing (the simulator does; the Ray host does not).
            return self._take_ready()
        self._now += 1
        if self.role == LEADER:
            self._tick_leader()
        else:
            self._tick_election()
        return self._take_ready()

    def step(self, msg: Message) -> Ready:
        if self.role != REMOVED and msg.to == self.id:
            self._down.pop(msg.frm, None)  # it talks, so it is up
            if self.quiesced and msg.term >= self.term:
                if self._no_news(msg):
                    # A late ack of what we knew: dropped whole. Even its echoed send tick must
                    # not count, or it would renew the lease that ended when we quiesced.
                    return self._take_ready()
                self._wake()
            self._step(msg)
        return self._take_ready()

    def propose(self, req: Any, cmd_id: Any, arg: Any) -> Ready:
        return self.propose_batch(((req, cmd_id, arg),))

    def propose_batch(self, items: Sequence[tuple[Any, Any, Any]]) -> Ready:
        """Several commands ``(req, cmd_id, arg)`` at once: they are appended together and
        one append per follower carries them all (batching, DESIGN §4)."""
        self._on_activity()
        if self.role != LEADER or self._transfer is not None:
            # During a transfer new commands would keep the target from catching up (thesis §3.10).
            hint = self._transfer.target if self._transfer else self.leader_id
            for req, _, _ in items:
                self._reply(req, Rejected(REMOVED if self.role == REMOVED else "not_leader", hint))
            return self._take_ready()
        appended = False
        for req, cmd_id, arg in items:
            cached = self._results.lookup(cmd_id)
            key = self._results.key(cmd_id)
            if cached is STALE:
                # The client is already done with this command: nobody waits for an answer.
                self._reply(req, Rejected("leadership_lost", self.id))
            elif cached is EXPIRED:
                self._reply(req, Rejected("session_expired", self.id, self._results.watermark))
            elif cached is not None:
                # Already applied: the retry is answered with the first result, nothing appended.
                self._reply(req, cached)
            elif key in self._waiters:
                self._waiters[key].append(req)  # the same command is already in our log
            else:
                self._waiters[key] = [req]
                self._append(EntryKind.COMMAND, Command(cmd_id, arg))
                appended = True
        if appended:
            self._bcast_append()
        return self._take_ready()

    def read(self, req: Any, arg: Any) -> Ready:
        """A linearizable query: ReadIndex (thesis §6.4), or the leader lease when enabled."""
        self._on_activity()
        if self.role != LEADER:
            self._reply(req, Rejected(REMOVED if self.role == REMOVED else "not_leader", self.leader_id))
            return self._take_ready()
        if len(self.members) == 1 or self._lease_valid():
            self._reads.append(_PendingRead(req, arg, self.commit_index, 0))
        else:
            self._reads.append(_PendingRead(req, arg, self.commit_index, -1))  # ctx set below
            self._start_read_round()
        self._serve_reads()
        return self._take_ready()

    def on_persisted(self, seq: int) -> Ready:
        for s in sorted(k for k in self._persist_marks if k <= seq):
            index, term, hs_term, hs_vote = self._persist_marks.pop(s)
            self._durable_hs = (hs_term, hs_vote)
            if self.term_at(index) == term:
                self._durable_index = max(self._durable_index, index)
        if self.role == CANDIDATE and self._self_vote_pending and self._durable_hs == (self.term, self.id):
            # Our own vote counts only once term and vote are durable (Raft Fig. 2).
            self._self_vote_pending = False
            self._record_vote(self.id, True)
        elif self.role == LEADER:
            self._maybe_commit()
        if self.role != REMOVED:
            self._maybe_snapshot()  # one deferred until the applied entries were durable
        return self._take_ready()

    def bootstrap(self, voters: Sequence[NodeId], restored: Snapshot | None = None) -> Ready:
        """Give a brand-new member the first configuration of a new group (all its voters, the
        group born whole): only before it has a term, a log or a configuration. Nothing is
        written: the first leader's no-op carries the configuration into every log, and a
        member that restarts before it holds that entry comes back passive (no configuration)
        and is caught up by the leader like any joiner. Call ``campaign`` on the voter that
        should lead: the others grant at once (they back no lease, see ``__init__``). Calling
        it again, or after the leader's no-op brought the same configuration, changes nothing;
        a member with another configuration or a log refuses (ValueError).

        ``restored`` (a restore born whole, ``restored_snapshot`` of an earlier incarnation
        for these ``voters``): given to the member that will lead, it becomes that member's
        state, written before anything is sent (``Ready.snapshot``, and the snapshot's term as
        the hard state, so the new leader's entries follow the restored log's terms). The
        other voters start empty and get it from the leader (InstallSnapshot), so nothing is
        acknowledged until a majority of the new configuration holds it."""
        if self.id not in voters or len(set(voters)) != len(voters):
            raise ValueError(f"{self.id}: bootstrap with voters {tuple(voters)}, which must be distinct and "
                             "include this member")
        if restored is not None and tuple(restored.meta.members) != tuple(voters):
            raise ValueError(f"{self.id}: restored snapshot of voters {restored.meta.members}, not {tuple(voters)}")
        if restored is None and (self.members, self.learners) == (tuple(voters), ()):
            return self._take_ready()  # the first leader's no-op got here first: nothing to do
        if self.last_index or self.members or self.learners or (restored is not None and self.term):
            raise ValueError(f"{self.id}: bootstrap with voters {tuple(voters)} of a member that already has "
                             f"a log, a term or another configuration (last index {self.last_index}, voters "
                             f"{self.members}, learners {self.learners})")
        if restored is not None:
            self._install_snapshot(restored)
            self._set_term(restored.meta.term, None)
            return self._take_ready()
        # It may have voted already (the first leader's request can arrive before this call):
        # the configuration is the one that leader campaigns in, so nothing it did changes.
        self._configs = [(0, tuple(voters), ())]
        return self._take_ready()

    def campaign(self) -> Ready:
        self._on_activity()
        if self.role not in (LEADER, REMOVED) and self.id in self.members:
            self._start_election(pre_vote=self.config.pre_vote and len(self.members) > 1)
        return self._take_ready()

    def add_member(self, req: Any, member: NodeId) -> Ready:
        """Add ``member`` as a voter at once (rafted_value's add_follower). While it catches up
        it counts toward the quorum without holding the log: prefer add_learner, then
        promote_learner."""
        self._on_activity()
        if (err := self._check_membership_change()) is not None:
            self._reply(req, err)
        elif self._in_config(member):
            self._reply(req, Rejected("already_member", self.id))
        else:
            self._change_members(req, self.members + (member,), self.learners)
            self._start_progress(member)
        return self._take_ready()

    def add_learner(self, req: Any, member: NodeId, promote: bool = False) -> Ready:
        """Add ``member`` as a learner (thesis §4.2.1): it receives the log (or a snapshot) but
        neither votes nor counts toward any quorum, so a slow or dead learner never stalls a
        commit or an election. ``promote_learner`` makes it a voter once it has caught up;
        with ``promote=True`` this leader does that by itself, as soon as the learner has
        caught up (answered ``Reply(("promoted", member), ...)``). That wish is not replicated:
        a new leader leaves it to whoever asked (the reconciler promotes in its next round)."""
        self._on_activity()
        if (err := self._check_membership_change()) is not None:
            self._reply(req, err)
        elif self._in_config(member):
            self._reply(req, Rejected("already_member", self.id))
        else:
            self._change_members(req, self.members, self.learners + (member,))
            self._start_progress(member)
            if promote:
                self._auto_promote[member] = None
        return self._take_ready()

    def _maybe_auto_promote(self, member: NodeId) -> None:
        """A learner added with ``promote=True`` caught up: make it a voter now, not a
        reconciler round later (the window in which the group has fewer voters than wanted)."""
        if member not in self.learners:
            self._auto_promote.pop(member, None)
            return
        if self._learner_caught_up(member) and self._check_membership_change() is None:
            del self._auto_promote[member]
            self._change_members(("promoted", member), self.members + (member,),
                                 tuple(m for m in self.learners if m != member))

    def promote_learner(self, req: Any, member: NodeId) -> Ready:
        """Make learner ``member`` a voter, only once it has caught up: it holds everything
        committed so far and answers (thesis §4.2.1: a new server votes only once its log is
        current, so adding it cannot leave the group without a quorum that holds the log).
        Otherwise ``learner_behind``: try again later."""
        self._on_activity()
        if (err := self._check_membership_change()) is not None:
            self._reply(req, err)
        elif member not in self.learners:
            self._reply(req, Rejected("not_learner", self.id))
        elif not self._learner_caught_up(member):
            self._reply(req, Rejected("learner_behind", self.id))
        else:
            self._change_members(req, self.members + (member,), tuple(m for m in self.learners if m != member))
        return self._take_ready()

    def _learner_caught_up(self, member: NodeId) -> bool:
        pr = self._progress.get(member)
        return (
            pr is not None
            and pr.state == _REPLICATE
            and pr.match >= self.commit_index
            and member not in self._unresponsive()
        )

    def _start_progress(self, member: NodeId) -> None:
        # The joiner probes back from our log end to what it holds (or gets the snapshot).
        self._progress[member] = _Progress(next=self.last_index + 1, last_ack_tick=self._now)
        self._send_append(member)

    def remove_member(self, req: Any, member: NodeId) -> Ready:
        self._on_activity()
        if (err := self._check_membership_change()) is not None:
            self._reply(req, err)
        elif member == self.id:
            self._reply(req, Rejected("cannot_remove_leader", self.id))
        elif not self._in_config(member):
            self._reply(req, Rejected("not_member", self.id))
        elif member in self.learners:
            # A learner never counts toward a quorum: it can always go.
            self._progress.pop(member, None)
            self._change_members(req, self.members, tuple(m for m in self.learners if m != member))
        elif not self._can_safely_remove(member):
            self._reply(req, Rejected("will_break_quorum", self.id))
        else:
            # The removed member gets no more appends (config in effect at append, thesis
            # §4.1) -- not even the entry that removes it, so its progress goes *before* the
            # append is broadcast. It learns of its removal from a Removed message once the
            # change commits, and if that is lost, from the leader's answer to its next
            # (pre-)vote request. (It used to receive the entry: with the entry in its log it
            # left its own configuration, stopped campaigning, and so never asked again: a
            # lost Removed left it running forever.)
            self._progress.pop(member, None)
            self._change_members(req, tuple(m for m in self.members if m != member), self.learners)
        return self._take_ready()

    def transfer_leadership(self, req: Any, target: NodeId | None) -> Ready:
        """Leadership transfer (thesis §3.10). ``None`` cancels; a later call overrides."""
        self._on_activity()
        if self.role != LEADER:
            self._reply(req, Rejected("not_leader", self.leader_id))
        elif target is None:
            if self._transfer is not None:
                self._reply(self._transfer.req, Rejected("pending_leader_change", self.id))
                self._transfer = None
            self._reply(req, Ok())
        elif target == self.id:
            self._reply(req, Rejected("already_leader", self.id))
        elif target not in self.members:
            self._reply(req, Rejected("not_member", self.id))
        elif self._uncommitted_membership_change():
            self._reply(req, Rejected("uncommitted_membership_change", self.id))
        elif target in self._unresponsive():
            self._reply(req, Rejected("new_leader_unresponsive", self.id))
        else:
            if self._transfer is not None:
                self._reply(self._transfer.req, Rejected("pending_leader_change", self.id))
            self._transfer = _Transfer(target, req, self._now + self.config.election_ticks)
            if self._progress[target].match == self.last_index:
                self._send_timeout_now()
            else:
                self._send_append(target)
        return self._take_ready()

    def force_remove_member(self, member: NodeId) -> Ready:
        """Drop ``member`` from the local configuration only (majority-loss repair).

        Unsafe by design, as in rafted_value: committed entries may be lost. The caller
        must run it on every survivor and make sure ``member`` is dead. The next leader's
        no-op carries the reduced member list, which makes it durable and replicated.
        """
        if member == self.id or not self._in_config(member):
            return self._take_ready()
        self._on_activity()
        self._configs = [(i, tuple(m for m in vs if m != member), tuple(m for m in ls if m != member))
                         for i, vs, ls in self._configs]
        self._note_departed((member,))
        self._progress.pop(member, None)
        if self._transfer is not None and self._transfer.target == member:
            self._reply(self._transfer.req, Rejected("new_leader_unresponsive", self.id))
            self._transfer = None
        if self.role == LEADER:
            self._maybe_commit()
            self._advance_reads()  # the smaller quorum may already confirm the open read round
        return self._take_ready()

    def peer_down(self, member: NodeId) -> Ready:
        """The shell reports ``member`` dead or unreachable (Ray says its actor or node died, or
        it stopped answering liveness probes). Not a protocol fact, only a hint that speeds up
        what the timers would do: it never decides a vote or a commit.

        - A follower whose leader is reported down campaigns within one election timeout (it
          wakes if quiesced). This is how a quiesced group, whose election timers stand still,
          elects a new leader as fast as an active one (Dragonboat and TiKV use their node
          liveness the same way). It also stops refusing votes for that leader at once when
          that cannot break a lease: when it was quiesced (the leader ended its lease when it
          quiesced, and any lease it holds since rests on acks from members it woke), or
          when the group has no leases. An awake follower of a leasing group keeps refusing
          for the usual election timeout: the report may be false (a partition between
          this member and the leader only), and the lease counts on that refusal. For the
          same reason it does not campaign before then either: its vote for itself is a vote
          too, and with one member that lost the leader earlier it would make a majority
          while the leader still serves reads from a lease this member's ack extended.
        - A leader notes a follower down: it then counts as unresponsive and does not keep the
          group from quiescing (a dead member must not make an idle group tick forever).

        Any message from ``member`` clears the mark."""
        if self.role == REMOVED or member == self.id or not self._in_config(member):
            return self._take_ready()
        self._down = {m: None for m in self._down if self._in_config(m)}
        self._down[member] = None
        if self.role != LEADER and member == self.leader_id:
            T = self.config.election_ticks
            guarded = not (self.quiesced or self.config.lease_ticks == 0)  # the lease counts on us
            if not guarded:
                self._last_leader_contact = self._now - T  # votes are no longer refused for it
            if self.quiesced:
                self._wake()
            self.leader_id = None
            # Campaign soon, in an order every survivor computes alike (by member id), half an
            # election timeout apart: the first in line campaigns within a few ticks and the
            # others only if it does not win, so the survivors of a leader's death do not split
            # the vote (randomized timeouts would leave a tie now and then, and a tie costs a
            # whole new election timeout).
            others = sorted(m for m in self.members if m != member)
            rank = others.index(self.id) if self.id in others else len(others)
            delay = 1 + rank * max(1, T // 2) + self._rng.randint(0, max(1, T // 10))
            if guarded:
                # Still inside the vote guard (thesis §6.4.1): campaign once it ends, not sooner.
                delay = max(delay, T - (self._now - self._last_leader_contact))
            self._election_elapsed = max(self._election_elapsed, self._randomized_timeout - delay)
        return self._take_ready()

    # ------------------------------------------------------------------------------------
    # Quiescence (Dragonboat's quiesce, TiKV's hibernate regions, Ra's idle servers)
    #
    # An idle group does no periodic work: after `quiesce_ticks` quiet ticks with every
    # follower caught up, the leader sends Quiesce and stops heartbeating; each follower whose
    # log ends where the leader's does stops its election timer. Safety never depended on
    # timers (Raft §5.4 rests on terms, votes and logs), so only three things need care:
    #
    # - the leader lease (thesis §6.4.1) rests on time, and quiet time is not counted: the
    #   leader ends its lease when it quiesces, and a new one needs acks sent after it woke;
    # - a follower still refuses votes for one election timeout of *awake* time after it
    #   last heard from its leader (thesis §4.2.3), which is at least as strict as before;
    # - liveness: a quiesced follower cannot notice that its leader died, so the shell tells
    #   it (peer_down). Any message of the current term, and any client or admin call,
    #   wakes a member.

    def _on_activity(self) -> None:
        self._idle_ticks = 0
        if self.quiesced:
            self._wake()

    def _wake(self) -> None:
        self.quiesced = False
        self._idle_ticks = 0
        if self.role == LEADER:
            # The quiet time did not pass for us: give every follower a full check-quorum
            # period from now (their last acks are older than the quiet period), and heartbeat
            # at the next tick so that followers woken by the same event find us.
            for pr in self._progress.values():
                pr.last_ack_tick = self._now
            self._heartbeat_elapsed = self.config.heartbeat_ticks
        else:
            self._election_elapsed = 0
            self._randomized_timeout = self._new_election_timeout()

    def _no_news(self, m: Message) -> bool:
        """A late ack to a quiesced leader that says nothing new: no reason to wake."""
        if type(m) is not AppendEntriesResponse or not m.success or self.role != LEADER or m.term != self.term:
            return False
        pr = self._progress.get(m.frm)
        return pr is not None and m.match_index <= pr.match and m.read_ctx <= pr.read_ack

    def _quiet(self) -> bool:
        """True when the leader has nothing left to do: everything committed and applied,
        nobody waiting, and every follower caught up (or reported down)."""
        if (
            self.commit_index != self.last_index
            or self.applied_index != self.commit_index
            or self.commit_index < self._term_start_index
            or self._waiters
            or self._admin_waiters
            or self._reads
            or self._transfer is not None
        ):
            return False
        last = self.last_index
        for m in self.members + self.learners:
            if m == self.id or m in self._down:
                continue
            pr = self._progress.get(m)
            if pr is None or pr.state != _REPLICATE or pr.match != last or pr.inflight:
                return False
        return True

    def _quiesce(self) -> None:
        self.quiesced = True
        self._idle_ticks = 0
        # The lease ends here: it is measured in ticks, and quiet time has none. Every ack of
        # what was sent up to this tick is old news once we wake, however late (or however
        # many times: the network may duplicate) it arrives, because our clock will resume at
        # this very tick: only acks of messages sent from the next tick on renew the lease.
        self._lease_floor = self._now + 1
        for peer, pr in self._progress.items():
            if _bugs.QUIESCE_KEEPS_LEASE not in self._bugs:
                pr.acked_sent_tick = -(10**9)
            if peer not in self._down:
                self._send(Quiesce(self.term, self.id, peer, self.last_index, self.last_term, self._now))

    def _handle_quiesce(self, m: Quiesce) -> None:
        if m.sent_tick < self._leader_stamp and _bugs.QUIESCE_STALE not in self._bugs:
            # A late copy: the leader has sent newer messages since (it woke after this
            # Quiesce), and our acks of those may back its lease now. Quiescing would let a
            # failure report drop our vote guard (peer_down) under that lease. A Quiesce at
            # least as new as everything we saw is safe: the leader ended its lease when it sent
            # it, and nothing we acked before counts toward a new one (_lease_floor).
            return
        if self.last_index == m.index and self.term_at(m.index) == m.log_term and self._incoming is None:
            # Our log matches the leader's whole log, all of it committed (Log Matching,
            # Raft §5.3): the same check as an empty append with commit = index.
            self._commit_to(m.index)
            self.quiesced = True
        else:
            # Not caught up after all (the Quiesce overtook an append): say so, which wakes the
            # leader; it resumes heartbeats and repairs our log.
            self._send(AppendEntriesResponse(self.term, self.id, m.frm, False, m.index,
                                             conflict_index=min(self.last_index + 1, m.index), conflict_term=0))

    # ------------------------------------------------------------------------------------
    # Ready plumbing

    def _take_ready(self) -> Ready:
        rd = self._ready
        self._ready = Ready()
        if self._hs_dirty:
            rd.hard_state = HardState(self.term, self.voted_for)
            self._hs_dirty = False
        if rd.needs_persist() or rd.messages_after_persist:
            self._persist_seq += 1
            rd.persist_seq = self._persist_seq
            self._persist_marks[rd.persist_seq] = (
                self.last_index,
                self.last_term,
                self.term,
                self.voted_for,
            )
        return rd

    def _send(self, msg: Message) -> None:
        if type(msg) is AppendEntriesResponse and self._durable_hs[0] != self.term:
            # An answer to a leader claims its term (Raft Fig. 2: persist before responding),
            # and the leader counts it toward its lease: it waits until that term is durable,
            # or a restart could forget the term while the ack still backs the lease (etcd
            # holds every append response until the Ready's hard state is persisted).
            self._ready.messages_after_persist.append(msg)
            return
        self._ready.messages.append(msg)

    def _send_after_persist(self, msg: Message) -> None:
        self._ready.messages_after_persist.append(msg)

    def _reply(self, req: Any, result: Result) -> None:
        self._ready.replies.append(Reply(req, result))

    def _set_term(self, term: int, voted_for: NodeId | None) -> None:
        if term != self.term:
            self._leader_stamp = 0  # a new term, a new leader (if any) and its own clock
        if (term, voted_for) != (self.term, self.voted_for):
            self.term, self.voted_for = term, voted_for
            self._hs_dirty = True

    # ------------------------------------------------------------------------------------
    # Timers

    def _new_election_timeout(self) -> int:
        t = self.config.election_ticks
        return t + self._rng.randint(1, t)  # uniform in (T, 2T] (rafted_value, Raft §5.2)

    def _tick_election(self) -> None:
        if self._transfer_wait is not None:
            self._finish_transfer_wait(None)
        self._election_elapsed += 1
        if self._election_elapsed < self._randomized_timeout:
            return
        self._election_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        # A member not in its own configuration (a joiner not yet caught up, or a removed
        # member) never campaigns: it could only disrupt the group.
        if self.id in self.members:
            self._start_election(pre_vote=self.config.pre_vote and len(self.members) > 1)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        T = self.config.election_ticks
        if self.config.check_quorum and len(self.members) > 1:
            # Check quorum (thesis §6.2): step down when no majority was heard from in 2T.
            if self._now - self._quorum_tick(lambda p: p.last_ack_tick) > 2 * T:
                log.info("%s: leader of term %d lost contact with a quorum; stepping down", self.id, self.term)
                self._become_follower(self.term, None)
                return
        if self._transfer is not None and self._now >= self._transfer.deadline:
            # Thesis §3.10: no takeover within an election timeout: abort, resume leading.
            reason = "transfer_failed" if self._transfer.sent else "new_leader_unresponsive"
            self._reply(self._transfer.req, Rejected(reason, self.id))
            self._transfer = None
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat()
        if self.config.quiesce_ticks:
            if self._quiet():
                self._idle_ticks += 1
                if self._idle_ticks >= self.config.quiesce_ticks:
                    self._quiesce()
            else:
                self._idle_ticks = 0

    # ------------------------------------------------------------------------------------
    # Elections (Raft §5.2, thesis §9.6 pre-vote)

    def _in_lease(self) -> bool:
        """True while a live leader is known: then votes are refused (thesis §4.2.3), which keeps
        removed or partitioned members from disrupting the group, and makes leases safe."""
        if self.role == LEADER:
            return len(self.members) > 1 and (
                self._now - self._quorum_tick(lambda p: p.last_ack_tick) < self.config.election_ticks
            )
        return self._now - self._last_leader_contact < self.config.election_ticks

    def _start_election(self, pre_vote: bool, transfer: bool = False) -> None:
        if pre_vote:
            # Pre-vote: ask whether we could win before disturbing anyone's term.
            self.role = PRE_CANDIDATE
            self.leader_id = None
            self._votes = {self.id: True}
            term = self.term + 1
        else:
            self.role = CANDIDATE
            self.leader_id = None
            self._set_term(self.term + 1, self.id)
            self._votes = {}
            self._self_vote_pending = True
            self._transfer_campaign = transfer
            term = self.term
        self._election_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        for peer in self.members:
            if peer == self.id:
                continue
            msg = RequestVote(term, self.id, peer, self.last_index, self.last_term, pre_vote, transfer)
            if pre_vote or _bugs.VOTE_BEFORE_PERSIST in self._bugs:
                self._send(msg)
            else:
                # Our term must be durable before anyone can vote for us in it.
                self._send_after_persist(msg)
        if pre_vote:
            self._check_votes()
        elif _bugs.VOTE_BEFORE_PERSIST in self._bugs:
            self._self_vote_pending = False
            self._record_vote(self.id, True)

    def _record_vote(self, voter: NodeId, granted: bool) -> None:
        self._votes.setdefault(voter, granted)
        self._check_votes()

    def _check_votes(self) -> None:
        members = self.members
        quorum = len(members) // 2 + 1
        granted = sum(1 for m in members if self._votes.get(m) is True)
        rejected = sum(1 for m in members if self._votes.get(m) is False)
        # Votes count only from the configuration in effect now (thesis §4.1): a majority of
        # grants wins (Raft §5.2); a pre-vote majority only allows a real election (thesis §9.6).
        if granted >= quorum:
            if self.role == PRE_CANDIDATE:
                self._start_election(pre_vote=False, transfer=False)
            else:
                self._become_leader()
        elif rejected >= quorum:
            # This round cannot be won; wait for a new timeout as a follower (etcd does the
            # same) rather than keep a term nobody will vote in.
            self._become_follower(self.term, None)

    def _handle_request_vote(self, m: RequestVote) -> None:
        # Raft §5.4.1: only vote for a candidate whose log is at least as up to date as ours.
        up_to_date = (m.last_log_term, m.last_log_index) >= (self.last_term, self.last_index)
        if m.pre_vote:
            grant = m.term > self.term and up_to_date and (not self._in_lease())
            self._send(RequestVoteResponse(m.term if grant else self.term, self.id, m.frm, grant, True))
            return
        # The vote guard (thesis §4.2.3): no vote for an election timeout after hearing from a
        # live leader, whatever the term, unless the leader itself asked (a transfer). Checked
        # here and not only when the request's term is higher (_step): this member may have
        # reached the candidate's term by another way (the higher term of a rejected pre-vote's
        # response, any stale member's message) while the leader it heard still holds a lease
        # that counts on this refusal. A vote already given is given again (a retransmission).
        guarded = (not m.transfer and self.voted_for != m.frm and self._in_lease()
                   and _bugs.VOTE_GUARD_HIGHER_TERM_ONLY not in self._bugs)
        grant = m.term == self.term and self.voted_for in (None, m.frm) and up_to_date and not guarded
        if grant:
            self._set_term(self.term, m.frm)
            self._election_elapsed = 0
            resp = RequestVoteResponse(self.term, self.id, m.frm, True)
            if _bugs.VOTE_BEFORE_PERSIST in self._bugs:
                self._send(resp)
            else:
                self._send_after_persist(resp)  # the vote must be durable before it is counted
        else:
            self._send(RequestVoteResponse(self.term, self.id, m.frm, False))

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        was_leader = self.role == LEADER
        if term > self.term:
            self._set_term(term, None)
        self.role = FOLLOWER
        self.leader_id = leader
        self._election_elapsed = 0
        self._randomized_timeout = self._new_election_timeout()
        self._votes = {}
        self._self_vote_pending = False
        if was_leader:
            self._abandon_leadership()

    def _abandon_leadership(self) -> None:
        # Every caller still waiting may or may not see its command committed by the next
        # leader: answer "leadership_lost" so it retries with the same command id.
        hint = self.leader_id
        for reqs in self._waiters.values():
            for req in reqs:
                self._reply(req, Rejected("leadership_lost", hint))
        for req in self._admin_waiters.values():
            self._reply(req, Rejected("leadership_lost", hint))
        for r in self._reads:
            self._reply(r.req, Rejected("not_leader", hint))
        if self._transfer is not None:
            if self._transfer.sent:
                # Most likely the target's own election made us step down: answered once we
                # learn who leads (or at the deadline), as a follower.
                self._transfer_wait = self._transfer
            else:
                self._reply(self._transfer.req, Rejected("new_leader_unresponsive", hint))
        self._waiters.clear()
        self._admin_waiters.clear()
        self._reads.clear()
        self._read_round_open = False
        self._transfer = None
        self._auto_promote.clear()
        self._progress.clear()

    def _become_leader(self) -> None:
        self.role = LEADER
        self.leader_id = self.id
        self._lease_broken = False
        if self._transfer_wait is not None:
            self._finish_transfer_wait(self.id)  # we lead again: the transfer failed
        self._heartbeat_elapsed = 0
        self._votes = {}
        self._progress = {
            m: _Progress(next=self.last_index + 1, last_ack_tick=self._now)
            for m in self.members + self.learners
            if m != self.id
        }
        # Raft §8: a no-op of the new term lets the leader learn what is committed, and reads
        # wait for it. Like rafted_value's leader_elected2 it carries the member list, which
        # also replicates any force_remove_member done locally before this election.
        self._append_and_broadcast(EntryKind.NOOP, membership_data(self.members, self.learners))
        self._term_start_index = self.last_index
        log.info("%s: leader of term %d (members %s)", self.id, self.term, self.members)

    # ------------------------------------------------------------------------------------
    # Message dispatch

    def _step(self, m: Message) -> None:
        if isinstance(m, Removed):
            # Sent only once a configuration without us is committed, so true in any term.
            self._become_removed()
            return
        if isinstance(m, RequestVote) and self._known_departed(m.frm):
            # A member whose removal is committed but who missed the news (rafted_value #3).
            # Only when we *know* it left: a stale leader (cut off while a newer leader added
            # the sender) must not stop a member it has merely never heard of. Any member
            # that knows may say so, not only the leader: the removed member only writes to
            # its old configuration, which may no longer contain the current leader.
            self._send(Removed(self.term, self.id, m.frm))
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if self._in_lease() and not m.transfer:
                    return  # a live leader is known: ignore a disruptive candidate (thesis §4.2.3)
                if m.pre_vote:
                    self._handle_request_vote(m)  # a pre-vote never changes our term
                    return
                self._become_follower(m.term, None)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass  # granted pre-votes carry the term we would campaign in
            elif isinstance(m, AppendEntries | InstallSnapshot | TimeoutNow | Quiesce):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | InstallSnapshot):
                # A stale leader: tell it our term so it steps down. Needed with pre-vote and
                # check-quorum, where a member that advanced its term in a partition can rejoin
                # only this way (etcd does the same).
                self._send(AppendEntriesResponse(self.term, self.id, m.frm, False, 0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(RequestVoteResponse(self.term, self.id, m.frm, False, True))
            return

        match m:
            case RequestVote():
                self._handle_request_vote(m)
            case RequestVoteResponse():
                if m.pre_vote and self.role == PRE_CANDIDATE and (m.term == self.term + 1 or not m.granted):
                    self._record_vote(m.frm, m.granted)
                elif not m.pre_vote and self.role == CANDIDATE and m.term == self.term:
                    self._record_vote(m.frm, m.granted)
            case AppendEntries():
                if self.role != FOLLOWER:
                    self._become_follower(self.term, m.frm)
                self._accept_leader(m.frm)
                self._leader_stamp = max(self._leader_stamp, m.sent_tick)
                self._handle_append(m)
            case InstallSnapshot():
                if self.role != FOLLOWER:
                    self._become_follower(self.term, m.frm)
                self._accept_leader(m.frm)
                self._handle_snapshot_chunk(m)
            case AppendEntriesResponse():
                if self.role == LEADER:
                    self._handle_append_response(m)
            case InstallSnapshotResponse():
                if self.role == LEADER:
                    self._handle_snapshot_response(m)
            case Quiesce():
                if self.role != LEADER:
                    if self.role != FOLLOWER:
                        self._become_follower(self.term, m.frm)
                    self._accept_leader(m.frm)
                    self._handle_quiesce(m)
            case TimeoutNow():
                if self.role != LEADER and self.id in self.members:
                    # Thesis §3.10: the leader picked us; campaign now, past the lease guard.
                    self._start_election(pre_vote=False, transfer=True)

    def _accept_leader(self, leader: NodeId) -> None:
        if leader != self.leader_id:
            self._leader_stamp = 0  # stamps are the sender's ticks: another leader, another clock
        self.leader_id = leader
        self._election_elapsed = 0
        self._last_leader_contact = self._now
        if self._transfer_wait is not None:
            self._finish_transfer_wait(leader)

    def _known_departed(self, member: NodeId) -> bool:
        """True when a committed configuration dropped ``member`` after it had been a member:
        removals are final (ids are never reused), so only then may we tell it ``Removed``."""
        if self._in_config(member):
            return False
        if member in self._departed:
            return True
        seen = False
        for i, vs, ls in self._configs:
            if i > self.commit_index:
                break
            if member in vs or member in ls:
                seen = True
            elif seen:
                return True
        return False

    def _note_departed(self, ids: Iterable[NodeId]) -> None:
        for m in ids:
            self._departed.pop(m, None)
            self._departed[m] = None
        while len(self._departed) > _DEPARTED_KEPT:
            del self._departed[next(iter(self._departed))]

    def _become_removed(self) -> None:
        if self.role == REMOVED:
            return
        if self.role == LEADER:
            self._abandon_leadership()
        log.info("%s: removed from the group in term %d; stopping", self.id, self.term)
        self.role = REMOVED
        if self._transfer_wait is not None:
            self._finish_transfer_wait(None)
        self.leader_id = None
        self._ready.removed = True

    # ------------------------------------------------------------------------------------
    # Log replication, follower side (Raft §5.3)

    def _ack(self, leader: NodeId, match: int, ctx: int, sent_tick: int) -> None:
        resp = AppendEntriesResponse(self.term, self.id, leader, True, match, read_ctx=ctx, sent_tick=sent_tick)
        if match <= self._durable_index or _bugs.ACK_BEFORE_PERSIST in self._bugs:
            self._send(resp)
        else:
            # An acknowledgement claims durability (Raft §5.3): it waits for the write.
            self._send_after_persist(resp)

    def _handle_append(self, m: AppendEntries) -> None:
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self._base:
            # The start of the message is inside our snapshot: committed, so identical to
            # what we hold. Skip that part and anchor the rest at our base.
            skip = self._base - prev
            if len(entries) <= skip:
                self._ack(m.frm, min(self._base, self.commit_index), m.read_ctx, m.sent_tick)
                return
            prev, prev_term, entries = self._base, self._base_term, entries[skip:]
        if prev > self.last_index:
            self._send(
                AppendEntriesResponse(self.term, self.id, m.frm, False, m.prev_index,
                                      conflict_index=self.last_index + 1, conflict_term=0,
                                      read_ctx=m.read_ctx, sent_tick=m.sent_tick)
            )
            return
        local_term = self.term_at(prev)
        if local_term != prev_term:
            # Fast back-off: point the leader at the first entry of our conflicting term.
            ci = prev
            while ci - 1 > self._base and self.term_at(ci - 1) == local_term:
                ci -= 1
            self._send(
                AppendEntriesResponse(self.term, self.id, m.frm, False, m.prev_index,
                                      conflict_index=ci, conflict_term=local_term or 0,
                                      read_ctx=m.read_ctx, sent_tick=m.sent_tick)
            )
            return
        last_new = prev + len(entries)
        new: list[Entry] = []
        for i, e in enumerate(entries):
            t = self.term_at(e.index)
            if t == e.term:
                continue
            if t is not None:
                # Raft Fig. 2, AppendEntries receiver rule 3: a conflicting entry and
                # everything after it go. rafted_value keeps the suffix; we must not.
                if e.index <= self.commit_index:
                    raise AssertionError(
                        f"{self.id}: leader {m.frm} term {m.term} conflicts with committed entry {e.index}"
                    )
                if _bugs.NO_TRUNCATION in self._bugs:
                    self._overwrite_without_truncation(entries[i:])
                    last_new = max(self.last_index, last_new)
                    break
                self._truncate_from(e.index)
            new = list(entries[i:])
            break
        if new:
            for e in new:
                self._log.append(e)
                self._note_config(e)
            self._ready.entries.extend(new)
        if m.commit > self.commit_index:
            self._commit_to(min(m.commit, last_new))
        self._ack(m.frm, last_new, m.read_ctx, m.sent_tick)

    def _overwrite_without_truncation(self, entries: Sequence[Entry]) -> None:
        """The NO_TRUNCATION planted bug: overwrite in place and keep the stale suffix."""
        for e in entries:
            if e.index <= self.last_index:
                self._log[e.index - self._base - 1] = e
            else:
                self._log.append(e)
        self._configs = [c for c in self._configs if c[0] < entries[0].index or c[0] == self._configs[0][0]]
        for e in self._log[entries[0].index - self._base - 1 :]:
            self._note_config(e)
        # Storage sees the rewrite of the whole tail.
        self._ready.entries.extend(self._log[entries[0].index - self._base - 1 :])

    def _truncate_from(self, index: int) -> None:
        del self._log[index - self._base - 1 :]
        while len(self._configs) > 1 and self._configs[-1][0] >= index:
            self._configs.pop()
        self._durable_index = min(self._durable_index, index - 1)

    def _note_config(self, e: Entry) -> None:
        if e.kind in (EntryKind.NOOP, EntryKind.MEMBERS) and e.data is not None:
            self._configs.append((e.index, *split_membership(e.data)))

    def _handle_snapshot_chunk(self, m: InstallSnapshot) -> None:
        if m.meta.index <= self.commit_index:
            # We already have all of it: tell the leader where we are.
            self._send(InstallSnapshotResponse(self.term, self.id, m.frm, m.meta.index, len(m.chunk) + m.offset))
            self._ack(m.frm, self.commit_index, 0, 0)
            return
        if m.offset == 0:
            self._incoming = (m.meta, bytearray())
        if self._incoming is None or self._incoming[0] != m.meta or len(self._incoming[1]) != m.offset:
            have = len(self._incoming[1]) if self._incoming and self._incoming[0] == m.meta else 0
            self._send(InstallSnapshotResponse(self.term, self.id, m.frm, m.meta.index, have))
            return
        buf = self._incoming[1]
        buf.extend(m.chunk)
        self._send(InstallSnapshotResponse(self.term, self.id, m.frm, m.meta.index, len(buf)))
        if not m.done:
            return
        self._incoming = None
        snap = Snapshot(m.meta, bytes(buf))
        try:
            self._install_snapshot(snap)
        except BaseException as exc:  # noqa: BLE001 - user code (Data.restore, unpickling)
            # Nothing was changed (_install_snapshot decodes first). Without an ack the leader
            # streams the snapshot again; meanwhile status() says why this member is stuck.
            self.snapshot_error = f"installing the leader's snapshot at index {m.meta.index} failed: {_safe_repr(exc)}"
            log.error("%s: %s", self.id, self.snapshot_error)
            return
        self._ack(m.frm, snap.meta.index, 0, 0)

    def _install_snapshot(self, snap: Snapshot) -> None:
        """Raft §7: replace the state with the leader's snapshot; keep a matching log suffix."""
        meta = snap.meta
        self._restore_snapshot(snap)
        if self.term_at(meta.index) == meta.term:
            kept = self.entries_from(meta.index + 1)
        else:
            kept = []
            self._durable_index = 0  # nothing after the snapshot is ours until it is written
        self._log = list(kept)
        self._base, self._base_term = meta.index, meta.term
        self._configs = [(meta.index, meta.members, meta.learners)]
        for e in kept:
            self._note_config(e)
        self._snap = snap
        self._skipped.clear()
        self._applied_bytes = 0  # the leader's snapshot covers everything applied so far
        self.commit_index = max(self.commit_index, meta.index)
        self.applied_index = meta.index
        # The applied-entry stream jumps here: observers see the snapshot in Ready.snapshot.
        self._ready.snapshot = snap

    # ------------------------------------------------------------------------------------
    # Log replication, leader side (Raft §5.3, etcd Progress for flow control)

    def _append_and_broadcast(self, kind: EntryKind, data: Any) -> None:
        self._append(kind, data)
        self._bcast_append()

    def _append(self, kind: EntryKind, data: Any) -> None:
        e = Entry(self.term, self.last_index + 1, kind, data)
        self._log.append(e)
        self._note_config(e)
        self._ready.entries.append(e)

    def _bcast_append(self) -> None:
        if len(self.members) == 1 and _bugs.LEADER_COUNTS_UNPERSISTED in self._bugs:
            self._maybe_commit()
        for peer in self._progress:
            self._send_append(peer)

    def _entry_size(self, e: Entry) -> int:
        if e.kind == EntryKind.COMMAND and isinstance(e.data.arg, bytes | bytearray):
            return len(e.data.arg) + 32
        return 64

    def _send_append(self, peer: NodeId, *, force: bool = False) -> None:
        pr = self._progress.get(peer)
        if pr is None:
            return
        if pr.state == _SNAPSHOT:
            self._send_snapshot_chunk(peer, pr, resend=force)
            return
        if pr.next <= self._base:
            self._start_snapshot(peer, pr)
            return
        if pr.state == _PROBE and pr.paused and not force:
            return
        if pr.state == _REPLICATE and len(pr.inflight) >= self.config.max_inflight_msgs:
            return
        prev = pr.next - 1
        last = self.last_index
        if pr.state == _REPLICATE and prev >= last and not force:
            return
        entries: list[Entry] = []
        size = 0
        i = pr.next
        hi = min(last, pr.next + self.config.max_entries_per_msg - 1)
        while i <= hi:
            e = self.entry_at(i)
            size += self._entry_size(e)
            if entries and size > self.config.max_bytes_per_msg:
                break
            entries.append(e)
            i += 1
        term = self.term_at(prev)
        assert term is not None
        self._send(
            AppendEntries(self.term, self.id, peer, prev, term, tuple(entries), self.commit_index,
                          read_ctx=self._read_seq, sent_tick=self._now)
        )
        if pr.state == _PROBE:
            pr.paused = True
        elif entries:
            pr.next = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)

    def _bcast_heartbeat(self) -> None:
        for peer, pr in self._progress.items():
            if pr.state == _REPLICATE and pr.inflight and pr.match == pr.hb_match:
                # No progress for a whole heartbeat with appends outstanding: they were probably
                # lost. Fall back to probing from what is known to match.
                self._to_probe(pr)
            pr.hb_match = pr.match
            if pr.state == _PROBE:
                pr.paused = False
            if pr.state == _SNAPSHOT:
                # Resend an unanswered chunk; and once every chunk was answered, keep resending
                # the (empty) last one until the follower's AppendEntriesResponse says it
                # installed the snapshot. That ack leaves only after the follower's write, so it
                # can be lost (or the follower crash first); without this the leader waited
                # forever and the follower, hearing nothing, never caught up (Raft §7).
                if pr.snap is not None and (not pr.snap_acked or pr.snap_offset >= len(pr.snap.data)):
                    self._send_snapshot_chunk(peer, pr, resend=True)
                continue
            self._send_heartbeat(peer, pr)
            self._send_append(peer)

    def _send_heartbeat(self, peer: NodeId, pr: _Progress) -> None:
        # An empty append anchored at what the follower is known to hold: it cannot be
        # rejected for a gap, so it reliably confirms leadership for ReadIndex and the lease.
        prev = max(pr.match, self._base)
        term = self.term_at(prev)
        assert term is not None
        self._send(
            AppendEntries(self.term, self.id, peer, prev, term, (), min(self.commit_index, prev),
                          read_ctx=self._read_seq, sent_tick=self._now)
        )

    def _to_probe(self, pr: _Progress) -> None:
        pr.state = _PROBE
        pr.paused = False
        pr.inflight.clear()
        pr.next = pr.match + 1

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self._progress.get(m.frm)
        if pr is None:
            return
        pr.last_ack_tick = self._now
        if m.sent_tick >= self._lease_floor or _bugs.LEASE_COUNTS_STALE_ACKS in self._bugs:
            # Thesis §6.4.1: the follower refuses votes for an election timeout from when it
            # received what it acks, so the lease runs from our send tick. Acks of messages
            # sent before we last quiesced do not count (see _quiesce).
            pr.acked_sent_tick = max(pr.acked_sent_tick, m.sent_tick)
        if m.read_ctx > pr.read_ack:
            pr.read_ack = m.read_ctx
            self._advance_reads()
        if m.success:
            if m.match_index > pr.match:
                pr.match = m.match_index
            pr.next = max(pr.next, pr.match + 1)
            while pr.inflight and pr.inflight[0] <= pr.match:
                pr.inflight.popleft()
            if pr.state == _PROBE:
                pr.state = _REPLICATE
                pr.paused = False
                pr.inflight.clear()
                pr.next = pr.match + 1
            elif pr.state == _SNAPSHOT and pr.match >= (pr.snap.meta.index if pr.snap else 0):
                pr.state = _REPLICATE
                pr.snap = None
                pr.inflight.clear()
                pr.next = pr.match + 1
            self._maybe_commit()
            if self.role != LEADER:
                return
            if self._auto_promote and m.frm in self._auto_promote:
                self._maybe_auto_promote(m.frm)
            if (self._transfer is not None and not self._transfer.sent and self._transfer.target == m.frm
                    and pr.match == self.last_index):
                self._send_timeout_now()
                return
            self._send_append(m.frm)
            return
        # Rejected. Ignore stale rejections (for an append we already know matched).
        if m.match_index < pr.match or pr.state == _SNAPSHOT:
            return
        if m.conflict_index == 0 and m.conflict_term == 0:
            return  # a term notice, handled by the term check
        nxt = m.conflict_index
        if m.conflict_term:
            # If we hold entries of the follower's conflicting term, resume after our last one.
            i = min(m.match_index, self.last_index)
            while i > self._base and (self.term_at(i) or 0) > m.conflict_term:
                i -= 1
            if i > self._base and self.term_at(i) == m.conflict_term:
                nxt = i + 1
        pr.state = _PROBE
        pr.paused = False
        pr.inflight.clear()
        pr.next = max(pr.match + 1, min(nxt, m.match_index))
        self._send_append(m.frm)

    def _start_snapshot(self, peer: NodeId, pr: _Progress) -> None:
        assert self._snap is not None, "log compacted without a snapshot"
        pr.state = _SNAPSHOT
        pr.snap = self._snap
        pr.snap_offset = 0
        pr.inflight.clear()
        self._send_snapshot_chunk(peer, pr, resend=True)

    def _send_snapshot_chunk(self, peer: NodeId, pr: _Progress, *, resend: bool) -> None:
        if pr.snap is None or (not resend and not pr.snap_acked):
            return
        data = pr.snap.data
        if pr.snap_offset > len(data):
            pr.snap_offset = 0
        chunk = data[pr.snap_offset : pr.snap_offset + self.config.snapshot_chunk_bytes]
        done = pr.snap_offset + len(chunk) >= len(data)
        self._send(InstallSnapshot(self.term, self.id, peer, pr.snap.meta, pr.snap_offset, chunk, done))
        pr.snap_acked = False

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        pr = self._progress.get(m.frm)
        if pr is None:
            return
        pr.last_ack_tick = self._now
        if pr.state != _SNAPSHOT or pr.snap is None or m.meta_index != pr.snap.meta.index:
            return
        pr.snap_offset = m.next_offset
        pr.snap_acked = True
        if m.next_offset < len(pr.snap.data):
            self._send_snapshot_chunk(peer=m.frm, pr=pr, resend=False)

    def _quorum_tick(self, key: Callable[[_Progress], int], own: int | None = None) -> int:
        """The newest value that a majority of the current members reached. The leader's own
        value is ``own``, by default the current tick (it always hears from itself)."""
        mine = self._now if own is None else own
        vals = sorted(
            (mine if m == self.id else key(self._progress[m]) if m in self._progress else -(10**9))
            for m in self.members
        )
        vals.reverse()
        return vals[len(vals) // 2]

    def _maybe_commit(self) -> None:
        """Raft §5.3/§5.4.2: commit the highest index held by a majority of the configuration in
        effect at that index, and only if it is of the current term (Figure 8)."""
        own = self.last_index if _bugs.LEADER_COUNTS_UNPERSISTED in self._bugs else self._durable_index
        best = self.commit_index
        # Configurations that apply to indexes above the commit index: at most a few.
        bounds = [c[0] for c in self._configs]
        for k, (start, members, _learners) in enumerate(self._configs):
            end = bounds[k + 1] - 1 if k + 1 < len(bounds) else self.last_index
            if end <= best or not members:
                continue
            matches = sorted(
                (own if mm == self.id else self._progress[mm].match if mm in self._progress else 0)
                for mm in members
            )
            matches.reverse()
            q = matches[len(members) // 2]
            cand = min(end, q)
            if cand <= best or cand < start:
                continue
            if self.term_at(cand) == self.term or _bugs.COMMIT_OLD_TERM in self._bugs:
                best = cand
        if best > self.commit_index:
            # Followers learn the new commit index with the next append or heartbeat, as in
            # etcd. (Pushing it at once cost a second peer call per client batch: measured,
            # it halved the throughput of the Ray runtime.)
            self._commit_to(best)

    # ------------------------------------------------------------------------------------
    # Applying (the state machine and the de-dup cache)

    def _commit_to(self, index: int) -> None:
        if index <= self.commit_index:
            return
        self.commit_index = index
        self._apply()

    def _apply(self) -> None:
        while self.applied_index < self.commit_index:
            i = self.applied_index + 1
            e = self.entry_at(i)
            self.applied_index = i
            if self.config.snapshot_log_factor:
                self._applied_bytes += self._entry_size(e)
            if e.kind == EntryKind.COMMAND:
                self._apply_command(e)
            elif e.kind == EntryKind.MEMBERS:
                self._apply_members(e)
            elif e.kind == EntryKind.NOOP and self.role == LEADER and i == self._term_start_index:
                self._advance_reads()
            self._ready.applied.append(e)
            if self.role == REMOVED:
                return
        self._serve_reads()
        self._maybe_snapshot()

    def _apply_command(self, e: Entry) -> None:
        cmd: Command = e.data
        self._results.observe(cmd.cmd_id)
        result = self._results.lookup(cmd.cmd_id)
        if result is STALE:
            # A late copy of a session command its client is done with: not applied (it was,
            # or its caller gave up on it). Skipped on rollback too.
            self._skipped.add(e.index)
            result = Rejected("leadership_lost", self.id)
        elif result is EXPIRED:
            # Its session was evicted with its results: this may be a retry of a command that
            # was applied, and nothing can tell. Not applied; the client hears that the outcome
            # is unknown (thesis §6.3 expires sessions the same way).
            self._skipped.add(e.index)
            result = Rejected("session_expired", self.id, self._results.watermark)
        elif result is not None:
            # A retry of an applied command (rafted_value's CommandResults): not re-executed.
            # Remember that, so a later rollback does not execute it either (it used to, which
            # applied the command twice on the replicas that rolled back, and only on them).
            self._skipped.add(e.index)
        else:
            try:
                result = Ok(self.data.command(cmd.arg))
            except BaseException as exc:  # noqa: BLE001 - user code: whatever it raises is its outcome
                # Anything the command raises, BaseException included (sys.exit(), a stray
                # KeyboardInterrupt or CancelledError), is its deterministic outcome on every
                # replica: the value is rolled back and the entry counts as applied. Letting it
                # escape would leave applied_index past an entry with no result, kill the
                # shell's event loop, and raise again at every replay of the log.
                result = Raised(self._portable(exc))
                self._skipped.add(e.index)
                self._rollback_to(e.index - 1)
            self._results.put(cmd.cmd_id, result)
        for req in self._waiters.pop(self._results.key(cmd.cmd_id), ()):
            self._reply(req, result)

    def _portable(self, exc: BaseException) -> BaseException:
        """``exc`` if it is an ``Exception`` that survives this core's pickling, else a
        :class:`CommandError` naming it. The result goes into the replicated de-dup cache, hence
        into every snapshot: one that pickles but does not unpickle (an ``__init__`` with
        required arguments other than its ``args``) would make every later snapshot unloadable,
        so a lagging follower could never catch up and a restarted member could not recover.
        Runs only when user code raised, and decides alike on every replica."""
        if isinstance(exc, Exception):
            try:
                self._loads(self._dumps(exc))
                return exc
            except Exception:  # noqa: BLE001 - whatever pickling raises, the answer is no
                pass
        return CommandError(f"{type(exc).__module__}.{type(exc).__qualname__}", _safe_repr(exc))

    def _rollback_to(self, index: int) -> None:
        """Rebuild the value as of ``index`` after a command raised part-way through its change:
        the last snapshot plus every command since that changed the value (not those that
        raised, nor duplicates answered from the de-dup cache). Deterministic, so every replica
        ends in the same state; costs nothing unless a command raises."""
        if self._snap is not None:
            self.data = self._decode_data(self._snap)
            lo = self._snap.meta.index + 1
        else:
            self.data = self._data_factory()
            lo = 1
        for e in self.entries_from(lo, index):
            if e.kind == EntryKind.COMMAND and e.index not in self._skipped:
                self.data.command(e.data.arg)

    def _apply_members(self, e: Entry) -> None:
        voters, learners = split_membership(e.data)
        after = voters + learners
        before = sum(self._cfg_at(e.index - 1), ())
        self._note_departed(m for m in before if m not in after)
        req = self._admin_waiters.pop(e.index, None)
        if req is not None:
            self._reply(req, Ok(voters))
        if self.role == LEADER:
            # Tell every member that this committed configuration dropped (rafted_value's
            # remove_follower_completed).
            for gone in before:
                if gone not in after and gone != self.id:
                    self._send(Removed(self.term, self.id, gone))
        if self.id not in after and self.id in before:
            self._become_removed()

    def _check_membership_change(self) -> Rejected | None:
        if self.role != LEADER:
            return Rejected("not_leader", self.leader_id)
        if self._uncommitted_membership_change() or self.commit_index < self._term_start_index:
            # One change at a time, and only once this leader's no-op is committed: a change
            # appended before that can break safety with single-server changes (Ongaro,
            # raft-dev 2015, "bug in single-server membership changes").
            return Rejected("uncommitted_membership_change", self.id)
        if self._transfer is not None:
            return Rejected("pending_leader_change", self.id)
        return None

    def _uncommitted_membership_change(self) -> bool:
        return any(
            i > self.commit_index and self.entry_at(i).kind == EntryKind.MEMBERS
            for i, *_ in self._configs[1:]
            if i > self._base
        )

    def _change_members(self, req: Any, voters: tuple[NodeId, ...], learners: tuple[NodeId, ...]) -> None:
        self._append_and_broadcast(EntryKind.MEMBERS, membership_data(voters, learners))
        self._admin_waiters[self.last_index] = req
        # The new configuration counts from now on (thesis §4.1), for read rounds too. An open
        # round is otherwise re-checked only when an acknowledgement arrives: after shrinking
        # to the leader alone none ever comes, and pending reads (with every later one queued
        # behind them) waited forever.
        self._advance_reads()

    def _unresponsive(self) -> tuple[NodeId, ...]:
        limit = self._now - 2 * self.config.election_ticks
        return tuple(m for m, pr in self._progress.items() if pr.last_ack_tick < limit or m in self._down)

    def _can_safely_remove(self, member: NodeId) -> bool:
        # rafted_value's rule: an unresponsive member can always go; a healthy one only if
        # the healthy members left still form a majority of the new configuration.
        unresponsive = set(self._unresponsive())
        if member in unresponsive:
            return True
        healthy_after = sum(1 for m in self.members if m not in unresponsive) - 1
        return healthy_after * 2 > len(self.members) - 1

    def _send_timeout_now(self) -> None:
        """Thesis §3.10: the target is caught up; tell it to campaign now. We stay leader and
        keep refusing new commands until it takes over (its higher term reaches us and we
        step down; the caller hears Ok once it leads) or an election timeout passes without
        that (the TimeoutNow was lost, or the target failed): then the transfer is aborted,
        answered ``transfer_failed``, and we go on leading. (rafted_value answered Ok and
        stepped down the moment TimeoutNow left, so a lost TimeoutNow left the group without
        a leader for an election timeout and the caller believing the move was made.)"""
        assert self._transfer is not None
        t = self._transfer
        self._send(TimeoutNow(self.term, self.id, t.target))
        t.sent = True
        t.deadline = self._now + self.config.election_ticks
        # The target's election bypasses the voters' lease guard, at any time the TimeoutNow
        # arrives: no lease read may be trusted for the rest of this term.
        self._lease_broken = True

    def _finish_transfer_wait(self, leader: NodeId | None) -> None:
        """After stepping down during a transfer: ``leader`` now leads (None: nobody yet)."""
        t = self._transfer_wait
        if t is None:
            return
        if leader == t.target:
            self._reply(t.req, Ok())
            self._transfer_wait = None
        elif leader is not None or self._now >= t.deadline or self.role in (LEADER, REMOVED):
            self._reply(t.req, Rejected("transfer_failed", leader))
            self._transfer_wait = None

    # ------------------------------------------------------------------------------------
    # Reads (ReadIndex, thesis §6.4; lease, thesis §6.4.1)

    def _lease_valid(self) -> bool:
        # The lease is the election timeout minus the clock-drift margin (lease_ticks < T): a
        # follower that acknowledged refuses votes for T ticks of *its* clock from then, and the
        # margin covers a follower clock running faster than ours (sim_faults.lease_drift_bound).
        lease = self.config.lease_ticks
        if lease <= 0 or not self.config.check_quorum or self._lease_broken:
            return False
        if _bugs.LEASE_IGNORES_MARGIN in self._bugs:
            lease = self.config.election_ticks
        return self._quorum_tick(lambda p: p.acked_sent_tick) + lease > self._now

    def _start_read_round(self) -> None:
        if self._read_round_open:
            return  # the reads queue for the next round, started when this one confirms
        self._read_seq += 1
        self._read_round_open = True
        for r in self._reads:
            if r.ctx == -1:
                r.ctx = self._read_seq
        for peer, pr in self._progress.items():
            if pr.state != _SNAPSHOT:
                self._send_heartbeat(peer, pr)

    def _advance_reads(self) -> None:
        if self.role != LEADER or not self._reads:
            return
        # The leader confirms its own leadership for every round it started: its own value is
        # the newest round, not the tick count. (Counting it as ``_now`` stalled reads whenever
        # rounds outpaced ticks and the quorum needed the leader's own "ack".)
        confirmed = (
            self._quorum_tick(lambda p: p.read_ack, own=self._read_seq)
            if self._read_round_open
            else self._read_seq
        )
        if self._read_round_open and confirmed >= self._read_seq:
            self._read_round_open = False
        for r in self._reads:
            if 0 < r.ctx <= confirmed:
                r.ctx = 0
        if not self._read_round_open and any(r.ctx == -1 for r in self._reads):
            self._start_read_round()
        self._serve_reads()

    def _serve_reads(self) -> None:
        # A read is answered once leadership is confirmed, this leader's no-op is committed
        # (so its commit index is current, thesis §6.4 step 1), and the value has caught up.
        if self.commit_index < self._term_start_index:
            return
        while self._reads and self._reads[0].ctx == 0:
            r = self._reads[0]
            idx = max(r.index, self._term_start_index)
            if self.applied_index < idx:
                break
            self._reads.popleft()
            try:
                self._reply(r.req, Ok(self.data.query(r.arg)))
            except BaseException as exc:  # noqa: BLE001 - user code: see _apply_command
                self._reply(r.req, Raised(self._portable(exc)))

    # ------------------------------------------------------------------------------------
    # Snapshots and compaction (Raft §7)

    def _encode(self) -> bytes:
        data = self.data
        payload = ("custom", type(data), data.snapshot()) if hasattr(data, "snapshot") else ("pickle", data)
        return self._dumps((payload, self._results.dump(), list(self._departed)))

    def _decode_data(self, snap: Snapshot) -> Any:
        return self._decode(snap)[0]

    def _decode(self, snap: Snapshot) -> tuple[Any, list[tuple[Any, Result]], list[NodeId]]:
        payload, results, *rest = self._loads(snap.data)
        departed: list[NodeId] = rest[0] if rest else []  # absent in snapshots of older versions
        if payload[0] == "custom":
            return payload[1].restore(payload[2]), results, departed
        return payload[1], results, departed

    def _restore_snapshot(self, snap: Snapshot) -> None:
        self.data, results, departed = self._decode(snap)
        self._results.load(results)
        self._note_departed(departed)

    def _snapshot_due(self) -> bool:
        """Either trigger: ``snapshot_interval`` entries applied since the snapshot, or (when
        ``snapshot_log_factor`` > 0) their bytes above factor × the snapshot's size. The size
        rule is rafted_value's (reference §4.6), which bounds the log to a multiple of the
        state: a large value is snapshotted rarely, a small one with large commands often.
        Unlike rafted_value, a missing or tiny snapshot counts as ``snapshot_min_bytes``, so a
        small value is not snapshotted every few entries."""
        cfg = self.config
        base = self._snap.meta.index if self._snap else 0
        if self.applied_index - base >= cfg.snapshot_interval:
            return True
        if not cfg.snapshot_log_factor:
            return False
        snap_bytes = len(self._snap.data) if self._snap else 0
        return self._applied_bytes > cfg.snapshot_log_factor * max(snap_bytes, cfg.snapshot_min_bytes)

    def _maybe_snapshot(self) -> None:
        if not self._snapshot_due():
            return
        if self.applied_index > self._durable_index:
            # A follower applies entries the leader committed before its own write of them is
            # durable. A snapshot inside those entries would ask storage for an impossible
            # order (the snapshot drops the log, then the entries start below its base), so a
            # snapshot covers durable entries only: on_persisted takes it once they are.
            return
        if self.applied_index < self._snapshot_retry_at:
            return
        idx = self.applied_index
        meta = SnapshotMeta(idx, self.term_at(idx) or 0, *self._cfg_at(idx))
        try:
            data = self._encode()
        except BaseException as exc:  # noqa: BLE001 - user code (Data.snapshot, pickling the value)
            # A value that cannot be snapshotted must not stop the member: the log is simply
            # kept (followers catch up from it), the failure is reported in status(), and the
            # snapshot is tried again after another snapshot_interval entries (trying at every
            # entry would pay for a failing encode of the whole value each time).
            self.snapshot_error = f"snapshot at index {idx} failed: {_safe_repr(exc)}"
            self._snapshot_retry_at = idx + self.config.snapshot_interval
            log.error("%s: %s", self.id, self.snapshot_error)
            return
        self.snapshot_error = None
        self._snap = Snapshot(meta, data)
        self._skipped.clear()
        self._applied_bytes = 0
        self._ready.snapshot = self._snap
        # Keep `log_retention` entries before the snapshot so a slightly lagging follower
        # still gets plain appends instead of the whole snapshot.
        new_base = idx - self.config.log_retention
        if new_base > self._base:
            base_term = self.term_at(new_base)
            assert base_term is not None
            del self._log[: new_base - self._base]
            self._base, self._base_term = new_base, base_term
            self._configs = [(new_base, *self._cfg_at(new_base))] + [c for c in self._configs if c[0] > new_base]


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)[:1000]
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break the answer
        return f"<{type(obj).__qualname__} with a failing __repr__>"


def restored_snapshot(
    old_state: tuple[HardState | None, Snapshot | None, Sequence[Entry]],
    config: CoreConfig,
    data_factory: Callable[[], Any],
    new_members: Sequence[NodeId],
    rng: random.Random,
    *,
    dumps: Callable[[Any], bytes] = pickle.dumps,
    loads: Callable[[bytes], Any] = pickle.loads,
) -> Snapshot:
    """A group restored from a member's durable files (raft_fleet's restore): the value of
    its snapshot plus every command in its log after it, as one snapshot of a new group of
    ``new_members`` at the same last index and term.

    Safe as a restore when the files come from the member with the newest log among a
    majority of the old configuration (it holds every committed entry: the election
    restriction); entries it holds beyond the old commit index become committed, as they
    could have in the old group. The de-dup cache is kept, so a client retrying a command
    the old group applied gets its result, not a second application."""
    _hs, snap, entries = old_state
    node = RaftNode("restore", config, data_factory, rng, snapshot=snap, entries=entries,
                    dumps=dumps, loads=loads)
    for e in node.entries_from(node.applied_index + 1):
        node.applied_index = e.index
        if e.kind == EntryKind.COMMAND:
            node._apply_command(e)
    last = node.last_index
    meta = SnapshotMeta(last, node.term_at(last) or 0, tuple(new_members), ())
    return Snapshot(meta, node._encode())
