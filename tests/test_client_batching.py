"""Client-side batching and retry bounds, with fake actor handles (no Ray cluster).

Regression tests for findings of the runtime review."""

from __future__ import annotations

import asyncio
import time

import pytest

from raftfleet_ray import errors
from raftfleet_ray.client import Client, _Batcher, _Leader
from raftfleet_ray.runtime.wire import CommandOp, ValueReply

pytestmark = pytest.mark.timeout(30)


class _FakeSubmit:
    """``handle.submit_many.remote([(group, op)])``: records every batch's ops; answers only
    when released."""

    def __init__(self, hang: bool = False) -> None:
        self.sent: list[list[tuple]] = []
        self.pending: list[asyncio.Future] = []
        self.hang = hang

    def remote(self, items: list[tuple[str, tuple]]) -> asyncio.Future:
        self.sent.append([op for _, op in items])
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut


class _FakeHandle:
    def __init__(self) -> None:
        self.submit = self.submit_many = _FakeSubmit()


def test_batcher_drops_ops_whose_caller_gave_up() -> None:
    """A caller that timed out (its future cancelled by wait_for) must not have its command
    sent later: it may already have been retried elsewhere, and a copy that reaches a leader
    after more than max_retained_command_results other commands is applied a second time."""

    async def scenario() -> list[list[tuple]]:
        h = _FakeHandle()
        b = _Batcher(h)
        first = b.submit("g", CommandOp(("p", 1), b"a"))  # in flight, its answer is slow
        await asyncio.sleep(0)  # the send task runs: batch 1 is on the wire
        given_up = b.submit("g", CommandOp(("p", 2), b"b"))  # queued behind it
        given_up.cancel()  # what asyncio.wait_for does when the caller's timeout fires
        h.submit.pending[0].set_result([ValueReply(b"x")])
        for _ in range(5):
            await asyncio.sleep(0)
        assert first.done()
        return h.submit.sent

    sent = asyncio.run(scenario())
    later = [op for batch in sent[1:] for op in batch]
    assert CommandOp(("p", 2), b"b") not in later, f"the abandoned command was sent anyway: {sent}"


def test_call_sync_keeps_its_documented_bound_and_sends_one_copy() -> None:
    """command(timeout=T, retry=0) is documented to block about T (+ discovery): the fast path
    with a cached leader that does not answer is the one try (it used to be followed by a
    second full try), and the abandoned op is not left queued behind the stuck batch."""
    client = Client()
    handle = _FakeHandle()
    lead = _Leader("raftfleet.host|0123456789abcdef|00000000#g#1", handle)

    async def discover(group: str, on_missing=None) -> _Leader:  # instant discovery
        client._leaders.put(group, lead)
        return lead

    client.discover = discover  # type: ignore[method-assign]
    client._leaders.put("g", lead)
    client._sync_callers = 1  # another caller is active: this op takes the batched path
    timeout = 0.3
    t0 = time.monotonic()
    with pytest.raises(errors.NoLeaderError):
        client.call_sync("g", CommandOp(("p", 1), b"a"), operation="command", timeout=timeout,
                         retry=0, retry_interval=0.0)
    took = time.monotonic() - t0
    batcher = client._batchers.get("raftfleet.host|0123456789abcdef|00000000")
    queued = len(batcher._queue)
    assert took < timeout * 1.5, f"retry=0, timeout={timeout}: blocked {took:.2f}s (documented: ~{timeout}s + discovery)"
    assert queued == 0, f"{queued} stale copies of the op wait behind the stuck batch"
