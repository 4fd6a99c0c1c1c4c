"""The de-dup cache (rafted_value §4.4 FIFO; Raft thesis §6.3 client sessions)."""

from __future__ import annotations

from raft_harness import Net

from raftfleet_ray.data import Counter
from raftfleet_ray.raft import Ok, SessionId
from raftfleet_ray.raft.config import CoreConfig
from raftfleet_ray.raft.dedup import STALE, DedupCache


def test_session_results_outlive_the_fifo_window() -> None:
    """Thesis §6.3: a session command retried after many other commands is still answered
    from the cache (the FIFO of 100 would have forgotten it) and applied once."""
    cfg = CoreConfig(election_ticks=10, heartbeat_ticks=2, max_retained_command_results=2)
    net = Net("abc", cfg=cfg, data=Counter)
    lead = net.elect()
    first = SessionId("client-1", 1, 1)
    assert net.propose(lead.id, "r1", first, "inc") == Ok(0)
    for k in range(10):  # other clients' traffic, far past the FIFO size
        assert net.propose(lead.id, ("o", k), ("other", k), "inc") == Ok(k + 1)
    retry = SessionId("client-1", 1, 1)
    assert net.propose(lead.id, "r1-retry", retry, "inc") == Ok(0)
    assert lead.data.value == 11


def test_low_watermark_forgets_results_and_stops_late_copies() -> None:
    cache = DedupCache(max_results=100, max_sessions=10)
    for seq in (1, 2, 3):
        sid = SessionId("c", seq, 1)
        cache.observe(sid)
        cache.put(sid, Ok(seq))
    assert cache.lookup(SessionId("c", 2, 1)) == Ok(2)
    later = SessionId("c", 4, 3)  # the client is done with 1 and 2
    cache.observe(later)
    assert cache.lookup(SessionId("c", 1, 1)) is STALE
    assert cache.lookup(SessionId("c", 2, 1)) is STALE
    assert cache.lookup(SessionId("c", 3, 1)) == Ok(3)
    assert len(cache) == 1


def test_late_copy_is_not_applied() -> None:
    """A copy of a command that reaches the log after its client moved on is skipped."""
    net = Net("abc", data=Counter)
    lead = net.elect()
    assert net.propose(lead.id, "a", SessionId("c", 1, 1), "inc") == Ok(0)
    assert net.propose(lead.id, "b", SessionId("c", 2, 2), "inc") == Ok(1)
    # seq 1's result is forgotten (low = 2); a late copy must not increment again.
    net.propose(lead.id, "late", SessionId("c", 1, 1), "inc")
    net.tick_all(2)
    assert all(n.data.value == 2 for n in net.nodes.values())


def test_sessions_are_bounded_least_recently_used_first() -> None:
    cache = DedupCache(max_results=100, max_sessions=2)
    for client in ("a", "b", "c"):
        sid = SessionId(client, 1, 1)
        cache.observe(sid)
        cache.put(sid, Ok(client))
    assert cache.lookup(SessionId("a", 1, 1)) is None
    assert cache.lookup(SessionId("c", 1, 1)) == Ok("c")


def test_dump_and_load_round_trip_and_old_format() -> None:
    cache = DedupCache(max_results=100, max_sessions=10)
    cache.observe(SessionId("c", 5, 4))
    cache.put(SessionId("c", 5, 4), Ok(1))
    cache.put("plain", Ok(2))
    other = DedupCache(100, 10)
    other.load(cache.dump())
    assert other == cache
    legacy = DedupCache(100, 10)
    legacy.load([("plain", Ok(2))])  # snapshots written before sessions existed
    assert legacy.lookup("plain") == Ok(2)
