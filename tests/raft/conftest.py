"""A tiny synchronous harness for the core's unit tests: perfect disk, perfect network
unless a test drops or holds messages. The seeded fault simulator lives in
raftfleet_ray.testing; these tests step nodes by hand and look at each Ready."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

import pytest

from raftfleet_ray.data import KeyValue
from raftfleet_ray.raft import CoreConfig, Message, RaftNode, Ready, Reply

CFG = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=1000)


class Net:
    """Delivers messages in FIFO order; persists every Ready at once (an instant disk)."""

    def __init__(self, ids: Iterable[str], cfg: CoreConfig = CFG, seed: int = 0, **kw) -> None:
        self.cfg = cfg
        ids = tuple(ids)
        self.nodes: dict[str, RaftNode] = {
            i: RaftNode(i, cfg, KeyValue, random.Random(seed * 1000 + k), members=ids, **kw)
            for k, i in enumerate(ids)
        }
        self.queue: deque[Message] = deque()
        self.replies: list[Reply] = []
        self.down: set[str] = set()
        self.drop: Callable[[Message], bool] = lambda m: False

    def handle(self, node: RaftNode, rd: Ready) -> Ready:
        self.replies.extend(rd.replies)
        self.queue.extend(rd.messages)
        if rd.persist_seq:
            self.queue.extend(rd.messages_after_persist)
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

    def reply_for(self, req):
        for r in self.replies:
            if r.req == req:
                return r.result
        return None


@pytest.fixture
def net3() -> Net:
    return Net(["a", "b", "c"])
