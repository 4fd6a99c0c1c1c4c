"""Client histories on a real cluster, checked by the project's linearizability checker
(``raftfleet_ray.testing.linearizability``), across the faults the reconciler must live
through (issue 14): the leader's node killed, a node killed while it is being drained, and a
node killed while a group's member is moving onto it.

Clients read, write and compare-and-set a few keys of a KeyValue group; every write value is
unique, an operation whose outcome is unknown (timeout, leader lost) is recorded as unknown,
never as failed (CONVENTIONS 11). The history must be linearizable key by key.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.api import group_status, leader_status
from raftfleet_ray.testing.history import History
from raftfleet_ray.testing.linearizability import check_register

pytestmark = pytest.mark.timeout(420)
KEYS = ("a", "b")


@pytest.fixture(scope="module")
def fleet_on(ray_cluster, add_zone_node, members_per_host, zone_nodes):
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for zone in ("z1", "z2", "z3"):  # nodes killed by an earlier run are replaced
        if sum(1 for n, z in zone_nodes.items() if z == zone and n in alive) < 1:
            add_zone_node(ray_cluster, zone)
    extra = [add_zone_node(ray_cluster, z) for z in ("z1", "z2")]  # room to move to
    fleet.configure(fleet.FleetConfig(balancing_interval=1.0, members_per_host=members_per_host))
    fleet.activate_all()
    yield extra
    fleet.shutdown_fleet()


class Clients:
    """``n`` threads of reads, writes and cas on ``KEYS`` of one group, into one History."""

    def __init__(self, group: str, n: int = 3, seed: int = 0) -> None:
        self.group = group
        self.history = History()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i, random.Random(seed * 100 + i)), daemon=True)
                        for i in range(n)]
        self.seq = 0

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def _value(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def _run(self, client: int, rng: random.Random) -> None:
        h = self.history
        while not self.stop.is_set():
            key = rng.choice(KEYS)
            r = rng.random()
            if r < 0.45:
                kind = "read"
                op = h.invoke(client, key, "read", None, time.monotonic())
                call = lambda key=key: fleet.query(self.group, ("get", key), timeout=1.0, retry=5)  # noqa: E731
            elif r < 0.85:
                kind, v = "write", self._value()
                op = h.invoke(client, key, "write", v, time.monotonic())
                call = lambda key=key, v=v: fleet.command(self.group, ("put", key, v), timeout=1.0, retry=5)  # noqa: E731
            else:
                kind, new = "cas", self._value()
                expected = rng.choice([None, new - 1, new - 2])
                op = h.invoke(client, key, "cas", (expected, new), time.monotonic())
                call = lambda key=key, e=expected, n=new: fleet.command(  # noqa: E731
                    self.group, ("cas", key, e, n), timeout=1.0, retry=5)
            try:
                res = call()
            except fleet.RaftFleetError as exc:
                if exc.outcome_unknown or kind == "read":
                    h.unknown(op)  # a read that got no answer told nothing: unknown is harmless
                else:
                    h.fail(op, time.monotonic())
                continue
            h.ok(op, None if kind == "write" else (bool(res) if kind == "cas" else res), time.monotonic())

    def done(self) -> int:
        """Operations answered so far."""
        return sum(1 for o in self.history if o.complete is not None)

    def check(self) -> int:
        ops = self.history.by_key()
        for key, key_ops in ops.items():
            res = check_register(key_ops, None)
            assert res, f"key {key!r}: not linearizable\n{res.explanation}"
        return sum(1 for o in self.history if o.complete is not None)


def node_of(ray_cluster, node_id):
    return next(n for n in ray_cluster.worker_nodes if n.node_id == node_id)


def test_linearizable_across_a_leader_node_kill(ray_cluster, fleet_on, kill_node, node_is_dead, wait_for):
    group = f"lin-{time.monotonic_ns()}"
    fleet.add_consensus_group(group, 3, fleet.RaftConfig(data=fleet.KeyValue), await_timeout=60.0)
    clients = Clients(group, seed=1)
    clients.start()
    wait_for(lambda: clients.done() >= 30, 30, "30 operations answered")
    lead = leader_status(group)["node_id"]
    kill_node(ray_cluster, node_of(ray_cluster, lead))
    wait_for(lambda: node_is_dead(lead), 30, "Ray to see the leader's node dead")
    wait_for(lambda: (st := leader_status(group)) is not None and st["node_id"] != lead, 30, "a new leader")
    n = clients.done()
    wait_for(lambda: clients.done() >= n + 30, 30, "30 operations answered by the new leader")
    clients.finish()
    assert clients.check() > 20


def test_linearizable_when_a_node_dies_during_a_drain(ray_cluster, fleet_on, kill_node, node_is_dead, wait_for):
    group = f"drain-{time.monotonic_ns()}"
    fleet.add_consensus_group(group, 3, fleet.RaftConfig(data=fleet.KeyValue), await_timeout=60.0)
    clients = Clients(group, seed=2)
    clients.start()
    st = leader_status(group)
    members = {s["node_id"] for s in group_status(group).values() if s}
    drained = st["node_id"]
    victim = next(n for n in members if n != drained)
    fleet.deactivate(drained)  # its leadership and member move away...
    wait_for(lambda: (s := leader_status(group)) is not None and s["node_id"] != drained, 60,
             "the drain to move the leadership away")
    kill_node(ray_cluster, node_of(ray_cluster, victim))  # ... while another member's node dies
    wait_for(lambda: node_is_dead(victim), 30, "Ray to see the node dead")
    wait_for(lambda: (s := leader_status(group)) is not None and s["node_id"] not in (drained, victim), 90,
             "the group to lead from a node that is neither drained nor dead")
    n = clients.done()
    wait_for(lambda: clients.done() >= n + 20, 30, "20 operations answered since")
    clients.finish()
    assert clients.check() > 10
    assert fleet.consensus_groups().get(group) == 3


def test_linearizable_when_a_node_dies_during_a_move(ray_cluster, fleet_on, add_zone_node, kill_node,
                                                     node_is_dead, wait_for):
    groups = [f"move-{i}-{time.monotonic_ns()}" for i in range(4)]
    for g in groups:
        fleet.add_consensus_group(g, 3, fleet.RaftConfig(data=fleet.KeyValue), await_timeout=60.0)
    clients = [Clients(g, n=2, seed=3 + i) for i, g in enumerate(groups)]
    for c in clients:
        c.start()
    new = add_zone_node(ray_cluster, "z3")  # a node joins: groups that want it move a member there
    fleet.activate_all()

    def on_new() -> set[str]:
        return {g for g in groups for st in group_status(g).values() if st and st["node_id"] == new.node_id}

    # It dies while members move onto it: as soon as one runs there (a learner catching up).
    moving = wait_for(on_new, 90, "a member of some group to start on the new node")
    kill_node(ray_cluster, new)
    wait_for(lambda: node_is_dead(new.node_id), 30, "Ray to see the node dead")
    wait_for(lambda: not on_new() and all(leader_status(g) is not None for g in groups), 90,
             "every group without a member on the dead node, and led")
    for c in clients:
        n = c.done()
        wait_for(lambda c=c, n=n: c.done() >= n + 10, 30, "10 operations answered since")
    for c in clients:
        c.finish()
    assert sum(c.check() for c in clients) > 40, moving
    assert all(fleet.consensus_groups().get(g) == 3 for g in groups)
