"""The de-dup cache (rafted_value §4.4 FIFO; Raft thesis §6.3 client sessions)."""

from __future__ import annotations

from raft_harness import Net

from raftfleet_ray.data import Counter
from raftfleet_ray.raft import Command, EntryKind, Ok, SessionId
from raftfleet_ray.raft.config import CoreConfig
from raftfleet_ray.raft.dedup import EXPIRED, STALE, DedupCache


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
    for since, client in enumerate(("a", "b", "c"), start=1):
        sid = SessionId(client, 1, 1, since)
        cache.observe(sid)
        cache.put(sid, Ok(client))
    # An evicted session's results are gone: a late retry of its command is refused as
    # expired (outcome unknown), never taken for a new command and applied again.
    assert cache.lookup(SessionId("a", 1, 1, 1)) is EXPIRED
    assert cache.lookup(SessionId("a", 2, 1, 1)) is EXPIRED
    cache.observe(SessionId("a", 2, 1, 1))  # and it does not come back as a new session
    assert cache.lookup(SessionId("a", 2, 1, 1)) is EXPIRED
    assert cache.lookup(SessionId("c", 1, 1, 3)) == Ok("c")
    # A session that began after every evicted one is new, whatever its id.
    assert cache.lookup(SessionId("d", 1, 1, 4)) is None
    assert cache.lookup(SessionId("a", 7, 7, 4)) is None  # "a" started anew (after an expiry)
    # ... but one whose clock says it began before the evicted one cannot be told from it.
    assert cache.lookup(SessionId("e", 1, 1, 1)) is EXPIRED


def test_the_watermark_forgets_nothing_however_many_sessions_pass() -> None:
    """Constant memory, exact: every evicted session stays refused after any number of
    later sessions came and went (a bounded list of expired ids would forget it)."""
    cache = DedupCache(max_results=100, max_sessions=3)
    first = SessionId("first", 1, 1, 1)
    cache.observe(first)
    cache.put(first, Ok("once"))
    for k in range(2, 10_000):
        cache.observe(SessionId(f"s{k}", 1, 1, k))
    assert cache.lookup(first) is EXPIRED
    assert len(cache) == 0 and cache.watermark == 9_996
    other = DedupCache(100, 3)
    other.load(cache.dump())
    assert other == cache and other.lookup(first) is EXPIRED


def test_a_newer_incarnation_of_a_session_replaces_the_older_one() -> None:
    cache = DedupCache(max_results=100, max_sessions=10)
    old = SessionId("p", 1, 1, 5)
    cache.observe(old)
    cache.put(old, Ok(1))
    new = SessionId("p", 2, 2, 9)
    assert cache.lookup(new) is None
    cache.observe(new)
    cache.put(new, Ok(2))
    assert cache.lookup(old) is EXPIRED and cache.lookup(new) == Ok(2)


def test_dump_and_load_round_trip_and_old_format() -> None:
    cache = DedupCache(max_results=100, max_sessions=10)
    cache.observe(SessionId("c", 5, 4, 3))
    cache.put(SessionId("c", 5, 4, 3), Ok(1))
    cache.put("plain", Ok(2))
    other = DedupCache(100, 10)
    other.load(cache.dump())
    assert other == cache
    legacy = DedupCache(100, 10)
    legacy.load([("plain", Ok(2))])  # snapshots written before sessions existed
    assert legacy.lookup("plain") == Ok(2)
    v2 = DedupCache(100, 10)  # snapshots written before sessions had `since`
    v2.load(("v2", [], [("c", 4, [(5, Ok(1))])]))
    assert v2.lookup(SessionId("c", 5, 4, 0)) == Ok(1)


def test_a_late_retry_of_an_evicted_sessions_command_is_refused_not_applied_twice() -> None:
    """Review finding 13.7: with more sessions than the cache keeps, a retry arriving after its
    session was evicted used to be applied a second time. Now it is refused, at propose time
    and, for a copy already in the log, at apply time on every replica."""
    net = Net("abc", CoreConfig(election_ticks=10, heartbeat_ticks=2, max_sessions=2), data=Counter)
    lead = net.elect()
    first = SessionId("first", 1, 1, 1)
    assert net.propose(lead.id, "r0", first, "inc") == Ok(0)
    for k in range(2, 6):
        assert net.propose(lead.id, f"r{k}", SessionId(f"s{k}", 1, 1, k), "inc") == Ok(k - 1)
    res = net.propose(lead.id, "again", first, "inc")
    assert res.reason == "session_expired" and res.session_floor >= 1
    # A copy that reaches the log anyway (appended before the eviction, say) is refused when
    # applied, alike on every replica.
    lead._append(EntryKind.COMMAND, Command(first, "inc"))
    lead._bcast_append()
    net.handle(lead, lead._take_ready())
    net.deliver()
    net.tick_all(2)
    assert {n.data.value for n in net.nodes.values()} == {5}
