"""The member actor's shell (MemberHost, Member, Router) without Ray: three hosts in one event
loop, peer calls through fake handles. Checks the plumbing the Ray tests rely on: bootstrap,
joining, batched commands answered at commit, reads, answers riding back on peer calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from raftfleet_ray import codec
from raftfleet_ray.config import RaftConfig
from raftfleet_ray.data import Counter
from raftfleet_ray.raft import SessionId
from raftfleet_ray.runtime.member import MemberHost

pytestmark = pytest.mark.timeout(60)

CFG = RaftConfig(data=Counter, tick_interval=0.01, heartbeat_timeout=0.02, election_timeout=0.1)


class _Method:
    def __init__(self, fn: Any, calls: list) -> None:
        self.fn = fn
        self.calls = calls

    def remote(self, *args: Any) -> asyncio.Task:
        self.calls.append(args)
        return asyncio.ensure_future(self.fn(*args))


class _Handle:
    """What the Router needs of a Ray actor handle: ``deliver.remote(...)`` -> awaitable."""

    def __init__(self, host: MemberHost, calls: list) -> None:
        self.deliver = _Method(host.deliver, calls)


async def _until(pred: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_three_hosts_replicate_batched_commands_without_ray() -> None:
    async def scenario() -> None:
        calls: list = []
        handles: dict[str, _Handle] = {}
        hosts = {
            name: MemberHost(name, f"node-{i}", resolve=lambda n: handles[n])
            for i, name in enumerate(("h0", "h1", "h2"))
        }
        handles.update({n: _Handle(h, calls) for n, h in hosts.items()})
        leader = await hosts["h0"].start_member("g", CFG, True)
        assert leader == "h0#g"
        for name in ("h1", "h2"):
            joiner = await hosts[name].start_member("g", CFG, False)
            res = await hosts["h0"].admin("g", "add_member", joiner)
            assert res[0] == "ok", res
        ops = [("c", SessionId("client", i, 1), codec.dumps("inc")) for i in range(1, 11)]
        results = await hosts["h0"].submit("g", ops)
        assert [codec.loads(r[1]) for r in results] == list(range(10))
        # The same batch again (a retry): answered from the de-dup cache, applied once.
        again = await hosts["h0"].submit("g", ops)
        assert [codec.loads(r[1]) for r in again] == list(range(10))
        q = await hosts["h0"].submit("g", [("q", codec.dumps(None))])
        assert codec.loads(q[0][1]) == 10
        # Followers caught up (they learn the commit index with the next heartbeat).
        await _until(lambda: all(h.members["g"].node.applied_index == hosts["h0"].members["g"].node.applied_index for h in hosts.values()))
        assert all(h.members["g"].node.data.inner.value == 10 for h in hosts.values())
        # Acks rode back on the leader's calls: followers never called the leader.
        assert all(args[0] == "h0" for args in calls)
        # A follower refuses commands with a hint to the leader.
        res = await hosts["h1"].submit("g", [("c", SessionId("client", 99, 99), codec.dumps("inc"))])
        assert res[0] == ("rejected", "not_leader", "h0#g")
        for h in hosts.values():
            await h.stop_member("g")

    asyncio.run(scenario())
