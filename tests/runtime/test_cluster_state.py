"""The metadata state machine (raft_fleet's RaftFleet.Cluster state, reference §3.3 and §3.8)."""

from __future__ import annotations

import itertools
import pickle

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.errors import (
    AlreadyAddedError,
    CleanupOngoingError,
    GroupLostError,
    InvalidNameError,
    NoActiveNodeError,
    NotFoundError,
)
from raftfleet_ray.placement import desired_members
from raftfleet_ray.runtime import cluster_state
from raftfleet_ray.runtime.cluster_state import (
    FORGET_INACTIVE_NODE_AFTER,
    ClusterState,
    GroupSpec,
    LostMark,
    NodeView,
    validate_group_name,
)

CFG = RaftConfig()
_ids = itertools.count()


def rid() -> str:
    """A fresh request id."""
    return f"req-{next(_ids)}"


def three_zones(**kw) -> ClusterState:
    s = ClusterState(**kw)
    for node, zone in [("n1", "z1"), ("n2", "z2"), ("n3", "z3"), ("n4", "z1")]:
        s.add_node(rid(), node, zone)
    return s


def assert_led_cache_consistent(s: ClusterState) -> None:
    """groups_for_leader_node is a cache of desired_members()[0]; it must never drift."""
    expected: dict[str, list[tuple[str, list[str]]]] = {}
    for name in sorted(s.consensus_groups()):
        members = s.desired_members(name)
        expected.setdefault(members[0], []).append((name, members))
    nodes = {n for ns in s.active_nodes().values() for n in ns} | set(expected)
    for node in nodes:
        assert s.groups_for_leader_node(node) == expected.get(node, [])


# ---------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    "name", ["a", "orders", "Orders_2", "x.y:z-w", "_private", "9lives", "a" * 200, "raft"]
)
def test_valid_group_names(name):
    assert validate_group_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("a" * 201, "201 characters"),
        ("has space", "' '"),
        ("a/b", "'/'"),
        ("é", "'é'"),
        (".hidden", "starts with '.'"),
        ("..", "starts with '.'"),
        ("-flag", "starts with '-'"),
        ("raftfleet_cluster", "reserved"),
        ("RaftFleet.x", "reserved"),
        (42, "int, not a str"),
        (None, "NoneType"),
    ],
)
def test_invalid_group_names_say_why(name, reason):
    with pytest.raises(InvalidNameError, match=reason) as info:
        validate_group_name(name)
    assert info.value.name == name
    assert isinstance(info.value, ValueError)


def test_add_group_refuses_an_invalid_name_and_changes_nothing():
    s = three_zones()
    with pytest.raises(InvalidNameError):
        s.add_group(rid(), "a/b", 3, CFG)
    assert s.consensus_groups() == {}


# ---------------------------------------------------------------------------------------
# add_group / remove_group


def test_add_group_returns_the_rendezvous_members_and_registers_the_group():
    s = three_zones()
    members = s.add_group(rid(), "orders", 3, CFG)
    assert members == desired_members(s.active_nodes(), "orders", 3)
    assert len({s.zone_of(m) for m in members}) == 3  # one per zone
    assert s.consensus_groups() == {"orders": 3}
    assert s.group_spec("orders") == GroupSpec(3, CFG)
    assert s.desired_members("orders") == members
    assert ("orders", members) in s.groups_for_leader_node(members[0])
    assert_led_cache_consistent(s)


def test_add_group_with_more_replicas_than_nodes_uses_every_node():
    s = three_zones()
    assert sorted(s.add_group(rid(), "all", 1000, CFG)) == ["n1", "n2", "n3", "n4"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        # raft_fleet checks already_added, then no_active_node, then cleanup_ongoing
        ("exists_and_no_nodes", AlreadyAddedError),
        ("no_nodes", NoActiveNodeError),
        ("removed_not_acked", CleanupOngoingError),
    ],
)
def test_add_group_errors(setup, expected):
    s = ClusterState()
    if setup == "exists_and_no_nodes":
        s.add_node(rid(), "n1", "z1")
        s.add_group(rid(), "g", 1, CFG)
        s.remove_node(rid(), "n1")
    elif setup == "removed_not_acked":
        s.add_node(rid(), "n1", "z1")
        s.add_group(rid(), "g", 1, CFG)
        s.remove_group(rid(), "g")
    with pytest.raises(expected) as info:
        s.add_group(rid(), "g", 3, CFG)
    assert info.value.group == "g"


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "3"])
def test_add_group_refuses_bad_n_replica(n):
    with pytest.raises(ValueError, match="n_replica"):
        three_zones().add_group(rid(), "g", n, CFG)


def test_add_group_refuses_a_config_that_is_not_a_raft_config():
    with pytest.raises(TypeError, match="RaftConfig"):
        three_zones().add_group(rid(), "g", 3, {"election_timeout": 1.0})


def test_remove_group_forgets_it_and_unknown_names_are_not_found():
    s = three_zones()
    members = s.add_group(rid(), "g", 3, CFG)
    assert s.remove_group(rid(), "g") is None
    assert s.consensus_groups() == {}
    assert s.groups_for_leader_node(members[0]) == []
    with pytest.raises(NotFoundError):
        s.desired_members("g")
    with pytest.raises(NotFoundError) as info:
        s.remove_group(rid(), "g")
    assert info.value.group == "g"
    with pytest.raises(NotFoundError):
        s.remove_group(rid(), "never-added")


# ---------------------------------------------------------------------------------------
# nodes


def test_add_node_is_a_no_op_when_repeated_and_moves_a_node_to_a_new_zone():
    s = ClusterState()
    s.add_node(rid(), "n1", "z1")
    s.add_node(rid(), "n1", "z1")
    assert s.active_nodes() == {"z1": ["n1"]}
    s.add_node(rid(), "n2", "z1")
    s.add_node(rid(), "n1", "z2")
    assert s.active_nodes() == {"z1": ["n2"], "z2": ["n1"]}
    assert s.zone_of("n1") == "z2"


def test_remove_node_drops_emptied_zones_and_unknown_nodes_are_a_no_op():
    s = three_zones()
    s.remove_node(rid(), "n2")
    assert s.active_nodes() == {"z1": ["n1", "n4"], "z3": ["n3"]}
    s.remove_node(rid(), "nope")
    assert s.zone_of("n2") is None


@pytest.mark.parametrize("bad", ["", None, 3])
def test_node_ids_and_zones_must_be_non_empty_strings(bad):
    s = ClusterState()
    with pytest.raises(ValueError, match="node_id"):
        s.add_node(rid(), bad, "z1")
    with pytest.raises(ValueError, match="zone"):
        s.add_node(rid(), "n1", bad)


def test_leader_cache_follows_node_changes():
    s = three_zones()
    for i in range(40):
        s.add_group(rid(), f"g{i}", 3, CFG)
    assert_led_cache_consistent(s)
    s.add_node(rid(), "n5", "z4")
    assert_led_cache_consistent(s)
    s.remove_node(rid(), "n1")
    assert_led_cache_consistent(s)
    s.remove_group(rid(), "g3")
    assert_led_cache_consistent(s)
    for node in ["n2", "n3", "n4", "n5"]:
        s.remove_node(rid(), node)
    assert s.active_nodes() == {}
    assert s.groups_for_leader_node("n2") == []


def test_node_view_bundles_what_a_node_needs():
    s = three_zones()
    members = s.add_group(rid(), "g", 3, CFG)
    s.add_group(rid(), "h", 3, CFG)
    s.remove_group(rid(), "h")
    view = s.node_view(members[0])
    assert view == NodeView(
        active_nodes=s.active_nodes(),
        groups_led=s.groups_for_leader_node(members[0]),
        removed_names=["h"],
        removed_index=1,
    )
    assert ("g", members) in view.groups_led


# ---------------------------------------------------------------------------------------
# idempotency


def test_a_retried_request_returns_the_first_result_without_applying_twice():
    s = ClusterState()
    s.add_node(rid(), "n1", "z1")
    first = s.add_group("r-add", "g", 3, CFG)
    s.add_node(rid(), "n2", "z2")  # the placement changes in between
    assert s.add_group("r-add", "g", 3, CFG) == first  # not AlreadyAddedError
    s.remove_group("r-rm", "g")
    assert s.remove_group("r-rm", "g") is None  # not NotFoundError
    assert s.consensus_groups() == {}
    assert s.removed_names_for_node("n1") == (["g"], 1)  # logged once


def test_an_error_is_remembered_as_the_answer():
    s = ClusterState()
    with pytest.raises(NoActiveNodeError):
        s.add_group("r1", "g", 3, CFG)
    s.add_node(rid(), "n1", "z1")
    # The first answer stands for this request id; a new attempt needs a new id.
    with pytest.raises(NoActiveNodeError):
        s.add_group("r1", "g", 3, CFG)
    assert s.add_group("r2", "g", 3, CFG) == ["n1"]


def test_reusing_a_request_id_for_another_command_is_refused():
    s = three_zones()
    s.add_group("r1", "g", 3, CFG)
    with pytest.raises(ValueError, match="already used"):
        s.add_group("r1", "other", 3, CFG)
    with pytest.raises(ValueError, match="already used"):
        s.remove_group("r1", "g")
    assert s.consensus_groups() == {"g": 3}


def test_request_id_must_be_given_and_hashable():
    s = three_zones()
    with pytest.raises(TypeError, match="None"):
        s.add_group(None, "g", 3, CFG)
    with pytest.raises(TypeError, match="hashable"):
        s.add_group(["r"], "g", 3, CFG)


def test_returned_lists_are_copies():
    s = three_zones()
    members = s.add_group("r1", "g", 3, CFG)
    members.append("junk")
    assert "junk" not in s.add_group("r1", "g", 3, CFG)
    s.active_nodes()["z1"].append("junk")
    assert "junk" not in s.active_nodes()["z1"]


def test_the_dedup_cache_is_a_bounded_fifo():
    s = ClusterState(dedup_capacity=2)
    s.add_node("r1", "n1", "z1")
    s.add_group("r2", "g", 1, CFG)
    s.add_node("r3", "n2", "z1")  # evicts r1
    assert not s.has_result("r1")
    assert s.has_result("r2") and s.has_result("r3")
    s.add_node("r4", "n3", "z1")  # evicts r2: a late retry of r2 is applied again
    with pytest.raises(AlreadyAddedError):
        s.add_group("r2", "g", 1, CFG)


def test_set_fleet_config():
    s = ClusterState()
    assert s.fleet_config() == FleetConfig()
    cfg = FleetConfig(balancing_interval=1.0)
    s.set_fleet_config(rid(), cfg)
    assert s.fleet_config() == cfg
    with pytest.raises(TypeError, match="FleetConfig"):
        s.set_fleet_config(rid(), {"balancing_interval": 1.0})


# ---------------------------------------------------------------------------------------
# removed groups and cleanup_ongoing (reference §3.8)


def ack_all(s: ClusterState, now: float) -> None:
    for node in sorted({n for ns in s.active_nodes().values() for n in ns}):
        _, index = s.removed_names_for_node(node)
        s.stopped_extra_members(rid(), node, index, now)


def test_first_removal_is_ongoing_until_every_node_acked_it():
    # raft_fleet never reports its very first removal as ongoing (min_index starts at 1);
    # we do not copy that quirk: the name is blocked until every active node stopped its members.
    s = ClusterState()
    s.add_node(rid(), "n1", "z1")
    s.add_node(rid(), "n2", "z2")
    s.add_group(rid(), "g", 2, CFG)
    s.remove_group(rid(), "g")
    assert s.cleanup_ongoing("g")
    assert s.removed_names_for_node("n1") == (["g"], 1)
    assert s.removed_names_for_node("n2") == (["g"], 1)

    s.stopped_extra_members(rid(), "n1", 1, now=10.0)
    assert s.cleanup_ongoing("g")
    assert s.removed_names_for_node("n1") == ([], None)  # n1 is done
    with pytest.raises(CleanupOngoingError):
        s.add_group(rid(), "g", 2, CFG)

    s.stopped_extra_members(rid(), "n2", 1, now=11.0)
    assert not s.cleanup_ongoing("g")
    assert s.removed_names_for_node("n2") == ([], None)
    assert s.add_group(rid(), "g", 2, CFG)


def test_a_touch_without_index_acks_nothing():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.remove_group(rid(), "g")
    for node in ["n1", "n2", "n3", "n4"]:
        s.stopped_extra_members(rid(), node, None, now=1.0)
    assert s.cleanup_ongoing("g")


def test_later_removals_queue_behind_and_acks_cover_everything_up_to_the_index():
    s = three_zones()
    for name in ["a", "b", "c"]:
        s.add_group(rid(), name, 3, CFG)
    s.remove_group(rid(), "a")
    ack_all(s, now=1.0)
    assert not s.cleanup_ongoing("a")
    s.remove_group(rid(), "b")
    s.remove_group(rid(), "c")
    assert s.removed_names_for_node("n1") == (["b", "c"], 3)
    s.stopped_extra_members(rid(), "n1", 3, now=2.0)
    assert s.removed_names_for_node("n1") == ([], None)
    assert s.removed_names_for_node("n2") == (["b", "c"], 3)
    ack_all(s, now=3.0)
    assert not s.cleanup_ongoing("b") and not s.cleanup_ongoing("c")


def test_an_ack_beyond_the_log_is_clamped_and_acks_never_go_backwards():
    s = three_zones()
    s.add_group(rid(), "a", 3, CFG)
    s.add_group(rid(), "b", 3, CFG)
    s.remove_group(rid(), "a")
    s.stopped_extra_members(rid(), "n1", 99, now=1.0)  # clamped to 1
    s.remove_group(rid(), "b")
    assert s.removed_names_for_node("n1") == (["b"], 2)
    s.stopped_extra_members(rid(), "n1", 0, now=2.0)  # stale report: ignored
    assert s.removed_names_for_node("n1") == (["b"], 2)


def test_a_node_added_while_cleanup_is_pending_must_ack_too():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.remove_group(rid(), "g")
    s.add_node(rid(), "n9", "z2")
    ack_all_but = ["n1", "n2", "n3", "n4"]
    for node in ack_all_but:
        s.stopped_extra_members(rid(), node, 1, now=1.0)
    assert s.cleanup_ongoing("g")
    assert s.removed_names_for_node("n9") == (["g"], 1)
    s.stopped_extra_members(rid(), "n9", 1, now=1.0)
    assert not s.cleanup_ongoing("g")


def test_an_inactive_node_blocks_cleanup_until_forgotten_after_wait():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.remove_group(rid(), "g")
    s.remove_node(rid(), "n4")  # deactivated: it may still run members, it must still ack
    for node in ["n1", "n2", "n3"]:
        s.stopped_extra_members(rid(), node, 1, now=100.0)
    assert s.cleanup_ongoing("g")
    # n4 was last seen at t=100 (the first update after registration); after `wait` it is
    # forgotten and stops blocking.
    s.stopped_extra_members(rid(), "n1", None, now=100.0 + FORGET_INACTIVE_NODE_AFTER)
    assert s.cleanup_ongoing("g")
    s.stopped_extra_members(rid(), "n1", None, now=100.0 + FORGET_INACTIVE_NODE_AFTER + 1)
    assert not s.cleanup_ongoing("g")


def test_a_dead_node_stops_blocking_cleanup_at_once():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.remove_group(rid(), "g")
    for node in ["n1", "n2", "n3"]:
        s.stopped_extra_members(rid(), node, 1, now=1.0)
    assert s.cleanup_ongoing("g")
    s.remove_node(rid(), "n4", dead=True)
    assert not s.cleanup_ongoing("g")


def test_a_deactivated_node_can_still_ack():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.remove_group(rid(), "g")
    s.remove_node(rid(), "n4")
    for node in ["n1", "n2", "n3", "n4"]:
        s.stopped_extra_members(rid(), node, 1, now=1.0)
    assert not s.cleanup_ongoing("g")


def test_stopped_extra_members_validates_its_input():
    s = three_zones()
    with pytest.raises(ValueError, match="index"):
        s.stopped_extra_members(rid(), "n1", "1", now=1.0)
    with pytest.raises(ValueError, match="now"):
        s.stopped_extra_members(rid(), "n1", None, now="later")


# ---------------------------------------------------------------------------------------
# pickling (the ClusterActor checkpoints the pickled state)


def test_pickle_round_trip_keeps_state_and_dedup_cache():
    s = three_zones()
    members = s.add_group("r-add", "g", 3, CFG)
    s.add_group(rid(), "h", 2, RaftConfig(election_timeout=2.0))
    s.remove_group(rid(), "h")
    s.stopped_extra_members(rid(), "n1", 1, now=5.0)
    s.set_fleet_config(rid(), FleetConfig(balancing_interval=2.0))

    t = pickle.loads(pickle.dumps(s))
    assert t.active_nodes() == s.active_nodes()
    assert t.consensus_groups() == s.consensus_groups()
    assert t.group_spec("g") == s.group_spec("g")
    assert t.fleet_config() == s.fleet_config()
    for node in ["n1", "n2", "n3", "n4"]:
        assert t.node_view(node) == s.node_view(node)
    assert_led_cache_consistent(t)
    assert t.add_group("r-add", "g", 3, CFG) == members  # the retry is still recognised


def test_unpickling_an_unknown_format_fails_loudly():
    s = ClusterState()
    state = s.__getstate__()
    state["_format"] = 999
    t = ClusterState.__new__(ClusterState)
    with pytest.raises(ValueError, match="format 999"):
        t.__setstate__(state)


def test_a_config_whose_data_class_exists_only_by_value_survives_pickling():
    # A Data class defined in a notebook reaches the ClusterActor by value (cloudpickle):
    # plain pickle could not name it, so the state cloudpickles its configs.
    class Local:
        def command(self, arg):
            return arg

        def query(self, arg):
            return arg

    s = three_zones()
    s.add_group(rid(), "g", 3, RaftConfig(data=Local))
    t = pickle.loads(pickle.dumps(s))
    restored = t.group_spec("g").config.data
    assert restored.__name__ == "Local" and restored().command(5) == 5


def test_equal_configs_are_stored_once():
    s = three_zones()
    for i in range(50):
        s.add_group(rid(), f"g{i}", 3, RaftConfig(election_timeout=2.0))
    configs = {id(s.group_spec(f"g{i}").config) for i in range(50)}
    assert len(configs) == 1
    t = pickle.loads(pickle.dumps(s))
    assert len({id(t.group_spec(f"g{i}").config) for i in range(50)}) == 1


def test_the_state_machine_does_not_import_ray():
    import subprocess
    import sys

    code = (
        "import sys, raftfleet_ray.runtime.cluster_state, raftfleet_ray.placement; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------------------
# lost groups, recorded configurations, removed names (issue 14: only remove_group removes)


CONF = (("m1", "m2", "m3"), ("m4",))


def test_a_lost_mark_keeps_the_group_says_why_and_since_when_and_only_repair_or_removal_ends_it():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.mark_lost(rid(), {"g": ("every voter's node is dead", 41), "unknown": ("x", 0)}, now=100.0)
    assert s.consensus_groups() == {"g": 3}  # kept: lost is not removed
    mark = s.lost_groups()["g"]
    assert (mark.reason, mark.since, mark.highest_commit) == ("every voter's node is dead", 100.0, 41)
    assert "unknown" not in s.lost_groups()  # only registered groups are marked
    assert s.reconcile_view().lost == {"g": mark}
    # Marked again later: since stays (how long it has been lost), the reason is the latest.
    s.mark_lost(rid(), {"g": ("again", 30)}, now=200.0)
    assert s.lost_groups()["g"] == LostMark("again", 100.0, 41)
    s.mark_lost(rid(), {"g": ("every voter's node is dead", 41)}, now=300.0)
    with pytest.raises(GroupLostError) as info:
        s.check_group("g", "command")
    assert info.value.group == "g" and info.value.since == 100.0 and "every voter" in str(info.value)
    assert info.value.outcome_unknown and not info.value.retryable
    with pytest.raises(NotFoundError):
        s.check_group("nope", "command")
    s.clear_lost(rid(), ["g"])
    assert s.lost_groups() == {} and s.check_group("g") is None
    s.mark_lost(rid(), {"g": ("lost again", 7)}, now=300.0)
    s.remove_group(rid(), "g")
    assert s.lost_groups() == {}


def test_recorded_configurations_are_kept_per_group_and_dropped_with_it():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    s.record_configs(rid(), {"g": CONF, "unknown": CONF})
    assert s.configs_of(["g", "unknown", "h"]) == {"g": CONF}
    s.record_configs(rid(), {"g": (["m1", "m2"], [])})  # lists from the wire become tuples
    assert s.configs_of(["g"]) == {"g": (("m1", "m2"), ())}
    with pytest.raises(ValueError):
        s.record_configs(rid(), {"g": ("m1",)})
    # Commit indexes seen: the highest is kept, and a lost mark is at least that.
    s.record_configs(rid(), {}, {"g": 50, "unknown": 3})
    s.record_configs(rid(), {}, {"g": 20})
    assert s.commits_of(["g", "unknown"]) == {"g": 50}
    s.mark_lost(rid(), {"g": ("gone", 7)}, now=1.0)
    assert s.lost_groups()["g"].highest_commit == 50
    s.remove_group(rid(), "g")
    assert s.configs_of(["g"]) == {} and s.commits_of(["g"]) == {}


def test_a_group_found_in_files_is_registered_as_created_unless_it_was_removed():
    s = three_zones()
    assert s.register_found_group(rid(), "found", 3, CFG, CONF)
    assert s.is_created("found") and s.configs_of(["found"]) == {"found": CONF}
    assert not s.register_found_group(rid(), "found", 3, CFG, CONF)  # known: nothing changes
    s.add_group(rid(), "gone", 3, CFG)
    s.remove_group(rid(), "gone")
    for node in ["n1", "n2", "n3", "n4"]:
        s.stopped_extra_members(rid(), node, 1, now=1.0)
    assert not s.cleanup_ongoing("gone")
    # A node back with files of 'gone' (it died before the removal reached it): not revived.
    assert not s.register_found_group(rid(), "gone", 3, CFG, CONF)
    assert "gone" not in s.consensus_groups()
    # Its user adding it again is another matter: the name is theirs again.
    s.add_group(rid(), "gone", 3, CFG)
    s.remove_group(rid(), "gone")
    t = pickle.loads(pickle.dumps(s))  # the removed names survive a restart of the actor
    assert not t.register_found_group(rid(), "gone", 3, CFG, CONF)


def test_removed_names_are_bounded(monkeypatch):
    monkeypatch.setattr(cluster_state, "REMEMBERED_REMOVALS", 3)
    s = three_zones()
    for i in range(5):
        s.add_group(rid(), f"g{i}", 1, CFG)
        s.remove_group(rid(), f"g{i}")
    assert list(s._removed_names) == ["g2", "g3", "g4"]


def test_a_format_2_checkpoint_is_read_with_no_lost_group():
    s = three_zones()
    s.add_group(rid(), "g", 3, CFG)
    state = s.__getstate__()
    for key in ("_configs", "_lost", "_removed_names"):
        del state[key]
    state["_format"] = 2
    t = ClusterState.__new__(ClusterState)
    t.__setstate__(state)
    assert t.consensus_groups() == {"g": 3} and t.lost_groups() == {} and t.configs_of(["g"]) == {}
    t.mark_lost(rid(), {"g": ("r", 1)}, now=1.0)
    assert pickle.loads(pickle.dumps(t)).lost_groups()["g"].reason == "r"
