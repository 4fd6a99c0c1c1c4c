"""Parts of the reconciler's round without Ray (issue 14 finding 6): a step that hangs delays
only its own group, and ``explain`` plans from exactly what the round planned with."""

from __future__ import annotations

import asyncio

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.placement.planner import (
    AddLearner,
    ClusterView,
    FileCopy,
    History,
    Observed,
    Restore,
)
from raftfleet_ray.runtime import balancer as balancer_mod
from raftfleet_ray.runtime.balancer import Balancer, RoundReport
from raftfleet_ray.runtime.cluster_state import GroupSpec, ReconcileView
from raftfleet_ray.runtime.wire import MemberStatus

pytestmark = pytest.mark.timeout(30)

CFG = RaftConfig()


def test_a_hanging_step_delays_only_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The round waits ROUND_STEP_WAIT for its steps, then goes on; the hanging one keeps
    running, its group marked in flight (later rounds leave it alone) until it ends."""
    monkeypatch.setattr(balancer_mod, "ROUND_STEP_WAIT", 0.1)
    b = Balancer()
    release = asyncio.Event()

    async def do(g, spec, act, leader, cview) -> str:
        if g == "stuck":
            await release.wait()  # an agent that does not answer (bounded by STEP_TIMEOUT in life)
        return "ok"

    b._do = do  # type: ignore[method-assign]

    async def go() -> None:
        rep = RoundReport()
        cview = ClusterView(frozenset(), frozenset(), {})
        actions = [(g, GroupSpec(3, CFG), AddLearner(f"n{i}"), None) for i, g in enumerate(["stuck", "a", "b"])]
        t0 = asyncio.get_running_loop().time()
        await b._execute(actions, FleetConfig(), cview, rep)
        assert asyncio.get_running_loop().time() - t0 < 2.0
        assert rep.actions["AddLearner"] == 2 and set(b._inflight) == {"stuck"}
        assert b._planned["a"][2] == "ok" and "stuck" not in b._planned  # its outcome comes when it ends
        release.set()
        await asyncio.sleep(0.05)
        assert b._inflight == {} and rep.actions["AddLearner"] == 3

    asyncio.run(go())


def test_explain_plans_with_the_rounds_inputs_persistence_included() -> None:
    """A lost group whose voters' files are readable on a majority: the round restores it
    (persistence); explain() must say so, not plan as if members kept no files."""
    b = Balancer()
    voters = tuple(f"raftfleet.host|n{i}|h#g#1" for i in (1, 2, 3))
    view = ReconcileView(groups={"g": GroupSpec(3, CFG)}, layout={"g": ["n4", "n5", "n6"]},
                         active_nodes={"z1": ["n4"], "z2": ["n5"], "z3": ["n6"]}, draining={},
                         created=frozenset({"g"}), cleanup_pending=False,
                         fleet_config=FleetConfig(persistence_dir_parent="/data"))
    cview = ClusterView(frozenset({"n4", "n5", "n6"}), frozenset({"n1", "n2", "n3"}),
                        {n: n for n in ("n1", "n2", "n3", "n4", "n5", "n6")})
    files = tuple(FileCopy(v, f"n{i + 4}", ("dir", f"/data/n{i + 1}"), 5, 10 + i, (voters, ())) for i, v in enumerate(voters[:2]))
    b._last_view, b._last_cview, b._last_obs = view, cview, {}
    b._last_configs, b._last_files = {"g": (voters, ())}, {"g": files}
    b._history["g"] = History(no_leader_rounds=5, no_leader_since=0.0)
    out = asyncio.run(b.explain("g"))
    assert out["next_step"].startswith("Restore(raftfleet.host|n2|h#g#1)"), out["next_step"]
    assert isinstance(balancer_mod.planner.plan(**b._plan_input("g", view, {}, cview, b._last_configs, b._last_files),
                                                history=History(5, 0.0), now=1e9), Restore)


def test_members_of_a_group_added_after_the_rounds_view_are_not_orphans() -> None:
    """The round reads its view, then the creation fast path registers a group and starts
    its members, then the round observes them: they are of a known group, not orphans. Only
    members of a group the ClusterActor does not know after the observation are stopped
    (this race stopped freshly created members on packed hosts in CI)."""
    b = Balancer()
    stopped: list[tuple[str, list[str]]] = []
    registered = {"old", "new"}  # "new" was added after the round read its view

    async def cluster(method: str, *args):
        assert method == "unknown_groups"
        return [g for g in args[0] if g not in registered]

    async def agent_call(node: str, method: str, *args, timeout: float):
        assert method == "stop_members"
        stopped.append((node, args[0]))

    b._cluster = cluster  # type: ignore[method-assign]
    b._agent_call = agent_call  # type: ignore[method-assign]
    view = ReconcileView(groups={"old": GroupSpec(3, CFG)}, layout={"old": ["n1"]}, active_nodes={"z1": ["n1"]},
                         draining={}, created=frozenset({"old"}), cleanup_pending=False, fleet_config=FleetConfig())
    by_group = {g: [Observed(f"raftfleet.host|n1|h#{g}#1", "n1", None)] for g in ("old", "new", "leftover", "busy")}
    b._busy.add("busy")

    async def go() -> None:
        await b._stop_orphans(view, by_group)
        await asyncio.gather(*b._node_work.values())

    asyncio.run(go())
    assert stopped == [("n1", ["leftover"])]


def test_only_the_groups_own_error_fails_its_creation() -> None:
    """A start that times out (a new host process starting on a loaded node) is the fleet's
    trouble: the creator keeps waiting and a round looks again. Only the group's own error,
    its Data class raising (``StartRefused``, through Ray's wrappers), answers the creator
    (CI: a 1-replica group failed with TimeoutError when its host took 15 s to start)."""
    import ray.exceptions

    from raftfleet_ray.placement.planner import Create
    from raftfleet_ray.runtime.wire import StartRefused, start_refusal

    def wrapped(exc: BaseException) -> BaseException:  # as an error crosses agent and host
        inner = ray.exceptions.RayTaskError("start_member", "tb", exc).as_instanceof_cause()
        return ray.exceptions.RayTaskError("start_member", "tb", inner)

    bad = ValueError("the Data class's __init__ raised")
    assert start_refusal(wrapped(StartRefused(bad))) is bad
    assert start_refusal(wrapped(TimeoutError())) is None and start_refusal(TimeoutError()) is None
    assert start_refusal(wrapped(RuntimeError("node n1 has no agent"))) is None

    for failure, refused in ((TimeoutError(), False), (wrapped(StartRefused(bad)), True)):
        b = Balancer()
        errors: list[bytes] = []

        async def agent_call(node: str, method: str, *args, timeout: float, failure=failure):
            raise failure

        async def cluster(method: str, *args, errors=errors):
            assert method == "set_group_error"
            errors.append(args[2])

        b._agent_call = agent_call  # type: ignore[method-assign]
        b._cluster = cluster  # type: ignore[method-assign]

        async def go(b=b, refused=refused) -> asyncio.Event:
            ev = b._created.setdefault("g", asyncio.Event())
            step = b._do("g", GroupSpec(1, CFG), Create("n1", nodes=("n1",)), None,
                         ClusterView(frozenset({"n1"}), frozenset(), {}))
            if refused:
                with pytest.raises(ValueError, match="__init__ raised"):
                    await step
            else:  # the round records the step as failed, and the next round tries again
                assert (await step).startswith("failed: 1 of 1 members did not start")
            return ev

        ev = asyncio.run(go())
        assert ev.is_set() == refused and len(errors) == int(refused)


def test_a_one_member_group_behind_a_silent_agent_is_observed_through_its_recorded_configuration() -> None:
    """A group whose only member is on a node whose agent does not answer has no other member
    to report it: its host is found through the configuration recorded last, and asked
    directly. Unseen, the group had no observed leader, so a silent node holding it was never
    drained (tests/ray/test_runtime_regressions.py, flaky as the placement of its 1-member
    group)."""
    host = "raftfleet.host|n1|aaaaaaaa"
    mid = f"{host}#alone#1"
    b = Balancer()
    b._recorded["alone"] = ((mid,), ())
    asked: list[tuple] = []

    async def host_call(name: str, method: str, *args, timeout: float = 0.0):
        asked.append((name, method, args[0]))
        return {"alone": MemberStatus(from_=mid, members=(mid,), leader=mid, state_name="leader", current_term=1,
                                      commit_index=1, applied_index=1, last_index=1)}

    b._host_call = host_call  # type: ignore[method-assign]
    by_group: dict[str, list[Observed]] = {}
    asyncio.run(b._observe_behind_silent_agents(by_group, {"n1-node"}, {"n1": "n1-node"}))
    assert asked == [(host, "statuses", ["alone"])]
    assert [(o.member, o.node, o.status.leader) for o in by_group["alone"]] == [(mid, "n1-node", mid)]
    # An agent that answers: its node is not silent, nothing is asked behind it.
    asked.clear()
    asyncio.run(b._observe_behind_silent_agents({}, set(), {"n1": "n1-node"}))
    assert asked == []


def test_a_birth_waits_a_grace_for_a_slow_start_then_goes_on_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a majority of a new group's members has started, a start still running after
    BIRTH_GRACE counts as failed (a stuck agent must not hold the birth for START_TIMEOUT);
    the member it starts later is stopped (the group was born without it)."""
    monkeypatch.setattr(balancer_mod, "BIRTH_GRACE", 0.05)
    b = Balancer()
    release = asyncio.Event()
    calls: list[tuple] = []

    async def agent_call(node: str, method: str, *args, timeout: float = 0.0):
        calls.append((node, method))
        if method == "start_member" and node == "n3":
            await release.wait()
        return f"m-{node}" if method == "start_member" else True

    b._agent_call = agent_call  # type: ignore[method-assign]

    async def go() -> list:
        started = await b._start_members("g", GroupSpec(3, CFG), ["n1", "n2", "n3"])
        release.set()
        await asyncio.sleep(0.01)
        await asyncio.gather(*b._node_work.values())
        return started

    started = asyncio.run(go())
    assert started[:2] == ["m-n1", "m-n2"] and isinstance(started[2], TimeoutError)
    assert ("n3", "stop_member") in calls


def test_a_round_does_not_plan_a_group_on_observations_older_than_its_last_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that began observing before a group's step ended plans that group next round,
    not on the stale picture. A birth ended while a round was observing: the round had read
    "never created" and seen its members passive (no configuration), and stopped a voter of
    the group just born, which then could not elect (fleet simulator, chaos seed 4094)."""
    b = Balancer()
    members = [f"raftfleet.host|n{i}|h#g#1" for i in (1, 2, 3)]
    view = ReconcileView(groups={"g": GroupSpec(3, CFG)}, layout={"g": ["n1", "n2", "n3"]},
                         active_nodes={"z1": ["n1"], "z2": ["n2"], "z3": ["n3"]}, draining={},
                         created=frozenset(), cleanup_pending=False, fleet_config=FleetConfig())
    b._history["g"] = History(no_leader_rounds=5, no_leader_since=-100.0)  # leaderless for long
    born = asyncio.Event()
    done: list[str] = []

    async def cluster(method: str, *args, timeout: float = 0.0):
        return view if method == "reconcile_view" else {}

    async def ray_nodes() -> tuple[set[str], set[str]]:
        return {"n1", "n2", "n3"}, set()

    async def look(nodes, alive, dead_ray):
        await born.wait()  # the birth ends while this round observes
        passive = {"g": [Observed(m, f"n{i + 1}", MemberStatus(from_=m, members=(), leader=None, state_name="follower", current_term=0,
                                                                      commit_index=0, applied_index=0, last_index=0))
                         for i, m in enumerate(members)]}
        return {}, set(nodes), passive, ClusterView(frozenset(nodes), frozenset(), {m: f"n{i + 1}" for i, m in enumerate(members)})

    async def do(g, spec, act, leader, cview) -> str:
        done.append(type(act).__name__)
        return "ok"

    async def birth() -> None:
        await asyncio.sleep(0)
        born.set()

    monkeypatch.setattr(balancer_mod, "_ray_nodes", ray_nodes)
    b._cluster = cluster  # type: ignore[method-assign]
    b._look = look  # type: ignore[method-assign]
    b._do = do  # type: ignore[method-assign]

    async def go() -> None:
        b._round_lock = asyncio.Lock()
        step = asyncio.get_running_loop().create_task(birth())
        b._inflight["g"] = step
        step.add_done_callback(lambda t: b._step_ended("g", t))
        more, _ = await b.round()
        assert more and b._last is not None and b._last.planned["Acted"] == 1
        # The next round observes afresh and plans the group again.
        await asyncio.sleep(0)  # the loop turns between rounds
        await b.round()
        assert b._last.planned["Acted"] == 0

    asyncio.run(go())
    assert "StopMember" in done  # only the second round, on a fresh picture, may act
    assert done.count("StopMember") == 1


def test_a_birth_asks_a_begin_again_when_its_answer_does_not_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """``begin`` is idempotent, and a birth asks it again when its answer is late: a lost
    begin of a restore's leader left the group with no member that campaigns, for good (fleet
    simulator, chaos seed 4061 with persistence)."""
    monkeypatch.setattr(balancer_mod, "BIRTH_CALL_TIMEOUT", 0.05)
    b = Balancer()
    reports: list[str] = []

    async def start_members(g, spec, nodes) -> list:
        return [f"raftfleet.host|{n}|h#{g}#1" for n in nodes]

    class Method:
        def __init__(self, fn) -> None:
            self.fn = fn

        def remote(self, *args):
            return asyncio.ensure_future(self.fn(*args))

    class Host:
        def __init__(self) -> None:
            self.begins = 0
            self.begin, self.wait_commit = Method(self._begin), Method(self._wait_commit)

        async def _begin(self, g, voters, lead, restore) -> int:
            self.begins += 1
            if self.begins == 1:
                await asyncio.Event().wait()  # the first call is lost: its answer never comes
            return 1

        async def _wait_commit(self, g, index, timeout) -> bool:
            return True

    hosts = {f"raftfleet.host|n{i}|h": Host() for i in (1, 2, 3)}

    class Dir:
        async def host(self, name: str):
            return hosts[name]

    async def cluster(method: str, *args, timeout: float = 0.0):
        reports.append(method)

    monkeypatch.setattr(balancer_mod, "get_directory", lambda: Dir())
    b._start_members = start_members  # type: ignore[method-assign]
    b._cluster = cluster  # type: ignore[method-assign]
    out = asyncio.run(b._birth("g", GroupSpec(3, CFG), ["n1", "n2", "n3"]))
    assert out == "ok" and [h.begins for h in hosts.values()] == [2, 2, 2] and reports == ["mark_created"]
