"""The simulated client workload: sequential clients doing reads, writes and cas on a few keys.

Each client has one operation in flight. A command (``put`` / ``cas``) gets a command id
when it is first sent and keeps it on every retry, so the core's de-duplication makes
retries exactly-once (CONVENTIONS.md rule 11). A client keeps a guess of the leader,
follows ``not_leader`` hints, times an attempt out and retries elsewhere, and after a
bounded time gives up and records the operation as *unknown*, never as failed: it may
still commit later. Every invocation and answer goes into a :class:`History` for the
linearizability checker.

Command ids are built as the Ray client builds them (``raftfleet_ray/client.py``,
``Client.new_command_id`` / ``done_command``): clients run in a few simulated *processes*,
each with one client session (Raft thesis §6.3), a ``SessionId(prefix, seq, low)`` whose
``low`` is the smallest ``seq`` of the process still in flight. Several clients share a
process, as the callers of one Ray process share its session, so ``low`` lags behind
``seq`` and the core keeps several results per session. Now and then a process restarts
and opens a new session, as a new Ray process does; with the small ``max_sessions`` some
seeds draw, the core's cache then evicts old sessions (least recently used first).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from raftfleet_ray.raft.types import Ok, Raised, Rejected, Result, SessionId
from raftfleet_ray.testing.history import History
from raftfleet_ray.testing.sim_data import BOOM_KINDS

ATTEMPT_TIMEOUT = 15.0  # time units before an attempt is presumed lost and retried elsewhere
GIVE_UP_AFTER = 60.0  # during the fault phase: then the outcome is recorded as unknown
COMMAND_REJECTS_UNKNOWN = ("not_leader", "leadership_lost")


class ClientHost(Protocol):
    """What the workload needs from the simulator."""

    now: float

    def call_later(self, delay: float, fn: Any, arg: Any) -> None: ...

    def client_send(self, node_id: str, req: tuple, op: ClientOp) -> None: ...

    def client_targets(self) -> list[str]: ...

    def commands_settled(self) -> bool: ...

    def note(self, what: str) -> None: ...


@dataclass(slots=True)
class ClientOp:
    """One logical operation; retries reuse it (and its ``cmd_id``)."""

    client: int
    op_no: int
    op_id: int  # id in the History (-1: not in it: boom and snapfail change no key)
    kind: str  # "read" | "write" | "cas"; "boom" | "snapfail": user code misbehaving (sim_data)
    key: str
    query: Any  # read: the query arg
    cmd: Any  # write / cas: the command arg
    cmd_id: SessionId | None  # write / cas: the de-duplication id, the same on every retry
    started: float
    give_up: float

    @property
    def is_command(self) -> bool:
        return self.kind != "read"


class ClientSession:
    """One process's client session, exactly as ``raftfleet_ray.client.Client`` keeps it:
    ``new_command_id`` numbers the process's commands and puts the smallest one still in
    flight in ``low``; ``done_command`` marks one finished (answered or given up), after
    which the group may forget its result and refuses a late copy of it as stale."""

    __slots__ = ("prefix", "since", "_seq", "_outstanding")

    def __init__(self, rng: random.Random, since: int = 0) -> None:
        # The Ray client uses uuid4().hex[:12]; here the same shape from the seeded rng.
        self.prefix = uuid.UUID(int=rng.getrandbits(128), version=4).hex[:12]
        self.since = since  # when it began, as the Ray client's time.time_ns() // 1000
        self._seq = 0
        self._outstanding: set[int] = set()

    def new_command_id(self) -> SessionId:
        self._seq += 1
        self._outstanding.add(self._seq)
        return SessionId(self.prefix, self._seq, min(self._outstanding), self.since)

    def done_command(self, cmd_id: SessionId) -> None:
        self._outstanding.discard(cmd_id.seq)


@dataclass(slots=True)
class SimProcess:
    """A client process: the clients that share its session; it restarts with a new one."""

    idx: int
    session: ClientSession
    clients: list[int]
    exiting: bool = False  # restarting: its clients start no new operation meanwhile
    polling: bool = False  # a _poll_restart is scheduled
    waiting: list[int] = field(default_factory=list)  # its clients that wait for the restart


@dataclass(slots=True)
class SimClient:
    idx: int
    proc: int = 0
    op: ClientOp | None = None
    op_no: int = 0
    attempt: int = 0
    target: str | None = None
    leader_guess: str | None = None
    left_after_heal: int = -1  # ops still to start once healing began (-1 = not healing)
    seen: dict[str, Any] = field(default_factory=dict)  # key -> last value this client saw


@dataclass(slots=True)
class WorkloadStats:
    ok: int = 0
    unknown: int = 0
    retries: int = 0
    raised: int = 0  # boom commands answered with their exception (as they must be)
    expired: int = 0  # commands refused because their session was evicted (outcome unknown)
    rejected: int = 0
    sessions: int = 0  # client sessions opened (one per process, plus one per restart)


class Workload:
    """The clients, driven by the simulator's event loop through :class:`ClientHost`."""

    def __init__(
        self,
        host: ClientHost,
        rng: random.Random,
        n_clients: int,
        n_keys: int,
        *,
        idle_pauses: bool = False,
        n_processes: int = 0,
        p_restart: float = 0.0,
        p_boom: float = 0.0,
        reckless_restarts: bool = False,
    ) -> None:
        """``idle_pauses``: now and then a client pauses long enough for the group to go
        quiet (and quiesce, when the core is configured to), then comes back.
        ``n_processes``: the clients are dealt round-robin to this many processes, each with
        one session (0: one process per client). ``p_restart``: after each operation a
        process restarts with this probability, with a new session (see ``_maybe_restart``).
        ``p_boom``: this share of the operations are user code failing (``sim_data.SimKV``).
        ``reckless_restarts``: a process restarts without waiting for its commands to settle,
        so that sessions with commands still in flight are evicted (the core must refuse those
        commands as expired, never apply them twice)."""
        self.host = host
        self.idle_pauses = idle_pauses
        self.rng = rng
        self.keys = [f"k{i}" for i in range(n_keys)]
        n_proc = min(n_processes, n_clients) if n_processes > 0 else n_clients
        self.clients = [SimClient(i, i % n_proc) for i in range(n_clients)]
        self.stats = WorkloadStats()
        self.procs = [
            SimProcess(p, self._new_session(), [c.idx for c in self.clients if c.proc == p]) for p in range(n_proc)
        ]
        self.p_restart = p_restart
        self.p_boom = p_boom
        self.reckless = reckless_restarts
        self.history = History()
        self.healing = False
        self.recent: dict[str, list[Any]] = {k: [None] for k in self.keys}  # values written per key
        self.read_only_until = -1.0  # a read-only phase (FaultInjector aims set it): no new writes
        # The value of a client's write, unique per write (keeps the checker's search small);
        # the simulator sets its own (sim_storage.py: some are bytes holding record frames).
        self.value_of: Callable[[int, int], Any] = lambda client, op_no: client * 1_000_000 + op_no

    def start(self) -> None:
        for c in self.clients:
            self.host.call_later(self.rng.uniform(0.0, 5.0), self._next_op, c.idx)

    def heal(self) -> None:
        """The fault phase is over: finish the current op however long it takes, do a few more."""
        self.healing = True
        for c in self.clients:
            c.left_after_heal = self.rng.randint(1, 3)
            if c.op is not None:
                c.op.give_up = float("inf")
        for proc in self.procs:
            if proc.exiting:
                self._resume(proc)  # no restart after the faults: the clients must finish

    # --- sessions and process restarts ---------------------------------------------

    def _new_session(self, floor: int = -1) -> ClientSession:
        self.stats.sessions += 1
        # The simulated wall clock, in µs, as the Ray client's since; above what the group said.
        # (+ the count, so that sessions opened at the same instant still differ, as real clocks do).
        return ClientSession(self.rng, max(int(self.host.now * 1e6) + self.stats.sessions, floor + 1))

    def _maybe_restart(self, proc: SimProcess) -> None:
        """Restart ``proc`` with a new session once that is safe for the de-dup cache.

        A new session can push an old one out of the core's cache (``max_sessions``, least
        recently used first), and a command whose session was forgotten is applied again if
        a copy of it is still around: the production sizing assumption is that
        ``max_sessions`` exceeds the sessions that may still have commands in flight. The
        workload keeps to it by construction: a process restarts only when every command
        of every session is *settled* (no command operation outstanding, and no copy of a
        command anywhere but at a committed log index: see ``commands_settled``), and the
        plan draws ``max_sessions >= n_processes``. Then while a command has copies in
        flight no session is opened, so only the other processes' current sessions
        (``n_processes - 1``) can be used after it, and the cache keeps at least
        ``n_processes`` sessions: it never forgets a session that still matters."""
        if any(self.clients[i].op is not None for i in proc.clients) or proc.polling:
            return  # its last operations finish first (their _next_op calls back here)
        if not self.reckless and (
                any(c.op is not None and c.op.is_command for c in self.clients) or not self.host.commands_settled()):
            proc.polling = True
            self.host.call_later(self.rng.uniform(0.5, 2.0), self._poll_restart, proc.idx)
            return
        proc.session = self._new_session()
        self.host.note(f"client process p{proc.idx} restarts: new session {proc.session.prefix}")
        self._resume(proc)

    def _poll_restart(self, pidx: int) -> None:
        proc = self.procs[pidx]
        proc.polling = False
        if proc.exiting:
            self._maybe_restart(proc)

    def _resume(self, proc: SimProcess) -> None:
        proc.exiting = False
        waiting, proc.waiting = proc.waiting, []
        for idx in waiting:
            self.host.call_later(self.rng.uniform(0.0, 1.0), self._next_op, idx)

    def all_done(self) -> bool:
        return self.healing and all(c.op is None and c.left_after_heal == 0 for c in self.clients)

    def outstanding(self) -> list[str]:
        return [
            f"c{c.idx}: op #{c.op.op_id} {c.op.kind} attempt {c.attempt} -> {c.target}"
            for c in self.clients
            if c.op is not None
        ]

    # --- issuing --------------------------------------------------------------------

    def _next_op(self, idx: int) -> None:
        c = self.clients[idx]
        if c.op is not None:
            return
        proc = self.procs[c.proc]
        if proc.exiting:
            if idx not in proc.waiting:
                proc.waiting.append(idx)
            self._maybe_restart(proc)
            return
        if self.healing:
            if c.left_after_heal <= 0:
                c.left_after_heal = 0
                return
            c.left_after_heal -= 1
        rng = self.rng
        now = self.host.now
        c.op_no += 1
        key = rng.choice(self.keys)
        r = rng.random()
        value = self.value_of(c.idx, c.op_no)
        if self.p_boom and rng.random() < self.p_boom and now >= self.read_only_until:
            # User code failing inside the core: no key may change, nothing goes in the history
            # (a read that sees the boom's value is a linearizability violation).
            if rng.random() < 0.8:
                kind, cmd = "boom", ("boom", key, rng.choice(BOOM_KINDS), ("boom", value))
            else:
                kind, cmd = "snapfail", ("snapfail", rng.random() < 0.5)
            c.op = ClientOp(idx, c.op_no, -1, kind, key, None, cmd, proc.session.new_command_id(), now,
                            float("inf") if self.healing else now + GIVE_UP_AFTER)
            c.attempt = 0
            self._send(c, c.leader_guess)
            return
        if r < 0.4 or now < self.read_only_until:
            kind, arg, query, cmd = "read", None, ("get", key), None
        elif r < 0.75:
            kind, arg, query, cmd = "write", value, None, ("put", key, value)
        else:
            choices = self.recent[key]
            expected = c.seen.get(key) if rng.random() < 0.5 else rng.choice(choices[-4:])
            kind, arg, query, cmd = "cas", (expected, value), None, ("cas", key, expected, value)
        op_id = self.history.invoke(c.idx, key, kind, arg, now)
        if kind != "read":
            self.recent[key].append(value)
            if len(self.recent[key]) > 8:
                del self.recent[key][1:-7]
        give_up = float("inf") if self.healing else now + GIVE_UP_AFTER
        cmd_id = proc.session.new_command_id() if kind != "read" else None
        c.op = ClientOp(idx, c.op_no, op_id, kind, key, query, cmd, cmd_id, now, give_up)
        c.attempt = 0
        # Now and then a client starts from a random member, as one with a stale leader
        # cache would: a deposed leader that still answers must answer correctly.
        self._send(c, c.leader_guess if rng.random() < 0.8 else rng.choice(self.host.client_targets()))

    def _send(self, c: SimClient, target: str | None) -> None:
        op = c.op
        assert op is not None
        targets = self.host.client_targets()
        if target is None or target not in targets:
            # No usable guess: try somebody other than the node that just failed us.
            others = [t for t in targets if t != c.target] or targets
            target = self.rng.choice(others)
        c.attempt += 1
        c.target = target
        req = ("c", c.idx, op.op_no, c.attempt, op.is_command)
        self.host.client_send(target, req, op)
        self.host.call_later(ATTEMPT_TIMEOUT, self._on_timeout, (c.idx, op.op_no, c.attempt))

    def _retry(self, c: SimClient, target: str | None, delay: float) -> None:
        op = c.op
        assert op is not None
        self.stats.retries += 1
        if self.host.now + delay >= op.give_up:
            self._give_up(c)
            return
        self.host.call_later(delay, self._resend, (c.idx, op.op_no, c.attempt, target))

    def _resend(self, arg: tuple[int, int, int, str | None]) -> None:
        idx, op_no, attempt, target = arg
        c = self.clients[idx]
        if c.op is None or c.op.op_no != op_no or c.attempt != attempt:
            return  # answered meanwhile, or another retry already went out
        self._send(c, target)

    def _on_timeout(self, arg: tuple[int, int, int]) -> None:
        idx, op_no, attempt = arg
        c = self.clients[idx]
        if c.op is None or c.op.op_no != op_no or c.attempt != attempt:
            return
        c.leader_guess = None  # the guess did not answer: forget it
        self._retry(c, None, 0.0)

    def _give_up(self, c: SimClient) -> None:
        op = c.op
        assert op is not None
        # Unknown, never failed: the command may still commit (CONVENTIONS.md rule 11).
        if op.op_id >= 0:
            self.history.unknown(op.op_id)
        self.stats.unknown += 1
        self._finish(c)

    def _finish(self, c: SimClient) -> None:
        op = c.op
        assert op is not None
        if op.cmd_id is not None:
            # As the Ray client's ``finally: done_command(...)``: answered or given up, the
            # caller is done with it; the next command's ``low`` lets the group forget it.
            self.procs[c.proc].session.done_command(op.cmd_id)
        c.op = None
        proc = self.procs[c.proc]
        if self.p_restart and not self.healing and not proc.exiting and self.rng.random() < self.p_restart:
            proc.exiting = True
            self.host.note(f"client process p{proc.idx} exits")
        pause = self.rng.uniform(0.0, 2.0)
        if self.idle_pauses and self.rng.random() < 0.2:
            pause = self.rng.uniform(10.0, 60.0)
        self.host.call_later(pause, self._next_op, c.idx)

    # --- answers --------------------------------------------------------------------

    def on_reply(self, arg: tuple[tuple, str, Result]) -> None:
        req, frm, result = arg
        _, idx, op_no, attempt, _ = req
        c = self.clients[idx]
        op = c.op
        if op is None or op.op_no != op_no:
            return  # a late answer to an operation already finished or given up
        if op.kind in ("boom", "snapfail"):
            if isinstance(result, Raised) == (op.kind == "boom") and not isinstance(result, Rejected):
                self.stats.raised += op.kind == "boom"
                c.leader_guess = frm
                self._finish(c)
                return
            if not isinstance(result, Rejected):
                raise AssertionError(f"{op.cmd} answered {result!r}")
        elif isinstance(result, Ok):
            # Any attempt's Ok will do: retries share the command id, so all answer alike.
            value = result.value
            if op.kind == "read":
                res: Any = value
                c.seen[op.key] = value
            elif op.kind == "write":
                res = None
                c.seen[op.key] = op.cmd[2]
            else:
                res = bool(value)
                if res:
                    c.seen[op.key] = op.cmd[3]
            self.history.ok(op.op_id, res, self.host.now)
            self.stats.ok += 1
            c.leader_guess = frm
            self._finish(c)
            return
        if isinstance(result, Raised):
            raise AssertionError(f"KeyValue raised on {op.cmd or op.query}: {result.exc!r}")
        assert isinstance(result, Rejected)
        if result.reason == "session_expired":
            # Any attempt's: the group evicted the session, so no attempt of this command can
            # ever be applied from now on, and an earlier one may have been: unknown. The
            # process opens a new session, as the Ray client does.
            proc = self.procs[c.proc]
            if op.cmd_id is not None and op.cmd_id.since >= proc.session.since:
                proc.session = self._new_session(result.session_floor)
                self.host.note(f"client process p{proc.idx}: session expired, new session {proc.session.prefix}")
            self.stats.expired += 1
            self._give_up(c)
            return
        if attempt != c.attempt:
            return  # a stale rejection; the current attempt is still out
        self.stats.rejected += 1
        if result.reason == "not_leader" and result.leader is not None and result.leader != frm:
            c.leader_guess = result.leader
            self._retry(c, result.leader, self.rng.uniform(0.05, 0.3))
        else:
            # No leader known, the leader changed under us, or any other refusal: the outcome
            # of a command stays unknown, so retry with the same id (a retry is always safe).
            c.leader_guess = None
            self._retry(c, None, self.rng.uniform(0.5, 2.0))
