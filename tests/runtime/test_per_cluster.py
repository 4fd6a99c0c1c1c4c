"""Nothing process-global outlives the Ray cluster it came from (issue 14, finding 7), without
Ray: the cluster key is replaced by a fake one.

A driver that called ``ray.shutdown()`` and ``ray.init()`` on a new cluster kept the client,
the directory and the balancer handle of the first one, and could not create a group on the
second ("could not wake the reconciler: Can't find actor"). ``tests/ray/test_second_cluster.py``
shows it on real clusters."""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import pytest

import raftfleet_ray
from raftfleet_ray import client as client_mod
from raftfleet_ray.runtime import directory, factory, metrics, per_cluster
from raftfleet_ray.runtime.per_cluster import PerCluster

pytestmark = pytest.mark.timeout(30)


class _Key:
    """A fake ``cluster_key``: the test says which cluster the process is connected to."""

    def __init__(self) -> None:
        self.value: Any = ("cluster-1", "job-1")

    def __call__(self) -> Any:
        return self.value


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> _Key:
    k = _Key()
    monkeypatch.setattr(per_cluster, "cluster_key", k)
    return k


def test_a_value_is_made_once_per_cluster_and_the_old_one_is_closed(key: _Key) -> None:
    made: list[int] = []
    closed: list[int] = []
    held = PerCluster(lambda: made.append(len(made)) or made[-1], close=closed.append)
    assert held.get() == held.get() == 0 and held.peek() == 0
    key.value = ("cluster-2", "job-1")  # a new cluster
    assert held.peek() is None
    assert held.get() == 1 and closed == [0]
    key.value = ("cluster-2", "job-2")  # the same cluster, a new ray.init(): a new connection
    assert held.get() == 2 and closed == [0, 1]
    key.value = None  # ray.shutdown(): nothing to look up, the last value is kept
    assert held.get() == 2 and held.peek() == 2 and made == [0, 1, 2]
    held.clear()
    assert closed == [0, 1, 2] and held.get(lambda: 99) == 99


def test_concurrent_callers_share_one_value(key: _Key) -> None:
    made: list[object] = []
    gate = threading.Barrier(16)

    def make() -> object:
        made.append(object())
        return made[-1]

    held = PerCluster(make)
    seen: list[object] = []

    def caller() -> None:
        gate.wait()
        seen.append(held.get())

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and all(s is made[0] for s in seen)


def test_the_client_directory_balancer_and_metrics_follow_the_cluster(key: _Key, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``add_consensus_group`` used on the second cluster: the client (with its loop,
    leader cache and directory) and the balancer handle are new; the old client is closed
    (its loop thread ends)."""
    handles = iter(["balancer of cluster 1", "balancer of cluster 2"])
    monkeypatch.setattr(factory, "_balancer", PerCluster(lambda: next(handles)))
    monkeypatch.setattr(client_mod, "_client", PerCluster(client_mod.Client, close=client_mod.Client.close))
    monkeypatch.setattr(directory, "_directory", PerCluster(directory.Directory))
    monkeypatch.setattr(metrics, "_process_metrics", PerCluster(metrics.Metrics))
    first = client_mod.get_client()
    assert first is client_mod.get_client() and first.directory is directory.get_directory()
    assert factory.balancer_handle() == factory.balancer_handle() == "balancer of cluster 1"
    m1 = metrics.process_metrics()
    key.value = ("cluster-2", "job-2")
    second = client_mod.get_client()
    assert second is not first and second.directory is directory.get_directory() is not first.directory
    assert factory.balancer_handle() == "balancer of cluster 2"
    assert metrics.process_metrics() is not m1
    assert first.closed and not second.closed
    first._thread.join(5)
    assert not first._thread.is_alive()
    with pytest.raises(ConnectionError, match="no longer connected"):
        first.run(_noop())
    assert second.run(_noop()) == "done"
    second.close()


async def _noop() -> str:
    return "done"


ALLOWED = {
    ("runtime/env.py", "_lookup_pool"): "threads only, nothing of a cluster in them",
    ("runtime/env.py", "_override"): "a simulator's environment, only inside its use_env() block",
    ("runtime/factory.py", "_remote_classes"): "Ray exports a class again to each cluster and job",
}
"""Module-level mutable state that may outlive a cluster, and why."""

_MUTABLE_CALLS = {"dict", "list", "set", "OrderedDict", "defaultdict", "LRU", "Lock", "RLock"}


def test_no_module_level_cache_outlives_a_cluster() -> None:
    """Every module-level mutable value of the runtime, the client and the API is a
    ``PerCluster`` (or listed in ``ALLOWED`` with its reason): a new cache is caught here."""
    root = Path(raftfleet_ray.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("raft/", "testing/")):  # the pure core and the simulator: no Ray
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or (
                isinstance(value, ast.Constant) and value.value is None) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) in _MUTABLE_CALLS)
            for t in targets:
                if (isinstance(t, ast.Name) and not t.id.isupper() and t.id != "__all__" and mutable
                        and (rel, t.id) not in ALLOWED):
                    found.append(f"{rel}: {t.id} = {ast.unparse(value)}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                found.extend(f"{rel}: global {n}" for n in node.names if (rel, n) not in ALLOWED)
    assert found == [], "module-level state not kept per cluster (runtime/per_cluster.py): " + "; ".join(found)
