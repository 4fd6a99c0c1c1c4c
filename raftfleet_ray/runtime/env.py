"""The runtime's one door to Ray and to time (issue 14: the fleet under simulation).

The reconciler, the node agents, the member hosts and the directory reach Ray's node table,
its named actors, the actors they start and the clocks only through :func:`current`. In a
Ray worker that is :class:`RayEnv` (Ray itself, the process's clocks); the fleet simulator
(``raftfleet_ray.testing.fleetsim``) installs its own for the time of a run, with
:func:`use_env`: a simulated Ray on virtual time, so that the runtime's own classes run, in
one process, under seeded faults.

Nothing here keeps a handle or a cache: ``RayEnv`` is stateless, so it outlives no cluster.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import ray

from ..storage import OsFileSystem
from . import factory
from .cluster_actor import CLUSTER_ACTOR_NAME, transport_secret
from .names import NAMESPACE

LOOKUP_THREADS = 16

_lookup_pool: Any = None  # threads only: nothing in them belongs to one Ray cluster


def lookup_executor() -> Any:
    """This process's threads for Ray lookups that block (``ray.get_actor``, ``ray.nodes``):
    apart from the default executor, so a lookup of an actor on a node that just died (it can
    block for a minute) holds up neither other work nor more than one thread per name."""
    global _lookup_pool
    if _lookup_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _lookup_pool = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="raftfleet-lookup")
    return _lookup_pool


class Env(Protocol):
    """What the runtime needs of Ray and of time. The blocking calls (``nodes``,
    ``get_actor``, ``actor_names``, ``cluster_actor``) are run through ``in_thread``."""

    shared_directory: Any  # a Directory all callers share (the simulator's), or None: per process
    bugs: frozenset[str]  # planted fleet bugs (placement/bugs.py): only the simulator plants any

    def mono(self) -> float: ...  # seconds, monotonic (timeouts, ages)
    def wall(self) -> float: ...  # seconds since the epoch (what is shown and recorded)
    def raft_now(self) -> float: ...  # the clock of Raft's ticks and leases (CLOCK_BOOTTIME)
    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any: ...  # off the event loop
    def connected(self) -> bool: ...  # False once ray.shutdown() was called
    def nodes(self) -> list[dict[str, Any]]: ...  # as ray.nodes()
    def get_actor(self, name: str) -> Any: ...  # as ray.get_actor; ValueError if there is none
    def actor_names(self, prefix: str) -> list[str]: ...  # names of the fleet's live named actors
    def kill(self, handle: Any) -> None: ...  # as ray.kill(handle, no_restart=True)
    def start_member_host(self, name: str, node_id: str, zone: str, persist_dir: str | None) -> Any: ...
    def cluster_actor(self) -> Any: ...  # looked up only (ValueError if the fleet was torn down)
    def balancer(self) -> Any: ...  # the reconciler's handle (created if need be)
    def new_id(self) -> str: ...  # 32 fresh hex digits (request ids, host names, seeds)
    def filesystem(self, node_id: str) -> Any: ...  # the disk of that node (storage.FileSystem)
    threads: bool  # blocking work (fsync) may run on threads; False: inline (virtual time)

    def transport(self) -> tuple[str, bytes] | None: ...  # (address to listen on, fleet secret); None: Ray calls only


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class RayEnv:
    """Ray itself. Lease arithmetic follows CLOCK_BOOTTIME where the OS has it: unlike
    CLOCK_MONOTONIC it keeps counting through a system suspend, so a lease cannot outlive
    the real time it was granted for (issue 13, finding 7)."""

    shared_directory = None
    bugs: frozenset[str] = frozenset()
    threads = True
    raft_now = staticmethod(_boottime if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic)
    mono = staticmethod(time.monotonic)
    wall = staticmethod(time.time)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(lookup_executor(), fn, *args)

    def connected(self) -> bool:
        return ray.is_initialized()

    def nodes(self) -> list[dict[str, Any]]:
        return ray.nodes()

    def get_actor(self, name: str) -> Any:
        return ray.get_actor(name, namespace=NAMESPACE)

    def actor_names(self, prefix: str) -> list[str]:
        return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == NAMESPACE and a["name"].startswith(prefix)]

    def kill(self, handle: Any) -> None:
        ray.kill(handle, no_restart=True)

    def start_member_host(self, name: str, node_id: str, zone: str, persist_dir: str | None) -> Any:
        return factory.start_member_host(name, node_id, zone, persist_dir)

    def cluster_actor(self) -> Any:
        return self.get_actor(CLUSTER_ACTOR_NAME)

    def balancer(self) -> Any:
        return factory.balancer_handle()

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def filesystem(self, node_id: str) -> Any:
        return OsFileSystem()  # this process runs on that node

    def transport(self) -> tuple[str, bytes] | None:
        """This node's address (what Ray itself listens on) and the fleet's secret; blocking."""
        return ray.util.get_node_ip_address(), transport_secret()


_RAY = RayEnv()
_override: Env | None = None


def current() -> Env:
    """The environment the runtime runs in: Ray, unless a simulator installed its own."""
    return _override if _override is not None else _RAY


@contextmanager
def use_env(env: Env) -> Iterator[Env]:
    """Run the runtime over ``env`` inside the block (the fleet simulator; one at a time)."""
    global _override
    if _override is not None:
        raise RuntimeError("another environment is in use (one simulation at a time per process)")
    _override = env
    try:
        yield env
    finally:
        _override = None


__all__ = ["Env", "RayEnv", "current", "lookup_executor", "use_env"]
