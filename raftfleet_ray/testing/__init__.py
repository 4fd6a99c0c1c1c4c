"""The public test harness (CONVENTIONS §9): pure, no Ray.

- ``Simulator`` / ``run_seed``: one Raft group under seeded faults (network, disk, crashes,
  power loss, partitions, membership changes, transfers), Raft's safety invariants after
  every event, liveness after healing and linearizability of the client history. Replay a
  failure with the command its ``SimViolation`` prints. From a shell:
  ``python -m raftfleet_ray.testing.simulator --seeds 0:1000 --jobs 2``.
- ``run_seeds`` / ``SeedRangeResult``: a range of seeds, judged as a whole: it fails on any
  violation, and when more than 1% of its seeds are *inconclusive* (the linearizability
  search ran out of budget, so their histories were not checked).
- ``History`` / ``Operation``: a client history with unknown outcomes.
- ``check_history`` / ``check_register``: a Wing & Gong linearizability checker for
  registers (per key), ``brute_force_register`` for small histories.

Example::

    from raftfleet_ray.testing import Simulator
    result = Simulator(seed=42, mix="power_loss").run()   # raises SimViolation on a bug
"""

from .history import History, Operation
from .linearizability import (
    CheckerBudgetExceeded,
    CheckResult,
    brute_force_register,
    check_history,
    check_register,
)
from .sim_checker import SimViolation
from .sim_faults import MIX_NAMES
from .simulator import SeedRangeResult, SimResult, Simulator, run_seed, run_seeds

__all__ = [
    "MIX_NAMES",
    "CheckResult",
    "CheckerBudgetExceeded",
    "History",
    "Operation",
    "SeedRangeResult",
    "SimResult",
    "SimViolation",
    "Simulator",
    "brute_force_register",
    "check_history",
    "check_register",
    "run_seed",
    "run_seeds",
]
