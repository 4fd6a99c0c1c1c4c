"""The direct transport (issue 15, first step): frames flow both ways once both ends proved
the fleet's secret, and every way a peer can misbehave (a wrong secret, garbage, an oversized
frame, a stall in the handshake or mid-frame) closes that connection only: the listener and
the other connections go on. No Ray here: plain asyncio over loopback."""

from __future__ import annotations

import asyncio
import struct

import pytest

from raftfleet_ray.runtime.transport import (
    MAGIC,
    Connection,
    Listener,
    TransportError,
    connect,
    new_secret,
)

pytestmark = pytest.mark.timeout(30)


class Echo:
    """A listener whose connections echo every frame; records what it handled."""

    def __init__(self, secret: bytes, **kw) -> None:
        self.handled = 0
        self.frames = 0
        self.listener = Listener(secret, self.handle, **kw)

    async def handle(self, conn: Connection) -> None:
        self.handled += 1
        while True:
            frame = await conn.recv()
            self.frames += 1
            conn.send(frame)

    async def start(self) -> tuple[str, int]:
        return await self.listener.start("127.0.0.1")


async def _still_serves(address: tuple[str, int], secret: bytes) -> None:
    """A well-behaved client is served, whatever happened to others."""
    c = await connect(*address, secret)
    c.send(b"ping")
    assert await c.recv() == b"ping"
    c.close()


def test_frames_flow_both_ways_and_one_loop_turn_is_one_write() -> None:
    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret)
        address = await echo.start()
        c = await connect(*address, secret)
        frames = [bytes([i]) * i for i in range(100)] + [b"x" * 1_000_000]
        for f in frames:
            c.send(f)
        assert [await c.recv() for _ in frames] == frames
        assert c.writes == 1, "frames sent in one loop turn must go out in one write"
        c.close()
        await echo.listener.close()

    asyncio.run(go())


def test_a_wrong_secret_is_refused_before_any_frame_is_read() -> None:
    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret)
        address = await echo.start()
        with pytest.raises(TransportError, match="handshake"):
            c = await connect(*address, new_secret())
            c.send(b"never decoded")
            await c.recv()
        await asyncio.sleep(0.05)
        assert echo.handled == 0 and echo.frames == 0 and echo.listener.refused == 1
        # A client that meets a listener with another secret finds out too (mutual).
        other = Echo(new_secret())
        other_address = await other.start()
        with pytest.raises(TransportError):
            await connect(*other_address, secret)
        await _still_serves(address, secret)
        await echo.listener.close()
        await other.listener.close()

    asyncio.run(go())


def test_garbage_closes_only_its_own_connection() -> None:
    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret)
        address = await echo.start()
        good = await connect(*address, secret)
        reader, writer = await asyncio.open_connection(*address)
        assert (await reader.readexactly(len(MAGIC) + 32))[:4] == MAGIC
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        await writer.drain()
        assert await reader.read() == b"", "the listener must close a connection that sends garbage"
        assert echo.handled == 1 and echo.listener.refused == 1
        good.send(b"still here")
        assert await good.recv() == b"still here"
        await echo.listener.close()

    asyncio.run(go())


def test_an_oversized_frame_closes_the_connection_before_its_body_is_read() -> None:
    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret, max_frame=1024)
        address = await echo.start()
        bad = await connect(*address, secret, max_frame=1 << 30)
        bad.send(b"y" * 2048)
        with pytest.raises(TransportError):
            await bad.recv()
        assert echo.frames == 0
        # The sending side refuses to build one over its own limit, too.
        small = await connect(*address, secret, max_frame=1024)
        with pytest.raises(ValueError, match="over the limit"):
            small.send(b"z" * 2048)
        await _still_serves(address, secret)
        await echo.listener.close()

    asyncio.run(go())


def test_a_peer_that_stalls_mid_frame_or_in_the_handshake_is_cut_off() -> None:
    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret, frame_timeout=0.2, handshake_timeout=0.2)
        address = await echo.start()
        # Mid-frame: a length of 100 bytes, then 10 of them, then nothing.
        c = await connect(*address, secret)
        c._writer.write(struct.pack(">I", 100) + b"0123456789")
        with pytest.raises(TransportError):
            await asyncio.wait_for(c.recv(), 5.0)  # the listener closed it
        # In the handshake: connect and say nothing.
        reader, _writer = await asyncio.open_connection(*address)
        await reader.readexactly(len(MAGIC) + 32)
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
        assert echo.listener.refused == 1
        # Idle between frames is fine: a connection may wait longer than the frame timeout.
        idle = await connect(*address, secret)
        await asyncio.sleep(0.5)
        idle.send(b"after a pause")
        assert await idle.recv() == b"after a pause"
        await echo.listener.close()

    asyncio.run(go())


def test_a_short_secret_is_refused() -> None:
    async def go() -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            Listener(b"short", Echo(new_secret()).handle)
        with pytest.raises(ValueError, match="at least 16 bytes"):
            await connect("127.0.0.1", 1, b"short")

    asyncio.run(go())


class _Target:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def slow(self, x: int) -> int:
        await self.release.wait()
        return x

    async def fast(self, x: int) -> int:
        return x * 2

    async def boom(self) -> None:
        raise KeyError("no such group")

    async def secret_method(self) -> str:
        return "must not be reachable"


def test_calls_over_a_channel_run_concurrently_and_fail_when_the_connection_dies() -> None:
    from raftfleet_ray.runtime.transport import Channel, RemoteError, serve_calls

    async def go() -> None:
        secret = new_secret()
        target = _Target()
        listener = Listener(secret, lambda conn: serve_calls(conn, target, frozenset({"slow", "fast", "boom"})))
        address = await listener.start("127.0.0.1")
        ch = Channel(await connect(*address, secret))
        slow = ch.call("slow", 1)
        assert await ch.call("fast", 21) == 42  # answered while the slow one still runs
        target.release.set()
        assert await slow == 1
        with pytest.raises(RemoteError, match="KeyError"):
            await ch.call("boom")
        with pytest.raises(RemoteError, match="cannot be called"):
            await ch.call("secret_method")
        target.release.clear()
        pending = ch.call("slow", 2)
        await asyncio.sleep(0.05)
        await listener.close()  # the other end goes away: the waiting call fails, it does not hang
        with pytest.raises(TransportError):
            await asyncio.wait_for(pending, 5.0)
        with pytest.raises(TransportError):
            await ch.call("fast", 1)

    asyncio.run(go())


def test_channels_open_in_the_background_back_off_after_a_failure_and_follow_the_handle() -> None:
    from raftfleet_ray.runtime.transport import Channel, Channels

    async def go() -> None:
        secret = new_secret()
        echo = Echo(secret)
        address = await echo.start()
        now = [0.0]
        opened: list[tuple[str, object]] = []
        refuse = {"nobody"}

        async def opener(name: str, handle: object) -> Channel | None:
            opened.append((name, handle))
            if name in refuse:
                return None
            return Channel(await connect(*address, secret))

        pool = Channels(opener, lambda: now[0], retry=1.0)
        h1, h2 = object(), object()
        assert pool.get("peer", h1) is None  # opening in the background: a Ray call meanwhile
        assert pool.get("peer", h1) is None  # one opening at a time
        await asyncio.sleep(0.1)
        assert len(opened) == 1
        ch = pool.get("peer", h1)
        assert ch is not None and pool.is_open("peer") and pool.open_count == 1
        # A peer that takes no connection is asked again only after `retry` seconds.
        assert pool.get("nobody", h1) is None
        await asyncio.sleep(0.05)
        assert pool.get("nobody", h1) is None and len(opened) == 2
        now[0] = 1.5
        assert pool.get("nobody", h1) is None
        await asyncio.sleep(0.05)
        assert len(opened) == 3
        # A failed channel is dropped, and reopened after the back-off.
        pool.drop("peer")
        assert ch.closed and pool.get("peer", h1) is None and len(opened) == 3
        now[0] = 3.0
        pool.get("peer", h1)
        await asyncio.sleep(0.1)
        assert pool.get("peer", h1) is not None
        # A new handle for the peer (its actor restarted): the old channel is not used for it.
        assert pool.get("peer", h2) is None
        await asyncio.sleep(0.1)
        assert pool.get("peer", h2) is not None and opened[-1] == ("peer", h2)
        pool.close_all()
        assert pool.open_count == 0
        await echo.listener.close()

    asyncio.run(go())


def test_a_call_over_the_frame_limit_is_refused_at_once_and_leaves_nothing_waiting() -> None:
    """A Raft snapshot or a batch can be larger than a frame may be: the call raises at once,
    so the sender can send it by Ray instead, and the channel goes on."""
    from raftfleet_ray.runtime.transport import Channel, serve_calls

    async def go() -> None:
        secret = new_secret()
        target = _Target()
        listener = Listener(secret, lambda conn: serve_calls(conn, target, frozenset({"fast"})), max_frame=4096)
        address = await listener.start("127.0.0.1")
        ch = Channel(await connect(*address, secret, max_frame=4096))
        with pytest.raises(ValueError, match="over the limit"):
            ch.call("fast", b"x" * 10_000)
        assert ch._waiting == {} and not ch.closed
        assert await ch.call("fast", 4) == 8
        await listener.close()

    asyncio.run(go())
