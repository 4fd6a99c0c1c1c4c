"""RaftConfig / FleetConfig validation and the seconds -> ticks conversion."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.data import Counter, KeyValue


def test_defaults_are_raft_fleets():
    c = RaftConfig()
    assert (c.data, c.heartbeat_timeout, c.election_timeout) == (Counter, 0.2, 1.0)
    assert c.election_timeout_clock_drift_margin is None
    assert c.max_retained_command_results == 100
    f = FleetConfig()
    assert (f.balancing_interval, f.follower_addition_delay) == (60.0, 0.2)
    assert (f.node_purge_failure_time_window, f.node_purge_reconnect_interval) == (600.0, 60.0)
    assert f.leader_pid_cache_refresh_interval == 300.0
    assert f.persistence_dir_parent is None


@pytest.mark.parametrize(
    ("kwargs", "election", "heartbeat", "lease"),
    [
        ({}, 20, 4, 0),  # no lease by default
        ({"election_timeout_clock_drift_margin": 0.5}, 20, 4, 10),  # raft_fleet's Cluster config
        ({"election_timeout_clock_drift_margin": 1.0}, 20, 4, 0),  # margin = T: no lease
        ({"election_timeout_clock_drift_margin": 5.0}, 20, 4, 0),
        ({"election_timeout_clock_drift_margin": 0.0}, 20, 4, 19),  # clamped below T
        ({"election_timeout": 0.1, "heartbeat_timeout": 0.05}, 2, 1, 0),
        ({"election_timeout": 0.06, "heartbeat_timeout": 0.05}, 2, 1, 0),  # clamped up to 2
        ({"election_timeout": 0.3, "heartbeat_timeout": 0.29, "tick_interval": 0.1}, 3, 2, 0),
        ({"election_timeout": 0.5, "heartbeat_timeout": 0.01, "tick_interval": 0.01}, 50, 1, 0),
    ],
)
def test_to_core_converts_seconds_to_ticks(kwargs, election, heartbeat, lease):
    core = RaftConfig(**kwargs).to_core()
    assert (core.election_ticks, core.heartbeat_ticks, core.lease_ticks) == (
        election,
        heartbeat,
        lease,
    )


def test_to_core_carries_the_counts():
    core = RaftConfig(max_retained_command_results=7, snapshot_interval=9).to_core()
    assert (core.max_retained_command_results, core.snapshot_interval) == (7, 9)
    assert core.snapshot_log_factor == 0.0  # the size trigger is off unless asked for
    assert RaftConfig(snapshot_log_factor=10).to_core().snapshot_log_factor == 10.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": Counter()}, "data"),
        ({"data": "Counter"}, "data"),
        ({"data": int}, "command"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout"),
        ({"election_timeout": -1}, "election_timeout"),
        ({"election_timeout": float("nan")}, "election_timeout"),
        ({"tick_interval": True}, "tick_interval"),
        ({"heartbeat_timeout": 1.0, "election_timeout": 1.0}, "heartbeat_timeout"),
        ({"tick_interval": 0.3}, "tick_interval"),
        ({"election_timeout_clock_drift_margin": -0.1}, "election_timeout_clock_drift_margin"),
        ({"max_retained_command_results": 0}, "max_retained_command_results"),
        ({"snapshot_interval": 1.5}, "snapshot_interval"),
        ({"snapshot_log_factor": -1.0}, "snapshot_log_factor"),
        ({"snapshot_log_factor": float("nan")}, "snapshot_log_factor"),
        ({"snapshot_log_factor": True}, "snapshot_log_factor"),
        ({"max_command_bytes": 0}, "max_command_bytes"),
    ],
)
def test_raft_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RaftConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"balancing_interval": 0}, "balancing_interval"),
        ({"follower_addition_delay": -0.1}, "follower_addition_delay"),
        ({"node_purge_failure_time_window": "1"}, "node_purge_failure_time_window"),
        ({"node_purge_reconnect_interval": float("inf")}, "node_purge_reconnect_interval"),
        ({"leader_pid_cache_refresh_interval": -5}, "leader_pid_cache_refresh_interval"),
        ({"persistence_dir_parent": ""}, "persistence_dir_parent"),
        ({"persistence_dir_parent": 3}, "persistence_dir_parent"),
    ],
)
def test_fleet_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FleetConfig(**kwargs)


def test_fleet_config_accepts_a_path_and_keeps_a_str(tmp_path: Path):
    assert FleetConfig(persistence_dir_parent=tmp_path).persistence_dir_parent == str(tmp_path)
    assert FleetConfig(follower_addition_delay=0).follower_addition_delay == 0


def test_configs_are_frozen_hashable_and_pickle():
    c = RaftConfig(data=KeyValue, election_timeout_clock_drift_margin=0.5)
    assert pickle.loads(pickle.dumps(c)) == c
    assert hash(c) == hash(RaftConfig(data=KeyValue, election_timeout_clock_drift_margin=0.5))
    with pytest.raises(AttributeError):
        c.election_timeout = 2.0  # type: ignore[misc]
    f = FleetConfig(balancing_interval=1.0)
    assert pickle.loads(pickle.dumps(f)) == f
