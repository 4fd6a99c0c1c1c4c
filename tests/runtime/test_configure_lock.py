"""``configure()`` once the fleet runs (``ClusterState.configure``): refused with
``FleetConfigLockedError`` naming what would change, never half-applied; the configuration in
force is accepted as a no-op; before the first node, or once the fleet is empty again, it
applies. The check and the change are one command of the metadata state machine, so a
concurrent ``activate`` cannot slip between them."""

from __future__ import annotations

import pickle
import uuid

import pytest

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.errors import FleetConfigLockedError, RaftFleetError
from raftfleet_ray.runtime.cluster_actor import ClusterActor, MemoryStore
from raftfleet_ray.runtime.cluster_state import ClusterState


def rid() -> str:
    return uuid.uuid4().hex


def test_before_the_first_activate_configure_applies():
    s = ClusterState()
    s.configure(rid(), FleetConfig(balancing_interval=1.0))
    s.configure(rid(), FleetConfig(balancing_interval=2.0))  # still nothing runs: replaced
    assert s.fleet_config() == FleetConfig(balancing_interval=2.0)


@pytest.mark.parametrize("setup", ["active", "draining", "group"])
def test_a_running_fleet_refuses_a_new_configuration(setup):
    s = ClusterState()
    s.configure(rid(), FleetConfig(balancing_interval=1.0))
    s.add_node(rid(), "n1", "z1")
    if setup == "draining":
        s.deactivate_node(rid(), "n1")
    if setup == "group":
        s.add_group(rid(), "g", 1, RaftConfig())
        s.deactivate_node(rid(), "n1")
        s.node_drained(rid(), "n1")  # no node left, but a group is registered
    with pytest.raises(FleetConfigLockedError) as err:
        s.configure(rid(), FleetConfig(balancing_interval=1.0, members_per_host=1000))
    msg = str(err.value)
    assert "would change members_per_host (1 -> 1000)." in msg
    assert "before the first activate()" in msg and "shutdown_fleet()" in msg
    assert err.value.changed == ("members_per_host (1 -> 1000)",)
    assert s.fleet_config() == FleetConfig(balancing_interval=1.0)  # nothing changed
    s.configure(rid(), FleetConfig(balancing_interval=1.0))  # the one in force: a no-op


def test_an_emptied_fleet_can_be_configured_again():
    s = ClusterState()
    s.add_node(rid(), "n1", "z1")
    s.remove_node(rid(), "n1", dead=True)
    s.configure(rid(), FleetConfig(members_per_host=8))
    assert s.fleet_config().members_per_host == 8


def test_the_refusal_is_remembered_under_its_request_id_and_pickles():
    s = ClusterState()
    s.add_node(rid(), "n1", "z1")
    request = rid()
    with pytest.raises(FleetConfigLockedError):
        s.configure(request, FleetConfig(balancing_interval=3.0))
    s.remove_node(rid(), "n1", dead=True)
    with pytest.raises(FleetConfigLockedError):  # a retry gets the first answer
        s.configure(request, FleetConfig(balancing_interval=3.0))
    err = pickle.loads(pickle.dumps(FleetConfigLockedError(changed=("x (1 -> 2)",), active=1, draining=0, groups=0)))
    assert isinstance(err, RaftFleetError) and err.changed == ("x (1 -> 2)",) and "x (1 -> 2)" in str(err)


def test_the_cluster_actor_checkpoints_configure_and_set_fleet_config_stays_unconditional():
    store = MemoryStore()
    a = ClusterActor("c", store=store)
    a.configure(rid(), FleetConfig(balancing_interval=2.0))
    a.add_node(rid(), "n1", "z1")
    with pytest.raises(FleetConfigLockedError):
        a.configure(rid(), FleetConfig(balancing_interval=5.0))
    b = ClusterActor("c", store=store)  # restarted from the checkpoint
    assert b.fleet_config().balancing_interval == 2.0
    b.set_fleet_config(rid(), FleetConfig(balancing_interval=5.0))  # the internal tool: no check
    assert b.fleet_config().balancing_interval == 5.0
    with pytest.raises(TypeError, match="FleetConfig"):
        b.configure(rid(), {"balancing_interval": 1.0})
