"""The virtual-time event loop under the fleet simulator: timers fire in order without real
waiting, timeouts work, and a run replays exactly."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from raftfleet_ray.testing.vloop import Deadlock, VirtualTimeLoop


def run(coro_fn):
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_an_hour_of_sleeps_takes_no_time() -> None:
    async def main(loop):
        await asyncio.sleep(3600)
        return loop.time()

    t = time.monotonic()
    assert run(main) == 3600.0
    assert time.monotonic() - t < 1.0


def test_timeouts_and_ordering() -> None:
    async def main(loop):
        order = []

        async def worker(name, delay):
            await asyncio.sleep(delay)
            order.append((name, loop.time()))

        await asyncio.gather(worker("b", 2.0), worker("a", 1.0), worker("c", 3.0))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(100), 5.0)
        return order, loop.time()

    order, now = run(main)
    assert order == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert now == 8.0


def test_a_run_replays_exactly() -> None:
    async def main(loop):
        rng = random.Random(7)
        trace = []

        async def actor(i):
            for _ in range(20):
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                trace.append((i, round(loop.time(), 9)))

        await asyncio.gather(*(actor(i) for i in range(5)))
        return trace

    assert run(main) == run(main)


def test_waiting_on_nothing_is_a_deadlock_not_a_hang() -> None:
    async def main(loop):
        await loop.create_future()

    with pytest.raises(Deadlock):
        run(main)
