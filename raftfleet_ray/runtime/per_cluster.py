"""Process-wide values that belong to one Ray cluster (CONVENTIONS §17).

A process may meet several Ray clusters: a notebook or a test calls ``ray.shutdown()``,
starts a new local cluster and ``ray.init()`` again. A value cached for the first one (an
actor handle, the client's leader cache and event loop, the member directory, the metrics
objects) is wrong on the second, where its actors do not exist: ``add_consensus_group`` then
timed out on "could not wake the reconciler: Can't find actor". So every such value is
kept in a ``PerCluster``, which makes it again when this process is connected to another
cluster (or to the same one again, from a new ``ray.init()``), and drops the old one.

Example::

    _balancer = PerCluster(get_or_create_balancer)
    _balancer.get()    # the handle, made once per cluster connection
    _balancer.clear()  # forget it now (the fleet was torn down)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ray._private import worker as ray_worker

T = TypeVar("T")


def cluster_key() -> Hashable | None:
    """What identifies the Ray connection of this process now: (cluster id, job id) as hex
    strings, or None when Ray is not connected.

    Why these: the cluster id is random per cluster (a new local cluster can reuse the GCS
    address of the one before, so the address would not tell them apart), and the job id is
    new at every ``ray.init()`` of a driver (handles made under an earlier connection are not
    reused, even to the same cluster) while it never changes inside an actor. It is what Ray
    itself keys on to export remote functions and actor classes again
    (``Worker.current_cluster_and_job``); ``ray.get_runtime_context()`` offers no cluster id
    in Ray 2.60. It costs a few attribute reads (about a microsecond): cheap enough to check
    at every use."""
    w = ray_worker.global_worker
    if not w.connected:
        return None
    try:
        return w.node.cluster_id.hex(), w.current_job_id.hex()
    except Exception:  # noqa: BLE001 - a worker without a node (Ray Client): no key to tell by
        return None


class PerCluster(Generic[T]):
    """A value made by ``make()`` for the Ray connection this process has (``key()``), made
    again once the key changes; ``close(old)`` (optional) is called on the value it replaces.
    While Ray is not connected (key None) the current value, if any, is kept: nothing can be
    looked up then, and a value made now would be made again at the next connection anyway.
    Thread-safe: the client's callers are on many threads."""

    def __init__(self, make: Callable[[], T], close: Callable[[T], None] | None = None,
                 key: Callable[[], Hashable | None] | None = None) -> None:
        self._make = make
        self._close = close
        self._key_fn = key  # None: ``cluster_key``, looked up at each call (tests replace it)
        self._lock = threading.Lock()
        self._entry: tuple[Hashable | None, T] | None = None

    def get(self, make: Callable[[], T] | None = None) -> T:
        """The value for the current connection, made (by ``make``, else the constructor's)
        if there is none yet."""
        key = self._key()
        entry = self._entry
        if entry is not None and (key is None or entry[0] == key):
            return entry[1]
        with self._lock:
            old = self._entry
            if old is not None and (key is None or old[0] == key):
                return old[1]
            value = (make or self._make)()
            self._entry = (key, value)
        if old is not None and self._close is not None:
            self._close(old[1])
        return value

    def _key(self) -> Hashable | None:
        return (self._key_fn or cluster_key)()

    def peek(self) -> T | None:
        """The value made for the current connection, if any (nothing is made)."""
        key = self._key()
        entry = self._entry
        return entry[1] if entry is not None and (key is None or entry[0] == key) else None

    def clear(self) -> None:
        """Forget the value (``close`` it): the next ``get()`` makes a new one."""
        with self._lock:
            old, self._entry = self._entry, None
        if old is not None and self._close is not None:
            self._close(old[1])


__all__ = ["PerCluster", "cluster_key"]
