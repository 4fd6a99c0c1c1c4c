"""Options and helpers for the simulator tests.

More seeds than the fixed CI list: ``pytest tests/sim --sim-seeds 500`` or, from anywhere,
``RAFTFLEET_SIM_SEEDS=500 pytest``. Every failure names its seed and the one-line command
that replays it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from raftfleet_ray.testing.sim_checker import SimViolation
from raftfleet_ray.testing.simulator import SimResult, Simulator


def _extra_seeds(config: pytest.Config) -> int:
    n = config.getoption("--sim-seeds", default=None)
    if n is None:
        n = int(os.environ.get("RAFTFLEET_SIM_SEEDS", "0") or 0)
    return n


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without --sim-seeds / $RAFTFLEET_SIM_SEEDS the extra-seeds test is deselected (not
    # skipped: a skip would read as a test that did not pass).
    if _extra_seeds(config) > 0:
        return
    keep = [i for i in items if i.originalname != "test_extra_seeds"]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.originalname == "test_extra_seeds"])
        items[:] = keep


@pytest.fixture
def sim_extra_seeds(request: pytest.FixtureRequest) -> int:
    """How many extra seeds to run: --sim-seeds, else $RAFTFLEET_SIM_SEEDS, else 0."""
    return _extra_seeds(request.config)


def _run_or_fail(seed: int, mix: str | None = None) -> SimResult:
    try:
        res = Simulator(seed, mix).run()
    except SimViolation as v:
        pytest.fail(f"seed={seed} failed; replay with:\n    {v.replay}\n\n{v}", pytrace=False)
    if res.lin_inconclusive:
        pytest.fail(f"seed={seed} mix={res.mix}: linearizability not checked for keys "
                    f"{list(res.lin_inconclusive_keys)} (search budget exhausted)", pytrace=False)
    return res


@pytest.fixture
def run_sim() -> Callable[..., SimResult]:
    """``run_sim(seed, mix=None)``: run one seed; on a violation fail the test with the seed
    and the one-line command that replays it; an inconclusive linearizability check fails
    too (one seed of one: more than the 1% a range may leave unchecked)."""
    return _run_or_fail
