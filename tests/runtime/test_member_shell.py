"""The member host's shell (MemberHost, Member, HostClock, Router) without Ray: three hosts in
one event loop, peer calls through fake handles. Checks the plumbing the Ray tests rely on:
bootstrap, joining, batched commands answered at commit, reads, answers riding back on peer
calls, many groups per host sharing one message stream, quiescence (an idle host runs no
timer), and a dead peer host reported to every member that had a peer there."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from raftfleet_ray import codec
from raftfleet_ray.config import RaftConfig
from raftfleet_ray.data import Counter
from raftfleet_ray.raft import SessionId
from raftfleet_ray.runtime import member as member_mod
from raftfleet_ray.runtime.member import MemberHost
from raftfleet_ray.runtime.metrics import RecordingMetrics
from raftfleet_ray.runtime.wire import CommandOp, QueryOp, RejectedReply, ValueReply
from raftfleet_ray.storage import HostLog, OsFileSystem

pytestmark = pytest.mark.timeout(60)

CFG = RaftConfig(data=Counter, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1,
                 quiesce_after=None)
QUIET = RaftConfig(data=Counter, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1,
                   quiesce_after=0.1)
NAMES = ("raftfleet.host|node0|00000000", "raftfleet.host|node1|11111111", "raftfleet.host|node2|22222222")


class _ActorDied(Exception):
    """Stands in for ray.exceptions.ActorDiedError in these tests."""


class _Method:
    def __init__(self, fn: Any, calls: list, dead: set, name: str) -> None:
        self.fn = fn
        self.calls = calls
        self.dead = dead
        self.name = name

    def remote(self, *args: Any) -> asyncio.Future:
        self.calls.append(args)
        if self.name in self.dead:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(_ActorDied(self.name))
            return fut
        return asyncio.ensure_future(self.fn(*args))


class _Handle:
    """What the Router needs of a Ray actor handle: ``deliver.remote(...)`` -> awaitable."""

    def __init__(self, host: MemberHost, calls: list, dead: set) -> None:
        self.deliver = _Method(host.deliver, calls, dead, host.actor_name)


async def _until(pred: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def _cluster(dead: set | None = None, metrics: list | None = None) -> tuple[dict[str, MemberHost], list]:
    calls: list = []
    handles: dict[str, _Handle] = {}
    dead = dead if dead is not None else set()
    hosts = {name: MemberHost(name, f"node{i}", resolve=lambda n: handles[n],
                              metrics=metrics[i] if metrics else None) for i, name in enumerate(NAMES)}
    handles.update({n: _Handle(h, calls, dead) for n, h in hosts.items()})
    return hosts, calls


async def _group(hosts: dict[str, MemberHost], group: str, cfg: RaftConfig, order: tuple[int, ...] = (0, 1, 2)) -> None:
    names = [NAMES[i] for i in order]
    await hosts[names[0]].start_member(group, cfg, True)
    for name in names[1:]:
        joiner = await hosts[name].start_member(group, cfg, False)
        res = await hosts[names[0]].admin(group, "add_member", joiner)
        assert isinstance(res, ValueReply), res


def test_three_hosts_replicate_batched_commands_without_ray() -> None:
    async def scenario() -> None:
        hosts, calls = _cluster()
        h0, h1, _ = (hosts[n] for n in NAMES)
        await _group(hosts, "g", CFG)
        assert h0.members["g"].id == f"{NAMES[0]}#g#1"
        ops = [CommandOp(SessionId("client", i, 1), codec.dumps("inc")) for i in range(1, 11)]
        results = await h0.submit("g", ops)
        assert [codec.loads(r.value) for r in results] == list(range(10))
        # The same batch again (a retry): answered from the de-dup cache, applied once.
        again = await h0.submit("g", ops)
        assert [codec.loads(r.value) for r in again] == list(range(10))
        q = await h0.submit("g", [QueryOp(codec.dumps(None))])
        assert codec.loads(q[0].value) == 10
        # Followers caught up (they learn the commit index with the next heartbeat).
        await _until(lambda: all(h.members["g"].node.applied_index == h0.members["g"].node.applied_index for h in hosts.values()))
        assert all(h.members["g"].node.data.inner.value == 10 for h in hosts.values())
        # Acks rode back on the leader's calls: followers never called the leader.
        assert all(args[0] == NAMES[0] for args in calls)
        # A follower refuses commands with a hint to the leader.
        res = await h1.submit("g", [CommandOp(SessionId("client", 99, 99), codec.dumps("inc"))])
        assert res[0] == RejectedReply("not_leader", h0.members["g"].id, 0)
        for h in hosts.values():
            await h.stop_member("g")

    asyncio.run(scenario())


def test_many_groups_per_host_share_one_call_per_peer_and_answer_submit_many() -> None:
    """Thirty groups on three hosts: one deliver call per pair of hosts carries the messages
    of every group, and one submit_many call carries commands for every group."""

    async def scenario() -> None:
        hosts, calls = _cluster()
        h0 = hosts[NAMES[0]]
        groups = [f"g{i}" for i in range(30)]
        for g in groups:
            await _group(hosts, g, CFG)
        assert all(len(h.members) == 30 for h in hosts.values())
        calls.clear()
        items = [(g, CommandOp(SessionId("c", i + 1, 1), codec.dumps("inc"))) for i, g in enumerate(groups)]
        results = await h0.submit_many(items)
        assert [codec.loads(r.value) for r in results] == [0] * 30
        appends = [c for c in calls if c[0] == NAMES[0]]
        msgs = sum(len(c[1]) for c in appends)
        assert msgs >= 60 and len(appends) <= 4, f"{msgs} messages in {len(appends)} calls"
        assert {g for c in appends for g, _ in c[1]} == set(groups)

    asyncio.run(scenario())


def test_idle_groups_quiesce_and_the_hosts_run_no_timer() -> None:
    async def scenario() -> None:
        hosts, calls = _cluster()
        h0 = hosts[NAMES[0]]
        for g in ("a", "b", "c"):
            await _group(hosts, g, QUIET)
        await _until(lambda: all(h.stats()["awake"] == 0 for h in hosts.values()), 5.0)
        assert all(m.node.quiesced for h in hosts.values() for m in h.members.values())
        calls.clear()
        await asyncio.sleep(0.3)  # thirty tick periods
        assert calls == [], "a quiesced host sent messages"
        # A command wakes its group only, and is answered.
        res = await h0.submit("b", [CommandOp(SessionId("c", 1, 1), codec.dumps("inc"))])
        assert codec.loads(res[0].value) == 0
        assert not h0.members["b"].node.quiesced
        assert h0.members["a"].node.quiesced and h0.members["c"].node.quiesced
        await _until(lambda: all(h.stats()["awake"] == 0 for h in hosts.values()), 5.0)

    asyncio.run(scenario())


def test_a_dead_host_is_reported_to_every_member_that_had_a_peer_there() -> None:
    """Leaders of ten quiesced groups on one host: when that host dies, the members on the
    other hosts are told (here through the Router's failed call, as Ray fails calls to a dead
    actor), wake and elect new leaders within a few election timeouts."""

    async def scenario() -> None:
        dead: set[str] = set()
        hosts, _ = _cluster(dead)
        h0, h1, h2 = (hosts[n] for n in NAMES)
        groups = [f"q{i}" for i in range(10)]
        for g in groups:
            await _group(hosts, g, QUIET)
        await _until(lambda: all(h.stats()["awake"] == 0 for h in hosts.values()), 5.0)
        # h0 dies: its clock and members stop, and calls to it fail as "actor died".
        for m in h0.members.values():
            m.stop()
        dead.add(NAMES[0])
        import raftfleet_ray.runtime.member as member_mod

        original = member_mod._is_dead_actor_error
        member_mod._is_dead_actor_error = lambda exc: isinstance(exc, _ActorDied)
        try:
            h1._peer_host_dead(NAMES[0])  # what its watch call on h0 reports
            h2._get_router().send(_probe(h2, NAMES[0]))  # h2 learns it from a failed call
            await _until(lambda: all(
                any(h.members[g].node.role == "leader" for h in (h1, h2)) for g in groups), 10.0)
        finally:
            member_mod._is_dead_actor_error = original
        assert h1.stats()["peer_down_reports"] >= 10

    asyncio.run(scenario())


def _probe(host: MemberHost, dead_host: str) -> Any:
    """A message from ``host`` to its peer on ``dead_host`` (of term -1: any member ignores
    it): sending it makes the Router call the dead host, which fails as 'actor died'."""
    from raftfleet_ray.raft import AppendEntriesResponse

    m = next(iter(host.members.values()))
    peer = next(p for p in m.node.members if p.startswith(dead_host))
    return AppendEntriesResponse(-1, m.id, peer, False, 0)


class _Hook:
    """rafted_value's LeaderHook: records what the leader tells it; raises on one query."""

    seen: list = []

    def on_elected(self, data: Any) -> None:
        _Hook.seen.append(("elected", data.value))

    def on_command_committed(self, arg: Any, ret: Any, data_after: Any) -> None:
        _Hook.seen.append(("committed", arg, ret, data_after.value))

    def on_query_answered(self, data: Any, arg: Any, ret: Any) -> None:
        if arg == "boom":
            raise RuntimeError("a broken hook")
        _Hook.seen.append(("answered", arg, ret))

    def on_follower_added(self, data: Any, member: str) -> None:
        _Hook.seen.append(("added", member))

    def on_follower_removed(self, data: Any, member: str) -> None:
        _Hook.seen.append(("removed", member))


class _Echo(Counter):
    def query(self, arg: Any) -> Any:
        return self.value


def test_leader_hooks_run_in_the_leader_and_a_raising_hook_breaks_nothing() -> None:
    async def scenario() -> None:
        _Hook.seen.clear()
        hosts, _ = _cluster()
        h0 = hosts[NAMES[0]]
        cfg = RaftConfig(data=_Echo, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1,
                         quiesce_after=None, leader_hook=_Hook)
        await _group(hosts, "g", cfg)
        joiners = [hosts[n].members["g"].id for n in NAMES[1:]]
        ops = [CommandOp(SessionId("client", i, 1), codec.dumps("inc")) for i in range(1, 4)]
        assert [codec.loads(r.value) for r in await h0.submit("g", ops)] == [0, 1, 2]
        assert codec.loads((await h0.submit("g", [QueryOp(codec.dumps("boom"))]))[0].value) == 3  # hook raised
        assert codec.loads((await h0.submit("g", [QueryOp(codec.dumps("x"))]))[0].value) == 3
        res = await h0.admin("g", "remove_member", joiners[1])
        assert isinstance(res, ValueReply), res
        seen = _Hook.seen
        assert seen[0] == ("elected", 0)
        assert [s for s in seen if s[0] == "added"] == [("added", j) for j in joiners]
        # One batch of three commands applied in one step: data_after is the value after it.
        assert [s for s in seen if s[0] == "committed"] == [("committed", "inc", i, 3) for i in range(3)]
        assert ("answered", "x", 3) in seen and not any(s[:2] == ("answered", "boom") for s in seen)
        assert seen[-1] == ("removed", joiners[1])
        # Only the leader's member ran hooks: nothing recorded twice.
        assert sum(1 for s in seen if s[0] == "elected") == 1
        with pytest.raises(ValueError, match="leader_hook must be None or a class"):
            RaftConfig(leader_hook=_Hook())

    asyncio.run(scenario())


def test_hosts_record_operations_elections_and_gauges_in_their_metrics() -> None:
    """What each host records (runtime/metrics.py), with a recorder in place of Ray's: the
    operations it answered by kind and outcome, their latency, the election and leadership
    of the bootstrap member, and the gauges (members, leaders, the leader's log)."""

    async def scenario() -> None:
        recs = [RecordingMetrics() for _ in NAMES]
        hosts, _ = _cluster(metrics=recs)
        h0, h1, _h2 = (hosts[n] for n in NAMES)
        await _group(hosts, "g", CFG)
        ops = [CommandOp(SessionId("client", i, 1), codec.dumps("inc")) for i in range(1, 6)]
        await h0.submit("g", ops)
        await h0.submit("g", [QueryOp(codec.dumps(None))])
        await h0.submit("g", [CommandOp(SessionId("client", 9, 1), codec.dumps("no such command"))])
        await h1.submit("g", [CommandOp(SessionId("client", 10, 1), codec.dumps("inc"))])
        await h0.submit_many([("g", QueryOp(codec.dumps(None))), ("nope", QueryOp(codec.dumps(None)))])
        leader = recs[0]
        assert leader.counts[("operations", "g", "command", "ok")] == 5
        assert leader.counts[("operations", "g", "query", "ok")] == 2
        assert leader.counts[("operations", "g", "command", "raised")] == 1
        assert leader.counts[("operations", "nope", "query", "no_member")] == 1
        assert recs[1].counts[("operations", "g", "command", "not_leader")] == 1
        assert [k for k, _ in leader.latencies] == ["command"] * 5 + ["query"] * 2
        assert all(0 <= s < 10 for _, s in leader.latencies)
        assert leader.counts[("leader_changes", "g")] == 1
        assert recs[1].counts[("leader_changes", "g")] == 0
        for h in hosts.values():
            h.set_gauges()
        n = h0.members["g"].node
        assert leader.gauges[("host",)][:2] == (1, 1)
        assert recs[1].gauges[("host",)][:2] == (1, 0)
        assert leader.gauges[("group", "g")] == (n.last_index - n.first_index + 1, n.last_index - n.applied_index)
        assert ("group", "g") not in recs[1].gauges
        # Leadership moves to host 1: host 0 sets its group gauges to 0, host 1 takes over.
        res = await h0.admin("g", "transfer_leadership", h1.members["g"].id)
        assert isinstance(res, ValueReply), res
        await _until(lambda: h1.members["g"].node.role == "leader")
        assert recs[1].counts[("elections", "g")] >= 1 and recs[1].counts[("leader_changes", "g")] == 1
        h0.set_gauges()
        h1.set_gauges()
        assert leader.gauges[("group", "g")] == (0, 0)
        assert recs[1].gauges[("group", "g")][0] > 0
        for h in hosts.values():
            await h.stop_member("g")

    asyncio.run(scenario())


def test_the_ticks_follow_a_clock_that_counts_a_suspend() -> None:
    """Review finding 13.7: time.monotonic stops while the machine is suspended (on Linux), so a
    leader waking from a suspend would go on trusting its lease while its followers, on other
    machines, had long since elected another leader. The ticks follow CLOCK_BOOTTIME, and the
    ticks a suspend missed are fed at once, before anything else: the lease is over."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        from raftfleet_ray.runtime import env as env_mod

        assert env_mod.current().raft_now is env_mod._boottime
        assert abs(member_mod.raft_clock() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0
    lease = RaftConfig(data=Counter, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1,
                       election_timeout_clock_drift_margin=0.05, quiesce_after=None)

    async def scenario() -> None:
        hosts, _ = _cluster()
        await _group(hosts, "g", lease)
        lead = hosts[NAMES[0]].members["g"]
        await _until(lambda: lead.node.holds_lease())
        # The machine sleeps for 10 election timeouts: the clock the host follows jumps.
        lead.catch_up_clock(member_mod.raft_clock() + 1.0)
        assert not lead.node.holds_lease(), "the lease outlived a suspend"

    asyncio.run(scenario())


def test_a_group_born_whole_commits_its_first_entry_on_a_majority_at_once() -> None:
    """Issue 14: every voter starts in the first configuration, the desired leader campaigns
    at once, and the group is created once that leader committed its first entry. No member
    ever runs as a single voter."""

    async def scenario() -> None:
        hosts, _ = _cluster()
        mids = [await hosts[n].start_member("g", CFG, False) for n in NAMES]
        assert all(hosts[n].members["g"].node.members == () for n in NAMES)
        for n, mid in zip(NAMES, mids, strict=True):
            await hosts[n].begin("g", mids, mid == mids[1])
        assert await hosts[NAMES[1]].wait_commit("g", 1, 5.0)
        lead = hosts[NAMES[1]].members["g"].node
        assert lead.role == "leader" and lead.members == tuple(mids)
        await _until(lambda: sum(hosts[n].members["g"].node.last_index >= 1 for n in NAMES) >= 2)
        res = await hosts[NAMES[1]].submit("g", [CommandOp(SessionId("c", 1, 1, 1), codec.dumps("inc"))])
        assert codec.loads(res[0].value) == 0

    asyncio.run(scenario())


def test_a_restore_is_born_whole_and_its_empty_voters_never_lead() -> None:
    """Issue 14: a restore from files starts every voter; only the one that leads is begun,
    with the restored state; the others stay passive, so however long the leader's own start
    takes, none of them campaigns (two empty voters are a majority: one elected would
    acknowledge writes on the empty value; fleet simulator, chaos seed 2049). Once the leader
    is begun, the group commits past the restored index on a majority, with the value. A
    second begin (a retry) answers the same and does nothing more."""
    from raftfleet_ray.raft import HardState
    from raftfleet_ray.storage.base import DurableState

    async def scenario() -> None:
        hosts, _ = _cluster()
        old = hosts[NAMES[0]]
        await old.start_member("old", CFG, True)
        await _until(lambda: old.members["old"].node.role == "leader")
        res = await old.submit("old", [CommandOp(SessionId("c", i, 1), codec.dumps("inc")) for i in range(1, 6)])
        assert [codec.loads(r.value) for r in res] == list(range(5))
        node = old.members["old"].node
        state = DurableState(HardState(node.term, None), node._snap, node.entries_from(node._base + 1))
        mids = [await hosts[n].start_member("g", CFG, False) for n in NAMES]
        await asyncio.sleep(10 * CFG.election_timeout)  # the leader's begin is slow in coming
        assert all(hosts[n].members["g"].node.term == 0 for n in NAMES), "an empty voter campaigned"
        first = await hosts[NAMES[2]].begin("g", mids, True, state)
        assert first == node.last_index + 1
        assert await hosts[NAMES[2]].wait_commit("g", first, 5.0)
        # The reconciler asks again when an answer is late (a lost begin left a restore without
        # a leader for good; chaos seed 4061): the same answer, nothing done twice.
        term = hosts[NAMES[2]].members["g"].node.term
        assert await hosts[NAMES[2]].begin("g", mids, True, state) == first
        assert hosts[NAMES[2]].members["g"].node.term == term
        lead = hosts[NAMES[2]].members["g"].node
        assert lead.role == "leader" and lead.members == tuple(mids) and lead.term > node.term
        await _until(lambda: sum(hosts[n].members["g"].node.commit_index >= first for n in NAMES) >= 2)
        res = await hosts[NAMES[2]].submit("g", [CommandOp(SessionId("c2", 1, 1), codec.dumps("inc"))])
        assert codec.loads(res[0].value) == 5

    asyncio.run(scenario())


def test_a_stop_returns_once_the_retirement_is_durable_and_files_say_whose_they_are(tmp_path) -> None:
    """Issue 14 finding 2: a stopped member's files must be retired durably before anything
    may kill its host, or a restart finds them unretired and brings a removed group back. And
    what a host's files could restore names the member and its configuration, so that a
    restore can count the files of a majority of that configuration."""

    async def scenario() -> None:
        name = "raftfleet.host|node0|00000000"
        handles: dict[str, Any] = {}
        host = MemberHost(name, "node0", resolve=lambda n: handles[n], persist_dir=str(tmp_path / "h"))
        handles[name] = _Handle(host, [], set())
        mid = await host.start_member("g", CFG, True, 3)
        await _until(lambda: host.members["g"].node.role == "leader")
        results = await host.submit("g", [CommandOp(SessionId("c", i, 1), codec.dumps("inc")) for i in range(1, 6)])
        assert [codec.loads(r.value) for r in results] == list(range(5))
        assert await host.stop_member("g")
        # No flush is left to run: what the disk holds now is what a kill -9 would leave.
        assert not host._log.pending() and not host._syncing
        found = HostLog(OsFileSystem(), str(tmp_path / "h")).open()
        assert [(r.key, r.retired) for r in found] == [("g", True)]
        found = (await host.restorable())["g"]
        assert (found.n_replica, found.member, found.config) == (3, mid, ((mid,), ()))
        assert found.index >= 6 and found.term >= 1
        await host.durable()  # nothing pending: returns at once

    asyncio.run(scenario())
