"""Zones declared by Ray node labels as well as by ``zone:<name>`` resources.

A small cluster of its own: a head (no zone), a node declaring only the resource
``zone:res`` (and a ``raftfleet.io/zone`` label that the resource outranks), and a node
declaring only labels (``raftfleet.io/zone=lab``, outranking ``ray.io/availability-zone``).
Members must run on the label-only node although it has no zone resource."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import ray
from ray.cluster_utils import Cluster

import raftfleet_ray as fleet
from raftfleet_ray.api import RAY_ZONE_LABEL, ZONE_LABEL, declared_zones, group_status, node_zone

pytestmark = pytest.mark.timeout(120)

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024}
HEAD_SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, str]]:
    """``{"resource": node_id, "label": node_id}``, on a cluster shut down at the end."""
    cluster = Cluster(initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False, "_system_config": HEAD_SYSTEM_CONFIG})
    try:
        by_resource = cluster.add_node(**NODE_ARGS, resources={"zone:res": 1000}, labels={ZONE_LABEL: "outranked"})
        by_label = cluster.add_node(**NODE_ARGS, labels={ZONE_LABEL: "lab", RAY_ZONE_LABEL: "az-outranked"})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="raftfleet", log_to_driver=False)
        fleet.configure(fleet.FleetConfig(balancing_interval=1.0, node_purge_reconnect_interval=1.0))
        yield {"resource": by_resource.node_id, "label": by_label.node_id}
        fleet.shutdown_fleet()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_precedence_without_ray() -> None:
    node = {"Resources": {"CPU": 1, "zone:a": 1}, "Labels": {ZONE_LABEL: "b", RAY_ZONE_LABEL: "c"}}
    assert declared_zones(node) == {"a": "resource", "b": ZONE_LABEL, "c": RAY_ZONE_LABEL}
    assert node_zone(node) == ("a", "resource")
    assert node_zone({"Resources": {}, "Labels": {ZONE_LABEL: "b", RAY_ZONE_LABEL: "c"}}) == ("b", ZONE_LABEL)
    assert node_zone({"Resources": {}, "Labels": {RAY_ZONE_LABEL: "c"}}) == ("c", RAY_ZONE_LABEL)
    assert node_zone({"Resources": {"CPU": 1}, "Labels": {RAY_ZONE_LABEL: ""}}) is None
    assert node_zone({"Resources": {}}) is None  # a Ray without labels in ray.nodes()


def test_ray_nodes_carry_the_labels(nodes) -> None:
    labels = {n["NodeID"]: n.get("Labels") or {} for n in ray.nodes() if n["Alive"]}
    assert labels[nodes["label"]][ZONE_LABEL] == "lab"
    assert labels[nodes["label"]][RAY_ZONE_LABEL] == "az-outranked"


def test_describe_nodes_shows_declared_zone_and_source(nodes) -> None:
    described = fleet.describe_nodes()
    assert (described[nodes["resource"]]["declared_zone"], described[nodes["resource"]]["zone_source"]) == (
        "res", "resource")
    assert (described[nodes["label"]]["declared_zone"], described[nodes["label"]]["zone_source"]) == ("lab", ZONE_LABEL)
    assert described[nodes["label"]]["zones"] == []  # the zone:<name> resources only, as before
    (head,) = [d for d in described.values() if d["head"]]
    assert head["declared_zone"] is None and head["zone_source"] is None


def test_activate_all_uses_precedence_and_logs_the_source(nodes, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="raftfleet_ray.api"):
        activated = fleet.activate_all()
    assert activated == {nodes["resource"]: "res", nodes["label"]: "lab"}
    text = caplog.text
    assert f"{nodes['resource'][:12]} in zone res (declared by resource)" in text
    assert f"{nodes['label'][:12]} in zone lab (declared by {ZONE_LABEL})" in text
    assert fleet.active_nodes() == {"res": [nodes["resource"]], "lab": [nodes["label"]]}
    assert fleet.describe_nodes()[nodes["label"]]["state"] == "active"


def test_activate_refuses_an_undeclared_zone(nodes) -> None:
    with pytest.raises(ValueError, match="nor a zone label 'elsewhere'"):
        fleet.activate("elsewhere", nodes["label"])


def test_members_run_on_the_label_only_node(nodes) -> None:
    fleet.add_consensus_group("labelled", 2, fleet.RaftConfig(data=fleet.Counter), await_timeout=30)
    from raftfleet_ray.demo import wait_until

    wait_until("2 voters", lambda: fleet.group_ready("labelled", 2), 60)
    on = {s["node_id"] for s in group_status("labelled").values() if s}
    assert on == {nodes["resource"], nodes["label"]}
    assert fleet.command("labelled", "inc") == 0
    assert fleet.query("labelled", None) == 1
    fleet.remove_consensus_group("labelled")
