"""A tiny synchronous harness for the core's unit tests: perfect disk, perfect network
unless a test drops or holds messages. The seeded fault simulator lives in
raftfleet_ray.testing; these tests step nodes by hand and look at each Ready.

This module has a unique basename (not ``conftest``) so that test modules can import it:
``tests/*/conftest.py`` files are not in packages, and ``from conftest import ...`` would be
ambiguous between directories.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from raftfleet_ray.data import KeyValue
from raftfleet_ray.raft import (
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    Message,
    RaftNode,
    Ready,
    Reply,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
)

CFG = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=1000)

M = TypeVar("M")


class Disk:
    """What a member's storage holds after applying Readies in order, as ``Ready`` documents:
    hard state, then snapshot (the log up to it goes, all of it if it conflicts), then entries
    (everything at or after the first one goes first)."""

    def __init__(self) -> None:
        self.hard_state: HardState | None = None
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []

    def write(self, rd: Ready) -> None:
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            at = [e for e in self.entries if e.index == meta.index]
            if at and at[0].term == meta.term:
                self.entries = [e for e in self.entries if e.index > meta.index]
            else:
                self.entries = []
            self.snapshot = rd.snapshot
        if rd.entries:
            first = rd.entries[0].index
            self.entries = [e for e in self.entries if e.index < first] + list(rd.entries)

    def restart(self, node_id: str, cfg: CoreConfig = CFG, members: Sequence[str] = (),
                data: Callable[[], Any] = KeyValue, seed: int = 99) -> RaftNode:
        """A new incarnation of the member from what is durable (same id: its disk survived)."""
        return RaftNode(node_id, cfg, data, random.Random(seed), members=tuple(members),
                        hard_state=self.hard_state, snapshot=self.snapshot, entries=self.entries)


class Net:
    """Delivers messages in FIFO order; persists every Ready at once (an instant disk)."""

    def __init__(
        self,
        ids: Iterable[str],
        cfg: CoreConfig = CFG,
        seed: int = 0,
        data: Callable[[], Any] = KeyValue,
        **kw: Any,
    ) -> None:
        self.cfg = cfg
        self.data = data
        ids = tuple(ids)
        self.nodes: dict[str, RaftNode] = {
            i: RaftNode(i, cfg, data, random.Random(seed * 1000 + k), members=ids, **kw)
            for k, i in enumerate(ids)
        }
        self.queue: deque[Message] = deque()
        self.replies: list[Reply] = []
        self.readies: dict[str, list[Ready]] = {i: [] for i in ids}
        self.down: set[str] = set()
        self.drop: Callable[[Message], bool] = lambda m: False
        self.sent: list[Message] = []  # every message handed to the network, in order
        self.disks: dict[str, Disk] = {i: Disk() for i in ids}

    def add_node(self, node: RaftNode) -> RaftNode:
        self.nodes[node.id] = node
        self.readies.setdefault(node.id, [])
        self.disks.setdefault(node.id, Disk())
        return node

    def handle(self, node: RaftNode, rd: Ready) -> Ready:
        self.readies.setdefault(node.id, []).append(rd)
        self.disks.setdefault(node.id, Disk()).write(rd)
        self.replies.extend(rd.replies)
        self.queue.extend(rd.messages)
        self.sent.extend(rd.messages)
        if rd.persist_seq:
            self.queue.extend(rd.messages_after_persist)
            self.sent.extend(rd.messages_after_persist)
            more = node.on_persisted(rd.persist_seq)
            self.handle(node, more)
        return rd

    def do(self, node_id: str, fn: Callable[[RaftNode], Ready]) -> Ready:
        node = self.nodes[node_id]
        return self.handle(node, fn(node))

    def deliver(self, max_msgs: int = 100_000) -> int:
        n = 0
        while self.queue and n < max_msgs:
            m = self.queue.popleft()
            n += 1
            if m.to in self.down or m.frm in self.down or m.to not in self.nodes or self.drop(m):
                continue
            self.do(m.to, lambda node, m=m: node.step(m))
        return n

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in self.nodes:
                if i not in self.down:
                    self.do(i, lambda nd: nd.tick())
            self.deliver()

    def leader(self) -> RaftNode | None:
        leaders = [n for i, n in self.nodes.items() if n.role == "leader" and i not in self.down]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def elect(self, max_ticks: int = 200) -> RaftNode:
        for _ in range(max_ticks):
            lead = self.leader()
            if lead is not None and lead.commit_index >= lead._term_start_index:
                return lead
            self.tick_all()
        raise AssertionError("no leader elected")

    def reply_for(self, req: Any) -> Any:
        for r in self.replies:
            if r.req == req:
                return r.result
        return None

    def propose(self, node_id: str, req: Any, cmd_id: Any, arg: Any) -> Any:
        """Propose on ``node_id``, run the network to quiescence, return the reply (or None)."""
        self.do(node_id, lambda nd: nd.propose(req, cmd_id, arg))
        self.deliver()
        return self.reply_for(req)

    def read(self, node_id: str, req: Any, arg: Any) -> Any:
        self.do(node_id, lambda nd: nd.read(req, arg))
        self.deliver()
        return self.reply_for(req)


# ---------------------------------------------------------------------------------------
# Single-node helpers: build a node and drive it by hand.


def make(
    node_id: str,
    members: Sequence[str] = ("a", "b", "c"),
    cfg: CoreConfig = CFG,
    seed: int = 0,
    data: Callable[[], Any] = KeyValue,
    **kw: Any,
) -> RaftNode:
    return RaftNode(node_id, cfg, data, random.Random(seed), members=tuple(members), **kw)


def of_type(msgs: Iterable[Message], cls: type[M]) -> list[M]:
    return [m for m in msgs if isinstance(m, cls)]


def all_msgs(rd: Ready) -> list[Message]:
    return list(rd.messages) + list(rd.messages_after_persist)


def persisted(node: RaftNode, rd: Ready) -> Ready:
    """The caller made ``rd`` durable: tell the node and return what that released."""
    assert rd.persist_seq, "nothing to persist"
    return node.on_persisted(rd.persist_seq)


def make_leader(node_id: str = "a", members: Sequence[str] = ("a", "b", "c"), **kw: Any) -> RaftNode:
    """A node that won the election of the next term (pre-vote, then the vote), with every
    Ready persisted. Its no-op is durable but not yet acknowledged by anyone."""
    node = make(node_id, members, **kw)
    peers = [m for m in members if m != node_id]
    settle(node, node.campaign())
    if node.role == "pre_candidate":
        for p in peers:
            settle(node, node.step(RequestVoteResponse(node.term + 1, p, node_id, True, pre_vote=True)))
            if node.role != "pre_candidate":
                break
    for p in peers:
        if node.role != "candidate":
            break
        settle(node, node.step(RequestVoteResponse(node.term, p, node_id, True)))
    if node.role != "leader":
        raise AssertionError(f"{node_id} did not become leader: {node.role}")
    return node


def noop(term: int, index: int, members: Sequence[str] = ("a", "b", "c")) -> Entry:
    return Entry(term, index, EntryKind.NOOP, tuple(members))


def vote_request(term: int, frm: str, to: str, last_index: int = 0, last_term: int = 0,
                 pre_vote: bool = False, transfer: bool = False) -> RequestVote:
    return RequestVote(term, frm, to, last_index, last_term, pre_vote, transfer)


def settle(node: RaftNode, rd: Ready) -> list[Ready]:
    """Persist ``rd`` and everything it releases, as an instant disk would; return every Ready."""
    out = [rd]
    while rd.persist_seq:
        rd = node.on_persisted(rd.persist_seq)
        out.append(rd)
    return out
