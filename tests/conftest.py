"""Options for the whole test tree (pytest reads pytest_addoption only from top-level conftests)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-seeds",
        type=int,
        default=None,
        help="run this many extra random simulator seeds (also: env RAFTFLEET_SIM_SEEDS)",
    )
