"""The checker says when it did not check: a history whose linearizability search runs out
of budget is *inconclusive*, never a silent pass. A seed range reports its inconclusive
seeds with their count and share and fails when more than 1% of them are inconclusive
(``run_seeds`` / ``SeedRangeResult``, and the ``--seeds`` command line).
"""

from __future__ import annotations

import pytest

from raftfleet_ray.testing.history import History
from raftfleet_ray.testing.sim_checker import SimViolation
from raftfleet_ray.testing.simulator import (
    MAX_INCONCLUSIVE,
    SeedRangeResult,
    Simulator,
    main,
    run_seeds,
)


def _summary(seed: int, inconclusive: bool) -> dict:
    return {"seed": seed, "mix": "calm", "ok": True, "violation": None, "kind": None, "seconds": 0.01,
            "stats": {"lin_inconclusive": inconclusive, "lease": False, "drift": 0.0, "sessions_evicted": 0}}


def test_a_range_with_more_than_one_percent_inconclusive_fails() -> None:
    assert MAX_INCONCLUSIVE == 0.01
    one = SeedRangeResult(100, [_summary(s, s == 7) for s in range(100)], 1.0)
    assert one.inconclusive == [7] and one.inconclusive_fraction == 0.01
    assert one, "exactly 1% is allowed"
    two = SeedRangeResult(100, [_summary(s, s in (7, 8)) for s in range(100)], 1.0)
    assert not two and two.too_inconclusive and not two.violations
    text = two.summary()
    assert "2 inconclusive (2.00%" in text and "seeds 7, 8" in text and "FAIL" in text


def test_a_tiny_search_budget_makes_the_range_fail() -> None:
    """With a budget of one configuration per key no history can be decided: every seed is
    inconclusive, and the range must fail rather than pass unchecked."""
    found = run_seeds(range(0, 6), lin_budget=1)
    print(found.summary())
    assert not found.violations
    assert found.inconclusive == list(range(6))
    assert found.too_inconclusive and not found
    assert "6 inconclusive (100.00%" in found.summary()
    assert all(r.lin_inconclusive and r.lin_inconclusive_keys for r in found.sim_results())
    # The same seeds with the default budget are decided.
    assert run_seeds(range(0, 6))


def test_the_command_line_exits_non_zero_on_inconclusive_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "0:3", "--lin-budget", "1"]) == 1
    out = capsys.readouterr().out
    assert "3 inconclusive (100.00%" in out and "NOT CHECKED" in out and "FAIL" in out
    assert main(["--seeds", "0:3"]) == 0
    assert "0 inconclusive (0.00%" in capsys.readouterr().out
    assert main(["--seed", "0", "--lin-budget", "1"]) == 1
    assert "INCONCLUSIVE" in capsys.readouterr().out


def _write(h: History, client: int, key: str, value: int, t0: float, t1: float) -> None:
    h.ok(h.invoke(client, key, "write", value, t0), None, t1)


def test_one_undecided_key_does_not_hide_a_violation_on_another() -> None:
    """Keys are checked one by one (linearizability is local): a key the search gives up on is
    reported as not checked, and the other keys are still checked."""
    hard = History()
    for c in range(12):  # twelve concurrent writes, then a value nobody wrote: a big search
        _write(hard, c, "hard", c, 0.0, 100.0)
    hard.ok(hard.invoke(12, "hard", "read", None, 200.0), "never", 201.0)

    sim = Simulator(0, lin_budget=500)
    sim.workload.history = hard
    sim._final_checks()
    assert sim._result().lin_inconclusive_keys == ("hard",)

    _write(hard, 13, "stale", 1, 0.0, 1.0)
    hard.ok(hard.invoke(14, "stale", "read", None, 2.0), None, 3.0)  # reads the old value after the write
    sim = Simulator(0, lin_budget=500)
    sim.workload.history = hard
    with pytest.raises(SimViolation, match="'stale' is not linearizable"):
        sim._final_checks()
