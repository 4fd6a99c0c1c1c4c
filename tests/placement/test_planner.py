"""The reconciler's planner, table-tested: raft_fleet's adjust_one_step cases
(``consensus_member_adjuster_test.exs``, reference §3.7) and our own (learners, dead members,
drain, orphans; without a leader: silence is not death, lost groups, restores only from a
majority of files, the operator's repair plan)."""

from __future__ import annotations

import math

import pytest

from raftfleet_ray.placement import fleet_layout
from raftfleet_ray.placement.planner import (
    REPAIR_ROUNDS,
    AddLearner,
    ClusterView,
    Create,
    FileCopy,
    History,
    MarkLost,
    Nothing,
    Observed,
    Promote,
    RemoveMember,
    Restore,
    StopMember,
    Transfer,
    Wait,
    plan,
    plan_repair,
    wants_files,
)
from raftfleet_ray.runtime.wire import MemberStatus

NODES = [f"n{i}" for i in range(1, 7)]
DESIRED = ["n1", "n2", "n3"]
ET = 1.0


def mid(node: str, g: str = "g") -> str:
    return f"raftfleet.host|{node}|h#{g}#1"


def status(me: str, leader: str | None, voters: list[str], learners: list[str] = (), *,
           role: str | None = None, term: int = 5, caught_up: list[str] = (), unresponsive: list[str] = (),
           commit: int = 0, last: int = 0, last_term: int = 0) -> MemberStatus:
    return MemberStatus(
        from_=me, state_name=role or ("leader" if me == leader else "follower"), current_term=term,
        leader=leader, members=tuple(voters), learners=tuple(learners),
        caught_up_learners=tuple(caught_up), unresponsive_followers=tuple(unresponsive),
        commit_index=commit, applied_index=commit, last_index=last, last_term=last_term,
    )


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


def view(answered=NODES, dead=(), files_unread=()) -> ClusterView:
    return ClusterView(frozenset(answered) - frozenset(dead), frozenset(dead), {n: n for n in NODES},
                       frozenset(files_unread))


def step(observed, desired=DESIRED, cluster=None, created=True, history=None, now=100.0, **kw):
    return plan(desired, observed, cluster or view(), created=created, history=history or History(), now=now,
                election_timeout=ET, **kw)


def rounds(observed, n=REPAIR_ROUNDS + 3, **kw) -> list:
    """The steps of ``n`` rounds 1 s apart (a sustained observation after REPAIR_ROUNDS)."""
    h = History()
    return [step(observed, history=h, now=100.0 + i, **kw) for i in range(n)]


VOTERS = (mid("n1"), mid("n2"), mid("n3"))
CONFIG3 = (VOTERS, ())


def copy(node: str, index: int, term: int = 5, *, on: str | None = None, retired: bool = False,
         config=CONFIG3) -> FileCopy:
    """The files of the member that lived on ``node``, read on node ``on`` (the same name, back)."""
    return FileCopy(mid(node), on or "n6", ("dir", f"/data/{node}"), term, index, config, retired)


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


def test_creation() -> None:
    assert step([], created=False) == Create("n1", nodes=("n1", "n2", "n3"))  # born whole
    assert isinstance(step([], created=False, cluster=view(answered=["n2", "n3"])), Wait)


def test_a_created_group_of_which_nothing_is_observed_is_never_removed() -> None:
    """Issue 14 finding 1: nothing observed is not every member dead. Without a configuration
    known, no member can be judged: wait; with its last configuration recorded, the group is
    lost only once Ray reports every voter's node dead, never removed."""
    assert all(isinstance(a, Wait) for a in rounds([], n=20)), "no configuration known: wait"
    acts = rounds([], cluster=view(dead=["n1", "n2", "n3"]), last_config=CONFIG3)
    assert all(isinstance(a, Wait) for a in acts[:REPAIR_ROUNDS - 1]) and isinstance(acts[-1], MarkLost), acts
    assert "3 of its 3 voter(s) are definitely gone" in acts[-1].why
    # It stays lost for as long as it lasts (planned every round; the mark keeps its time).
    assert all(isinstance(a, MarkLost) for a in acts[REPAIR_ROUNDS:])


SILENT_CASES = {
    # answered nodes (n1..n3 hold the voters): the others are alive but silent
    "every agent silent": [],
    "the voters' agents silent": ["n4", "n5", "n6"],
    "two voters' agents silent": ["n1", "n4", "n5", "n6"],
    "one voter's agent silent, two voters' nodes dead": ["n4", "n5", "n6"],
}


@pytest.mark.parametrize("persistent", [False, True], ids=["memory", "persistent"])
@pytest.mark.parametrize("case", list(SILENT_CASES))
def test_silent_agents_never_lead_to_removal_lost_or_restore(case, persistent) -> None:
    """An agent that does not answer (a restart, a GCS hiccup, two busy cores) says nothing of
    its members: whatever is seen of the rest, for as long as it lasts, the group waits. With
    persistence, files readable elsewhere do not restore a second incarnation beside members
    that may still run."""
    answered = SILENT_CASES[case]
    dead = ["n2", "n3"] if "dead" in case else []
    cluster = view(answered=answered, dead=dead)
    files = (copy("n2", 10, on="n4"), copy("n3", 12, on="n5")) if persistent else ()
    for last_config in (None, CONFIG3):
        acts = rounds([], n=30, cluster=cluster, last_config=last_config, persistent=persistent, files=files)
        if dead and (last_config or persistent):
            # Two of three voters dead by Ray's word: the group cannot elect, so it is lost
            # (kept, reported); the silent voter is unknown, so never restored beside it.
            assert isinstance(acts[-1], MarkLost) and "may run unseen" in acts[-1].why, acts[-1]
            assert not any(isinstance(a, Restore) for a in acts)
        else:
            assert all(isinstance(a, Wait) for a in acts), (case, last_config, acts)


def test_a_majority_dead_is_lost_and_a_minority_dead_waits() -> None:
    """Majority loss: n2 and n3 dead (Ray says so), n1 alone without a leader. It cannot elect
    a leader by itself: lost, after a sustained observation (an ordinary election looks the
    same for a moment). The survivor's recovery, which may lose acknowledged entries, is the
    operator's (plan_repair), never force-removed by the reconciler."""
    m1 = mid("n1")
    obs = [Observed(m1, "n1", status(m1, None, list(VOTERS), role="pre_candidate"))]
    h = History()
    assert isinstance(step(obs, cluster=view(dead=["n2", "n3"]), history=h, now=100.0), Wait)
    assert isinstance(step(obs, cluster=view(dead=["n2", "n3"]), history=h, now=100.5), Wait)
    assert isinstance(step(obs, cluster=view(dead=["n2", "n3"]), history=h, now=101.0), Wait)  # within 2 ETs
    act = step(obs, cluster=view(dead=["n2", "n3"]), history=h, now=102.5)
    assert isinstance(act, MarkLost) and "2 of its 3 voter(s)" in act.why and "1 member(s) still run" in act.why
    # One voter dead: two may still elect: wait, however long.
    two = [Observed(m, n, status(m, None, list(VOTERS), role="candidate")) for m, n in zip(VOTERS[:2], ["n1", "n2"], strict=True)]
    assert all(isinstance(a, Wait) for a in rounds(two, n=20, cluster=view(dead=["n3"])))
    # Members whose node's agent does not answer may be alive: n3 unknown, n2 dead: no majority dead.
    acts = rounds(obs, n=20, cluster=view(answered=["n1", "n4", "n5", "n6"], dead=["n2"]))
    assert all(isinstance(a, Wait) for a in acts) and "unknown" in acts[-1].why


def test_an_even_sized_group_without_a_quorum_left_is_lost_not_waited_for() -> None:
    """A quorum, not a majority dead: a group a drain shrank to 2 voters (the 2 nodes left)
    whose other voter's node died can never elect (it needs both), so it is lost (kept,
    reported), not waited for forever (fleet simulator, chaos seed 35 with persistence). With
    4 voters (a move half done), 2 dead is no quorum either; 1 dead still is one."""
    two = (mid("n1"), mid("n2"))
    m1 = mid("n1")
    obs = [Observed(m1, "n1", status(m1, None, list(two), role="pre_candidate"))]
    acts = rounds(obs, cluster=view(dead=["n2"]))
    assert isinstance(acts[-1], MarkLost) and "1 of its 2 voter(s)" in acts[-1].why, acts[-1]
    four = (*VOTERS, mid("n4"))
    obs = [Observed(mid(n), n, status(mid(n), None, list(four), role="candidate")) for n in ("n1", "n4")]
    assert isinstance(rounds(obs, cluster=view(dead=["n2", "n3"]))[-1], MarkLost)
    obs.append(Observed(mid("n3"), "n3", status(mid("n3"), None, list(four), role="candidate")))
    assert all(isinstance(a, Wait) for a in rounds(obs, n=20, cluster=view(dead=["n2"])))


def test_a_lagging_member_does_not_hide_a_newer_configuration() -> None:
    """The last configuration recorded (n1, n4, n5) and a lagging member's own (n1, n2, n3):
    a majority of each must be dead. n2, n3 dead but n4 and n5 answer running: no loss."""
    m1 = mid("n1")
    obs = [Observed(m1, "n1", status(m1, None, list(VOTERS), role="candidate"))]
    newer = ((mid("n1"), mid("n4"), mid("n5")), ())
    running = obs + [Observed(mid(n), n, None) for n in ("n4", "n5")]  # their hosts are busy
    assert all(isinstance(a, Wait) for a in rounds(running, n=20, cluster=view(dead=["n2", "n3"]), last_config=newer))
    # n4 and n5 gone too (their agents answer without them): now lost.
    assert isinstance(rounds(obs, cluster=view(dead=["n2", "n3"]), last_config=newer)[-1], MarkLost)


def test_a_group_whose_voters_are_all_dead_is_lost_not_removed() -> None:
    """Formerly test_a_group_whose_voters_are_all_dead_is_removed_not_stuck: the single voter of
    a new group died before its learners caught up. A learner can neither vote nor prove it
    holds every committed entry: the group is lost, kept and reported, never removed (issue
    14); recovering from the learner is the operator's unsafe repair."""
    lone, learner = mid("n1"), mid("n2")
    obs = [Observed(learner, "n2", status(learner, None, [lone], [learner]))]
    acts = rounds(obs, cluster=view(dead=["n1"]))
    assert all(isinstance(a, Wait) for a in acts[:REPAIR_ROUNDS - 1]), acts
    assert isinstance(acts[-1], MarkLost) and lone in acts[-1].why
    # A voter that may be alive (its node's agent is silent) is never written off.
    silent = view(answered=["n2", "n3", "n4", "n5", "n6"])
    assert all(isinstance(a, Wait) for a in rounds(obs, n=20, cluster=silent))


RESTORE_CASES = [
    # (files readable, expected): voters n1..n3, every node dead; copies read on live nodes
    ((), MarkLost),
    ((copy("n1", 10),), MarkLost),
    ((copy("n1", 10), copy("n2", 12, retired=True)), MarkLost),  # a retired copy does not count
    ((copy("n1", 10), copy("n4", 99)), MarkLost),  # nor one of a member outside the configuration
    ((copy("n1", 10), copy("n2", 12)), Restore),
    ((copy("n1", 10), copy("n2", 12), copy("n3", 11)), Restore),
    ((copy("n1", 10, term=7), copy("n2", 12, term=6)), Restore),  # (term, index): n1 is the newer
]


@pytest.mark.parametrize(("files", "expected"), RESTORE_CASES, ids=[str(i) for i in range(len(RESTORE_CASES))])
def test_a_restore_needs_the_files_of_a_majority_of_the_last_configuration(files, expected) -> None:
    """Issue 14 finding 3: with a majority of the voters' files read, the newest holds every
    committed entry (Raft's election restriction); with fewer, a restore could roll back
    acknowledged writes: the group is lost, for the operator. (It is restored later by
    itself if files of a majority come back.)"""
    cluster = ClusterView(frozenset(["n6"]), frozenset(["n1", "n2", "n3"]), {n: n for n in NODES})
    acts = rounds([], cluster=cluster, last_config=CONFIG3, persistent=True, files=files)
    assert all(isinstance(a, Wait) for a in acts[:REPAIR_ROUNDS - 1]), acts
    act = acts[-1]
    assert isinstance(act, expected), act
    if expected is Restore:
        usable = [f for f in files if not f.retired and f.member in VOTERS]
        newest = max(usable, key=lambda f: (f.term, f.index))
        assert (act.member, act.node, act.source, act.index) == (newest.member, "n6", newest.source, newest.index)


def test_never_a_restore_beside_a_running_or_unknown_member() -> None:
    """Files of a majority are readable, but one member still runs (or may: its node's agent
    is silent): a restore would make a second incarnation. Lost instead."""
    m1 = mid("n1")
    obs = [Observed(m1, "n1", status(m1, None, list(VOTERS), role="candidate"))]
    files = (copy("n2", 12, on="n4"), copy("n3", 11, on="n5"))
    acts = rounds(obs, cluster=view(dead=["n2", "n3"]), last_config=CONFIG3, persistent=True, files=files)
    assert isinstance(acts[-1], MarkLost) and "still run" in acts[-1].why
    unknown = view(answered=["n4", "n5", "n6"], dead=["n2", "n3"])  # n1 alive, its agent silent
    acts = rounds([], n=20, cluster=unknown, last_config=CONFIG3, persistent=True, files=files)
    assert not any(isinstance(a, Restore) for a in acts) and isinstance(acts[-1], MarkLost), acts[-1]


def test_after_a_whole_fleet_restart_the_newest_file_gives_the_configuration() -> None:
    """No configuration recorded (the ClusterActor is new) and no member runs: the newest
    file's configuration is the one a majority of files must cover."""
    old = ClusterView(frozenset(["n4", "n5", "n6"]), frozenset(), {n: n for n in ("n4", "n5", "n6")})  # n1-3 unknown to Ray
    one = (copy("n1", 10, on="n4"),)
    assert isinstance(rounds([], cluster=old, persistent=True, files=one)[-1], MarkLost)
    two = (copy("n1", 10, on="n4"), copy("n2", 9, on="n5"))
    act = rounds([], cluster=old, persistent=True, files=two)[-1]
    assert isinstance(act, Restore) and act.member == mid("n1") and act.node == "n4"


def test_files_are_wanted_only_when_no_voter_runs() -> None:
    assert not wants_files(group("n1", ["n1", "n2", "n3"]), view(), CONFIG3, created=True)
    m1 = mid("n1")
    candidate = [Observed(m1, "n1", status(m1, None, list(VOTERS), role="candidate"))]
    assert not wants_files(candidate, view(), CONFIG3, created=True)
    assert wants_files([], view(dead=["n1", "n2", "n3"]), CONFIG3, created=True)
    assert wants_files([], view(), None, created=True)
    assert not wants_files([], view(), None, created=False)


# ---------------------------------------------------------------------------------------
# The operator's repair plan


def survivor(node: str, *, last: int, last_term: int = 5, commit: int = 0, voters=VOTERS, learners=()) -> Observed:
    m = mid(node)
    return Observed(m, node, status(m, None, list(voters), list(learners), role="candidate", last=last,
                                    last_term=last_term, commit=commit))


def test_repair_recovers_from_the_most_up_to_date_voter_and_says_what_may_be_lost() -> None:
    obs = [survivor("n1", last=10, commit=9), survivor("n2", last=12, commit=11)]
    p = plan_repair(obs, view(dead=["n3"]), CONFIG3, (), highest_commit=14)
    assert (p.source, p.member, p.node, p.index) == ("survivor", mid("n2"), "n2", 12)
    assert p.stop == ((mid("n1"), "n1"),) and set(p.force_remove) == {mid("n1"), mid("n3")}
    assert p.highest_commit == 14 and p.may_lose == 2 and "at least 2 acknowledged entries may be lost" in p.describe()
    assert not p.blocked
    # (last term, last index) as Raft compares logs: a newer term wins over a longer log.
    newer = [survivor("n1", last=10, last_term=7), survivor("n2", last=12, last_term=6)]
    assert plan_repair(newer, view(dead=["n3"]), CONFIG3, (), 0).member == mid("n1")


def test_repair_prefers_newer_files_stops_every_member_first_and_never_beside_unknown_ones() -> None:
    obs = [survivor("n1", last=10)]
    files = (copy("n2", 15, on="n5"),)
    p = plan_repair(obs, view(dead=["n2", "n3"]), CONFIG3, files, highest_commit=15)
    assert (p.source, p.member, p.node, p.index, p.may_lose) == ("files", mid("n2"), "n5", 15, 0)
    assert p.stop == ((mid("n1"), "n1"),) and p.file_source == ("dir", "/data/n2") and not p.blocked
    # A tie goes to the survivor (no second incarnation needed).
    assert plan_repair(obs, view(dead=["n2", "n3"]), CONFIG3, (copy("n2", 10, on="n5"),), 0).source == "survivor"
    # n3's node is alive but its agent silent: it may still run: no new incarnation now.
    silent = view(answered=["n1", "n2", "n4", "n5", "n6"], dead=["n2"])
    blocked = plan_repair([], silent, CONFIG3, files, 0)
    assert blocked.blocked and mid("n3") in blocked.blocked and "no recovery is possible" in blocked.describe()


def test_a_repair_retried_after_a_failure_midway_still_sees_the_members_it_stopped() -> None:
    """The first attempt stopped the survivor (its files are retired now, in its live host's
    log) and failed before restoring: the retry restores from those files, not from older
    ones, nor afresh."""
    stopped = FileCopy(mid("n1"), "n1", ("host", "raftfleet.host|n1|h"), 5, 20, CONFIG3, retired=True)
    older = copy("n2", 15, on="n5")
    p = plan_repair([], view(dead=["n2", "n3"]), CONFIG3, (stopped, older), highest_commit=20)
    assert (p.source, p.member, p.file_source, p.may_lose) == ("files", mid("n1"), ("host", "raftfleet.host|n1|h"), 0)
    # Without any configuration known, retired files (a removed group's) never count.
    assert plan_repair([], view(dead=["n2", "n3"]), None, (stopped,), 0).source == "empty"


def test_repair_from_nothing_starts_afresh_and_a_learner_is_no_source() -> None:
    p = plan_repair([], view(dead=["n1", "n2", "n3"]), CONFIG3, (), highest_commit=30)
    assert (p.source, p.index, p.may_lose, p.blocked) == ("empty", 0, 30, "")
    lone, learner = mid("n1"), mid("n2")
    obs = [Observed(learner, "n2", status(learner, None, [lone], [learner], role="follower", last=9))]
    p = plan_repair(obs, view(dead=["n1"]), ((lone,), (learner,)), (), highest_commit=9)
    assert p.source == "empty" and p.stop == ((learner, "n2"),) and p.may_lose == 9


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


def test_a_group_with_no_desired_node_keeps_its_voters() -> None:
    """No active node at all (every node drained, say): nothing is desired, and "every
    desired node has a voter" must not hold vacuously, or every voter but the leader would
    be removed (the fleet simulator found this after a GCS hiccup drained every node)."""
    acts = [step(group("n1", ["n1", "n2", "n3"]), desired=[]) for _ in range(3)]
    assert not any(isinstance(a, RemoveMember) for a in acts), acts


def test_files_that_could_not_be_read_are_unknown_not_absent() -> None:
    """Every voter dead (a whole-cluster restart), one copy read, and an answering node whose
    files could not be read this round (a slow call): it may hold the copies a safe restore
    needs, so the group waits instead of being marked lost (fleet simulator, chaos seed 2027
    with persistence: marked lost, then restored a round later)."""
    files = (copy("n2", 10, on="n4"),)
    acts = rounds([], cluster=view(answered=["n4", "n5", "n6"], dead=["n1", "n2", "n3"], files_unread=["n5"]),
                  last_config=CONFIG3, persistent=True, files=files)
    assert isinstance(acts[-1], Wait) and "could not be read" in acts[-1].why, acts[-1]
    acts = rounds([], cluster=view(answered=["n4", "n5", "n6"], dead=["n1", "n2", "n3"]),
                  last_config=CONFIG3, persistent=True, files=files)
    assert isinstance(acts[-1], MarkLost) and "only 1 of them" in acts[-1].why, acts[-1]


def test_a_blank_member_left_by_a_start_cut_short_is_stopped_and_blocks_no_restore() -> None:
    """A restore whose step timed out (one start hung) left a passive member on n4: no
    configuration, no log, in no configuration known. It is stopped; the group is then
    restored from a majority of its files, as if it had never been (fleet simulator, chaos
    seed 2005 with persistence: it blocked every later restore, 'a member still runs')."""
    blank = "raftfleet.host|n4|bbbb#g#2"
    obs = [Observed(blank, "n4", status(blank, None, []))]
    cluster = view(answered=["n4", "n5", "n6"], dead=["n1", "n2", "n3"])
    files = (copy("n1", 10, on="n5"), copy("n2", 12, on="n6"))
    acts = rounds(obs, cluster=cluster, last_config=CONFIG3, persistent=True, files=files)
    assert isinstance(acts[-1], StopMember) and acts[-1].member == blank, acts[-1]
    acts = rounds([], cluster=cluster, last_config=CONFIG3, persistent=True, files=files)
    assert isinstance(acts[-1], Restore) and acts[-1].member == mid("n2"), acts[-1]
    # A passive voter of a restore under way is in the configuration recorded for it: kept.
    new = ((blank, "raftfleet.host|n5|cccc#g#2"), ())
    acts = rounds(obs, cluster=cluster, last_config=new, persistent=True, files=files)
    assert not any(isinstance(a, StopMember) for a in acts), acts


def test_files_that_meet_every_quorum_are_enough_to_restore_an_even_sized_group() -> None:
    """A 4-voter group (a move half done when the whole cluster went down): any 2 copies
    meet every 3-voter quorum, so the newest of 2 holds every committed entry; 1 is not
    enough. (Fleet simulator, chaos seed 3133 with persistence: 2 of 4 readable, lost.)"""
    from raftfleet_ray.placement.planner import meets_every_quorum

    assert [meets_every_quorum(k, 4) for k in range(5)] == [False, False, True, True, True]
    assert [meets_every_quorum(k, 3) for k in range(4)] == [False, False, True, True]
    assert [meets_every_quorum(k, 5) for k in range(6)] == [False, False, False, True, True, True]
    four = ((*VOTERS, mid("n4")), ())
    cluster = view(answered=["n5", "n6"], dead=["n1", "n2", "n3", "n4"])
    two = (copy("n1", 10, on="n5", config=four), copy("n4", 12, on="n6", config=four))
    acts = rounds([], cluster=cluster, last_config=four, persistent=True, files=two)
    assert isinstance(acts[-1], Restore) and acts[-1].member == mid("n4"), acts[-1]
    acts = rounds([], cluster=cluster, last_config=four, persistent=True, files=two[:1])
    assert isinstance(acts[-1], MarkLost), acts[-1]
