"""One seed, one run: the simulator replays exactly (TigerBeetle VOPR, FoundationDB simulation).

A failing seed is only useful if it replays, so the whole event trace must be a function
of the seed alone: not of string hashing (``PYTHONHASHSEED``), set order or the wall clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftfleet_ray.testing.simulator import Simulator

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed, mix", [(3, "chaos"), (11, "membership"), (5, "power_loss")])
def test_same_seed_same_trace(seed: int, mix: str) -> None:
    a = Simulator(seed, mix, record_trace=True)
    ra = a.run()
    b = Simulator(seed, mix, record_trace=True)
    rb = b.run()
    assert a.full_trace == b.full_trace
    assert ra == rb
    assert len(a.full_trace) == ra.events + sum(1 for line in a.full_trace if " ** " in line)


def test_different_seeds_differ() -> None:
    assert Simulator(1, "chaos", record_trace=True).run().digest != Simulator(2, "chaos", record_trace=True).run().digest


def test_forced_mix_equals_picked_mix() -> None:
    """``--seed N`` and ``--seed N --mix <the mix N picks>`` are the same run."""
    picked = Simulator(7)
    ra = Simulator(7, record_trace=True).run()
    rb = Simulator(7, picked.mix.name, record_trace=True).run()
    assert ra.digest == rb.digest


def test_replays_across_interpreters_and_hash_seeds() -> None:
    """Two fresh interpreters with different string-hash seeds print the same trace digest."""
    digests = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-m", "raftfleet_ray.testing.simulator", "--seed", "9", "--mix", "chaos", "--digest"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
        ).stdout
        digests.append(next(line for line in out.splitlines() if line.startswith("digest=")))
    assert digests[0] == digests[1]
