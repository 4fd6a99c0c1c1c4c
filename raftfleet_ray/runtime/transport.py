"""Direct, authenticated connections between the fleet's processes (issue 15, first step).

Ray actor calls cost about a round trip of 0.6-1 ms each here; a Raft command takes several.
The data plane is to move onto persistent connections, one per pair of processes, carrying
every group between them, with Ray kept as the control plane (placement, lifecycle, failure
notification, and each process's endpoint). This module is that connection, and nothing
else: it knows bytes, not Raft.

A connection is safe before it is useful:

- **Mutual authentication first.** Both ends prove knowledge of the fleet's secret (created
  by the ClusterActor, handed out over Ray calls) with HMAC-SHA256 over fresh nonces from both
  sides, before a single frame is read. Nothing from a socket is decoded, let alone unpickled,
  before that; a wrong secret, or garbage, closes the connection.
- **Bounded frames.** A frame is a 4-byte big-endian length and that many bytes. A length over
  ``max_frame`` closes the connection before the body is read; a body (or a handshake) that
  stalls past its deadline closes it too. Idle connections between frames are fine.
- **One connection's trouble is its own.** Every failure closes that connection only; the
  listener and the other connections go on.

Frames sent in one turn of the event loop go out in one write (``writelines``): a host that
answers many groups at once pays one system call, as its group commit pays one fsync.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import os
import pickle
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"RFT1"
NONCE_BYTES = 32
MAC_BYTES = 32
SECRET_MIN_BYTES = 16
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Frames above this length close the connection before their body is read."""
HANDSHAKE_TIMEOUT = 5.0
"""Seconds for the whole handshake: a peer that stalls in it is cut off."""
FRAME_TIMEOUT = 10.0
"""Seconds for a frame's body once its length has arrived: a peer that stalls mid-frame is cut off."""
CHANNEL_RETRY = 1.0
"""Seconds before a direct connection that failed (or that a peer does not offer) is tried again."""
_LEN = struct.Struct(">I")


class TransportError(ConnectionError):
    """A connection was refused or closed: authentication failed, a frame broke the rules, a
    peer stalled, or the socket closed. It concerns that connection only."""


def new_secret() -> bytes:
    """A fresh fleet secret (32 random bytes)."""
    return os.urandom(32)


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, label + b"".join(parts), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) < SECRET_MIN_BYTES:
        raise ValueError(f"the fleet secret must be at least {SECRET_MIN_BYTES} bytes")


class Connection:
    """One authenticated connection: ``send`` frames (buffered, written once per loop turn),
    ``recv`` them in order. ``close`` is idempotent; after it, ``recv`` raises
    ``TransportError`` and ``send`` drops its frame (the caller learns it from ``closed``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, peer: str,
                 max_frame: int = MAX_FRAME_BYTES, frame_timeout: float = FRAME_TIMEOUT) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer
        self._max_frame = max_frame
        self._frame_timeout = frame_timeout
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.closed = False
        self.why: str | None = None  # why it closed
        self.writes = 0  # write calls made (frames sent in one loop turn share one)
        self.frames_sent = 0

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(frame) > self._max_frame:
            raise ValueError(f"a frame of {len(frame)} bytes is over the limit of {self._max_frame}")
        self._out.append(_LEN.pack(len(frame)))
        self._out.append(frame)
        self.frames_sent += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._out:
            return
        out, self._out = self._out, []
        try:
            self._writer.writelines(out)
            self.writes += 1
        except Exception as exc:  # noqa: BLE001 - the socket is gone: this connection only
            self.close(f"write failed: {exc!r}")

    async def drain(self) -> None:
        """Wait until what was sent is handed to the kernel (back-pressure for bulk senders)."""
        self._flush()
        if not self.closed:
            await self._writer.drain()

    async def recv(self) -> bytes:
        """The next frame. Raises ``TransportError`` once the connection is closed or breaks a
        rule (which closes it)."""
        if self.closed:
            raise TransportError(f"connection to {self.peer} is closed: {self.why}")
        try:
            head = await self._reader.readexactly(_LEN.size)  # idle between frames: no deadline
            (n,) = _LEN.unpack(head)
            if n > self._max_frame:
                raise TransportError(f"a frame of {n} bytes announced, over the limit of {self._max_frame}")
            return await asyncio.wait_for(self._reader.readexactly(n), self._frame_timeout)
        except TimeoutError:
            self.close(f"the peer stalled mid-frame for more than {self._frame_timeout} s")
        except asyncio.IncompleteReadError:
            self.close("closed by the peer")
        except TransportError as exc:
            self.close(str(exc))
        except OSError as exc:
            self.close(f"socket error: {exc!r}")
        raise TransportError(f"connection to {self.peer} closed: {self.why}")

    def close(self, why: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.why = why
        self._out.clear()
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except Exception:  # noqa: BLE001 - closed either way
            pass


async def _read(reader: asyncio.StreamReader, n: int) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise TransportError("the peer closed the connection during the handshake (a wrong secret?)") from None


async def _server_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes) -> None:
    server_nonce = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + server_nonce)
    await writer.drain()
    hello = await _read(reader, len(MAGIC) + NONCE_BYTES + MAC_BYTES)
    magic, client_nonce, mac = hello[:4], hello[4:4 + NONCE_BYTES], hello[4 + NONCE_BYTES:]
    if magic != MAGIC:
        raise TransportError("not a raftfleet peer (bad magic)")
    if not hmac.compare_digest(mac, _mac(secret, b"client", server_nonce, client_nonce)):
        raise TransportError("authentication failed (wrong secret)")
    writer.write(_mac(secret, b"server", client_nonce, server_nonce))
    await writer.drain()


async def _client_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes) -> None:
    hello = await _read(reader, len(MAGIC) + NONCE_BYTES)
    if hello[:4] != MAGIC:
        raise TransportError("not a raftfleet peer (bad magic)")
    server_nonce = hello[4:]
    client_nonce = os.urandom(NONCE_BYTES)
    writer.write(MAGIC + client_nonce + _mac(secret, b"client", server_nonce, client_nonce))
    await writer.drain()
    mac = await _read(reader, MAC_BYTES)
    if not hmac.compare_digest(mac, _mac(secret, b"server", client_nonce, server_nonce)):
        raise TransportError("the server failed authentication (wrong secret)")


Handler = Callable[[Connection], Awaitable[None]]


class Listener:
    """Accepts connections on ``host:port`` (port 0: any free one); each one that
    authenticates is given to ``handler`` (a coroutine that owns it until it returns). One
    connection's failure, or its handler's, closes that connection only."""

    def __init__(self, secret: bytes, handler: Handler, *, max_frame: int = MAX_FRAME_BYTES,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, frame_timeout: float = FRAME_TIMEOUT) -> None:
        _check_secret(secret)
        self._secret = secret
        self._handler = handler
        self._max_frame = max_frame
        self._handshake_timeout = handshake_timeout
        self._frame_timeout = frame_timeout
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()
        self.refused = 0  # connections closed before authentication (wrong secret, garbage, stall)
        self.accepted = 0  # connections that authenticated
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        return self.address

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        try:
            await asyncio.wait_for(_server_handshake(reader, writer, self._secret), self._handshake_timeout)
        except (TimeoutError, TransportError, OSError) as exc:
            self.refused += 1
            log.warning("transport: refused a connection from %s: %s", peer,
                        "handshake timed out" if isinstance(exc, TimeoutError) else exc)
            writer.close()
            return
        conn = Connection(reader, writer, peer=peer, max_frame=self._max_frame, frame_timeout=self._frame_timeout)
        self.accepted += 1
        self._conns.add(conn)
        try:
            await self._handler(conn)
        except TransportError:
            pass  # closed: said by conn.why
        except Exception:  # noqa: BLE001 - this connection only
            log.exception("transport: the handler of a connection from %s failed; closing it", peer)
        finally:
            conn.close(conn.why or "handler returned")
            self._conns.discard(conn)

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._conns):
            c.close("listener closed")
        if self._server is not None:
            await self._server.wait_closed()


async def connect(host: str, port: int, secret: bytes, *, max_frame: int = MAX_FRAME_BYTES,
                  timeout: float = HANDSHAKE_TIMEOUT, frame_timeout: float = FRAME_TIMEOUT) -> Connection:
    """An authenticated connection to a ``Listener``; raises ``TransportError`` (or
    ``OSError`` if nothing listens) if the other side does not prove the same secret."""
    _check_secret(secret)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        await asyncio.wait_for(_client_handshake(reader, writer, secret), timeout)
    except TimeoutError:
        writer.close()
        raise TransportError(f"the handshake with {host}:{port} timed out") from None
    except BaseException:
        writer.close()
        raise
    return Connection(reader, writer, peer=f"{host}:{port}", max_frame=max_frame, frame_timeout=frame_timeout)


# -- calls over a connection -----------------------------------------------------------------
#
# Frames between the fleet's processes are ``Call`` and ``Answer`` (pickled: both ends proved
# the fleet's secret first, and a process that knows it can run code on the cluster anyway).
# User payloads inside them (command arguments and results) are already bytes, pickled by the
# client and by the host.


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``method(*args)`` on the other end and answer with ``id``."""

    id: int
    method: str
    args: tuple


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to call ``id``: its result (``ok``), or the text of what it raised."""

    id: int
    ok: bool
    value: Any


class RemoteError(RuntimeError):
    """The method called over a ``Channel`` raised on the other end (its text)."""


class Channel:
    """Calls over one connection: ``call(method, *args)`` returns an awaitable answer; calls
    run concurrently on the other end and are answered in any order. When the connection
    closes, every call still waiting fails with ``TransportError`` (its outcome is unknown,
    as for a Ray call to an actor that died)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def call(self, method: str, *args: Any) -> asyncio.Future:
        """Raises ``ValueError`` at once if the call's frame is over the connection's limit
        (the caller sends it another way: a Ray call carries any size)."""
        fut = asyncio.get_running_loop().create_future()
        if self.conn.closed:
            fut.set_exception(TransportError(f"connection to {self.conn.peer} is closed: {self.conn.why}"))
            return fut
        i = next(self._ids)
        self.conn.send(pickle.dumps(Call(i, method, args), protocol=pickle.HIGHEST_PROTOCOL))
        self._waiting[i] = fut  # after the send: an oversized call leaves nothing waiting
        return fut

    async def _read(self) -> None:
        try:
            while True:
                answer = pickle.loads(await self.conn.recv())
                if not isinstance(answer, Answer):
                    self.conn.close(f"expected an Answer, got a {type(answer).__name__}")
                    break
                fut = self._waiting.pop(answer.id, None)
                if fut is None or fut.done():
                    continue
                if answer.ok:
                    fut.set_result(answer.value)
                else:
                    fut.set_exception(RemoteError(answer.value))
        except TransportError:
            pass
        except Exception as exc:  # noqa: BLE001 - a frame that does not decode: this connection only
            self.conn.close(f"an answer could not be read: {exc!r}")
        finally:
            error = TransportError(f"connection to {self.conn.peer} closed: {self.conn.why}")
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(error)
            self._waiting.clear()

    def close(self) -> None:
        self.conn.close("closed by its owner")


class Channels:
    """Channels to peers by name (a host's to its peer hosts, a client's to hosts), opened on
    demand in the background: ``get`` answers the open one or None at once (the caller then
    uses a Ray call), and starts opening one unless one is being opened or the last try
    failed less than ``retry`` seconds ago. ``opener(name, handle)`` makes the channel, or
    answers None if the peer takes none. ``clock``: seconds, monotonic."""

    def __init__(self, opener: Callable[[str, Any], Awaitable[Channel | None]], clock: Callable[[], float],
                 retry: float = CHANNEL_RETRY) -> None:
        self._opener = opener
        self._clock = clock
        self._retry = retry
        self._open: dict[str, tuple[Channel, Any]] = {}  # name -> (channel, the handle it was opened for)
        self._opening: set[str] = set()
        self._not_before: dict[str, float] = {}

    def get(self, name: str, handle: Any) -> Channel | None:
        entry = self._open.get(name)
        if entry is not None and not entry[0].closed and entry[1] is handle:
            return entry[0]
        if entry is not None and entry[0].closed:
            self.drop(name)  # it failed: tried again after the back-off
        elif entry is not None:
            self.forget(name)  # the peer has a new handle (its actor restarted): a new channel
        if name in self._opening or self._clock() < self._not_before.get(name, -1.0):
            return None
        self._opening.add(name)
        asyncio.ensure_future(self._open_one(name, handle))
        return None

    def is_open(self, name: str) -> bool:
        entry = self._open.get(name)
        return entry is not None and not entry[0].closed

    async def _open_one(self, name: str, handle: Any) -> None:
        try:
            ch = await self._opener(name, handle)
        except Exception as exc:  # noqa: BLE001 - Ray calls carry its traffic meanwhile
            log.debug("transport: no direct connection to %s: %r", name, exc)
            ch = None
        finally:
            self._opening.discard(name)
        if ch is None:
            self._not_before[name] = self._clock() + self._retry
        else:
            old = self._open.pop(name, None)
            if old is not None:
                old[0].close()
            self._open[name] = (ch, handle)

    def drop(self, name: str) -> None:
        """Close the channel to ``name`` (it failed): tried again after ``retry`` seconds."""
        entry = self._open.pop(name, None)
        if entry is not None:
            entry[0].close()
        self._not_before[name] = self._clock() + self._retry

    def forget(self, name: str) -> None:
        entry = self._open.pop(name, None)
        if entry is not None:
            entry[0].close()

    def close_all(self) -> None:
        for ch, _ in self._open.values():
            ch.close()
        self._open.clear()

    @property
    def open_count(self) -> int:
        return sum(not ch.closed for ch, _ in self._open.values())


async def serve_calls(conn: Connection, target: Any, methods: frozenset[str],
                      on_call: Callable[[], None] | None = None) -> None:
    """Answer the ``Call`` frames arriving on ``conn`` with ``target``'s coroutine methods named
    in ``methods`` (anything else is answered as an error), each as a task of its own, until
    the connection closes. A frame that is not a ``Call`` closes the connection. ``on_call``
    runs at each call (a counter)."""
    tasks: set[asyncio.Task] = set()

    async def run(call: Call) -> None:
        try:
            if call.method not in methods:
                raise AttributeError(f"{call.method!r} cannot be called over a connection")
            answer = Answer(call.id, True, await getattr(target, call.method)(*call.args))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - answered to the caller, as Ray would
            answer = Answer(call.id, False, f"{type(exc).__name__}: {exc}")
        conn.send(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        while True:
            call = pickle.loads(await conn.recv())
            if not isinstance(call, Call):
                conn.close(f"expected a Call, got a {type(call).__name__}")
                return
            if on_call is not None:
                on_call()
            task = asyncio.get_running_loop().create_task(run(call))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()


__all__ = ["FRAME_TIMEOUT", "HANDSHAKE_TIMEOUT", "MAX_FRAME_BYTES", "Connection", "Listener", "TransportError",
           "connect", "new_secret", "Answer", "Call", "Channel", "Channels", "RemoteError", "serve_calls"]
