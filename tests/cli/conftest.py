"""The module-scoped Ray cluster of the CLI tests (helpers in ``cli_harness.py``, imported
by name as ``tests/raft`` does with ``raft_harness``: ``from conftest import`` would be
ambiguous between the test directories)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import (
    FLEET_CONFIG,
    OBJECT_STORE_BYTES,
    ZONES,
    RayCluster,
    clean_env,
    descendants,
    end_processes,
    free_port,
    script,
    start_node,
    terminate,
)


@pytest.fixture(scope="module")
def ray_cli_cluster() -> Iterator[RayCluster]:
    """Head + one worker per zone in ``ZONES``, all started with ``ray start``; the fleet is
    configured (``FLEET_CONFIG``) but no node is activated yet. Stopped at the end of the module."""
    tmpdir = tempfile.mkdtemp(prefix="rfcli-", dir="/tmp")  # short: Ray's socket paths must fit
    env = clean_env(tmpdir)
    port = free_port()
    cluster = RayCluster(address=f"127.0.0.1:{port}", tmpdir=tmpdir, env=env)
    ray = script("ray")
    common = [f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats", "--block"]
    try:
        cluster.procs["head"] = start_node(
            [ray, "start", "--head", f"--port={port}", "--num-cpus=1", "--resources={}",
             "--include-dashboard=false", *common],
            env, Path(tmpdir) / "head.log")
        for zone in ZONES:
            cluster.procs[zone] = start_node(
                [ray, "start", f"--address={cluster.address}", "--num-cpus=1",
                 f"--resources={json.dumps({f'zone:{zone}': 1})}", *common],
                env, Path(tmpdir) / f"worker-{zone}.log")
        res = cluster.py(f"""
            import json, ray
            fleet.configure(fleet.{FLEET_CONFIG})
            print(json.dumps({{k[5:]: n["NodeID"] for n in ray.nodes() if n["Alive"]
                              for k in n["Resources"] if k.startswith("zone:")}}))
        """)
        cluster.node_ids = json.loads(res.stdout.strip().splitlines()[-1])
        assert sorted(cluster.node_ids) == list(ZONES), cluster.node_ids
        yield cluster
    finally:
        procs = list(cluster.procs.values())
        leftovers = descendants(procs)
        for name in [*ZONES, "head"]:  # workers first: the head holds the GCS they report to
            if name in cluster.procs:
                terminate(cluster.procs.pop(name), 30)
        end_processes(leftovers)
        shutil.rmtree(tmpdir, ignore_errors=True)
