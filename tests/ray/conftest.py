"""Real Ray clusters on one machine for the tests in tests/ray.

One ``ray.cluster_utils.Cluster`` per test module (starting one takes about 7 s): a head
node with no zone resource, so no member is ever placed there (``Cluster.remove_node``
refuses the node the driver is connected to, so members must be killable), and three worker
nodes declaring ``zone:z1``, ``zone:z2``, ``zone:z3``. The head's health-check settings make
a killed node be seen dead in about 2 s instead of about 30 s.

Helpers are fixtures (``wait_for``, ``add_zone_node``, ``kill_node``) rather than imports:
``tests/*/conftest.py`` files are not in packages, so ``from conftest import ...`` would be
ambiguous between directories.

This machine has 2 cores: nodes are small (1 CPU, 100 MiB object store) and only one Ray
cluster may run at a time. Every test carries a ``pytest.mark.timeout``.

The suites that exercise members run twice per module, in the default mode (one actor per
member) and in packed mode (``members_per_host=PACKED``): the ``members_per_host`` fixture,
which their ``active`` fixtures pass to ``FleetConfig``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import ray
from ray.cluster_utils import Cluster

ZONES = ("z1", "z2", "z3")
ZONE_CAPACITY = 1000
"""Units of ``zone:<name>`` per node; member actors ask for a sliver of it."""
NODE_CPUS = 1
OBJECT_STORE_BYTES = 100 * 1024 * 1024

HEAD_SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}

T = TypeVar("T")

PACKED = 64
"""members_per_host in the packed runs: several groups share each host in every test."""


def wait_for(
    predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    An exception raised by ``predicate`` counts as "not yet" (e.g. an actor still
    restarting). On timeout, fail the test with ``what`` and the last exception or value.
    The only place where the tests sleep.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - "not yet", reported if it never succeeds
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def add_zone_node(cluster: Cluster, zone: str | None, num_cpus: int = NODE_CPUS) -> Any:
    """Start a worker node declaring ``zone:<zone>`` (none if ``zone`` is None) and wait until
    Ray sees it. Returns the ``ray._private.node.Node``; its id is ``node.node_id``."""
    resources = {f"zone:{zone}": ZONE_CAPACITY} if zone is not None else {}
    node = cluster.add_node(
        num_cpus=num_cpus, resources=resources, object_store_memory=OBJECT_STORE_BYTES
    )
    cluster.wait_for_nodes()
    return node


def kill_node(cluster: Cluster, node: Any) -> None:
    """Kill a worker node without a graceful drain (like a machine failure). Ray marks it dead
    within about 2 s (head health-check settings above); calls to its actors then fail."""
    cluster.remove_node(node, allow_graceful=False)


def actor_is_dead(handle: Any) -> bool:
    """True once Ray says the actor behind ``handle`` is dead (``ray.kill`` returns before its
    process is gone, and over a direct connection it may still answer meanwhile)."""
    try:
        ray.get(handle.stats.remote(), timeout=5)
        return False
    except ray.exceptions.RayActorError:
        return True


def node_is_dead(node_id: str) -> bool:
    """True once Ray's node table says ``node_id`` is dead."""
    return any(n["NodeID"] == node_id and not n["Alive"] for n in ray.nodes())


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    """A head (no zone) + one worker per zone in ``ZONES``; the driver is connected in the
    ``raftfleet`` namespace. Shut down at the end of the module."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            # ray[default] is installed for the metrics test: no dashboard head (9 processes,
            # about 900 MiB) on 2 cores; each node's metrics agent runs without it.
            "include_dashboard": False,
            "num_cpus": NODE_CPUS,
            "object_store_memory": OBJECT_STORE_BYTES,
            "_system_config": HEAD_SYSTEM_CONFIG,
        },
    )
    try:
        for zone in ZONES:
            add_zone_node(cluster, zone)
        ray.init(address=cluster.address, namespace="raftfleet")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def zone_nodes(ray_cluster: Cluster) -> dict[str, str]:
    """``{node_id: zone}`` of the module's initial zone nodes."""
    out: dict[str, str] = {}
    for n in ray.nodes():
        for key in n["Resources"]:
            if n["Alive"] and key.startswith("zone:"):
                out[n["NodeID"]] = key.removeprefix("zone:")
    return out


@pytest.fixture(scope="module", params=[1, PACKED], ids=["default", "packed"])
def members_per_host(request: pytest.FixtureRequest) -> int:
    """``FleetConfig.members_per_host`` for this run of the module: 1, then ``PACKED``."""
    return request.param


@pytest.fixture(name="wait_for", scope="session")
def _wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture(name="add_zone_node", scope="session")
def _add_zone_node_fixture() -> Callable[..., Any]:
    return add_zone_node


@pytest.fixture(name="kill_node", scope="session")
def _kill_node_fixture() -> Callable[..., Any]:
    return kill_node


@pytest.fixture(name="actor_is_dead", scope="session")
def _actor_is_dead_fixture() -> Callable[[Any], bool]:
    return actor_is_dead


@pytest.fixture(name="node_is_dead", scope="session")
def _node_is_dead_fixture() -> Callable[[str], bool]:
    return node_is_dead
