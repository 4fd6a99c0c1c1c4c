"""The ClusterActor: the fleet's metadata (:class:`ClusterState`) in one durable Ray actor.

raft_fleet replicates this metadata with Raft on every active node (``RaftFleet.Cluster``).
On Ray a singleton actor does the job more simply, because Ray already provides the two
things the Raft group was there for:

- **durability**: after every command the pickled state is written to Ray's GCS key-value
  store (``ray.experimental.internal_kv``, as Ray Serve's controller checkpoints its state)
  *before* the result is returned. On (re)start the actor restores the last checkpoint.
  The GCS store lives as long as the Ray cluster (with GCS fault tolerance, in Redis);
- **availability**: the actor is detached, named and restartable (``max_restarts=-1``), and
  not pinned, so when its node dies Ray starts it again on another node.

Commands carry a request id and the de-duplication cache is part of the checkpoint, so a
client may retry a command after a timeout or an actor restart: it is applied once.

The actor is a plain class (unit tests build it with an in-memory store); its Ray options
are in :func:`get_or_create_cluster_actor`, the only place that makes it remote.

Example::

    cluster = get_or_create_cluster_actor()
    ray.get(cluster.add_node.remote(uuid.uuid4().hex, node_id, "zone1"))
    ray.get(cluster.consensus_groups.remote())  # {}
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import ray
from ray.actor import ActorHandle
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.errors import RaftFleetError
from raftfleet_ray.runtime.cluster_state import (
    FORGET_INACTIVE_NODE_AFTER,
    ClusterState,
    Config,
    CreationView,
    GroupSpec,
    LostMark,
    NodeView,
    ReconcileView,
    RequestId,
)
from raftfleet_ray.runtime.names import NAMESPACE

logger = logging.getLogger(__name__)

CLUSTER_ACTOR_NAME = "raftfleet_cluster"
KV_NAMESPACE = "raftfleet"
"""Namespace of raftfleet's keys in the GCS key-value store."""
_CHECKPOINT_FORMAT = 1


def checkpoint_key(actor_name: str) -> str:
    """The GCS KV key holding the checkpoint of the ClusterActor called ``actor_name``."""
    return f"cluster_state/{actor_name}"


class CheckpointStore(Protocol):
    """Where checkpoints go. ``put`` returns only once the value is stored."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def put_if_absent(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


TRANSPORT_SECRET_KEY = "transport_secret"


def transport_secret(store: CheckpointStore | None = None) -> bytes:
    """The fleet's secret for direct connections (``runtime/transport.py``): made once per
    cluster, by the ClusterActor when it starts (whoever asks first makes it: the write only
    succeeds if none is there), kept in Ray's GCS key-value store. A blocking call."""
    store = store if store is not None else GcsKvStore()
    secret = store.get(TRANSPORT_SECRET_KEY)
    if secret is None:
        store.put_if_absent(TRANSPORT_SECRET_KEY, os.urandom(32))
        secret = store.get(TRANSPORT_SECRET_KEY)
    assert secret is not None
    return secret


class GcsKvStore:
    """Checkpoints in Ray's GCS key-value store, under :data:`KV_NAMESPACE`.

    Uses the worker's own GCS client (``ray.experimental.internal_kv``), available in every
    process connected to Ray, as Ray Serve's ``RayInternalKVStore`` does.
    """

    def __init__(self, namespace: str = KV_NAMESPACE) -> None:
        self._namespace = namespace

    def get(self, key: str) -> bytes | None:
        return internal_kv._internal_kv_get(key, namespace=self._namespace)

    def put(self, key: str, value: bytes) -> None:
        internal_kv._internal_kv_put(key, value, overwrite=True, namespace=self._namespace)

    def put_if_absent(self, key: str, value: bytes) -> None:
        internal_kv._internal_kv_put(key, value, overwrite=False, namespace=self._namespace)

    def delete(self, key: str) -> None:
        internal_kv._internal_kv_del(key, namespace=self._namespace)


class MemoryStore:
    """An in-process :class:`CheckpointStore` for unit tests. ``fail_puts`` makes ``put`` raise."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.puts = 0
        self.fail_puts = False

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        if self.fail_puts:
            raise ConnectionError("MemoryStore: put failed (fail_puts is set)")
        self.puts += 1
        self.data[key] = value

    def put_if_absent(self, key: str, value: bytes) -> None:
        """Not counted in ``puts`` (which counts checkpoints)."""
        if self.fail_puts:
            raise ConnectionError("MemoryStore: put failed (fail_puts is set)")
        self.data.setdefault(key, value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass(frozen=True, slots=True)
class ClusterActorInfo:
    """What ``ping()`` says about the running incarnation of the actor."""

    name: str
    node_id: str | None
    pid: int
    started_at: float
    restored: bool
    """True if this incarnation started from a checkpoint (a restart, or a re-creation)."""
    checkpoint_bytes: int


def _current_node_id() -> str | None:
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class ClusterActor:
    """Plain class behind the ClusterActor: a :class:`ClusterState` made durable.

    Every command is checkpointed before it returns; a failed checkpoint rolls the state
    back to the last checkpoint and the command raises (the caller may retry with the same
    request id). Queries read memory only.

    Construct it directly in unit tests with a :class:`MemoryStore`; in Ray use
    :func:`get_or_create_cluster_actor`.
    """

    def __init__(
        self,
        name: str = CLUSTER_ACTOR_NAME,
        *,
        store: CheckpointStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._name = name
        self._key = checkpoint_key(name)
        self._store: CheckpointStore = store if store is not None else GcsKvStore()
        self._clock = clock
        self._started_at = clock()
        try:
            transport_secret(self._store)  # the fleet's secret for direct connections, made once
        except Exception as exc:  # noqa: BLE001 - the first host or client to need it makes it
            logger.warning("ClusterActor %s: could not store the fleet secret yet: %r", name, exc)
        blob = self._store.get(self._key)
        if blob is None:
            self._state = ClusterState()
            self._last_blob: bytes | None = None
            self._restored = False
        else:
            # A checkpoint that cannot be read is fatal: starting empty would silently forget
            # every group. Raising here makes the actor's creation fail loudly.
            self._state = self._decode(blob)
            self._last_blob = blob
            self._restored = True
        logger.info(
            "ClusterActor %s started (restored=%s, %d groups, %d zones)",
            name,
            self._restored,
            len(self._state.consensus_groups()),
            len(self._state.active_nodes()),
        )

    # -----------------------------------------------------------------------------------
    # durability

    @staticmethod
    def _encode(state: ClusterState) -> bytes:
        # Plain (C) pickle: ClusterState cloudpickles its few RaftConfigs itself (their Data
        # class may exist only by value) and keeps the rest cheap to pickle.
        return pickle.dumps(
            {"format": _CHECKPOINT_FORMAT, "state": state}, protocol=pickle.HIGHEST_PROTOCOL
        )

    @staticmethod
    def _decode(blob: bytes) -> ClusterState:
        envelope = pickle.loads(blob)
        if not isinstance(envelope, dict) or envelope.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(
                f"unreadable ClusterActor checkpoint (format {envelope.get('format')!r}); "
                f"this version reads format {_CHECKPOINT_FORMAT}"
            )
        state = envelope["state"]
        if not isinstance(state, ClusterState):
            raise ValueError(f"ClusterActor checkpoint holds a {type(state).__name__}")
        return state

    def _checkpoint(self) -> None:
        blob = self._encode(self._state)
        try:
            self._store.put(self._key, blob)
        except BaseException:
            # Not durable, so it must not have happened: go back to the last checkpoint.
            self._state = self._decode(self._last_blob) if self._last_blob else ClusterState()
            logger.exception("ClusterActor %s: checkpoint failed; command rolled back", self._name)
            raise
        self._last_blob = blob

    def _command(self, request_id: RequestId, apply: Callable[[], Any]) -> Any:
        if self._state.has_result(request_id):
            # A retry: its outcome was made durable when it was first returned.
            return apply()
        try:
            result = apply()
        except RaftFleetError:
            self._checkpoint()  # the refusal is the answer, remembered under request_id
            raise
        # Any other exception is bad input refused before anything changed: nothing to save.
        self._checkpoint()
        return result

    # -----------------------------------------------------------------------------------
    # commands (raft_fleet's Cluster commands, reference §3.3)

    def add_group(
        self, request_id: RequestId, name: str, n_replica: int, config: RaftConfig
    ) -> list[str]:
        """Register a group; return its desired member nodes (element 0 = desired leader).
        Raises AlreadyAddedError, NoActiveNodeError, CleanupOngoingError, InvalidNameError."""
        return self._command(
            request_id, lambda: self._state.add_group(request_id, name, n_replica, config)
        )

    def remove_group(self, request_id: RequestId, name: str) -> None:
        """Forget a group and log its removal. Raises NotFoundError."""
        return self._command(request_id, lambda: self._state.remove_group(request_id, name))

    def add_node(self, request_id: RequestId, node_id: str, zone: str) -> None:
        """Make a node active in ``zone``."""
        return self._command(request_id, lambda: self._state.add_node(request_id, node_id, zone))

    def remove_node(self, request_id: RequestId, node_id: str, dead: bool = False) -> None:
        """Make a node inactive; ``dead=True`` if Ray reports it dead (see ClusterState)."""
        return self._command(
            request_id, lambda: self._state.remove_node(request_id, node_id, dead=dead)
        )

    def stopped_extra_members(
        self,
        request_id: RequestId,
        node_id: str,
        index: int | None,
        now: float | None = None,
        wait: float = FORGET_INACTIVE_NODE_AFTER,
    ) -> None:
        """A node stopped its members of removed groups up to ``index``. ``now`` defaults to
        this actor's clock (one clock for every node's report)."""
        at = self._clock() if now is None else now
        return self._command(
            request_id,
            lambda: self._state.stopped_extra_members(request_id, node_id, index, at, wait),
        )

    def set_fleet_config(self, request_id: RequestId, config: FleetConfig) -> None:
        """Replace the fleet-wide configuration."""
        return self._command(request_id, lambda: self._state.set_fleet_config(request_id, config))

    def configure(self, request_id: RequestId, config: FleetConfig) -> None:
        """Set the fleet-wide configuration if the fleet is not running yet, else raise
        ``FleetConfigLockedError`` (``ClusterState.configure``)."""
        return self._command(request_id, lambda: self._state.configure(request_id, config))

    def deactivate_node(self, request_id: RequestId, node_id: str) -> None:
        """Start draining an active node (``ClusterState.deactivate_node``)."""
        return self._command(request_id, lambda: self._state.deactivate_node(request_id, node_id))

    def node_drained(self, request_id: RequestId, node_id: str) -> None:
        """A draining node has no member left: it is inactive."""
        return self._command(request_id, lambda: self._state.node_drained(request_id, node_id))

    def mark_created(self, request_id: RequestId, names: list[str]) -> None:
        """Leaders were seen for ``names`` (the reconciler reports it)."""
        return self._command(request_id, lambda: self._state.mark_created(request_id, names))

    def set_group_error(self, request_id: RequestId, name: str, error: bytes) -> None:
        """Creating ``name`` failed with the pickled exception ``error``."""
        return self._command(request_id, lambda: self._state.set_group_error(request_id, name, error))

    def register_found_group(
        self, request_id: RequestId, name: str, n_replica: int, config: RaftConfig, last_config: Config
    ) -> bool:
        """Register a group found in files (``ClusterState.register_found_group``)."""
        return self._command(
            request_id,
            lambda: self._state.register_found_group(request_id, name, n_replica, config, last_config),
        )

    def record_configs(
        self, request_id: RequestId, configs: dict[str, Config], commits: dict[str, int] | None = None
    ) -> None:
        """The groups' last configurations seen from their leaders, and commit indexes seen."""
        return self._command(request_id, lambda: self._state.record_configs(request_id, configs, commits))

    def mark_lost(
        self, request_id: RequestId, marks: dict[str, tuple[str, int]], now: float | None = None
    ) -> None:
        """Mark groups lost: ``{name: (reason, highest commit index seen)}``; ``now`` defaults
        to this actor's clock."""
        at = self._clock() if now is None else now
        return self._command(request_id, lambda: self._state.mark_lost(request_id, marks, at))

    def clear_lost(self, request_id: RequestId, names: list[str]) -> None:
        """These groups are no longer lost."""
        return self._command(request_id, lambda: self._state.clear_lost(request_id, names))

    # -----------------------------------------------------------------------------------
    # queries

    def active_nodes(self) -> dict[str, list[str]]:
        """``{zone: [node_id]}``."""
        return self._state.active_nodes()

    def zone_of(self, node_id: str) -> str | None:
        """The zone of an active node, else ``None``."""
        return self._state.zone_of(node_id)

    def consensus_groups(self) -> dict[str, int]:
        """``{name: n_replica}``."""
        return self._state.consensus_groups()

    def node_state(self, node_id: str) -> str:
        """``"active"``, ``"draining"`` or ``"inactive"``."""
        return self._state.node_state(node_id)

    def draining_nodes(self) -> dict[str, str]:
        """``{node_id: zone}`` of the nodes being drained."""
        return self._state.draining_nodes()

    def group_error(self, name: str) -> bytes | None:
        """The pickled exception met creating ``name``, if any."""
        return self._state.group_error(name)

    def is_created(self, name: str) -> bool:
        return self._state.is_created(name)

    def lost_groups(self) -> dict[str, LostMark]:
        """``{name: LostMark}`` of the lost groups."""
        return self._state.lost_groups()

    def configs_of(self, names: list[str]) -> dict[str, Config]:
        """The last recorded configuration of each of ``names`` that has one."""
        return self._state.configs_of(names)

    def commits_of(self, names: list[str]) -> dict[str, int]:
        """The highest recorded commit index of each of ``names`` that has one."""
        return self._state.commits_of(names)

    def check_group(self, name: str, operation: str | None = None) -> None:
        """Raise NotFoundError (not registered) or GroupLostError (lost); else None."""
        return self._state.check_group(name, operation)

    def reconcile_view(self) -> ReconcileView:
        """Everything the reconciler needs for a round, in one call."""
        return self._state.reconcile_view()

    def has_group(self, name: str) -> bool:
        """True if ``name`` is a registered group (cheaper than ``consensus_groups``)."""
        return self._state.has_group(name)

    def unknown_groups(self, names: list[str]) -> list[str]:
        """The names among ``names`` that are not registered groups (now)."""
        return [n for n in names if not self._state.has_group(n)]

    def group_spec(self, name: str) -> GroupSpec:
        """``GroupSpec(n_replica, config)``; raises NotFoundError."""
        return self._state.group_spec(name)

    def creation_view(self, name: str) -> CreationView | None:
        """One group for the reconciler's creation fast path (None if not registered)."""
        return self._state.creation_view(name)

    def desired_members(self, name: str) -> list[str]:
        """Desired member nodes of a group; raises NotFoundError."""
        return self._state.desired_members(name)

    def groups_for_leader_node(self, node_id: str) -> list[tuple[str, list[str]]]:
        """``[(group, desired members)]`` whose desired leader is ``node_id``."""
        return self._state.groups_for_leader_node(node_id)

    def removed_names_for_node(self, node_id: str) -> tuple[list[str], int | None]:
        """Removed names ``node_id`` must still stop, and the index to ack."""
        return self._state.removed_names_for_node(node_id)

    def cleanup_ongoing(self, name: str) -> bool:
        """True while members of a removed group ``name`` may still run."""
        return self._state.cleanup_ongoing(name)

    def node_view(self, node_id: str) -> NodeView:
        """Active nodes, groups led, removed names: one call per node per round."""
        return self._state.node_view(node_id)

    def fleet_config(self) -> FleetConfig:
        """The fleet-wide configuration."""
        return self._state.fleet_config()

    def process_info(self) -> dict[str, int]:
        """pid, RSS, USS and CPU time of this actor's process (``procinfo.process_info``)."""
        from raftfleet_ray.runtime.procinfo import process_info

        return process_info()

    def ping(self) -> ClusterActorInfo:
        """Liveness probe; says where this incarnation runs and whether it was restored."""
        return ClusterActorInfo(
            name=self._name,
            node_id=_current_node_id(),
            pid=os.getpid(),
            started_at=self._started_at,
            restored=self._restored,
            checkpoint_bytes=len(self._last_blob) if self._last_blob else 0,
        )


# ---------------------------------------------------------------------------------------
# The one place with the actor's Ray options.

# Made once per process: Ray exports the class again to each cluster and job it meets
# (``Worker.current_cluster_and_job``), so it stays valid after a new ``ray.init()``.
_RemoteClusterActor = ray.remote(ClusterActor)


def get_or_create_cluster_actor(
    name: str = CLUSTER_ACTOR_NAME, *, _prefer_node_id: str | None = None
) -> ActorHandle:
    """The handle of the ClusterActor ``name``, created on first use (race-free).

    Options and why:

    - ``name`` + ``namespace="raftfleet"`` + ``get_if_exists=True``: one actor per name,
      whoever asks first creates it; concurrent creators all get the same actor;
    - ``lifetime="detached"``: it outlives the driver or actor that created it;
    - ``max_restarts=-1``: Ray restarts it (on any live node) whenever its process or node
      dies; the new incarnation restores the last checkpoint;
    - ``max_task_retries=-1``: a call in flight when it died is re-sent to the next
      incarnation. Safe because commands are idempotent by request id and the checkpoint is
      written before a result is returned; callers bound their wait with ``ray.get(timeout)``;
    - ``num_cpus=0`` and no node affinity: it fits on any node, so it can always be restarted;
    - ``max_concurrency=1``: commands run one at a time, in arrival order.

    ``_prefer_node_id`` (tests): a *soft* node affinity for the first placement, so Ray may
    restart it elsewhere once that node is gone. Only a hint: Ray 2.60 often places a detached
    actor elsewhere despite a soft affinity (seen: any node of the cluster), so check
    ``ping().node_id``.
    """
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": -1,
        "num_cpus": 0,
        "max_concurrency": 1,
    }
    if _prefer_node_id is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(_prefer_node_id, soft=True)
    return _RemoteClusterActor.options(**options).remote(name)


def destroy_cluster_actor(name: str = CLUSTER_ACTOR_NAME, wait_gone: Any = None) -> None:
    """Kill the ClusterActor ``name`` for good and delete its checkpoint: the fleet's metadata
    is gone. For tests and for tearing a fleet down; a no-op if it does not exist.
    ``wait_gone({name})`` returns once it is dead: the checkpoint is deleted only then, as a
    call it was still serving would otherwise write it again."""
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        pass
    else:
        ray.kill(handle, no_restart=True)
        if wait_gone is not None:
            wait_gone({name})
    GcsKvStore().delete(checkpoint_key(name))


__all__ = [
    "CLUSTER_ACTOR_NAME",
    "KV_NAMESPACE",
    "NAMESPACE",
    "CheckpointStore",
    "ClusterActor",
    "ClusterActorInfo",
    "GcsKvStore",
    "MemoryStore",
    "checkpoint_key",
    "destroy_cluster_actor",
    "get_or_create_cluster_actor",
]
