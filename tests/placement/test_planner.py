"""The reconciler's planner, table-tested: raft_fleet's adjust_one_step cases
(``consensus_member_adjuster_test.exs``, reference §3.7) and our own (learners, dead members,
drain, orphans, repair without a leader)."""

from __future__ import annotations

import math

import pytest

from raftfleet_ray.placement import fleet_layout
from raftfleet_ray.placement.planner import (
    REPAIR_ROUNDS,
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
    plan,
)

NODES = [f"n{i}" for i in range(1, 7)]
DESIRED = ["n1", "n2", "n3"]
ET = 1.0


def mid(node: str, g: str = "g") -> str:
    return f"raftfleet.host|{node}|h#{g}#1"


def status(me: str, leader: str | None, voters: list[str], learners: list[str] = (), *,
           role: str | None = None, term: int = 5, caught_up: list[str] = (), unresponsive: list[str] = ()) -> dict:
    return {
        "from_": me, "state_name": role or ("leader" if me == leader else "follower"), "current_term": term,
        "leader": leader, "members": tuple(voters), "learners": tuple(learners),
        "caught_up_learners": tuple(caught_up), "unresponsive_followers": tuple(unresponsive),
    }


def group(leader_node: str | None, voter_nodes: list[str], learner_nodes: list[str] = (), *, caught_up: list[str] = (),
          not_running: list[str] = ()) -> list[Observed]:
    voters = [mid(n) for n in voter_nodes]
    learners = [mid(n) for n in learner_nodes]
    lead = mid(leader_node) if leader_node else None
    out = []
    for m, n in zip(voters + learners, list(voter_nodes) + list(learner_nodes), strict=True):
        if n in not_running:
            continue
        out.append(Observed(m, n, status(m, lead, voters, learners, caught_up=[mid(c) for c in caught_up])))
    return out


def view(answered=NODES, dead=()) -> ClusterView:
    return ClusterView(frozenset(answered) - frozenset(dead), frozenset(dead), {n: n for n in NODES})


def step(observed, desired=DESIRED, cluster=None, created=True, history=None, now=100.0):
    return plan(desired, observed, cluster or view(), created=created, history=history or History(), now=now,
                election_timeout=ET)


# raft_fleet's table: (leader node first, then followers) with desired [1, 2, 3] -> members after
# one step and the leader after it. Adding a member is one step here too (as a learner; its
# promotion is the next step).
RAFT_FLEET_CASES = [
    (["n1"], AddLearner("n2")),
    (["n1", "n2"], AddLearner("n3")),
    (["n1", "n4"], AddLearner("n2")),
    (["n1", "n2", "n4"], AddLearner("n3")),
    (["n1", "n2", "n3", "n4"], RemoveMember(mid("n4"))),
    (["n1", "n2", "n3"], Nothing()),
    (["n2"], AddLearner("n1")),
    (["n2", "n3"], AddLearner("n1")),
    (["n2", "n3", "n4"], AddLearner("n1")),
    (["n2", "n3", "n1"], Transfer(mid("n1"))),
    (["n2", "n3", "n4", "n1"], Transfer(mid("n1"))),
    (["n4", "n1", "n2", "n3"], Transfer(mid("n1"))),
]


@pytest.mark.parametrize(("nodes", "expected"), RAFT_FLEET_CASES, ids=["-".join(c[0]) for c in RAFT_FLEET_CASES])
def test_raft_fleet_adjust_one_step_cases(nodes, expected) -> None:
    act = step(group(nodes[0], nodes))
    assert type(act) is type(expected)
    assert getattr(act, "member", None) == getattr(expected, "member", None)
    assert getattr(act, "node", None) == getattr(expected, "node", None)


def test_a_caught_up_learner_is_promoted_and_a_lagging_one_waits() -> None:
    obs = group("n1", ["n1", "n2"], ["n3"], caught_up=["n3"])
    assert step(obs) == Promote(mid("n3"), step(obs).why)
    lagging = group("n1", ["n1", "n2"], ["n3"])
    assert step(lagging) == Nothing() or isinstance(step(lagging), Nothing)


def test_a_dead_member_is_removed_before_anything_is_added() -> None:
    """raft_fleet rule B2: a dead member on a desired node goes before a new one joins there."""
    obs = group("n1", ["n1", "n2", "n3"], not_running=["n2"])  # n2's agent answers: its host died
    act = step(obs)
    assert isinstance(act, RemoveMember) and act.member == mid("n2")
    # On a node Ray reports dead, likewise; on a node whose agent did not answer, never.
    assert isinstance(step(obs, cluster=view(dead=["n2"])), RemoveMember)
    unknown = step(obs, cluster=view(answered=["n1", "n3", "n4", "n5", "n6"]))
    assert not isinstance(unknown, RemoveMember)


def test_drain_moves_leadership_first_then_members() -> None:
    """n1 (the leader's node) is draining: desired is now n2, n3, n4. A learner joins on n4,
    is promoted, the leadership moves to n2, and only then does the member on n1 go."""
    desired = ["n2", "n3", "n4"]
    obs = group("n1", ["n1", "n2", "n3"])
    assert step(obs, desired) == AddLearner("n4", step(obs, desired).why)
    obs = group("n1", ["n1", "n2", "n3"], ["n4"], caught_up=["n4"])
    assert isinstance(step(obs, desired), Promote)
    obs = group("n1", ["n1", "n2", "n3", "n4"])
    assert step(obs, desired).member == mid("n2") and isinstance(step(obs, desired), Transfer)
    obs = group("n2", ["n1", "n2", "n3", "n4"])
    act = step(obs, desired)
    assert isinstance(act, RemoveMember) and act.member == mid("n1")
    assert isinstance(step(group("n2", ["n2", "n3", "n4"]), desired), Nothing)


def test_a_voter_goes_only_once_its_replacement_votes() -> None:
    desired = ["n1", "n2", "n4"]
    obs = group("n1", ["n1", "n2", "n3"], ["n4"])  # n4 joined but has not caught up
    assert isinstance(step(obs, desired), Wait | Nothing)
    assert not isinstance(step(obs, desired), RemoveMember)


def test_learners_on_undesired_nodes_go_at_once() -> None:
    act = step(group("n1", ["n1", "n2", "n3"], ["n5"]))
    assert isinstance(act, RemoveMember) and act.member == mid("n5")


def test_orphans_are_stopped() -> None:
    obs = group("n1", ["n1", "n2", "n3"]) + [Observed(mid("n4"), "n4", status(mid("n4"), None, []))]
    act = step(obs)
    assert isinstance(act, StopMember) and act.member == mid("n4") and act.node == "n4"


def test_creation_and_the_last_resort() -> None:
    assert step([], created=False) == Create("n1", nodes=("n1", "n2", "n3"))  # born whole
    # A created group whose members are all gone: removed only after sustained observation.
    h = History()
    acts = [step([], created=True, history=h, now=100.0 + i) for i in range(REPAIR_ROUNDS + 1)]
    assert all(isinstance(a, Wait) for a in acts[:-2]) and isinstance(acts[-1], RemoveGroup)


def test_with_persistence_a_lost_group_is_restored_never_removed() -> None:
    h = History()
    acts = [plan(DESIRED, [], view(), created=True, history=h, now=100.0 + i, election_timeout=ET, persistent=True)
            for i in range(REPAIR_ROUNDS + 2)]
    assert not any(isinstance(a, RemoveGroup) for a in acts), acts
    assert isinstance(acts[-1], Create) and acts[-1].restore_only
    # A group never created is created as usual (not restore-only).
    assert step([], created=False) == Create("n1", nodes=("n1", "n2", "n3"))


def test_force_remove_only_after_sustained_loss_and_only_the_definitely_dead() -> None:
    """Majority loss: n2 and n3 dead (Ray says so), n1 alone without a leader. A single
    observation never triggers the unsafe repair (an ordinary election looks the same)."""
    m1 = mid("n1")
    obs = [Observed(m1, "n1", status(m1, None, [mid("n1"), mid("n2"), mid("n3")], role="pre_candidate"))]
    cluster = view(dead=["n2", "n3"])
    h = History()
    assert isinstance(step(obs, cluster=cluster, history=h, now=100.0), Wait)
    assert isinstance(step(obs, cluster=cluster, history=h, now=100.5), Wait)
    # Three observations but within 2 election timeouts: still waiting.
    assert isinstance(step(obs, cluster=cluster, history=h, now=101.0), Wait)
    act = step(obs, cluster=cluster, history=h, now=102.5)
    assert isinstance(act, ForceRemove) and act.dead == (mid("n2"), mid("n3")) and act.survivors == (m1,)
    # Members whose node's agent does not answer may be alive: never force-removed.
    h2 = History()
    unknown = view(answered=["n1", "n4", "n5", "n6"])
    for t in range(10):
        act = step(obs, cluster=unknown, history=h2, now=100.0 + t)
        assert not isinstance(act, ForceRemove), act


def test_a_group_whose_voters_are_all_dead_is_removed_not_stuck() -> None:
    """The single voter of a new group died before its learners caught up: a learner can
    neither vote nor prove it holds every committed entry, and force-removing the voter would
    leave a group of no voters. After sustained observation: the last resort, as for a group
    whose members are all dead (the notebook's node kill right after creation hit this)."""
    lone, learner = mid("n1"), mid("n2")
    obs = [Observed(learner, "n2", status(learner, None, [lone], [learner]))]
    cluster = view(dead=["n1"])
    h = History()
    acts = [step(obs, cluster=cluster, history=h, now=100.0 + i) for i in range(REPAIR_ROUNDS + 1)]
    assert all(isinstance(a, Wait) for a in acts[:-1]), acts
    assert isinstance(acts[-1], RemoveGroup) and lone in acts[-1].why
    # A voter that may be alive (its node's agent is silent) is never written off.
    h2 = History()
    silent = view(answered=["n2", "n3", "n4", "n5", "n6"])
    assert not any(isinstance(step(obs, cluster=silent, history=h2, now=100.0 + i), RemoveGroup) for i in range(10))


def test_a_leader_resets_the_no_leader_history() -> None:
    h = History(no_leader_rounds=5, no_leader_since=1.0)
    step(group("n1", ["n1", "n2", "n3"]), history=h)
    assert h.no_leader_rounds == 0 and h.no_leader_since is None


def test_fleet_layout_bounds_leaders_per_node() -> None:
    nodes = {"z1": ["a1", "a2"], "z2": ["b1", "b2"], "z3": ["c1", "c2"]}
    groups = {f"g{i}": 3 for i in range(30)}
    layout = fleet_layout(nodes, groups)
    leaders: dict[str, int] = {}
    for members in layout.values():
        assert len(members) == 3 and len({m[0] for m in members}) == 3  # one per zone
        leaders[members[0]] = leaders.get(members[0], 0) + 1
    assert max(leaders.values()) <= math.ceil(30 / 6) + 1, leaders
    # Deterministic, and one more node changes few desired leaders.
    assert fleet_layout(nodes, groups) == layout
    bigger = fleet_layout({**nodes, "z1": ["a1", "a2", "a3"]}, groups)
    moved = sum(1 for g in groups if bigger[g][0] != layout[g][0])
    assert moved <= 15, moved
