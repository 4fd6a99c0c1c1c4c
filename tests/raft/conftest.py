"""Fixtures for the core's unit tests. The harness itself (``Net`` and the single-node
helpers) lives in ``raft_harness.py`` so that test modules can import it by a name that is
unique across ``tests/*``."""

from __future__ import annotations

import pytest
from raft_harness import CFG, Net

__all__ = ["CFG", "Net"]


@pytest.fixture
def net3() -> Net:
    return Net(["a", "b", "c"])
