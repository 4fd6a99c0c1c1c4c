"""The member directory's named-actor lookups (runtime/directory.py), without Ray: one lookup
per name however many callers ask, none for an actor on a node Ray says is dead, and a
lookup that hangs (as Ray's does for an actor whose node just died) bounded for its callers.

Regression: after a node kill, a thousand groups' retries looked up the dead node's hosts,
each lookup blocked a thread of a 6-thread pool for over a minute, and every command of the
process waited behind them (benchmarks.fleet: groups answered after 23 to 120 s)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from raftfleet_ray.runtime import directory as dirmod
from raftfleet_ray.runtime.directory import Directory
from raftfleet_ray.runtime.names import agent_name, host_actor_name

pytestmark = pytest.mark.timeout(30)

ALIVE = "a" * 56
DEAD = "d" * 56


class FakeDirectory(Directory):
    """Lookups answered by ``actors`` (name -> handle); names in ``hang`` block until released."""

    def __init__(self, actors: dict[str, Any], hang: set[str]) -> None:
        super().__init__()
        self.actors = actors
        self.hang = hang
        self.lookups: list[str] = []
        self.release = threading.Event()
        self._nodes = (float("inf"), [ALIVE])  # alive_nodes() answers from this, no Ray

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _lookup(self, name: str) -> Any:
        self.lookups.append(name)
        return await super()._lookup(name)


def test_concurrent_lookups_of_one_name_share_one_call(monkeypatch) -> None:
    host = host_actor_name(ALIVE)
    d = FakeDirectory({host: "handle"}, set())
    calls = []

    def get_actor(name: str, namespace: str) -> Any:
        calls.append(name)
        threading.Event().wait(0.1)  # slow enough for every caller to join the same lookup
        return d.actors[name]

    monkeypatch.setattr("ray.get_actor", get_actor)

    async def scenario() -> list:
        return await asyncio.gather(*(d.host(host) for _ in range(200)))

    assert asyncio.run(scenario()) == ["handle"] * 200
    assert calls == [host]


def test_no_lookup_for_an_actor_on_a_dead_node_and_a_hanging_lookup_is_bounded(monkeypatch) -> None:
    alive_host, dead_host = host_actor_name(ALIVE), host_actor_name(DEAD)
    d = FakeDirectory({alive_host: "h"}, {alive_host})
    monkeypatch.setattr(dirmod, "LOOKUP_TIMEOUT", 0.3)

    def get_actor(name: str, namespace: str) -> Any:
        if name in d.hang:
            d.release.wait(10)
        if name not in d.actors:
            raise ValueError(f"no actor {name}")
        return d.actors[name]

    monkeypatch.setattr("ray.get_actor", get_actor)

    async def scenario() -> None:
        assert await d.host(dead_host) is None
        assert await d.agent(DEAD) is None
        assert d.lookups == []  # neither was looked up: Ray says their node is dead
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await asyncio.gather(*(d.host(alive_host) for _ in range(50))) == [None] * 50
        assert loop.time() - t0 < 2.0  # bounded by LOOKUP_TIMEOUT, not by the hung lookup
        assert await d.agent(ALIVE) is None  # no agent of that name
        d.release.set()
        d.hang.clear()
        # Not cached as missing: once Ray answers, the host is found.
        await asyncio.sleep(0.05)
        assert await d.host(alive_host) == "h"
        assert agent_name(ALIVE) in d.lookups

    asyncio.run(scenario())
