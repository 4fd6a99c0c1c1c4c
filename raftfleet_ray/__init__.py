"""raftfleet_ray: many Raft consensus groups on a Ray cluster, placed across zones.

The public API is imported lazily so that ``import raftfleet_ray.raft`` (the pure core)
never pulls in Ray or asyncio.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Counter": "raftfleet_ray.data",
    "KeyValue": "raftfleet_ray.data",
    "Data": "raftfleet_ray.data",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raftfleet_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
