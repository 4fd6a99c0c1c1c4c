"""What the benchmarks share: percentiles, JSON results, concurrent group creation, teardown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import ray

import raftfleet_ray as fleet


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def write_json(path: str, res: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    return out


def create_groups(names: list[str], concurrency: int, config: fleet.RaftConfig, await_timeout: float = 120.0) -> None:
    """``add_consensus_groups``: ``concurrency`` calls in flight, a progress bar on a terminal."""
    fleet.add_consensus_groups(names, 3, config, concurrency=concurrency, await_timeout=await_timeout)


def teardown(cluster: Any) -> None:
    """The fleet, the driver's connection and the local cluster, in that order."""
    try:
        fleet.shutdown_fleet()
    finally:
        ray.shutdown()
        cluster.shutdown()
