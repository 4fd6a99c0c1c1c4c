"""The simulated Ray under the fleet simulator: calls with latency, death noticed (never a
hang), lost calls saved only by the caller's timeout, silence, restarts, the node table."""

from __future__ import annotations

import asyncio
import random

import pytest
import ray.exceptions

from raftfleet_ray.testing.simray import Faults, SimRay
from raftfleet_ray.testing.vloop import VirtualTimeLoop


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    async def slow(self, s: float) -> str:
        await asyncio.sleep(s)
        return "done"

    def boom(self) -> None:
        raise ValueError("boom")


def run(fn):
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(fn())
    finally:
        loop.close()


def test_calls_answer_and_errors_travel_back() -> None:
    async def main():
        sr = SimRay(random.Random(1))
        sr.add_node("n1", "z1")
        h = sr.create(Counter, "n1", "c")
        assert await h.inc.remote() == 1
        assert await h.slow.remote(3.0) == "done"
        with pytest.raises(ValueError, match="boom"):
            await h.boom.remote()
        assert sr.get_actor("c") is not None and sr.get_actor("nope") is None

    run(main)


def test_death_is_noticed_and_a_dead_node_stays_dead() -> None:
    async def main():
        sr = SimRay(random.Random(2))
        sr.add_node("n1", "z1")
        h = sr.create(Counter, "n1", "c")
        sr.kill_node("n1")
        with pytest.raises(ray.exceptions.ActorDiedError):
            await asyncio.wait_for(h.inc.remote(), 5.0)
        assert sr.nodes()[0]["Alive"] is False and sr.get_actor("c") is None
        with pytest.raises(ValueError, match="never reused"):
            sr.add_node("n1", "z1")

    run(main)


def test_lost_calls_and_silence_need_the_callers_timeout() -> None:
    async def main():
        sr = SimRay(random.Random(3), Faults(p_lost=1.0))
        sr.add_node("n1", "z1")
        h = sr.create(Counter, "n1", "c")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.inc.remote(), 2.0)
        sr.faults.p_lost = 0.0
        sr.silence(h)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(h.inc.remote(), 2.0)
        sr.silence(h, False)
        assert await asyncio.wait_for(h.inc.remote(), 2.0) >= 1

    run(main)


def test_a_crash_restarts_the_actor_with_its_memory_gone() -> None:
    async def main():
        sr = SimRay(random.Random(4))
        sr.add_node("n1", "z1")
        h = sr.create(Counter, "n1", "c")
        assert await h.inc.remote() == 1
        sr.crash(h)
        assert await h.inc.remote() == 1  # a new incarnation behind the same handle

    run(main)
