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

- no member anywhere: create the group if it was never created: a voter on every desired
  node that answers, all in the first configuration, the desired leader campaigning at once
  (a group born whole: raft_fleet's leader-first-then-followers left acknowledged writes on
  one node for seconds, and a node death then lost them); a created group whose members are all dead is restored from the newest files on
  the answering nodes when members persist (and waits while there are none: never an empty
  group in its place), else removed as a last resort, and only after several observations (raft_fleet removes it too: without persistence its state is
  gone); so is one whose voters are all dead with only learners left (a learner cannot vote
  and may lack committed entries: the window right after creation, before the first
  follower caught up, when the group has a single voter);
- after ``REPAIR_ROUNDS`` observations spanning more than 2 election timeouts without a
  leader: force-remove the definitely dead members on every survivor (rafted_value's unsafe
  repair for majority loss; never for a member that may be alive);
- otherwise wait: an election is probably under way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raftfleet_ray.runtime.names import node_prefix_of_member  # pure: ids are plain strings

REPAIR_ROUNDS = 3
"""Observations without a leader before a repair (force-remove, last-resort removal)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """A running member as its node's agent reports it. ``status`` is the core's status
    (``Status`` as a dict); None if its host did not answer in time."""

    member: str
    node: str
    status: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the balancer knows of the nodes this round.

    - ``answered``: alive nodes whose agent answered (their member lists are complete);
    - ``dead``: nodes Ray reports dead (dead for good: Ray never revives a node id);
    - ``node_of``: member id -> node id, for every node known (members on an unknown node
      count as dead: the node is gone).
    """

    answered: frozenset[str]
    dead: frozenset[str]
    prefixes: Mapping[str, str] = field(default_factory=dict)  # node-id prefix -> node id

    def node_of(self, member: str) -> str | None:
        return self.prefixes.get(node_prefix_of_member(member))


@dataclass(slots=True)
class History:
    """What the balancer remembers of a group between rounds (soft state: a restarted
    balancer starts over, which only delays a repair)."""

    no_leader_rounds: int = 0
    no_leader_since: float | None = None


# ---------------------------------------------------------------------------------------
# Actions


@dataclass(frozen=True, slots=True)
class Create:
    """Start the group. A new group is born whole: a voter on every one of ``nodes`` (its
    desired nodes that answer, the desired leader first), all in the first configuration,
    the one on ``node`` campaigning at once. A restore starts from the files on ``node``."""

    node: str
    why: str = "the group has no member yet: start a voter on each desired node; the desired leader campaigns"
    restore_only: bool = False  # the group existed: start it only from its files, never empty
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
class ForceRemove:
    dead: tuple[str, ...]
    survivors: tuple[str, ...]
    why: str = ""


@dataclass(frozen=True, slots=True)
class StopMember:
    member: str
    node: str
    why: str = ""


@dataclass(frozen=True, slots=True)
class RemoveGroup:
    why: str = ""


@dataclass(frozen=True, slots=True)
class Wait:
    why: str = ""


@dataclass(frozen=True, slots=True)
class Nothing:
    why: str = "converged: every desired node has a voter and the leader is on the desired leader node"


Action = Create | AddLearner | Promote | RemoveMember | Transfer | ForceRemove | StopMember | RemoveGroup | Wait | Nothing

MEMBERSHIP_ACTIONS = (Create, AddLearner, Promote, RemoveMember, Transfer, ForceRemove, StopMember)
"""Actions that change members (rate-limited by the balancer)."""


def _leader(observed: list[Observed]) -> Observed | None:
    leaders = [o for o in observed if o.status and o.status["state_name"] == "leader"]
    return max(leaders, key=lambda o: o.status["current_term"]) if leaders else None  # type: ignore[index]


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
) -> Action:
    """One step for one group. ``desired``: its desired member nodes, element 0 the desired
    leader node (``placement.fleet_layout``); ``observed``: its running members; ``created``:
    a leader was seen once (the group existed); ``history`` is updated in place;
    ``persistent``: members keep their state on disk (a lost group is restored, not removed)."""
    lead = _leader(observed)
    if lead is None:
        return _plan_without_leader(desired, observed, cluster, created, history, now, election_timeout, persistent)
    history.no_leader_rounds, history.no_leader_since = 0, None
    st = lead.status
    assert st is not None
    voters: tuple[str, ...] = tuple(st["members"])
    learners: tuple[str, ...] = tuple(st.get("learners", ()))
    config = voters + learners
    running = {o.member: o for o in observed}

    def state(m: str) -> str:
        node = cluster.node_of(m)
        if node is None or node in cluster.dead:
            return "dead"
        if m in running:
            return "running"
        return "dead" if node in cluster.answered else "unknown"

    # 1. Members that run outside the configuration.
    for o in sorted(observed, key=lambda o: o.member):
        if o.member not in config or (o.status is not None and o.status["state_name"] == "removed"):
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
    caught_up = set(st.get("caught_up_learners", ()))
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
        unresponsive = set(st.get("unresponsive_followers", ()))
        target = next((m for m in by_node.get(desired[0], []) if m in voters and m not in unresponsive), None)
        if target is not None:
            return Transfer(target, f"the desired leader node is {desired[0][:12]}, the leader is on "
                                    f"{(lead_node or '?')[:12]}")
    # 6. Members on nodes that are not desired (or a second member on one node).
    every_desired_votes = all(any(m in voters for m in by_node.get(n, [])) for n in desired)
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
) -> Action:
    if history.no_leader_since is None:
        history.no_leader_since = now
    history.no_leader_rounds += 1
    sustained = history.no_leader_rounds >= REPAIR_ROUNDS and now - history.no_leader_since > 2 * election_timeout
    if not observed:
        if not created:
            if desired and desired[0] in cluster.answered:
                return Create(desired[0], nodes=tuple(n for n in desired if n in cluster.answered))
            return Wait("no answering node to create the group on")
        if sustained and persistent:
            if desired and desired[0] in cluster.answered:
                return Create(desired[0], "every member of the group is dead: restore it from the newest "
                                          "files on the answering nodes", restore_only=True)
            return Wait("every member of the group is dead: waiting for a node to restore it from")
        if sustained:
            return RemoveGroup("every member of the group is dead and no files keep its state: removed "
                               "as a last resort (raft_fleet)")
        return Wait("no member of the group answers")
    statuses = [o for o in observed if o.status is not None]
    config = sorted({m for o in statuses for m in (*o.status["members"], *o.status.get("learners", ()))})  # type: ignore[index]
    if not config and not created and sustained:
        # Only passive joiners (never reached by a leader) remain of a creation that failed.
        o = sorted(observed, key=lambda o: o.member)[0]
        return StopMember(o.member, o.node, "a member that no leader ever reached, of a group that never had one")
    if not sustained:
        return Wait("no leader yet (an election may be under way)")
    running = {o.member for o in observed}

    def definitely_dead(m: str) -> bool:
        node = cluster.node_of(m)
        return node is None or node in cluster.dead or (node in cluster.answered and m not in running)

    dead = tuple(m for m in config if definitely_dead(m))
    survivors = tuple(sorted(o.member for o in statuses))
    voters = {m for o in statuses for m in o.status["members"]}  # type: ignore[index]
    if voters and all(definitely_dead(m) for m in voters):
        # Only learners are left (a group that lost its single voter before a follower caught
        # up): no member is sure to hold the committed entries, and a learner cannot vote.
        return RemoveGroup(f"every voter ({', '.join(sorted(voters))}) is dead and only learners are left, "
                           "which may lack committed entries: removed as a last resort")
    if dead and survivors:
        return ForceRemove(dead, survivors, f"no leader for {now - history.no_leader_since:.1f} s "  # type: ignore[operator]
                                            f"({history.no_leader_rounds} rounds) and {len(dead)} member(s) are dead")
    return Wait("no leader, and no member is known to be dead")


def describe(action: Action) -> str:
    """One line for logs and explain_placement."""
    name = type(action).__name__
    target = getattr(action, "member", None) or getattr(action, "node", None)
    if isinstance(action, ForceRemove):
        target = ", ".join(action.dead)
    head = f"{name}({target})" if target else name
    return f"{head}: {action.why}" if action.why else head


__all__ = [
    "MEMBERSHIP_ACTIONS",
    "REPAIR_ROUNDS",
    "Action",
    "AddLearner",
    "ClusterView",
    "Create",
    "ForceRemove",
    "History",
    "Nothing",
    "Observed",
    "Promote",
    "RemoveGroup",
    "RemoveMember",
    "StopMember",
    "Transfer",
    "Wait",
    "describe",
    "plan",
]
