"""Raft's safety (§5.2-§5.4), liveness after healing and linearizability, over simulated faults.

Every mix runs a fixed list of seeds (the same in every CI run, so a failure here is a
regression), plus a few fresh random seeds per run (in the test ids, so a failure is
replayable), plus ``--sim-seeds N`` / ``$RAFTFLEET_SIM_SEEDS`` more on demand.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from raftfleet_ray.testing.sim_checker import SimViolation
from raftfleet_ray.testing.sim_faults import MIX_NAMES
from raftfleet_ray.testing.simulator import SimResult, Simulator

SEEDS_PER_MIX = 40
FRESH_SEEDS = [random.SystemRandom().randrange(1 << 31) for _ in range(4)]


@pytest.mark.parametrize("mix", MIX_NAMES)
def test_fixed_seeds(mix: str, run_sim: Callable[..., SimResult]) -> None:
    """Seeds 1000..1039 of each mix: every invariant after every event, liveness, linearizability."""
    results = [run_sim(seed, mix) for seed in range(1000, 1000 + SEEDS_PER_MIX)]
    # The runs did what the mix is about (so a silent no-op simulator cannot pass).
    assert sum(r.ops_ok for r in results) > 0
    assert all(r.leaders >= 1 for r in results)
    # About half the seeds quiesce idle groups (and wake them) under the mix's faults.
    assert sum(r.quiesces for r in results) > 0
    if mix in ("crashes", "power_loss", "chaos"):
        assert sum(r.crashes + r.power_losses for r in results) > 0
    if mix == "power_loss":
        assert sum(r.power_losses for r in results) > 0
    if mix in ("partitions", "chaos"):
        assert sum(r.partitions for r in results) > 0
    if mix in ("lossy", "partitions"):
        # Small snapshot intervals and chunks: lagging members get snapshots streamed.
        assert sum(r.snapshots_sent for r in results) > 0
    if mix in ("membership", "chaos"):
        assert sum(r.member_changes for r in results) > 0
    if mix in ("transfer", "chaos"):
        assert sum(r.transfers for r in results) > 0


@pytest.mark.parametrize("seed", FRESH_SEEDS, ids=[f"seed={s}" for s in FRESH_SEEDS])
def test_fresh_seed(seed: int, run_sim: Callable[..., SimResult]) -> None:
    """A new random seed every run (the seed picks its mix); the id is the replay key."""
    print(f"fresh simulator seed={seed}")
    run_sim(seed)


def test_extra_seeds(sim_extra_seeds: int) -> None:
    """``--sim-seeds N`` / ``RAFTFLEET_SIM_SEEDS=N``: N more random seeds, all failures listed."""
    assert sim_extra_seeds > 0  # deselected otherwise (tests/sim/conftest.py)
    base = random.SystemRandom().randrange(1 << 31)
    print(f"extra simulator seeds {base}..{base + sim_extra_seeds - 1}")
    failures = []
    for seed in range(base, base + sim_extra_seeds):
        try:
            Simulator(seed).run()
        except SimViolation as v:
            failures.append(f"seed={seed} [{v.kind}] {v.description.splitlines()[0]}\n    {v.replay}")
    assert not failures, f"{len(failures)} of {sim_extra_seeds} seeds failed:\n" + "\n".join(failures)

