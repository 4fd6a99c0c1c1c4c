"""Parts of the reconciler's round without Ray (issue 14 finding 6): a step that hangs delays
only its own group, and ``explain`` plans from exactly what the round planned with."""

from __future__ import annotations

import asyncio

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.placement.planner import AddLearner, ClusterView, FileCopy, History, Restore
from raftfleet_ray.runtime import balancer as balancer_mod
from raftfleet_ray.runtime.balancer import Balancer, RoundReport
from raftfleet_ray.runtime.cluster_state import GroupSpec, ReconcileView

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
