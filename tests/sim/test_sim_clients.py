"""The simulated clients build command ids as the Ray client does (``raftfleet_ray/client.py``):
a ``SessionId(prefix, seq, low)`` per process, ``low`` the smallest ``seq`` still in flight, so
the core's de-dup cache (per-session retention, ``max_sessions`` eviction) runs as in production
(Raft thesis §6.3).
"""

from __future__ import annotations

import random
import re

from raftfleet_ray.raft.types import EntryKind, SessionId
from raftfleet_ray.testing.sim_clients import ClientSession
from raftfleet_ray.testing.simulator import Simulator


def test_a_session_numbers_commands_and_carries_the_oldest_in_flight() -> None:
    """``Client.new_command_id`` / ``done_command``: seq counts up, low is the smallest seq not
    yet done (the new one included)."""
    s = ClientSession(random.Random(1))
    assert re.fullmatch(r"[0-9a-f]{12}", s.prefix)  # the shape of uuid4().hex[:12]
    a, b = s.new_command_id(), s.new_command_id()
    assert (a, b) == (SessionId(s.prefix, 1, 1), SessionId(s.prefix, 2, 1))
    s.done_command(b)
    assert s.new_command_id() == SessionId(s.prefix, 3, 1)  # 1 is still in flight
    s.done_command(a)
    assert s.new_command_id() == SessionId(s.prefix, 4, 3)
    assert ClientSession(random.Random(1)).prefix == s.prefix  # seeded: a seed replays
    assert ClientSession(random.Random(2)).prefix != s.prefix


def _applied_ids(sim: Simulator) -> list:
    return [e.data.cmd_id for e in sim.checker.applied if e is not None and e.kind == EntryKind.COMMAND]


def test_the_committed_log_holds_session_ids_shared_by_several_clients() -> None:
    lagging = restarted = shared = evicted = 0
    for seed in range(40):
        sim = Simulator(seed)
        res = sim.run()
        ids = _applied_ids(sim)
        assert ids and all(isinstance(i, SessionId) and i.low <= i.seq for i in ids), seed
        lagging += any(i.low < i.seq for i in ids)  # results retained while an older one is out
        restarted += res.sessions > sim.plan.n_processes
        shared += sim.plan.n_processes < sim.plan.n_clients
        evicted += res.sessions_evicted > 0
        assert len({i.client for i in ids}) <= res.sessions
    assert lagging and restarted and shared and evicted, (lagging, restarted, shared, evicted)


def test_plans_keep_at_least_one_cached_session_per_client_process() -> None:
    """max_sessions >= the number of client processes, with restarts only when every command is
    settled (Workload._maybe_restart), is what makes eviction safe: the small caches keep it."""
    for seed in range(200):
        plan = Simulator(seed).plan
        if plan.config.max_sessions < 100:
            assert plan.config.max_sessions >= plan.n_processes >= 1
