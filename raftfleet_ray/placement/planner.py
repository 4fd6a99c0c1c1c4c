"""The reconciler's planner: one group, what is observed and what is desired -> one action.

Pure (no Ray, no clock: time comes in as ``now``), so it is table-tested
(``tests/placement/test_planner.py``, with raft_fleet's adjuster cases, reference §3.7). The
BalancerActor observes every group each round, calls :func:`plan`, and carries out the
action through the node agents and the group's leader. One action per group per round; the
next round sees its effect (level-triggered, CONVENTIONS §12).

The rules, in order (raft_fleet's ``adjust_one_step`` plus learners, safe repair and drain):

With a leader (the member that says so in the highest term), over its configuration:

1. a running member outside the configuration (a joiner whose add failed, a removed member
   still running): stop it;
2. a member of the configuration that is definitely dead (its node is dead or gone, or its
   node's agent answers and no longer runs it): remove it, learners first;
3. a learner on a desired node that has caught up: promote it (a new member votes only once
   its log is current, Raft thesis §4.2.1);
4. a desired node with no member of the group: add a learner there;
5. the leader is not on the desired leader node, and a voter is there: transfer leadership to
   it (a drain thus moves leaderships first);
6. a member on a node that is not desired (draining, or no longer among the top n): remove
   it, learners at once, a voter only once every desired node has a voter (its replacement
   votes) and never the leader (rule 5 moves it first);
7. otherwise nothing.

Without a leader:

- a group never created: create it whole (``Create``): a voter on every desired node that
  answers, all in the first configuration, the desired leader campaigning at once
  (raft_fleet's leader-first-then-followers left acknowledged writes on one node for seconds,
  and a node death then lost them); and stop passive joiners that no leader ever reached;
- a created group is never removed here: only ``remove_consensus_group`` removes a group
  (DESIGN §3). Silence is not death (CONVENTIONS §18): a member is *dead* only when Ray
  reports its node dead (or no longer lists it), or when its node's agent answers and does
  not run it; a member on a node whose agent did not answer is *unknown*. The members that
  count are those of every configuration known: the ones the observed members report, and
  the last one seen from a leader (``last_config``, recorded durably), so a group of which
  nothing at all is observed is judged by the configuration it last had;
- once ``REPAIR_ROUNDS`` observations spanning more than 2 election timeouts saw no leader,
  and the voters of every known configuration that are not definitely dead are fewer than
  its quorum (a majority of it is dead, or half of an even-sized one), the group can never
  elect a leader by itself:

  - with persistence, if no member of it runs or may run, and the files of enough of those
    voters to meet every quorum (at least half of them: 2 of 3, 2 of 4) can be read on
    answering nodes, it is restored from the newest of them (``Restore``, born whole). That
    is safe: every committed entry, and the entry of its leader's term that committed it, is
    on a quorum, so the files read meet it, and by Raft's election restriction the newest of
    them holds every committed entry (Raft §5.4.1; ``meets_every_quorum``);
  - otherwise it is *lost* (``MarkLost``, every round while it lasts): kept, reported, its
    commands refused with ``GroupLostError``, until an operator recovers it (``plan_repair``,
    unsafe: a minority survivor or a minority of files may lack acknowledged entries) or
    removes it. A lost group whose files become readable by a majority later (its nodes back
    under their names) is restored then;
- otherwise wait: an election is probably under way, or members are unknown. (rafted_value's
  force-remove of dead members on the survivors of a majority loss is that unsafe recovery:
  it is the operator's, ``plan_repair``, never the reconciler's.)

``plan_repair`` is the operator's recovery of a lost group, planned here so that it is
table-tested like the rest: from the most up-to-date voter that still runs, or from the
newest files, or afresh when nothing is left, with what it may lose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raftfleet_ray.runtime.names import node_prefix_of_member  # pure: ids are plain strings
from raftfleet_ray.runtime.wire import MemberStatus  # pure: no Ray

from . import bugs as _bugs

REPAIR_ROUNDS = 3
"""Observations without a leader before a group is restored from files or called lost."""

Config = tuple[tuple[str, ...], tuple[str, ...]]
"""A configuration: (voters, learners), member ids."""


@dataclass(frozen=True, slots=True)
class Observed:
    """A running member as its node's agent reports it. ``status``: its ``MemberStatus``;
    None if its host did not answer in time."""

    member: str
    node: str
    status: MemberStatus | None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the balancer knows of the nodes this round.

    - ``answered``: alive nodes whose agent answered (their member lists are complete);
    - ``dead``: nodes Ray reports dead (dead for good: Ray never revives a node id);
    - ``node_of``: member id -> node id, for every node known (members on an unknown node
      count as dead: the node is gone);
    - ``files_unread``: answering nodes whose files could not be read this round (a slow or
      failed call): what they hold is unknown, not absent.
    """

    answered: frozenset[str]
    dead: frozenset[str]
    prefixes: Mapping[str, str] = field(default_factory=dict)  # node-id prefix -> node id
    files_unread: frozenset[str] = frozenset()

    def node_of(self, member: str) -> str | None:
        return self.prefixes.get(node_prefix_of_member(member))


@dataclass(frozen=True, slots=True)
class FileCopy:
    """A member's files that an answering node's agent can read (persistence)."""

    member: str
    node: str  # the answering node that read them
    source: tuple[str, str]  # where on that node (``NodeAgent.restorable``)
    term: int  # the term of its last log entry ...
    index: int  # ... and its index: which of several copies is the newest
    config: Config = ((), ())  # the configuration its log ends with
    retired: bool = False  # stopped deliberately (its group was removed, or it was extra)
    n_replica: int = 0  # the group's replica count when the member was started


@dataclass(slots=True)
class History:
    """What the balancer remembers of a group between rounds (soft state: a restarted
    balancer starts over, which only delays a restore or a lost mark)."""

    no_leader_rounds: int = 0
    no_leader_since: float | None = None
    highest_commit: int = 0  # the highest commit index seen from any member (for lost marks)


# ---------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class Create:
    """Start the group. A new group is born whole: a voter on every one of ``nodes`` (its
    desired nodes that answer, the desired leader first), all in the first configuration,
    the one on ``node`` campaigning at once (a restore is ``Restore``)."""

    node: str
    why: str = "the group has no member yet: start a voter on each desired node; the desired leader campaigns"
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Restore:
    """Start the group again from the newest files of enough of its voters to meet every quorum (read on
    ``node``), born whole: a voter on each of ``nodes``, the first leading from the files."""

    node: str
    member: str  # whose files
    source: tuple[str, str]
    term: int
    index: int
    why: str = ""
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddLearner:
    node: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Promote:
    member: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class RemoveMember:
    member: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    member: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class StopMember:
    member: str
    node: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class MarkLost:
    """Report the group lost (kept; its recovery is the operator's)."""

    why: str = ""


@dataclass(frozen=True, slots=True)
class Wait:
    why: str = ""


@dataclass(frozen=True, slots=True)
class Nothing:
    why: str = "converged: every desired node has a voter and the leader is on the desired leader node"


Action = Create | Restore | AddLearner | Promote | RemoveMember | Transfer | StopMember | MarkLost | Wait | Nothing

MEMBERSHIP_ACTIONS = (Create, Restore, AddLearner, Promote, RemoveMember, Transfer, StopMember)
"""Actions that change members (rate-limited by the balancer)."""


def _leader(observed: list[Observed]) -> Observed | None:
    leaders = [o for o in observed if o.status and o.status.state_name == "leader"]
    return max(leaders, key=lambda o: o.status.current_term) if leaders else None


def plan(
    desired: list[str],
    observed: list[Observed],
    cluster: ClusterView,
    *,
    created: bool,
    history: History,
    now: float,
    election_timeout: float,
    persistent: bool = False,
    last_config: Config | None = None,
    files: tuple[FileCopy, ...] = (),
    bugs: frozenset[str] = frozenset(),
) -> Action:
    """One step for one group. ``desired``: its desired member nodes, element 0 the desired
    leader node (``placement.fleet_layout``); ``observed``: its running members; ``created``:
    a leader was seen once (the group existed); ``history`` is updated in place;
    ``persistent``: members keep their state on disk; ``last_config``: the configuration last
    seen from a leader; ``files``: the group's files readable on answering nodes (read only
    for groups that may need them, ``wants_files``)."""
    for o in observed:
        if o.status is not None:
            history.highest_commit = max(history.highest_commit, o.status.commit_index)
    lead = _leader(observed)
    if lead is None:
        return _plan_without_leader(desired, observed, cluster, created, history, now, election_timeout, persistent,
                                    last_config, files, bugs)
    history.no_leader_rounds, history.no_leader_since = 0, None
    st = lead.status
    assert st is not None
    voters: tuple[str, ...] = tuple(st.members)
    learners: tuple[str, ...] = tuple(st.learners)
    config = voters + learners
    running = {o.member: o for o in observed}

    def state(m: str) -> str:
        node = cluster.node_of(m)
        if node is None or node in cluster.dead:
            return "dead"
        if m in running:
            return "running"
        return "dead" if node in cluster.answered or _bugs.SILENCE_IS_DEATH in bugs else "unknown"

    # 1. Members that run outside the configuration.
    for o in sorted(observed, key=lambda o: o.member):
        if o.member not in config or (o.status is not None and o.status.state_name == "removed"):
            return StopMember(o.member, o.node, f"{o.member} runs but is not in the configuration of the leader")
    # 2. Definitely dead members of the configuration.
    for m in [x for x in learners if x != lead.member] + [x for x in voters if x != lead.member]:
        if state(m) == "dead":
            kind = "learner" if m in learners else "voter"
            return RemoveMember(m, f"{kind} {m} is dead (its node or its host is gone)")
    by_node: dict[str, list[str]] = {}
    for m in config:
        node = cluster.node_of(m)
        if node is not None:
            by_node.setdefault(node, []).append(m)
    caught_up = set(st.caught_up_learners)
    desired_set = set(desired)
    # 3. Promote a caught-up learner on a desired node.
    for m in learners:
        if m in caught_up and cluster.node_of(m) in desired_set:
            return Promote(m, f"learner {m} has caught up with the log")
    # 4. A desired node without a member of the group.
    for node in desired:
        if node not in by_node and node in cluster.answered:
            return AddLearner(node, f"desired node {node[:12]} has no member; a new member joins as a learner")
    # 5. The leader on its desired node.
    lead_node = cluster.node_of(lead.member)
    if desired and lead_node != desired[0]:
        unresponsive = set(st.unresponsive_followers)
        target = next((m for m in by_node.get(desired[0], []) if m in voters and m not in unresponsive), None)
        if target is not None:
            return Transfer(target, f"the desired leader node is {desired[0][:12]}, the leader is on "
                                    f"{(lead_node or '?')[:12]}")
    # 6. Members on nodes that are not desired (or a second member on one node).
    # Vacuous for a group with no desired node (no active node at all): it keeps its voters.
    every_desired_votes = bool(desired) and all(any(m in voters for m in by_node.get(n, [])) for n in desired)
    extras = []
    for node, ms in sorted(by_node.items()):
        keep = node in desired_set
        for i, m in enumerate(sorted(ms, key=lambda m: (m not in voters, m))):
            if not keep or i > 0:
                extras.append(m)
    for m in sorted(extras, key=lambda m: (m in voters, m)):
        if m == lead.member:
            continue
        if m in learners:
            return RemoveMember(m, f"learner {m} is on a node that is not desired")
        if every_desired_votes:
            return RemoveMember(m, f"voter {m} is on a node that is not desired and every desired node has a voter")
    if len(desired) and lead_node != desired[0]:
        return Wait(f"the leader should move to {desired[0][:12]} once a voter is there")
    return Nothing()


def _plan_without_leader(
    desired: list[str],
    observed: list[Observed],
    cluster: ClusterView,
    created: bool,
    history: History,
    now: float,
    election_timeout: float,
    persistent: bool = False,
    last_config: Config | None = None,
    files: tuple[FileCopy, ...] = (),
    bugs: frozenset[str] = frozenset(),
) -> Action:
    if history.no_leader_since is None:
        history.no_leader_since = now
    history.no_leader_rounds += 1
    sustained = history.no_leader_rounds >= REPAIR_ROUNDS and now - history.no_leader_since > 2 * election_timeout
    if not observed and not created:
        if desired and desired[0] in cluster.answered:
            return Create(desired[0], nodes=tuple(n for n in desired if n in cluster.answered))
        return Wait("no answering node to create the group on")
    statuses = [o for o in observed if o.status is not None]
    config = sorted({m for o in statuses for m in (*o.status.members, *o.status.learners)})
    if not config and not created and sustained:
        # Only passive joiners (never reached by a leader) remain of a creation that failed.
        o = sorted(observed, key=lambda o: o.member)[0]
        return StopMember(o.member, o.node, "a member that no leader ever reached, of a group that never had one")
    if not created:
        return Wait("no leader yet (an election may be under way)")
    configs = known_configs(observed, last_config, files)
    in_configs = {m for vs, ls in configs for m in (*vs, *ls)}
    blanks = sorted(o.member for o in statuses if not o.status.members and not o.status.learners
                    and not o.status.last_index and o.member not in in_configs)
    if blanks and sustained:
        # Left over by a birth or a restore cut short (a start that hung past its step's
        # bound): never reached by a leader, no log, in no configuration known. It holds
        # nothing, yet it runs, and a restore is never started beside a running member: it
        # would block the group forever (fleet simulator, chaos seed 2005 with persistence).
        o = next(o for o in statuses if o.member == blanks[0])
        return StopMember(o.member, o.node, "a member that no leader ever reached, with no log, in no "
                          "configuration of the group: left over by a start cut short")
    if not configs:
        # Never guess (CONVENTIONS §18): without a configuration, a member anywhere may run.
        return Wait("no leader, and no configuration of the group is known (no member observed, none "
                    "recorded): its members cannot be judged dead; waiting")
    members = {m for vs, ls in configs for m in (*vs, *ls)}
    states = {m: member_state(m, observed, cluster, bugs) for m in members}
    # No configuration known can form a quorum of voters that are not dead: it can never elect.
    # (A quorum, not "a majority dead": a 2-voter group with one voter dead cannot elect either;
    # the fleet simulator found one, shrunk by a drain to the 2 nodes left, waiting forever.)
    if not all(len(vs) - sum(states[v] == "dead" for v in vs) < len(vs) // 2 + 1 for vs, _ in configs):
        if not sustained:
            return Wait("no leader yet (an election may be under way)")
        unknown = sorted(m for m, st in states.items() if st == "unknown")
        more = f"; {len(unknown)} member(s) on nodes whose agent does not answer are unknown" if unknown else ""
        return Wait(f"no leader for {now - history.no_leader_since:.1f} s, but too few of its voters are known "  # type: ignore[operator]
                    f"dead to rule out a quorum: it may still elect one{more}")
    voters = sorted({v for vs, _ in configs for v in vs})
    dead = [v for v in voters if states[v] == "dead"]
    gone = f"{len(dead)} of its {len(voters)} voter(s) are definitely gone ({_names(dead)})"
    if not sustained:
        return Wait(f"no leader, and {gone}: confirming over {REPAIR_ROUNDS} observations")
    alive = sorted(o.member for o in observed)
    unknown = sorted(m for m, st in states.items() if st == "unknown")
    if persistent and not alive and not unknown:
        usable = best_copies(files, voters)
        # Enough copies to meet every quorum of each configuration (at least half of it: 2 of
        # 3, 2 of 4): the newest of them then holds every committed entry. A 4-voter group (a
        # move half done when the cluster went down) needs 2 copies, not 3 (fleet simulator,
        # chaos seed 3133 with persistence: lost for good with 2 of 4 readable).
        majority = all(meets_every_quorum(sum(v in usable for v in vs), len(vs)) for vs, _ in configs)
        if majority or (_bugs.RESTORE_FROM_ANY in bugs and usable):
            newest = max((usable[v] for v in voters if v in usable), key=lambda f: (f.term, f.index, f.member))
            on = tuple(n for n in desired if n in cluster.answered) or (newest.node,)
            return Restore(newest.node, newest.member, newest.source, newest.term, newest.index,
                           f"{gone}, and the files of enough of them to meet every quorum can be read: restoring from the newest, "
                           f"{newest.member} (index {newest.index}, term {newest.term}), which holds every "
                           f"committed entry (Raft's election restriction), with a voter on each of {len(on)} "
                           "node(s)", on)
        readable = sum(v in usable for v in voters)
        if cluster.files_unread:
            # Unread is not absent (silence is not death): they may hold the missing copies.
            return Wait(f"{gone}; the files of only {readable} of them are read, and the files of "
                        f"{len(cluster.files_unread)} answering node(s) could not be read this round: "
                        "they may hold the others")
        why_not = (f"the files of only {readable} of them can be read on answering nodes (a safe restore needs "
                   "a majority; it is restored by itself if more come back)")
    elif alive or unknown:
        seen = [f"{len(alive)} member(s) still run ({_names(alive)})"] if alive else []
        seen += [f"{len(unknown)} may run unseen (their agent does not answer: {_names(unknown)})"] if unknown else []
        why_not = " and ".join(seen) + ", a minority that may lack acknowledged entries"
        if persistent:
            why_not += " (no restore from files beside them: that would be a second incarnation)"
    else:
        why_not = "its members kept no files"
    # Planned again every round while it lasts: the mark keeps its first time and the latest
    # reason; only an operator recovers it (`raftfleet repair`, which says what may be lost).
    return MarkLost(f"{gone} and it cannot elect a leader; {why_not}")


def meets_every_quorum(k: int, n: int) -> bool:
    """Whether ``k`` members of an ``n``-voter configuration meet every quorum of it (every
    ``n // 2 + 1`` of its voters): ``k >= n - n // 2``. The newest log among copies that meet
    every quorum holds every committed entry (the argument of Raft §5.4.1: each committed
    entry, and the entry of its leader's term that committed it, is on some quorum)."""
    return n > 0 and k >= n - n // 2


def _names(members: list[str], limit: int = 3) -> str:
    return ", ".join(members[:limit]) + (f" and {len(members) - limit} more" if len(members) > limit else "")


def member_state(m: str, observed: list[Observed], cluster: ClusterView, bugs: frozenset[str] = frozenset()) -> str:
    """``"running"``, ``"dead"`` or ``"unknown"``: dead only when Ray reports its node dead (or
    no longer knows the node), or when its node's agent answered without it; a member on a
    live node whose agent did not answer is unknown (silence is not death)."""
    if any(o.member == m for o in observed):
        return "running"
    node = cluster.node_of(m)
    if node is None or node in cluster.dead:
        return "dead"
    if _bugs.SILENCE_IS_DEATH in bugs:
        return "dead"  # planted: a member nobody saw is taken for dead
    return "dead" if node in cluster.answered else "unknown"


def known_configs(observed: list[Observed], last_config: Config | None, files: tuple[FileCopy, ...] = ()) -> list[Config]:
    """Every configuration of the group known: each observed member's, and the last one seen
    from a leader; when neither exists, the newest file's (after the whole fleet restarted).
    A member may lag behind the others, so none of them is taken as *the* configuration:
    the group is lost only if none of them has a quorum of voters that are not dead."""
    out: list[Config] = []
    for o in observed:
        if o.status is not None:
            out.append((tuple(o.status.members), tuple(o.status.learners)))
    if last_config is not None and last_config[0]:
        out.append((tuple(last_config[0]), tuple(last_config[1])))
    if not out:
        live = [f for f in files if not f.retired and f.config[0]]
        if live:
            out.append(max(live, key=lambda f: (f.term, f.index, f.member)).config)
    return list(dict.fromkeys(out))


def best_copies(files: tuple[FileCopy, ...], members: list[str] | set[str] | None = None, *,
                retired: bool = False) -> dict[str, FileCopy]:
    """``{member: its newest readable copy}`` among files not retired (``retired``: retired
    ones too) of ``members`` (None: any)."""
    out: dict[str, FileCopy] = {}
    for f in files:
        if (f.retired and not retired) or (members is not None and f.member not in members):
            continue
        if f.member not in out or (f.term, f.index) > (out[f.member].term, out[f.member].index):
            out[f.member] = f
    return out


def wants_files(observed: list[Observed], cluster: ClusterView, last_config: Config | None, *, created: bool) -> bool:
    """Whether the planner may need the group's files this round: a created group with no
    leader and no voter of its last configuration running (reading files costs one call per
    agent, so it is done only for such groups)."""
    if not created or _leader(observed) is not None:
        return False
    voters = {v for vs, _ in known_configs(observed, last_config) for v in vs}
    return not any(member_state(v, observed, cluster) == "running" for v in voters)


# ---------------------------------------------------------------------------------------
# The operator's recovery of a lost group


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """How ``repair_consensus_group`` would recover a lost group, and what it may lose.

    ``source``: ``"survivor"`` (the most up-to-date voter still running: every other member is
    stopped and force-removed from its configuration, so it leads alone and the reconciler
    grows the group again), ``"files"`` (every running member is stopped, then a new
    incarnation starts from the newest files), ``"empty"`` (nothing is left: a new, empty
    incarnation), or ``""`` when no recovery is possible now (``blocked`` says why)."""

    source: str
    member: str | None = None
    node: str | None = None
    term: int = 0
    index: int = 0  # the last log index kept
    highest_commit: int = 0  # the highest commit index seen from any member (a lower bound)
    stop: tuple[tuple[str, str], ...] = ()  # (member, node) of the running members stopped first
    force_remove: tuple[str, ...] = ()  # removed from the survivor's configuration
    file_source: tuple[str, str] | None = None
    blocked: str = ""

    @property
    def may_lose(self) -> int:
        """Acknowledged entries that may be lost: at least this many, if any member was seen
        committing beyond what is kept (nothing is known of what no member reported)."""
        return max(0, self.highest_commit - self.index)

    def describe(self) -> str:
        if self.blocked:
            return f"no recovery is possible now: {self.blocked}"
        where = f" on node {(self.node or '?')[:12]}" if self.node else ""
        if self.source == "survivor":
            head = f"recover from the surviving voter {self.member}{where}"
        elif self.source == "files":
            head = f"restore a new incarnation from the files of {self.member}{where}"
        else:
            head = "start the group afresh, empty: no member runs and no files are readable"
        kept = f" (its log ends at index {self.index}, term {self.term})" if self.source != "empty" else ""
        stop = f"; stop {len(self.stop)} other running member(s) first" if self.stop else ""
        lose = (f"; the highest commit index any member was seen with is {self.highest_commit}: at least "
                f"{self.may_lose} acknowledged entr{'y' if self.may_lose == 1 else 'ies'} may be lost"
                if self.may_lose else
                f"; no member was seen committing beyond index {self.highest_commit}, but entries no surviving "
                "member reported may be lost")
        return head + kept + stop + lose

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "member": self.member, "node": self.node, "term": self.term,
                "recovered_index": self.index, "highest_commit_index": self.highest_commit,
                "may_lose_at_least": self.may_lose, "stop": [m for m, _ in self.stop],
                "force_remove": list(self.force_remove), "blocked": self.blocked, "summary": self.describe()}


def plan_repair(
    observed: list[Observed],
    cluster: ClusterView,
    last_config: Config | None,
    files: tuple[FileCopy, ...],
    highest_commit: int,
) -> RepairPlan:
    """The unsafe recovery of a lost group: from the most up-to-date source, a voter that
    still runs or the files of a member of a known configuration, compared by (last log
    term, last index) as Raft compares logs (§5.4.1); a survivor wins a tie (no restart).
    Never two incarnations at once: a new one (from files, or empty) is started only once
    every running member is stopped and no member may still run unseen."""
    configs = known_configs(observed, last_config, files)
    members = {m for vs, ls in configs for m in (*vs, *ls)}
    running = [o for o in observed if o.status is not None]
    highest = max([highest_commit, *(o.status.commit_index for o in running)])  # type: ignore[union-attr]
    voters = [o for o in running if o.member in o.status.members]
    unknown = sorted(m for m in members if member_state(m, observed, cluster) == "unknown")
    stop_all = tuple(sorted((o.member, o.node) for o in observed))
    # A member of a known configuration retired its files only when it was stopped, and no
    # removed group is ever repaired: here that means an earlier repair stopped it and then
    # failed midway. Its files are as good as before: they count.
    copies = best_copies(files, members, retired=True) if members else best_copies(files)
    best_file = max(copies.values(), key=lambda f: (f.term, f.index, f.member), default=None)
    best_voter = max(voters, key=lambda o: (o.status.last_term, o.status.last_index, o.member),  # type: ignore[union-attr]
                     default=None)
    if best_voter is not None:
        st = best_voter.status
        assert st is not None
        key = (st.last_term, st.last_index)
        if best_file is None or key >= (best_file.term, best_file.index):
            return RepairPlan("survivor", best_voter.member, best_voter.node, key[0], key[1], highest,
                              stop=tuple(x for x in stop_all if x[0] != best_voter.member),
                              force_remove=tuple(m for m in (*st.members, *st.learners)
                                                 if m != best_voter.member))
    blocked = ""
    if unknown:
        blocked = (f"member(s) {_names(unknown)} are on nodes whose agent does not answer and may still run: a new "
                   "incarnation now could run beside them; wait until their nodes answer or Ray reports them dead")
    if best_file is not None:
        return RepairPlan("files", best_file.member, best_file.node, best_file.term, best_file.index, highest,
                          stop=stop_all, file_source=best_file.source, blocked=blocked)
    return RepairPlan("empty", highest_commit=highest, stop=stop_all, blocked=blocked)


def describe(action: Action) -> str:
    """One line for logs and explain_placement."""
    name = type(action).__name__
    target = getattr(action, "member", None) or getattr(action, "node", None)
    head = f"{name}({target})" if target else name
    return f"{head}: {action.why}" if action.why else head


__all__ = [
    "MEMBERSHIP_ACTIONS",
    "REPAIR_ROUNDS",
    "Action",
    "AddLearner",
    "ClusterView",
    "Config",
    "Create",
    "FileCopy",
    "History",
    "MarkLost",
    "Nothing",
    "Observed",
    "Promote",
    "RemoveMember",
    "RepairPlan",
    "Restore",
    "StopMember",
    "Transfer",
    "Wait",
    "best_copies",
    "describe",
    "known_configs",
    "member_state",
    "plan",
    "plan_repair",
    "wants_files",
]
