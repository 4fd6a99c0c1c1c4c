"""An asyncio event loop on virtual time, for running async code deterministically and fast.

The loop's clock (``loop.time()``) only moves when nothing is ready to run: it then jumps
to the next scheduled timer at once instead of sleeping. So ``asyncio.sleep(60)``,
``asyncio.wait_for(..., 10)`` and every timeout of the code under test take no real time,
and a run depends only on what was scheduled, in what order: the same program replays the
same way (with the same ``PYTHONHASHSEED``, if it iterates sets of strings).

It works by giving ``SelectorEventLoop`` a selector that never waits: asked to wait
``timeout`` seconds for I/O, it advances the virtual clock by ``timeout`` and reports no
I/O. The loop must therefore do no real I/O (no sockets, subprocesses, or calls from other
threads, which would wait forever); ``run_in_executor`` work should be replaced by direct
calls in the code under simulation.

Example::

    loop = VirtualTimeLoop()
    async def main():
        await asyncio.sleep(3600)
        return loop.time()
    assert loop.run_until_complete(main()) == 3600.0
    loop.close()
"""

from __future__ import annotations

import asyncio
import math
import selectors
from typing import Any


class Deadlock(RuntimeError):
    """The loop was asked to wait for I/O with no timer scheduled: nothing can ever happen."""


class _NoWaitSelector(selectors.BaseSelector):
    """Registers file objects (the loop's self-pipe) but never waits on them."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, _fd(fileobj), events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        self.unregister(fileobj)
        return self.register(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("the virtual-time loop has nothing ready and no timer scheduled")
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._map.clear()

    def get_map(self) -> Any:
        return self._map


def _fd(fileobj: Any) -> int:
    return fileobj if isinstance(fileobj, int) else fileobj.fileno()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``SelectorEventLoop`` whose ``time()`` is virtual (see the module doc)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        super().__init__(selector=_NoWaitSelector(self))

    @property
    def _clock_resolution(self) -> float:
        """A timer fires once the clock has reached it, never early. (asyncio fires timers up
        to one clock resolution early; on a clock that only moves when idle, a timer a few
        nanoseconds ahead would then fire without the clock moving, and code that waits for
        "deadline - now" would spin forever.) One ulp: a timer due exactly now is ready."""
        return math.ulp(self._now)

    @_clock_resolution.setter
    def _clock_resolution(self, _: float) -> None:
        pass  # asyncio sets the real clock's; this clock's is the property above

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the loop does it by itself when idle)."""
        if seconds < 0:
            raise ValueError(f"time cannot go back ({seconds})")
        new = self._now + seconds
        # Always forward, if only by the smallest step a float can take.
        self._now = new if new > self._now else math.nextafter(self._now, math.inf)


__all__ = ["Deadlock", "VirtualTimeLoop"]
