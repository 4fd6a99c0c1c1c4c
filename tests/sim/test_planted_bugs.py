"""The simulator must catch every planted core bug (raft/bugs.py): a harness is only worth
trusting while it finds the mistakes it exists to find.

Each bug switches off one safety rule of the paper: persist before acknowledging (§5.3),
persist before voting (§5.2, Fig. 2), the leader counting only its durable log,
truncating a conflicting suffix (Fig. 2, AppendEntries rule 3), committing only
entries of the current term (§5.4.2, Figure 8), ending the lease when quiescing and keeping
the clock-drift margin out of the lease (thesis §6.4.1); and three storage bugs
(storage/log.py): the log acknowledging a flush before its fsync, recovery handing out what
only the page cache holds (sim_storage.py's page-cache fault exposes it), and the old tail
rules (a flipped bit in the newest, fsynced record cut as a torn write; a frame inside a torn
record's client bytes taken for a record: bit rot and frame values expose them). The
end-to-end test runs with the direct durability check off, so persistence bugs must show
through what they do: a committed entry lost after a power cut, two leaders in one term,
diverging logs, recovery losing fsynced state or refusing a log only a power loss touched.
If a bug stops being caught, sharpen the targeted faults; do not weaken this test.
"""

from __future__ import annotations

import pytest

from raftfleet_ray.raft import bugs
from raftfleet_ray.storage.log import BUGS as STORAGE_BUGS
from raftfleet_ray.testing.sim_checker import SimViolation
from raftfleet_ray.testing.simulator import Simulator

MAX_SEEDS = 2000


def _first_violation(bug: str, *, check_durability: bool, limit: int = MAX_SEEDS) -> SimViolation | None:
    for seed in range(limit):
        try:
            Simulator(seed, bugs=frozenset({bug}), check_durability=check_durability).run()
        except SimViolation as v:
            return v
    return None


@pytest.mark.parametrize("bug", sorted(bugs.ALL | STORAGE_BUGS))
def test_planted_bug_is_caught_end_to_end(bug: str) -> None:
    v = _first_violation(bug, check_durability=False)
    assert v is not None, f"planted bug {bug!r} survived seeds 0..{MAX_SEEDS - 1}: sharpen the targeted faults"
    assert v.kind in ("safety", "linearizability"), f"{bug} only caught as {v.kind}:\n{v}"
    print(f"{bug}: caught at seed={v.seed} mix={v.mix} [{v.kind}] {v.description.splitlines()[0]}\n  {v.replay}")


@pytest.mark.parametrize("bug", [bugs.ACK_BEFORE_PERSIST, bugs.LEADER_COUNTS_UNPERSISTED])
def test_durability_check_catches_persistence_bugs_at_once(bug: str) -> None:
    """With the direct check on, a commit that is not durable on a majority is seen the
    moment it happens, without waiting for a power cut to expose it."""
    v = _first_violation(bug, check_durability=True, limit=20)
    assert v is not None and "durability" in v.description, v
    print(f"{bug}: durability check fires at seed={v.seed}")


def test_a_lease_without_its_margin_is_caught_under_clock_drift() -> None:
    """Thesis §6.4.1: the lease is the election timeout minus a clock-drift margin. With the
    margin left out, a follower whose clock runs fast (drift within what the margin allows)
    elects a new leader while the old one still serves reads from its lease; the correct
    core, on the same seed, is safe."""
    v = _first_violation(bugs.LEASE_IGNORES_MARGIN, check_durability=False)
    assert v is not None, (f"a lease without margin survived seeds 0..{MAX_SEEDS - 1}: sharpen the "
                           f"lease-isolate fault (FaultInjector._t_lease_isolate)")
    assert v.seed is not None
    print(f"lease_ignores_margin: caught at seed={v.seed} ({v.seed + 1} seeds) mix={v.mix} [{v.kind}] "
          f"{v.description.splitlines()[0]}\n  {v.replay}")
    sim = Simulator(v.seed, check_durability=False)
    assert sim.plan.config.lease_ticks > 0 and sim.plan.drift > 0
    res = sim.run()
    assert not res.lin_inconclusive
