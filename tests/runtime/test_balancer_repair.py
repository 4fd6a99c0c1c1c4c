"""The reconciler's ``repair`` (the operator's recovery of a lost group) without Ray: its
calls to the ClusterActor, the agents and the hosts are replaced by fakes that record them.
What is checked is the order and the refusals: nothing happens unless the group is lost and
``unsafe`` is given; every running member is stopped before anything is recovered (never two
incarnations); a failure midway leaves the group lost; a step of a round still running on the
group is waited for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.placement.planner import RepairPlan
from raftfleet_ray.runtime import balancer as balancer_mod
from raftfleet_ray.runtime.balancer import Balancer
from raftfleet_ray.runtime.cluster_state import GroupSpec, LostMark, ReconcileView

CFG = RaftConfig()
H1, H2, H3 = "raftfleet.host|n1|aaaa", "raftfleet.host|n2|bbbb", "raftfleet.host|n3|cccc"
M1, M2, M3 = f"{H1}#g#1", f"{H2}#g#1", f"{H3}#g#1"


def view(lost: bool = True) -> ReconcileView:
    return ReconcileView(
        groups={"g": GroupSpec(3, CFG)}, layout={"g": ["n1", "n2", "n3"]},
        active_nodes={"z1": ["n1"], "z2": ["n2"], "z3": ["n3"]}, draining={}, created=frozenset({"g"}),
        cleanup_pending=False, fleet_config=FleetConfig(),
        lost={"g": LostMark("2 of its 3 voter(s) are definitely gone", 100.0, 12)} if lost else {})


def make(plan: RepairPlan, *, lost: bool = True, fail: str | None = None) -> tuple[Balancer, list[tuple]]:
    b = Balancer()
    calls: list[tuple] = []

    async def cluster(method: str, *args: Any, timeout: float = 0.0) -> Any:
        calls.append(("cluster", method, *(args[1:] if method == "clear_lost" else args)))  # no request id
        return view(lost) if method == "reconcile_view" else None

    async def agent(node: str, method: str, *args: Any, timeout: float = 0.0) -> Any:
        calls.append(("agent", node, method, *args))
        if method == fail:
            raise RuntimeError(f"{method} did not answer")
        return "state" if method == "restore_state" else True

    async def host(name: str, method: str, *args: Any, timeout: float = 0.0) -> Any:
        calls.append(("host", name, method, *args))

    async def repair_plan(name: str, v: ReconcileView, highest: int) -> tuple[RepairPlan, set[str]]:
        assert highest == 12  # the lost mark's highest commit index reaches the plan
        return plan, {"n1", "n2", "n3"}

    async def birth(g: str, spec: GroupSpec, nodes: list[str], restore: Any = None) -> str:
        calls.append(("birth", g, nodes, restore))  # born whole: a voter on each node (Balancer._birth)
        return "ok"

    b._cluster, b._agent_call, b._host_call, b._repair_plan = cluster, agent, host, repair_plan  # type: ignore[method-assign]
    b._birth = birth  # type: ignore[method-assign]
    return b, calls


def run(b: Balancer, unsafe: bool) -> dict:
    async def go() -> dict:
        b._event, b._round_lock = asyncio.Event(), asyncio.Lock()  # no reconcile loop here
        return await b.repair("g", unsafe)

    return asyncio.run(go())


SURVIVOR = RepairPlan("survivor", M1, "n1", 3, 10, 12, stop=((M2, "n2"),), force_remove=(M2, M3))
FILES = RepairPlan("files", M3, "n1", 3, 14, 12, stop=((M1, "n1"), (M2, "n2")), file_source=("dir", "/d/n3"))


def test_nothing_happens_without_unsafe_or_when_the_group_is_not_lost() -> None:
    b, calls = make(SURVIVOR, lost=False)
    res = run(b, unsafe=True)
    assert res.outcome == "refused" and "not lost" in res.reason
    assert calls == [("cluster", "reconcile_view")]
    b, calls = make(SURVIVOR)
    res = run(b, unsafe=False)
    assert res.outcome == "refused" and "unsafe" in res.reason and "2 acknowledged entries" in res.reason
    assert res.plan.as_dict()["source"] == "survivor" and calls == [("cluster", "reconcile_view")]
    blocked = RepairPlan("files", M3, "n1", 3, 14, 12, blocked="member(s) m on nodes whose agent does not answer")
    b, calls = make(blocked)
    res = run(b, unsafe=True)
    assert res.outcome == "refused" and "no recovery is possible now" in res.reason
    assert calls == [("cluster", "reconcile_view")]


def test_from_a_survivor_the_others_stop_then_leave_its_configuration() -> None:
    b, calls = make(SURVIVOR)
    res = run(b, unsafe=True)
    assert res.outcome == "repaired" and res.plan.as_dict()["may_lose_at_least"] == 2
    assert calls[1:] == [("agent", "n2", "stop_member", "g", M2),
                         ("host", H1, "force_remove_member", "g", M2), ("host", H1, "force_remove_member", "g", M3),
                         ("cluster", "clear_lost", ["g"])]


def test_from_files_every_member_stops_before_the_new_incarnation_starts() -> None:
    b, calls = make(FILES)
    res = run(b, unsafe=True)
    assert res.outcome == "repaired" and res.plan.as_dict()["source"] == "files"
    assert calls[1:] == [("agent", "n1", "stop_member", "g", M1), ("agent", "n2", "stop_member", "g", M2),
                         ("agent", "n1", "restore_state", ("dir", "/d/n3"), "g"),
                         ("birth", "g", ["n1", "n2", "n3"], "state"),
                         ("cluster", "clear_lost", ["g"])]


def test_afresh_born_whole_on_the_desired_nodes_that_answer() -> None:
    b, calls = make(RepairPlan("empty", highest_commit=12))
    assert run(b, unsafe=True).plan.as_dict()["may_lose_at_least"] == 12
    assert calls[1:] == [("birth", "g", ["n1", "n2", "n3"], None), ("cluster", "clear_lost", ["g"])]


def test_a_failure_midway_leaves_the_group_lost_and_starts_nothing() -> None:
    b, calls = make(FILES, fail="stop_member")
    res = run(b, unsafe=True)
    assert res.outcome == "failed" and "did not answer" in res.reason
    assert [c[2] for c in calls[1:]] == ["stop_member"]  # no restore, no start, the mark stays


def test_a_step_still_running_on_the_group_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balancer_mod, "REPAIR_WAIT", 0.05)
    b, calls = make(SURVIVOR)

    async def go() -> dict:
        b._event, b._round_lock = asyncio.Event(), asyncio.Lock()
        stuck = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        b._inflight["g"] = stuck
        res = await b.repair("g", True)
        stuck.cancel()
        return res

    res = asyncio.run(go())
    assert res.outcome == "refused" and "still running" in res.reason and calls == []
