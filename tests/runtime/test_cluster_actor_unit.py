"""The ClusterActor's plain class with an in-memory checkpoint store (no Ray cluster)."""

from __future__ import annotations

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.errors import AlreadyAddedError, GroupLostError, NotFoundError
from raftfleet_ray.runtime.cluster_actor import ClusterActor, MemoryStore, checkpoint_key


def make(store: MemoryStore, name: str = "c") -> ClusterActor:
    return ClusterActor(name, store=store, clock=lambda: 1000.0)


def test_every_command_is_checkpointed_before_it_returns_and_a_restart_restores_it():
    store = MemoryStore()
    a = make(store)
    assert not a.ping().restored
    a.add_node("r1", "n1", "z1")
    assert store.puts == 1
    members = a.add_group("r2", "g", 3, RaftConfig())
    assert store.puts == 2
    a.set_fleet_config("r3", FleetConfig(balancing_interval=2.0))

    b = make(store)  # a new incarnation, as after Ray restarts the actor
    info = b.ping()
    assert info.restored and info.checkpoint_bytes == len(store.data[checkpoint_key("c")])
    assert b.active_nodes() == {"z1": ["n1"]}
    assert b.consensus_groups() == {"g": 3}
    assert b.fleet_config().balancing_interval == 2.0
    assert b.add_group("r2", "g", 3, RaftConfig()) == members  # the retry is recognised
    assert store.puts == 3  # ... and not written again


def test_a_refusal_is_durable_too():
    store = MemoryStore()
    a = make(store)
    a.add_node("r1", "n1", "z1")
    a.add_group("r2", "g", 1, RaftConfig())
    with pytest.raises(AlreadyAddedError):
        a.add_group("r3", "g", 1, RaftConfig())
    b = make(store)
    b.remove_group("r4", "g")
    b.add_node("r5", "n2", "z1")  # state changed, but r3's answer stands
    with pytest.raises(AlreadyAddedError):
        b.add_group("r3", "g", 1, RaftConfig())


def test_bad_input_is_not_checkpointed():
    store = MemoryStore()
    a = make(store)
    with pytest.raises(ValueError):
        a.add_node("r1", "", "z1")
    assert store.puts == 0


def test_a_failed_checkpoint_rolls_the_command_back():
    store = MemoryStore()
    a = make(store)
    a.add_node("r1", "n1", "z1")
    store.fail_puts = True
    with pytest.raises(ConnectionError):
        a.add_group("r2", "g", 1, RaftConfig())
    assert a.consensus_groups() == {}  # it did not happen
    store.fail_puts = False
    assert a.add_group("r2", "g", 1, RaftConfig()) == ["n1"]  # the retry applies it
    assert make(store).consensus_groups() == {"g": 1}


def test_a_failed_first_checkpoint_rolls_back_to_empty():
    store = MemoryStore()
    store.fail_puts = True
    a = make(store)
    with pytest.raises(ConnectionError):
        a.add_node("r1", "n1", "z1")
    assert a.active_nodes() == {}


def test_stopped_extra_members_uses_the_actor_clock_by_default():
    store = MemoryStore()
    a = make(store)
    a.add_node("r1", "n1", "z1")
    a.add_group("r2", "g", 1, RaftConfig())
    a.remove_group("r3", "g")
    assert a.cleanup_ongoing("g")
    a.stopped_extra_members("r4", "n1", 1)
    assert not a.cleanup_ongoing("g")


def test_queries():
    a = make(MemoryStore())
    a.add_node("r1", "n1", "z1")
    members = a.add_group("r2", "g", 3, RaftConfig())
    assert a.zone_of("n1") == "z1"
    assert a.desired_members("g") == members
    assert a.group_spec("g").n_replica == 3
    assert a.groups_for_leader_node("n1") == [("g", ["n1"])]
    assert a.removed_names_for_node("n1") == ([], None)
    assert a.node_view("n1").groups_led == [("g", ["n1"])]
    with pytest.raises(NotFoundError):
        a.desired_members("nope")


def test_an_unreadable_checkpoint_fails_loudly():
    store = MemoryStore()
    store.data[checkpoint_key("c")] = b"\x80\x05garbage"
    with pytest.raises(Exception):  # noqa: B017 - any unpickling error will do
        make(store)


def test_lost_marks_and_configurations_are_durable_and_use_the_actor_clock():
    store = MemoryStore()
    a = make(store)
    a.add_node("r1", "n1", "z1")
    a.add_group("r2", "g", 3, RaftConfig())
    a.record_configs("r3", {"g": (("m1", "m2", "m3"), ())})
    a.mark_lost("r4", {"g": ("every voter is dead", 12)})
    b = make(store)  # restarted
    assert b.lost_groups()["g"].since == 1000.0 and b.lost_groups()["g"].highest_commit == 12
    assert b.configs_of(["g"]) == {"g": (("m1", "m2", "m3"), ())}
    with pytest.raises(GroupLostError):
        b.check_group("g", "query")
    b.clear_lost("r5", ["g"])
    assert make(store).lost_groups() == {}
