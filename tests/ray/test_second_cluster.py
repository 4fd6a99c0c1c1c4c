"""A driver that meets a second Ray cluster (issue 14, finding 7).

A notebook restarting its cluster: ``ray.shutdown()``, a new local cluster, ``ray.init()``,
in the same process, without ``shutdown_fleet()``. Before, the second round's
``add_consensus_group`` timed out ("could not wake the reconciler: Can't find actor ..."): the
balancer handle, the client (leader cache, event loop) and the member directory of the first
cluster were still cached. Now each is kept per cluster connection (``runtime/per_cluster.py``).

This module starts its own clusters (``ray.init(address="local")``, one small node declaring a
zone, members on it): it uses none of conftest's fixtures."""

from __future__ import annotations

import logging

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.runtime.per_cluster import cluster_key

pytestmark = pytest.mark.timeout(240)

OBJECT_STORE_BYTES = 100 * 1024 * 1024


def _one_round(group: str) -> tuple[str, str]:
    """A new local cluster: activate it, create ``group`` (one replica, on the only node),
    use it; shut the cluster down. Returns the cluster's key."""
    ray.init(address="local", num_cpus=1, resources={"zone:z1": 1000}, include_dashboard=False,
             object_store_memory=OBJECT_STORE_BYTES, namespace="raftfleet", log_to_driver=False)
    try:
        key = cluster_key()
        assert key is not None
        fleet.configure(fleet.FleetConfig(balancing_interval=1.0))
        assert list(fleet.activate_all().values()) == ["z1"]
        fleet.add_consensus_group(group, 1, fleet.RaftConfig(data=fleet.Counter))  # the default 5 s
        assert [fleet.command(group, "inc", timeout=5.0) for _ in range(3)] == [0, 1, 2]
        assert fleet.query(group, None, timeout=5.0) == 3
        assert fleet.consensus_groups() == {group: 1}
        # The reconciler of this cluster answers (a stale handle named one of the last cluster).
        assert fleet.explain_placement(group)["registered"] is True
        return key  # type: ignore[return-value]
    finally:
        ray.shutdown()  # no shutdown_fleet(): the cluster goes, as when a notebook restarts it


def test_a_driver_creates_and_uses_groups_on_a_second_cluster(caplog: pytest.LogCaptureFixture) -> None:
    if ray.is_initialized():
        ray.shutdown()
    caplog.set_level(logging.INFO, logger="raftfleet_ray")
    first = _one_round("counter")
    # The same name on the new cluster: nothing of the first cluster's group may be used
    # (its cached leader handle names an actor of a cluster that is gone).
    second = _one_round("counter")
    assert first[0] != second[0]
    # Before: "could not wake the reconciler: Can't find actor ..." and "add_consensus_group
    # counter: waiting on the reconciler failed (...); polling", then a timeout.
    stale = [r.getMessage() for r in caplog.records
             if "could not wake the reconciler" in r.getMessage() or "waiting on the reconciler failed" in r.getMessage()]
    assert stale == [], stale
