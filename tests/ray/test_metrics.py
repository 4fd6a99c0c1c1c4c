"""The fleet's metrics read back where Ray exports them: each node's Prometheus endpoint
(``ray.nodes()[i]["MetricsExportPort"]``, served by the node's metrics agent, which comes with
``ray[default]``). Operations by group, kind and outcome, their latency histogram, leader
changes, members and leaders per node, the leader's log length, and the reconciler's actions.

Its own cluster: Ray reports metrics every 10 s by default; here every 0.5 s."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray.cluster_utils import Cluster

import raftfleet_ray as fleet
from raftfleet_ray.runtime.metrics import GAUGE_INTERVAL

pytestmark = pytest.mark.timeout(180)

HEAD_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
    "metrics_report_interval_ms": 500,
}
NODE_ARGS = {"num_cpus": 1, "object_store_memory": 100 << 20}


@pytest.fixture(scope="module")
def metered() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={
        **NODE_ARGS, "include_dashboard": False, "_system_config": HEAD_SYSTEM_CONFIG})
    try:
        for zone in ("z1", "z2", "z3"):
            cluster.add_node(**NODE_ARGS, resources={f"zone:{zone}": 1000})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="raftfleet", log_to_driver=False)
        fleet.configure(fleet.FleetConfig(balancing_interval=1.0))
        fleet.activate_all()
        yield cluster
    finally:
        try:
            fleet.shutdown_fleet()
        finally:
            ray.shutdown()
            cluster.shutdown()


def scrape() -> list[tuple[str, dict[str, str], float]]:
    """Every ``raftfleet`` sample exported by every live node: (name, labels, value)."""
    out = []
    for n in ray.nodes():
        if not n["Alive"] or not n.get("MetricsExportPort"):
            continue
        url = f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if "raftfleet_" in s.name:
                    out.append((s.name, dict(s.labels), float(s.value)))
    return out


def total(samples: list, name: str, **labels: str) -> float:
    """The sum of the samples called ``ray_<name>`` whose labels include ``labels``."""
    return sum(v for n, lab, v in samples
               if n == f"ray_{name}" and all(lab.get(k) == want for k, want in labels.items()))


def test_operations_elections_gauges_and_reconciler_actions_are_exported(metered, wait_for):
    fleet.add_consensus_group("metered", 3, fleet.RaftConfig(data=fleet.Counter), await_timeout=30.0)
    wait_for(lambda: fleet.group_ready("metered", 3), 60, "metered with 3 voters")
    for _ in range(20):
        fleet.command("metered", "inc", timeout=5.0)
    for _ in range(5):
        assert fleet.query("metered", None, timeout=5.0) >= 0
    with pytest.raises(ValueError, match="unknown command"):
        fleet.command("metered", "no such command", timeout=5.0)

    def exported() -> list | None:
        s = scrape()
        ok = (total(s, "raftfleet_operations_total", group="metered", kind="command", outcome="ok") == 20
              and total(s, "raftfleet_operations_total", group="metered", kind="query", outcome="ok") == 5
              and total(s, "raftfleet_operations_total", group="metered", kind="command", outcome="raised") == 1
              and total(s, "raftfleet_members") == 3
              and total(s, "raftfleet_leaders") == 1
              # the no-op, the member changes and the 21 commands
              and total(s, "raftfleet_log_entries", group="metered") >= 21)
        return s if ok else None

    # The gauges are set every GAUGE_INTERVAL seconds and reported every 0.5 s.
    s = wait_for(exported, 6 * GAUGE_INTERVAL, "the fleet's metrics on the nodes' endpoints", interval=0.5)
    assert total(s, "raftfleet_operation_latency_seconds_count", kind="command") == 20
    assert total(s, "raftfleet_operation_latency_seconds_count", kind="query") == 5
    assert 0 < total(s, "raftfleet_operation_latency_seconds_sum", kind="command") < 20 * 5.0
    assert total(s, "raftfleet_leader_changes_total", group="metered") >= 1
    assert total(s, "raftfleet_apply_lag_entries", group="metered") >= 0
    # Members per node: one on each zone node, each tagged with its node and zone.
    per_zone = {lab["zone"]: v for n, lab, v in s if n == "ray_raftfleet_members" and v}
    assert per_zone == {"z1": 1, "z2": 1, "z3": 1}, per_zone
    # The reconciler created the group born whole (one Create, a voter in each zone): no
    # learner added afterwards, and no failures.
    assert total(s, "raftfleet_reconcile_actions_total", action="Create", outcome="ok") >= 1
    assert total(s, "raftfleet_reconcile_actions_total", action="AddLearner") == 0
    assert total(s, "raftfleet_reconcile_actions_total", outcome="failed") == 0
    assert total(s, "raftfleet_reconcile_rounds_total") >= 1
