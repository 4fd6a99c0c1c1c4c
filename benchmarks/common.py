"""What the benchmarks share: percentiles, JSON results, concurrent group creation, teardown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import ray

import raftfleet_ray as fleet
from raftfleet_ray.client import get_client


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def write_json(path: str, res: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    return out


def create_groups(names: list[str], concurrency: int, config: fleet.RaftConfig, await_timeout: float = 120.0) -> None:
    """``add_consensus_group`` for every name, ``concurrency`` calls in flight."""

    async def run() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(name: str) -> None:
            async with sem:
                await fleet.add_consensus_group_async(name, 3, config, await_timeout=await_timeout)

        await asyncio.gather(*(one(n) for n in names))

    get_client().run(run())


def teardown(cluster: Any) -> None:
    """The fleet, the driver's connection and the local cluster, in that order."""
    try:
        fleet.shutdown_fleet()
    finally:
        ray.shutdown()
        cluster.shutdown()
