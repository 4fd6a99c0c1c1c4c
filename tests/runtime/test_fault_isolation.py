"""Fault isolation in the member host (issue 14, finding 4), without Ray: three hosts in one
event loop with fake handles (``test_member_shell``'s cluster).

A member whose step raises (its core, its Data class, its storage write, a tick, a flush's
completion, its recovery) is quarantined: it leaves the host's members, its callers get the
``Quarantine`` as their answer, its status and ``hosted()`` report it, and every other member
of the host goes on. Before, one poisoned message dropped the rest of its batch (the other
groups' messages on that host), and one member raising in ``persisted()`` skipped the later
members of that flush."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_member_shell import CFG, NAMES, _cluster, _group, _until

from raftfleet_ray import codec
from raftfleet_ray.config import RaftConfig
from raftfleet_ray.data import Counter
from raftfleet_ray.errors import MemberQuarantinedError
from raftfleet_ray.raft import AppendEntries, SessionId
from raftfleet_ray.runtime.member import MemberHost
from raftfleet_ray.runtime.metrics import RecordingMetrics
from raftfleet_ray.runtime.wire import CommandOp, Quarantine, QueryOp, RejectedReply, ValueReply
from raftfleet_ray.storage import StorageError

pytestmark = pytest.mark.timeout(60)

GROUPS = ("bad", "ok0", "ok1", "ok2")
"""``bad`` is created first and proposed first: its messages lead every batch and its writes
every flush, where its failure used to cut off the groups behind it."""
OKS = GROUPS[1:]


def _incs(round_: int) -> list[tuple[str, tuple]]:
    return [(g, CommandOp(SessionId("c", 100 * round_ + i + 1, 1), codec.dumps("inc"))) for i, g in enumerate(GROUPS)]


async def _three_hosts_four_groups(tmp: Path | None = None) -> tuple[list[MemberHost], list[RecordingMetrics]]:
    recs = [RecordingMetrics() for _ in NAMES]
    if tmp is None:
        hosts, _ = _cluster(metrics=recs)
    else:
        handles: dict[str, Any] = {}
        hosts = {n: MemberHost(n, f"node{i}", resolve=lambda n: handles[n], persist_dir=str(tmp / f"h{i}"),
                               metrics=recs[i]) for i, n in enumerate(NAMES)}
        from test_member_shell import _Handle

        handles.update({n: _Handle(h, [], set()) for n, h in hosts.items()})
    for g in GROUPS:
        if tmp is None:
            await _group(hosts, g, CFG)
            continue
        # With a log the first member leads once its own vote is durable (after a flush).
        h0 = hosts[NAMES[0]]
        await h0.start_member(g, CFG, True)
        await _until(lambda g=g, h0=h0: h0.members[g].node.role == "leader")
        for name in NAMES[1:]:
            joiner = await hosts[name].start_member(g, CFG, False)
            while getattr(res := await h0.admin(g, "add_member", joiner), "reason", None) == "uncommitted_membership_change":
                await asyncio.sleep(0.01)  # the last change is committed, not yet applied here
            assert isinstance(res, ValueReply), res
    return [hosts[n] for n in NAMES], recs


async def _the_others_keep_committing(h0: MemberHost, h1: MemberHost, rounds: range, with_bad: bool = True) -> None:
    """Every group commits a command per round at the leader (``bad`` on its two other
    members), and the followers on ``h1`` of the other groups apply them."""
    for r in rounds:
        results = await h0.submit_many(_incs(r))
        assert [codec.loads(x.value) for x in results] == [r] * len(GROUPS), results
    await _until(lambda: all(h1.members[g].node.applied_index == h0.members[g].node.applied_index for g in OKS))
    assert all(h1.members[g].node.data.inner.value == rounds.stop for g in OKS)


@pytest.mark.parametrize("poison", ["core step", "storage write"])
def test_a_poisoned_message_quarantines_its_member_and_the_rest_of_the_batch_is_delivered(poison: str) -> None:
    async def scenario() -> None:
        (h0, h1, _h2), recs = await _three_hosts_four_groups()
        bad = h1.members["bad"]
        if poison == "core step":
            real_step = bad.node.step

            def step(msg: Any) -> Any:
                if isinstance(msg, AppendEntries) and msg.entries:
                    raise RuntimeError("poisoned message: a bug in the core")
                return real_step(msg)

            bad.node.step = step  # type: ignore[method-assign]
        else:
            def write(*_: Any) -> None:
                raise StorageError("cannot write group bad's log")

            bad.storage.write = write  # type: ignore[method-assign]
        results = await h0.submit_many(_incs(0))
        # Every group commits (bad with h0 and h2): one member's failure is not its group's.
        assert [codec.loads(x.value) for x in results] == [0] * len(GROUPS)
        # The batch that carried bad's entries to h1 carried the other groups' too, after
        # them: they were delivered (before, they were dropped with the exception).
        assert [h1.members[g].node.last_index for g in OKS] == [h0.members[g].node.last_index for g in OKS]

        # Quarantined, and reported as such.
        assert "bad" not in h1.members and bad.stopped
        st = (await h1.statuses())["bad"]
        q = st.quarantine
        assert isinstance(q, Quarantine)
        assert (st.state_name, st.leader, st.from_) == ("quarantined", None, bad.id)
        error = "RuntimeError" if poison == "core step" else "StorageError"
        assert (q.group, q.member, q.host, q.node_id, q.during, q.error) == ("bad", bad.id, NAMES[1], "node1",
                                                                            "deliver", error)
        assert ("poisoned message" if poison == "core step" else "cannot write group bad's log") in q.message
        assert q.cause.startswith(f"deliver raised {error}: ") and "'bad'" in q.describe()
        assert (await h1.status("bad")).quarantine == q and (await h1.statuses(["bad"], True))["bad"].quarantine == q
        assert h1.hosted()["bad"] == bad.id and h1.quarantined() == {"bad": q}
        sts = await h1.statuses()
        assert all(sts[g].quarantine is None for g in OKS)
        assert recs[1].counts[("quarantines", "bad", "deliver")] == 1 and h1.stats()["quarantined"] == 1
        h1.set_gauges()
        assert recs[1].gauges[("quarantined",)] == 1 and recs[1].gauges[("host",)][0] == len(OKS)

        # Its callers get the quarantine (the client then asks the other members).
        assert await h1.submit("bad", [QueryOp(codec.dumps(None))]) == [q]
        mixed = await h1.submit_many([("bad", QueryOp(codec.dumps(None))), ("ok0", QueryOp(codec.dumps(None)))])
        assert mixed[0] == q and isinstance(mixed[1], RejectedReply) and mixed[1].reason == "not_leader"
        assert recs[1].counts[("operations", "bad", "query", "quarantined")] == 2
        with pytest.raises(MemberQuarantinedError, match="quarantined by its host because deliver raised"):
            await h1.admin("bad", "transfer_leadership", bad.id)

        # No message out of it either, and the others keep committing.
        await _the_others_keep_committing(h0, h1, range(1, 4))
        assert bad.node.last_index < h0.members["bad"].node.last_index

        # Stopping it (what the reconciler does to a member it replaces) clears the report.
        assert await h1.stop_member("bad") is True
        assert "bad" not in await h1.statuses() and "bad" not in h1.hosted() and h1.quarantined() == {}

    asyncio.run(scenario())


def test_a_member_whose_persisted_raises_is_quarantined_and_the_flush_completes_for_the_others(tmp_path: Path) -> None:
    """With persistence, a follower's writes wait for its host's flush (one fsync for every
    member); then each member's ``persisted()`` sends what waited on them. Before, the first
    member to raise there skipped every member after it in that flush (their acks never left)
    and no next flush was started for the writes made meanwhile."""

    async def scenario() -> None:
        loop_errors: list[dict] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        (h0, h1, _h2), recs = await _three_hosts_four_groups(tmp_path)
        flushes: dict[str, list[int]] = {g: [] for g in GROUPS}
        for g in OKS:
            m = h1.members[g]

            def persisted(msgs: Any, seq: int, m: Any = m, real: Any = h1.members[g].persisted) -> None:
                flushes[m.group].append(h1._flushes)
                real(msgs, seq)

            m.persisted = persisted  # type: ignore[method-assign]
        bad = h1.members["bad"]

        def on_persisted(seq: int) -> Any:
            flushes["bad"].append(h1._flushes)
            raise RuntimeError("on_persisted: a bug in the core")

        bad.node.on_persisted = on_persisted  # type: ignore[method-assign]
        results = await h0.submit_many(_incs(0))
        assert [codec.loads(x.value) for x in results] == [0] * len(GROUPS)
        await _until(lambda: flushes["bad"])
        (failed,) = flushes["bad"]
        # The flush in which bad raised completed for every other member (in the same call).
        assert all(failed in flushes[g] for g in OKS), (failed, flushes)
        q = h1.quarantined()["bad"]
        assert (q.during, q.error, q.member) == ("persisted", "RuntimeError", bad.id)
        assert recs[1].counts[("quarantines", "bad", "persisted")] == 1
        await _the_others_keep_committing(h0, h1, range(1, 4))
        assert max(flushes["ok0"]) > failed  # later flushes ran too
        assert loop_errors == [], loop_errors

    asyncio.run(scenario())


def test_a_member_whose_tick_raises_is_quarantined_and_the_host_clock_goes_on() -> None:
    async def scenario() -> None:
        (h0, h1, _h2), recs = await _three_hosts_four_groups()
        bad = h1.members["bad"]

        def tick() -> Any:
            raise RuntimeError("tick: a bug in the core")

        bad.node.tick = tick  # type: ignore[method-assign]
        await _until(lambda: "bad" in h1.quarantined())
        assert h1.quarantined()["bad"].during == "tick" and bad.id not in h1._clock._awake
        await _the_others_keep_committing(h0, h1, range(3))

    asyncio.run(scenario())


class Fragile(Counter):
    """A counter whose class cannot be built once ``broken`` (say, a dependency is missing after
    a restart): the member's state cannot be read back."""

    broken = False

    def __init__(self) -> None:
        if Fragile.broken:
            raise ImportError("Fragile needs a module that is gone")
        super().__init__()


def test_a_member_that_cannot_be_recovered_is_quarantined_and_the_others_recover(tmp_path: Path) -> None:
    """Ray restarts a persistent host: its members come back from its log. One whose state
    cannot be read back is quarantined; before, its error failed every call to the host."""
    fragile = RaftConfig(data=Fragile, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1,
                         quiesce_after=None)

    def no_peers(name: str) -> Any:
        raise ValueError(f"no peer {name} in this test")

    async def scenario() -> None:
        Fragile.broken = False
        first = MemberHost(NAMES[0], "node0", resolve=no_peers, persist_dir=str(tmp_path))
        for g, cfg in (("fragile", fragile), ("solid", CFG)):
            await first.start_member(g, cfg, True)  # one-member groups: each elects itself
            await _until(lambda g=g: first.members[g].node.role == "leader")
            ops = [CommandOp(SessionId("c", i, 1), codec.dumps("inc")) for i in range(1, 4)]
            assert [codec.loads(r.value) for r in await first.submit(g, ops)] == [0, 1, 2]
        ids = first.hosted()
        for m in first.members.values():
            m.stop()  # the process dies
        Fragile.broken = True
        try:
            again = MemberHost(NAMES[0], "node0", resolve=no_peers, persist_dir=str(tmp_path))
            assert again.hosted() == ids
            q = again.quarantined()["fragile"]
            assert (q.member, q.during, q.error) == (ids["fragile"], "recover", "ImportError")
            assert "a module that is gone" in q.message
            await _until(lambda: again.members["solid"].node.role == "leader")
            assert codec.loads((await again.submit("solid", [QueryOp(codec.dumps(None))]))[0].value) == 3
            assert await again.submit("fragile", [QueryOp(codec.dumps(None))]) == [q]
            st = (await again.statuses())["fragile"]
            assert st.state_name == "quarantined" and st.from_ == ids["fragile"] and st.config is not None
            assert again.counters["recovered_members"] == 1
        finally:
            Fragile.broken = False

    asyncio.run(scenario())


def test_a_quarantine_pickles_and_reads_as_one_line() -> None:
    import pickle

    try:
        raise KeyError("x" * 2000)
    except KeyError as exc:
        q = Quarantine.of(exc, group="g", member="h#g#1", host="h", node_id="n", during="deliver", now=0.0)
    assert pickle.loads(pickle.dumps(q)) == q and len(q.message) <= 500 and q.message.endswith("...")
    assert q.cause.startswith("deliver raised KeyError: ")
    err = MemberQuarantinedError("g", member=q.member, cause=q.cause, operation="command")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.member == "h#g#1" and back.outcome_unknown
    assert "command on consensus group 'g' failed: member h#g#1 was quarantined" in str(err)



class _Answers:
    """A fake host handle whose ``submit_many`` answers every item with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.submit_many = self

    def remote(self, items: list) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result([self.answer] * len(items))
        return fut


def test_the_client_asks_the_other_members_and_names_the_quarantine_when_none_leads() -> None:
    """A quarantined leader's callers get its Quarantine: the client takes it as an unknown
    outcome (same command id), finds the new leader; if none answers, it raises
    MemberQuarantinedError (a NoLeaderError) naming the group, the member and the cause."""
    from raftfleet_ray.client import Client, _Leader

    q = Quarantine("g", "raftfleet.host|0123456789abcdef|00000000#g#1", "raftfleet.host|0123456789abcdef|00000000",
                   "n", "deliver", "RuntimeError", "boom", 0.0)
    quarantined = _Leader(q.member, _Answers(q))
    healthy = _Leader("raftfleet.host|fedcba9876543210|00000000#g#2", _Answers(ValueReply(codec.dumps(7))))
    client = Client()
    try:
        for then, expected in ((None, MemberQuarantinedError), (healthy, 7)):
            found = iter([quarantined, then])

            async def discover(group: str, on_missing: Any = None, found: Any = found) -> Any:
                return next(found, None)

            client.discover = discover  # type: ignore[method-assign]
            op = CommandOp(SessionId("c", 1, 1), codec.dumps("inc"))
            if expected is MemberQuarantinedError:
                with pytest.raises(MemberQuarantinedError) as info:
                    client.run(client.call("g", op, operation="command", timeout=1.0, retry=1, retry_interval=0.0))
                assert info.value.group == "g" and info.value.member == q.member
                assert "deliver raised RuntimeError: boom" in str(info.value)
            else:
                assert client.run(client.call("g", op, operation="command", timeout=1.0, retry=1,
                                              retry_interval=0.0)) == expected
    finally:
        client.close()


def test_a_new_member_of_the_group_replaces_the_quarantined_one() -> None:
    async def scenario() -> None:
        hosts, _ = _cluster()
        h0 = hosts[NAMES[0]]
        await h0.start_member("g", CFG, True)
        m = h0.members["g"]
        q = h0._quarantine(m, "deliver", RuntimeError("boom"))
        assert h0.hosted() == {"g": q.member}
        mid = await h0.start_member("g", CFG, True)
        assert mid != q.member and h0.hosted() == {"g": mid} and h0.quarantined() == {}
        assert (await h0.statuses())["g"].quarantine is None

    asyncio.run(scenario())


def test_a_quiet_groups_quarantined_leader_is_reported_to_its_peers_who_elect_another() -> None:
    """A quiesced group runs no timer: when its leader is quarantined (here a client call makes
    its core raise) its followers would wait for it forever. Its host tells their hosts that
    it is gone for good (``members_down``, a definite report, like a dead host's), and they
    elect a new leader at once."""
    from test_member_shell import QUIET, _Handle, _Method

    async def scenario() -> None:
        handles: dict[str, Any] = {}
        hosts = {n: MemberHost(n, f"node{i}", resolve=lambda n: handles[n]) for i, n in enumerate(NAMES)}
        for n, h in hosts.items():
            handle = handles[n] = _Handle(h, [], set())

            async def members_down(members: list[str], h: MemberHost = h) -> int:
                return h.members_down(members)

            handle.members_down = _Method(members_down, [], set(), n)  # type: ignore[attr-defined]
        h0, h1, h2 = (hosts[n] for n in NAMES)
        await _group(hosts, "q", QUIET)
        await _until(lambda: all(h.stats()["awake"] == 0 for h in hosts.values()), 5.0)
        lead = h0.members["q"]

        def propose_batch(*_: Any) -> Any:
            raise RuntimeError("propose: a bug in the core")

        lead.node.propose_batch = propose_batch  # type: ignore[method-assign]
        (answer,) = await h0.submit("q", [CommandOp(SessionId("c", 1, 1), codec.dumps("inc"))])
        assert isinstance(answer, Quarantine) and answer.during == "submit"
        await _until(lambda: any(h.members["q"].node.role == "leader" for h in (h1, h2)), 5.0)
        new = next(h for h in (h1, h2) if h.members["q"].node.role == "leader")
        assert h1.stats()["peer_down_reports"] + h2.stats()["peer_down_reports"] >= 2
        res = await new.submit("q", [CommandOp(SessionId("c", 2, 1), codec.dumps("inc"))])
        assert codec.loads(res[0].value) == 0

    asyncio.run(scenario())
