"""The public API: one function per raft_fleet function (DESIGN §2), each with an awaitable
``*_async`` twin for async actors.

Every function connects to Ray if needed (``ray.init()`` with its usual address
discovery). Errors are ``RaftFleetError`` subclasses whose message says what was asked,
what went wrong and what to do.

Example::

    import raftfleet_ray as fleet
    fleet.activate_all()                       # every node with a zone:<name> resource
    fleet.add_consensus_group("orders", 3, fleet.RaftConfig(data=fleet.KeyValue))
    fleet.command("orders", ("put", "o-1", {"qty": 2}))
    fleet.query("orders", ("get", "o-1"))      # {'qty': 2}
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import ray
from ray.exceptions import RayTaskError

from . import codec, errors
from .client import get_client
from .config import FleetConfig, RaftConfig
from .runtime import repair
from .runtime.cluster_actor import get_or_create_cluster_actor
from .runtime.cluster_state import validate_group_name
from .runtime.directory import best_leader, established_leader
from .runtime.factory import ZONE_RESOURCE_PREFIX, balancer_handle, start_node_agent, zone_resource
from .runtime.names import AGENT_PREFIX, HOST_PREFIX, NAMESPACE, agent_name
from .runtime.wire import (
    ClientOp,
    CommandOp,
    CreationOutcome,
    QueryOp,
    RaisedReply,
    RepairOutcome,
    Reply,
    ValueReply,
)

log = logging.getLogger(__name__)

CLUSTER_CALL_TIMEOUT = 30.0
ADD_GROUP_TIMEOUT = 15.0
"""``add_consensus_group``'s default ``await_timeout`` (raft_fleet's is 5 s). A group is born
whole: it is added once every voter has started and a majority holds the first entry. In the
default mode that is three new Ray actor processes, which Ray starts one at a time per CPU
of a node; measured on a busy 2-core machine, the first groups of a fresh fleet took 3.5 to
over 5 s, so 5 s failed callers whose group was being created fine."""
"""Bound on one ClusterActor call (it may be restarting on another node)."""

REPAIR_TIMEOUT = 300.0
"""Bound on ``repair_consensus_group``: the reconciler finishes its round, looks at every
node and the files, stops what still runs, then recovers (each of its calls bounded)."""

CLIENT_MAX_COMMAND_BYTES = 64 * 2**20
"""Client-side cap on an encoded argument; each group also enforces its own
``RaftConfig.max_command_bytes``."""


def _ensure_ray() -> None:
    if not ray.is_initialized():
        ray.init(namespace=NAMESPACE, log_to_driver=False)


def connect(address: str = "auto", *, log_to_driver: bool = False, logging_level: int = logging.WARNING) -> None:
    """Connect this process to the Ray cluster at ``address`` in the fleet's namespace, for
    operator tools and scripts (the ``raftfleet`` CLI uses it); every other function connects
    by itself (``ray.init()``) when needed. ``"auto"`` means what it means to Ray:
    ``RAY_ADDRESS``, else the cluster running on this machine. ``log_to_driver`` and
    ``logging_level`` go to ``ray.init`` (by default Ray's own logs stay quiet).

    A no-op if this process is connected already. Raises Ray's ``ConnectionError`` when no
    cluster is found. Example: ``connect("10.0.0.5:6379"); active_nodes()``.
    """
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=log_to_driver,
                 logging_level=logging_level)


def _rid() -> str:
    return uuid.uuid4().hex


async def _cluster(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call the ClusterActor, unwrapping Ray's error wrapper so callers see our exceptions."""
    actor = get_or_create_cluster_actor()
    try:
        return await asyncio.wait_for(getattr(actor, method).remote(*args, **kwargs), CLUSTER_CALL_TIMEOUT)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, errors.RaftFleetError | ValueError | TypeError):
            raise cause from None
        raise


def _run(coro: Any) -> Any:
    _ensure_ray()
    return get_client().run(coro)


async def _on_client(coro: Any) -> Any:
    _ensure_ray()
    return await get_client().run_async(coro)


def _encode_arg(group: str, what: str, arg: Any) -> bytes:
    try:
        data = codec.dumps(arg)
    except Exception as exc:  # noqa: BLE001 - anything a pickler raises
        raise TypeError(
            f"{what} on consensus group {group!r}: the argument {type(arg).__name__} cannot be "
            f"pickled ({exc}); pass plain data (numbers, strings, tuples, dicts, dataclasses)"
        ) from exc
    if len(data) > CLIENT_MAX_COMMAND_BYTES:
        raise errors.CommandTooLargeError(group, size=len(data), limit=CLIENT_MAX_COMMAND_BYTES)
    return data


def _check_name(group: Any) -> str:
    return validate_group_name(group)


# ---------------------------------------------------------------------------------------
# Nodes


def _alive_nodes() -> dict[str, dict]:
    return {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}


ZONE_LABEL = "raftfleet.io/zone"
"""Node label an operator sets to declare a node's zone (``ray start --labels``)."""
RAY_ZONE_LABEL = "ray.io/availability-zone"
"""Node label Ray (>= 2.49) sets on cloud nodes to their availability zone."""
ZONE_SOURCE_RESOURCE = "resource"


def declared_zones(node: dict) -> dict[str, str]:
    """``{zone: source}`` of every zone a node (an entry of ``ray.nodes()``) declares, in order
    of precedence: its ``zone:<name>`` resources (source ``"resource"``), then the labels
    ``raftfleet.io/zone`` and ``ray.io/availability-zone`` (source: the label's key)."""
    out: dict[str, str] = {}
    for res in sorted(node.get("Resources") or {}):
        if res.startswith(ZONE_RESOURCE_PREFIX) and len(res) > len(ZONE_RESOURCE_PREFIX):
            out.setdefault(res[len(ZONE_RESOURCE_PREFIX):], ZONE_SOURCE_RESOURCE)
    labels = node.get("Labels") or {}
    for key in (ZONE_LABEL, RAY_ZONE_LABEL):
        if isinstance(labels.get(key), str) and labels[key]:
            out.setdefault(labels[key], key)
    return out


def node_zone(node: dict) -> tuple[str, str] | None:
    """``(zone, source)`` that ``activate_all`` uses for a node: the first of
    ``declared_zones(node)``, or None for a node that declares no zone."""
    return next(iter(declared_zones(node).items()), None)


async def activate_async(zone: str, node_id: str | None = None) -> None:
    if not isinstance(zone, str) or not zone:
        raise ValueError(f"activate: zone must be a non-empty string, got {zone!r}")
    node_id = node_id or ray.get_runtime_context().get_node_id()
    node = _alive_nodes().get(node_id)
    if node is None:
        raise ValueError(f"activate: node {node_id} is not an alive node of this Ray cluster")
    if zone not in (declared := declared_zones(node)):
        res = zone_resource(zone)
        found = ", ".join(f"{z!r} ({src})" for z, src in declared.items()) or "no zone"
        raise ValueError(
            f"activate: node {node_id[:12]} does not declare the custom resource {res!r} nor a "
            f"zone label {zone!r} (it declares {found}); start it with resources={{'{res}': 1}} "
            f"(--resources in `ray start`) or the label {ZONE_LABEL}={zone} (--labels)"
        )
    current = await _cluster("zone_of", node_id)
    if current is not None:
        if await _agent_alive(node_id):
            raise errors.NotInactiveError(node_id)
        # Active, but its agent died (e.g. the OOM killer): activating again brings it back
        # instead of leaving the node unable to host new members.
        log.warning("node %s is active but its agent is gone: restarting the agent", node_id[:12])
        await start_node_agent(agent_name(node_id), node_id, current).start.remote(await _cluster("fleet_config"))
        return
    agent = start_node_agent(agent_name(node_id), node_id, zone)
    given = await _cluster("fleet_config")
    await agent.start.remote(given)
    await _cluster("add_node", _rid(), node_id, zone)
    # configure() may have run between the read above and add_node; from add_node on it is
    # refused (the fleet runs), so what is read now is final: hand it over if it changed.
    if (final := await _cluster("fleet_config")) != given:
        await agent.start.remote(final)
    await _kick()  # new members go there: rebalancing starts now, not at the next interval
    log.info("activated node %s in zone %s (declared by %s)", node_id[:12], zone, declared[zone])


def activate(zone: str, node_id: str | None = None) -> None:
    """Activate a node in ``zone`` so that it hosts consensus-group members.

    ``node_id`` defaults to the caller's Ray node. The node must declare ``zone``: the custom
    resource ``zone:<zone>`` or the node label ``raftfleet.io/zone`` or
    ``ray.io/availability-zone`` set to it. Returns once the node is active.

    Raises ``NotInactiveError`` if it is already active, ``ValueError`` for an unknown node
    or a node that does not declare that zone. On an active node whose agent died, it restarts the
    agent.

    Example: ``activate("us-east-1a")`` on a node started with ``--resources='{"zone:us-east-1a": 1}'``.
    """
    return _run(activate_async(zone, node_id))


async def activate_all_async() -> dict[str, str]:
    activated = {}
    active = {n for nodes in (await _cluster("active_nodes")).values() for n in nodes}
    for node_id, node in sorted(_alive_nodes().items()):
        found = node_zone(node)
        if found is None or node_id in active:
            continue
        zone, _source = found
        await activate_async(zone, node_id)  # logs the zone's source (INFO)
        activated[node_id] = zone
    return activated


def activate_all() -> dict[str, str]:
    """Activate every alive node that declares a zone and is not active yet. Returns
    ``{node_id: zone}`` of the nodes it activated, and logs (``raftfleet_ray.api``, INFO) where
    each node's zone came from.

    A node declares its zone, in this order of precedence (the first found wins):

    1. a ``zone:<name>`` custom resource (``ray start --resources='{"zone:<name>": 1000}'``);
    2. the node label ``raftfleet.io/zone`` (``ray start --labels=raftfleet.io/zone=<name>``);
    3. the node label ``ray.io/availability-zone``, which Ray (>= 2.49) sets on cloud nodes.

    ``describe_nodes()`` shows the same choice (``declared_zone``, ``zone_source``)."""
    return _run(activate_all_async())


async def deactivate_async(node_id: str | None = None, wait: bool = False, timeout: float = 600.0) -> None:
    node_id = node_id or ray.get_runtime_context().get_node_id()
    await _cluster("deactivate_node", _rid(), node_id)
    await _kick()
    if not wait:
        return
    deadline = asyncio.get_running_loop().time() + timeout
    while await _cluster("node_state", node_id) == "draining":
        if asyncio.get_running_loop().time() >= deadline:
            raise errors.AwaitTimeoutError(None, operation=f"drain node {node_id[:12]}", timeout=timeout)
        await asyncio.sleep(0.2)


def deactivate(node_id: str | None = None, wait: bool = False, timeout: float = 600.0) -> None:
    """Deactivate a node (default: the caller's) and drain it: at once it leaves
    ``active_nodes()`` and gets no new member; the reconciler transfers the leaderships it
    holds away, then moves its members to other nodes (each through its group's leader: a
    new member joins elsewhere as a learner, votes once caught up, and only then is the one
    here removed). With ``wait=True`` this blocks until no member is left on the node (at most
    ``timeout`` seconds, else ``AwaitTimeoutError``; the drain goes on).

    Raises ``InactiveError`` if the node is not active."""
    return _run(deactivate_async(node_id, wait, timeout))


async def active_nodes_async() -> dict[str, list[str]]:
    return await _cluster("active_nodes")


def active_nodes() -> dict[str, list[str]]:
    """``{zone: [node_id, ...]}`` of the active nodes."""
    return _run(active_nodes_async())


async def draining_nodes_async() -> dict[str, str]:
    return await _cluster("draining_nodes")


def draining_nodes() -> dict[str, str]:
    """``{node_id: zone}`` of the nodes being drained: deactivated (no longer in
    ``active_nodes()``), with members the reconciler is still moving away. A node leaves this
    list once it is empty."""
    return _run(draining_nodes_async())


async def describe_nodes_async() -> dict[str, dict[str, Any]]:
    ray_nodes = await asyncio.get_running_loop().run_in_executor(None, ray.nodes)
    active = await _cluster("active_nodes")
    draining = await _cluster("draining_nodes")
    zone_of = {n: z for z, ns in active.items() for n in ns}
    out: dict[str, dict[str, Any]] = {}
    for n in ray_nodes:
        node_id = n["NodeID"]
        if node_id in out and not n.get("Alive"):
            continue  # Ray may list a node id twice (dead and alive entries): keep the alive one
        res = n.get("Resources") or {}
        out[node_id] = {
            "alive": bool(n.get("Alive")),
            "address": n.get("NodeManagerAddress"),
            "head": "node:__internal_head__" in res,
            "zones": sorted(r[len(ZONE_RESOURCE_PREFIX):] for r in res if r.startswith(ZONE_RESOURCE_PREFIX)),
            "declared_zone": found[0] if (found := node_zone(n)) else None,
            "zone_source": found[1] if found else None,
        }
    for node_id in {*zone_of, *draining} - set(out):  # known to the fleet, no longer to Ray
        out[node_id] = {"alive": False, "address": None, "head": False, "zones": [],
                        "declared_zone": None, "zone_source": None}
    for node_id, info in out.items():
        if node_id in zone_of:
            info.update(state="active", zone=zone_of[node_id])
        elif node_id in draining:
            info.update(state="draining", zone=draining[node_id])
        else:
            info.update(state="inactive", zone=None)
    return dict(sorted(out.items()))


def describe_nodes() -> dict[str, dict[str, Any]]:
    """Every node of the Ray cluster (dead ones Ray still lists included) and every node the
    fleet knows, as ``{node_id: {"alive", "address", "head", "zones", "declared_zone",
    "zone_source", "state", "zone"}}``: ``alive`` per Ray's node table, ``zones`` the
    ``zone:<name>`` resources it declares, ``declared_zone`` the zone ``activate_all`` would
    give it and ``zone_source`` where that comes from (``"resource"``, ``"raftfleet.io/zone"``
    or ``"ray.io/availability-zone"``, None if it declares no zone),
    ``state`` ``"active"``, ``"draining"`` or ``"inactive"`` in the fleet and ``zone`` the
    zone it is active or draining in (else None). For operators (``raftfleet nodes``).

    Example: ``[n for n, d in describe_nodes().items() if d["state"] == "draining"]``.
    """
    return _run(describe_nodes_async())


async def members_on_node_async(node_id: str) -> dict[str, str] | None:
    try:
        agent = await _agent(node_id)
    except errors.NoActiveNodeError:
        return {}  # no agent: the node was never activated, so it runs no member
    try:
        return await asyncio.wait_for(agent.members.remote(), 10.0)
    except Exception:  # noqa: BLE001 - dead, restarting or overloaded
        return None


def members_on_node(node_id: str) -> dict[str, str] | None:
    """``{group: member id}`` of the members running on ``node_id``, as its node agent knows
    them: ``{}`` for a node that was never activated, ``None`` if its agent does not answer
    within 10 s (the node is dead or overloaded). What ``raftfleet drain`` counts down."""
    return _run(members_on_node_async(node_id))


async def configure_async(config: FleetConfig) -> None:
    if not isinstance(config, FleetConfig):
        raise TypeError(f"configure: expected a FleetConfig, got {type(config).__name__}")
    await _cluster("configure", _rid(), config)


def configure(config: FleetConfig) -> None:
    """Set the fleet-wide configuration (kept by the ClusterActor, so every node uses the same
    values). Call it before the first ``activate``.

    Once the fleet runs (a node active or draining, or a group registered) the configuration
    is fixed: a different one raises ``FleetConfigLockedError`` and changes nothing (the same
    one is accepted, a no-op). Node agents took the configuration when their node was
    activated, and ``members_per_host`` or ``persistence_dir_parent`` cannot change under
    running members; to reconfigure, ``shutdown_fleet()`` (every group is lost), then
    ``configure`` and ``activate`` again. Raises ``TypeError`` for anything but a FleetConfig.

    Example: ``configure(FleetConfig(members_per_host=1000)); activate_all()``.
    """
    return _run(configure_async(config))


# ---------------------------------------------------------------------------------------
# Groups


async def _agent_alive(node_id: str) -> bool:
    try:
        await asyncio.wait_for((await _agent(node_id)).ping.remote(), 10.0)
        return True
    except Exception:  # noqa: BLE001 - missing, dead or not answering
        return False


async def _agent(node_id: str) -> Any:
    try:
        return await asyncio.get_running_loop().run_in_executor(
            None, lambda: ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
        )
    except ValueError:
        raise errors.NoActiveNodeError(None, operation=f"reach the agent of node {node_id[:12]}") from None


async def _kick() -> None:
    """Wake the reconciler (creating it if needed): desired state just changed."""
    try:
        await asyncio.wait_for(balancer_handle().wake.remote(), CLUSTER_CALL_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - it is restarting; the agents wake it again
        log.warning("could not wake the reconciler: %r", exc)


async def add_consensus_group_async(
    name: str, n_replica: int = 3, config: RaftConfig | None = None, await_timeout: float = ADD_GROUP_TIMEOUT
) -> None:
    _check_name(name)
    config = config or RaftConfig()
    if not isinstance(config, RaftConfig):
        raise TypeError(f"add_consensus_group: config must be a RaftConfig, got {type(config).__name__}")
    if not await_timeout > 0:
        raise ValueError(f"add_consensus_group: await_timeout must be > 0 seconds, got {await_timeout!r}")
    client = get_client()
    if await _cluster("has_group", name):  # first, as raft_fleet: AlreadyAdded before CleanupOngoing
        raise errors.AlreadyAddedError(name)
    if await client.member_handles(name):
        # raft_fleet's :process_exists: members of an earlier group of that name still run.
        raise errors.CleanupOngoingError(name)
    # Desired state first: from here the reconciler creates the group, even if we go away.
    await _cluster("add_group", _rid(), name, n_replica, config)
    client.forget_group(name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + await_timeout
    try:
        # The reconciler tells us when the group's first member leads (no polling).
        got: CreationOutcome = await asyncio.wait_for(balancer_handle().wait_created.remote(name, await_timeout),
                                                      await_timeout + CLUSTER_CALL_TIMEOUT)
        outcome = "ok" if got.created else "error" if got.error is not None else "timeout"
        blob = got.error
    except Exception as exc:  # noqa: BLE001 - it restarted meanwhile: ask the desired state
        log.info("add_consensus_group %s: waiting on the reconciler failed (%r); polling", name, exc)
        outcome, blob = "timeout", None
        delay = 0.05
        while loop.time() < deadline:
            if await _cluster("is_created", name):
                outcome = "ok"
                break
            if (blob := await _cluster("group_error", name)) is not None:
                outcome = "error"
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    if outcome == "ok":
        return
    if outcome == "error" and blob is not None:
        # The reconciler could not create it (e.g. the Data class's __init__ raised): nothing
        # was created, so the name is freed, and the cause raised here.
        await _cluster("remove_group", _rid(), name)
        await _kick()
        raise codec.loads(blob)
    raise errors.AwaitTimeoutError(name, operation="add_consensus_group", timeout=await_timeout)


def add_consensus_group(
    name: str, n_replica: int = 3, config: RaftConfig | None = None, await_timeout: float = ADD_GROUP_TIMEOUT
) -> None:
    """Create consensus group ``name`` with ``n_replica`` members (a large number = every
    active node), placed by zone-aware rendezvous hashing with leaders balanced over the
    nodes. The group is registered at once and created by the reconciler, which completes it
    even if the caller goes away; this call blocks until its leader answers (at most
    ``await_timeout`` seconds). Its other members join as learners and become voters once
    caught up, one step per reconcile round.

    Raises ``AlreadyAddedError``, ``NoActiveNodeError``, ``CleanupOngoingError`` (the name was
    removed and its members are still being stopped), ``AwaitTimeoutError`` (the group stays
    registered and its creation goes on), the exception its Data class raised when built
    (the group is then not registered), ``InvalidNameError`` or ``ValueError`` for bad input.

    Example: ``add_consensus_group("orders", 3, RaftConfig(data=KeyValue))``.
    """
    return _run(add_consensus_group_async(name, n_replica, config, await_timeout))


GroupSpecArg = str | tuple
"""One group for ``add_consensus_groups``: ``name``, ``(name, n_replica)`` or
``(name, n_replica, config)``."""


def _group_specs(groups: Any, n_replica: int, config: RaftConfig | None) -> list[tuple[str, int, RaftConfig | None]]:
    if isinstance(groups, str):
        raise TypeError("add_consensus_groups: groups must be a list of names or (name, n_replica[, config]) "
                        f"tuples, not one string ({groups!r}); for one group use add_consensus_group")
    specs: list[tuple[str, int, RaftConfig | None]] = []
    seen: set[str] = set()
    for item in groups:
        if isinstance(item, str):
            name, n, cfg = item, n_replica, config
        elif isinstance(item, tuple) and 1 <= len(item) <= 3:
            name, n, cfg = (*item, *(n_replica, config)[len(item) - 1:])
        else:
            raise TypeError(f"add_consensus_groups: {item!r} is not a name or a (name, n_replica[, config]) tuple")
        _check_name(name)
        if name in seen:
            raise ValueError(f"add_consensus_groups: group {name!r} is listed twice")
        seen.add(name)
        specs.append((name, n, cfg))
    return specs


async def add_consensus_groups_async(
    groups: Any, n_replica: int = 3, config: RaftConfig | None = None, *, concurrency: int = 16,
    await_timeout: float = 30.0, on_added: Any = None,
) -> list[str]:
    """``add_consensus_groups`` without the progress bar; ``on_added(name, exception or
    None)`` is called as each group is added or fails."""
    specs = _group_specs(groups, n_replica, config)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"add_consensus_groups: concurrency must be an int >= 1, got {concurrency!r}")
    sem = asyncio.Semaphore(concurrency)
    failures: dict[str, BaseException] = {}

    async def one(name: str, n: int, cfg: RaftConfig | None) -> None:
        async with sem:
            exc: BaseException | None = None
            try:
                await add_consensus_group_async(name, n, cfg, await_timeout)
            except Exception as e:  # noqa: BLE001 - reported with the others at the end
                exc = failures[name] = e
            if on_added is not None:
                on_added(name, exc)

    await asyncio.gather(*(one(*spec) for spec in specs))
    if failures:
        shown = ", ".join(f"{n} ({type(e).__name__})" for n, e in list(failures.items())[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        raise ExceptionGroup(
            f"add_consensus_groups: {len(failures)} of {len(specs)} groups were not added: {shown}{more}; "
            "the others were added", list(failures.values()))
    return [name for name, _, _ in specs]


def add_consensus_groups(
    groups: Any, n_replica: int = 3, config: RaftConfig | None = None, *, concurrency: int = 16,
    await_timeout: float = 30.0, progress: bool | None = None,
) -> list[str]:
    """Create many consensus groups, ``concurrency`` ``add_consensus_group`` calls at a time,
    with a progress bar on stderr (``progress``: None = only when stderr is a terminal).

    ``groups``: names, or ``(name, n_replica)`` / ``(name, n_replica, config)`` tuples; the
    others take ``n_replica`` and ``config``. Every name is checked before any group is
    created (``InvalidNameError``, ``ValueError`` for a name listed twice). One group that
    fails does not stop the others: at the end an ``ExceptionGroup`` holds each failure
    (each names its group: ``AlreadyAddedError``, ``AwaitTimeoutError`` ...). Returns the
    names added. In default mode every member is a process: lower ``concurrency`` there.

    Example: ``add_consensus_groups([f"shard-{i}" for i in range(1000)], 3, RaftConfig(data=KeyValue))``.
    """
    import sys

    specs = _group_specs(groups, n_replica, config)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        return _run(add_consensus_groups_async(specs, concurrency=concurrency, await_timeout=await_timeout))
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed = 0
    with Progress(TextColumn("adding consensus groups"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("add", total=len(specs), failed=0)

        def step(_name: str, exc: BaseException | None) -> None:
            nonlocal failed
            failed += exc is not None
            bar.update(task, advance=1, failed=failed)

        return _run(add_consensus_groups_async(specs, concurrency=concurrency, await_timeout=await_timeout,
                                               on_added=step))


async def remove_consensus_group_async(name: str, *, wait: float = 30.0) -> bool:
    _check_name(name)
    if not wait >= 0:
        raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
    await _cluster("remove_group", _rid(), name)
    get_client().forget_group(name)
    await _kick()  # the reconciler has every node stop its members
    deadline = asyncio.get_running_loop().time() + wait
    while await _cluster("cleanup_ongoing", name):
        if asyncio.get_running_loop().time() >= deadline:
            log.warning("group %r is removed, but after %.0f s some of its members are not stopped yet: they "
                        "stop in the background. Until then add_consensus_group(%r) raises CleanupOngoingError, "
                        "and with persistence their files are not all retired: a whole-cluster restart that also "
                        "loses Ray's GCS could find the group in them again.", name, wait, name)
            return False
        await asyncio.sleep(0.1)
    return True


def remove_consensus_group(name: str, *, wait: float = 30.0) -> bool:
    """Remove group ``name``: recorded at once (its commands and queries raise
    ``NotFoundError`` from then on), then the reconciler stops its members on every node;
    with persistence their files are retired, durably. Returns True once that is done, or
    False (with a warning) if it is not done within ``wait`` seconds: it goes on in the
    background, and until it ends ``add_consensus_group(name)`` raises
    ``CleanupOngoingError``. Waiting matters with persistence: files that still say the group
    lives are all a whole-cluster restart that lost Ray's GCS has to go by. ``wait=0``:
    return at once (raft_fleet's behaviour). Raises ``NotFoundError``."""
    return _run(remove_consensus_group_async(name, wait=wait))


async def consensus_groups_async() -> dict[str, int]:
    return await _cluster("consensus_groups")


def consensus_groups() -> dict[str, int]:
    """``{name: n_replica}`` of every registered group."""
    return _run(consensus_groups_async())


# ---------------------------------------------------------------------------------------
# Commands and queries


def _missing(name: str, what: str) -> Any:
    async def check() -> None:
        # No member actor at all: an unknown (or removed) group fails at once, not after
        # retries, and so does a lost one (GroupLostError: only an operator can help).
        await _cluster("check_group", name, what)

    return check


async def _existing_cluster(method: str) -> Any:
    """Call the ClusterActor only if it exists: the background refresher must never bring a
    torn-down fleet's metadata back (``_cluster`` creates the actor on first use)."""
    from .runtime.cluster_actor import CLUSTER_ACTOR_NAME

    actor = await asyncio.get_running_loop().run_in_executor(
        None, lambda: ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE))
    return await asyncio.wait_for(getattr(actor, method).remote(), CLUSTER_CALL_TIMEOUT)


async def _refresh_interval() -> float:
    try:
        return (await _existing_cluster("fleet_config")).leader_pid_cache_refresh_interval
    except Exception:  # noqa: BLE001 - no fleet (yet, or any more): look again later
        return FleetConfig().leader_pid_cache_refresh_interval


async def _registered() -> set[str]:
    return set(await _existing_cluster("consensus_groups"))


def _client() -> Any:
    client = get_client()
    client.ensure_refresher(_refresh_interval, _registered)
    return client


async def _not_found_if_unregistered(name: str, what: str, exc: errors.NoLeaderError) -> None:
    """After a call found no leader: raise ``NotFoundError`` if ``name`` is not (any more) a
    registered group, ``GroupLostError`` if the reconciler found it lost. A removed group's
    members stop one by one in the background, so its callers see members that answer
    ``no_member``/``removed`` or not at all, which looks like an election; the registry says
    what it is. Only on this failure path: the registry is not asked per command."""
    try:
        await _cluster("check_group", name, what)
    except (errors.NotFoundError, errors.GroupLostError) as err:
        raise err from exc
    except Exception:  # noqa: BLE001 - the ClusterActor is unreachable: keep the NoLeaderError
        return


async def _call(name: str, what: str, op: ClientOp, timeout: float, retry: int, retry_interval: float) -> Any:
    try:
        return await _client().call(
            name, op, operation=what, timeout=timeout, retry=retry, retry_interval=retry_interval,
            on_missing=_missing(name, what),
        )
    except errors.NoLeaderError as exc:
        await _not_found_if_unregistered(name, what, exc)
        raise


def _call_sync(name: str, what: str, op: ClientOp, timeout: float, retry: int, retry_interval: float) -> Any:
    try:
        return _client().call_sync(
            name, op, operation=what, timeout=timeout, retry=retry, retry_interval=retry_interval,
            on_missing=_missing(name, what),
        )
    except errors.NoLeaderError as exc:
        _run(_not_found_if_unregistered(name, what, exc))
        raise


def _check_call_args(timeout: float, retry: int, retry_interval: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        raise ValueError(f"retry must be an int >= 0, got {retry!r}")
    if not retry_interval >= 0:
        raise ValueError(f"retry_interval must be >= 0 seconds, got {retry_interval!r}")


def _command_op(name: str, arg: Any) -> CommandOp:
    _check_name(name)
    data = _encode_arg(name, "command", arg)
    return CommandOp(get_client().new_command_id(name), data)


async def command_async(
    name: str, arg: Any, timeout: float = 0.5, retry: int = 3, retry_interval: float = 1.0
) -> Any:
    """Awaitable ``command`` for async actors and coroutines."""
    _check_call_args(timeout, retry, retry_interval)
    _ensure_ray()
    op = _command_op(name, arg)
    try:
        return await _on_client(_call(name, "command", op, timeout, retry, retry_interval))
    finally:
        get_client().done_command(op.cmd_id)


def command(name: str, arg: Any, timeout: float = 0.5, retry: int = 3, retry_interval: float = 1.0) -> Any:
    """Run ``Data.command(arg)`` on group ``name`` and return its result.

    Finds and caches the leader, follows not-leader hints, and retries up to ``retry`` times
    ``retry_interval`` apart, each try bounded by ``timeout``; the worst case blocks about
    ``timeout*(retry+1) + retry_interval*retry`` plus leader discovery. Every retry carries
    the same command id, so the command is applied at most once.

    Raises the exception the command raised (the value is then unchanged), ``NoLeaderError``
    if no leader answered (the command may or may not have been applied), ``NotFoundError``
    for an unknown or removed group (also when it was removed while the command was being
    retried: whatever it did went with the group), ``GroupLostError`` for a group the
    reconciler found lost (a majority of its voters is gone: see ``repair_consensus_group``),
    ``TypeError`` for an unpicklable argument, ``CommandTooLargeError``. Until the reconciler has stopped a removed group's members
    (about one round), a member that still leads may answer it.

    Example: ``command("counter", "inc")``.
    """
    _check_call_args(timeout, retry, retry_interval)
    _ensure_ray()
    op = _command_op(name, arg)
    try:
        return _call_sync(name, "command", op, timeout, retry, retry_interval)
    finally:
        get_client().done_command(op.cmd_id)


async def query_async(
    name: str, arg: Any, timeout: float = 0.5, retry: int = 3, retry_interval: float = 1.0
) -> Any:
    """Awaitable ``query``."""
    _check_call_args(timeout, retry, retry_interval)
    _check_name(name)
    _ensure_ray()
    op = QueryOp(_encode_arg(name, "query", arg))
    return await _on_client(_call(name, "query", op, timeout, retry, retry_interval))


def query(name: str, arg: Any, timeout: float = 0.5, retry: int = 3, retry_interval: float = 1.0) -> Any:
    """Run ``Data.query(arg)`` on group ``name``: linearizable (ReadIndex, or the leader's
    lease when the group's config enables it); no log entry is written. Same retries and
    errors as ``command``."""
    _check_call_args(timeout, retry, retry_interval)
    _check_name(name)
    _ensure_ray()
    op = QueryOp(_encode_arg(name, "query", arg))
    return _call_sync(name, "query", op, timeout, retry, retry_interval)


# ---------------------------------------------------------------------------------------
# Inspection and repair


async def whereis_leader_async(name: str) -> Any:
    _check_name(name)
    client = get_client()
    lead = client.cached_leader(name) or await client.discover(name)
    return None if lead is None else lead.handle


def whereis_leader(name: str) -> Any:
    """The actor handle of the leader of ``name`` (cached, or found by asking every member),
    or ``None``. A cached handle is returned without checking it is still the leader."""
    return _run(whereis_leader_async(name))


async def find_consensus_group_with_no_established_leader_async() -> tuple[str, list] | None:
    client = get_client()
    lost = await _cluster("lost_groups")
    # Lost groups first: they never get a leader by themselves (an operator must act).
    for name in [*sorted(lost), *sorted(set(await _cluster("consensus_groups")) - set(lost))]:
        sts = await client.statuses(name)
        if name in lost or established_leader(sts) is None:
            return name, [(s.node_id, s.as_dict()) for s in sts.values() if s is not None]
    return None


def find_consensus_group_with_no_established_leader() -> tuple[str, list] | None:
    """The first group in which no leader is agreed on by a majority of its answering
    members, as ``(name, [(node_id, status), ...])``; ``None`` if every group is healthy.
    Lost groups (``lost_consensus_groups()``) come first, whatever their members say: the
    list is empty when none of them runs any more."""
    return _run(find_consensus_group_with_no_established_leader_async())


async def lost_consensus_groups_async() -> dict[str, dict[str, Any]]:
    lost = await _cluster("lost_groups")
    return {name: {"reason": m.reason, "since": m.since, "highest_commit_index": m.highest_commit}
            for name, m in sorted(lost.items())}


def lost_consensus_groups() -> dict[str, dict[str, Any]]:
    """``{name: {"reason", "since", "highest_commit_index"}}`` of the groups the reconciler
    found *lost*: a majority of the voters of their last configuration is definitely gone (Ray
    reports their nodes dead, or their nodes' agents answer they no longer run them), so they
    cannot elect a leader, and no safe automatic restore was possible (no persistence, or the
    files of a majority cannot be read). A lost group is kept: its commands and queries raise
    ``GroupLostError`` until ``repair_consensus_group(name, unsafe=True)`` recovers it or
    ``remove_consensus_group(name)`` drops it. ``since`` is epoch seconds;
    ``highest_commit_index`` the highest commit index the reconciler saw any member report.

    Example: ``for name, why in lost_consensus_groups().items(): print(name, why["reason"])``."""
    return _run(lost_consensus_groups_async())


async def repair_consensus_group_async(name: str, *, unsafe: bool = False) -> dict[str, Any]:
    _check_name(name)
    _ensure_ray()
    res: RepairOutcome = await asyncio.wait_for(balancer_handle().repair.remote(name, bool(unsafe)), REPAIR_TIMEOUT)
    plan = res.plan.as_dict() if res.plan is not None else None
    if res.outcome == "not_found":
        raise errors.NotFoundError(name, operation="repair_consensus_group")
    if res.outcome != "repaired":
        why = res.reason if res.outcome == "refused" else (
            f"the recovery failed midway ({res.reason}); the group stays lost (members may have been "
            "stopped): run it again")
        raise errors.RepairRefusedError(name, reason=why, plan=plan)
    get_client().forget_group(name)
    report = dict(plan or {})
    report.update(group=name, lost_since=res.lost_since, lost_reason=res.reason)
    return report


def repair_consensus_group(name: str, *, unsafe: bool = False) -> dict[str, Any]:
    """Recover a *lost* group (``lost_consensus_groups()``): an explicit, unsafe operator
    action, as ``raftfleet repair NAME --unsafe``. The reconciler recovers it from its most
    up-to-date source, comparing logs as Raft does (last term, then last index): a voter that
    still runs (every other member is stopped and force-removed from its configuration; it
    leads alone and the reconciler adds members again), else the newest files readable on the
    answering nodes (every running member is stopped first, then a new incarnation starts from
    them), else nothing (a new, empty incarnation). Never beside a member that may still run
    unseen (on a node whose agent does not answer): that is refused until its node answers or
    Ray reports it dead.

    Unsafe because what it keeps may lack acknowledged entries: the returned report says what
    was kept and what may be lost: ``source`` (``"survivor"``, ``"files"``, ``"empty"``),
    ``member``, ``node``, ``recovered_index`` and ``term`` (the last log entry kept),
    ``highest_commit_index`` (the highest commit index any member was seen with) and
    ``may_lose_at_least`` (their difference), ``stop``, ``force_remove``, ``summary``.

    Without ``unsafe=True`` it does nothing and raises ``RepairRefusedError``, whose message
    and ``plan`` say what it would do and may lose. Also ``RepairRefusedError`` for a group
    that is not lost (nothing to repair) or when no recovery is possible now; ``NotFoundError``
    for an unknown group.

    Example::

        repair_consensus_group("orders")  # RepairRefusedError: it would recover from ... may lose 2
        repair_consensus_group("orders", unsafe=True)["may_lose_at_least"]  # 2
    """
    return _run(repair_consensus_group_async(name, unsafe=unsafe))


async def remove_dead_pids_located_in_dead_node_async(node_id: str, force: bool = False) -> None:
    await repair.remove_dead_members(node_id, force=force)


def remove_dead_pids_located_in_dead_node(node_id: str, force: bool = False) -> None:
    """Remove from every group the members that lived on ``node_id``, and drop the node from
    the active nodes (the reconciler does this by itself for a node Ray reports dead; this
    is the operator's tool). Through each group's leader when one is established; only for
    a group that shows no leader over several observations spanning more than two election
    timeouts, by ``force_remove_member`` on every survivor (unsafe by design: committed
    entries can be lost; for a lost group, ``repair_consensus_group`` picks the most
    up-to-date source and says what may be lost). Raises ``ValueError`` for a node Ray
    reports alive, unless ``force=True``. Idempotent."""
    return _run(remove_dead_pids_located_in_dead_node_async(node_id, force))


remove_dead_members = remove_dead_pids_located_in_dead_node
remove_dead_members_async = remove_dead_pids_located_in_dead_node_async


async def unreachable_nodes_async() -> dict[str, float]:
    here = ray.get_runtime_context().get_node_id()
    active = await _cluster("active_nodes")
    nodes = [n for ns in active.values() for n in ns]
    # Ask this node's agent (raft_fleet: "unreachable from Node.self()"), else any active one.
    for node in ([here] if here in nodes else []) + nodes:
        try:
            agent = await _agent(node)
            return await asyncio.wait_for(agent.unreachable_nodes.remote(), 10.0)
        except Exception:  # noqa: BLE001 - that agent is unreachable itself; try another
            continue
    return {}


def unreachable_nodes() -> dict[str, float]:
    """``{node_id: epoch_seconds}``: active nodes that cannot be reached (dead in Ray's node
    table, or their agent does not answer), with when they were first seen unreachable."""
    return _run(unreachable_nodes_async())


def query_non_leader(name: str, arg: Any, member: Any) -> Any:
    """Run ``Data.query(arg)`` on one member's local state (possibly stale; works without a
    leader). ``member`` is a member actor handle (e.g. from ``whereis_leader``)."""
    _check_name(name)
    res: Reply = ray.get(member.query_non_leader.remote(name, _encode_arg(name, "query", arg)))
    if isinstance(res, ValueReply):
        return codec.loads(res.value)
    if isinstance(res, RaisedReply):
        raise codec.loads(res.exc)
    raise errors.RaftFleetError(f"query_non_leader on group {name!r}: {res}")


async def group_status_async(name: str) -> dict[str, dict | None]:
    _check_name(name)
    return _as_dicts(await get_client().statuses(name))


def _as_dicts(sts: dict[str, Any]) -> dict[str, dict | None]:
    """The user's view of members' statuses (``MemberStatus``): dicts, as raft_fleet answers."""
    return {k: (s.as_dict() if s is not None else None) for k, s in sts.items()}


def group_status(name: str) -> dict[str, dict | None]:
    """``{member actor name: status}`` for every live member of ``name`` (rafted_value's status
    fields plus ``node_id``, ``commit_index``, ``applied_index`` and ``quarantine``); ``None`` for
    a member that did not answer. A member its host quarantined (something it was doing raised)
    has ``state_name`` ``"quarantined"`` and ``quarantine`` says why (a ``Quarantine``: member,
    host, node, ``during``, ``error``, ``message``, ``since``); for the others it is None. For
    notebooks and operators."""
    return _run(group_status_async(name))


async def group_statuses_async(names: list[str] | None = None) -> dict[str, dict[str, dict | None]]:
    names = sorted(await _cluster("consensus_groups")) if names is None else [_check_name(n) for n in names]
    client = get_client()
    sem = asyncio.Semaphore(16)

    async def one(name: str) -> tuple[str, dict[str, dict | None]]:
        async with sem:
            return name, _as_dicts(await client.statuses(name))

    return dict(await asyncio.gather(*(one(n) for n in names)))


def group_statuses(names: list[str] | None = None) -> dict[str, dict[str, dict | None]]:
    """``{group: group_status(group)}`` for ``names`` (default: every registered group),
    asked 16 groups at a time: one call for a whole-fleet view (``raftfleet status``).
    Raises ``InvalidNameError`` for a bad name; an unknown name maps to ``{}``."""
    return _run(group_statuses_async(names))


def shutdown_fleet() -> None:
    """Tear the whole fleet down: kill every raftfleet actor (the reconciler and the agents
    first, so nothing re-creates members or metadata, then the member hosts) and delete the
    ClusterActor and its checkpoint. Without persistence every group's state is lost; with
    ``persistence_dir_parent`` the members' files stay, and a fleet activated again over
    them (same node names) restores its groups. For tests, demos and notebooks."""
    from .runtime.cluster_actor import destroy_cluster_actor
    from .runtime.factory import BALANCER_NAME, forget_balancer_handle

    _ensure_ray()
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    order = {BALANCER_NAME: 0, AGENT_PREFIX: 1, HOST_PREFIX: 2}
    doomed = [n for n in names if n == BALANCER_NAME or n.startswith((AGENT_PREFIX, HOST_PREFIX))]
    for name in sorted(doomed, key=lambda n: min(v for k, v in order.items() if n.startswith(k))):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass
    # ray.kill only asks: wait until they are gone, or one still running could create the
    # ClusterActor again, or have it checkpoint, after it was destroyed.
    _wait_actors_gone(set(doomed))
    forget_balancer_handle()
    destroy_cluster_actor(wait_gone=_wait_actors_gone)
    get_client().forget_all()


def _wait_actors_gone(names: set[str], timeout: float = 30.0) -> None:
    """Until none of ``names`` is a live named actor of the fleet's namespace (one listing
    per poll: a lookup of an actor on a dead node could block), at most ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while names:
        live = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE}
        names = names & live
        if not names or time.monotonic() > deadline:
            if names:
                log.warning("shutdown_fleet: %d actor(s) still alive after %.0f s: %s", len(names), timeout,
                            ", ".join(sorted(names)[:5]))
            return
        time.sleep(0.05)


async def explain_placement_async(name: str) -> dict[str, Any]:
    _check_name(name)
    _ensure_ray()
    return await asyncio.wait_for(balancer_handle().explain.remote(name), CLUSTER_CALL_TIMEOUT)


def explain_placement(name: str) -> dict[str, Any]:
    """Why the members of ``name`` are where they are: its desired members (node, zone,
    rendezvous rank, the desired leader), its actual members (node, zone, role, voter or
    learner, lag behind the leader's commit index), the step the reconciler would take now
    and why, and the last step it took with its outcome. Example::

        explain_placement("orders")["next_step"]
        # 'Nothing: converged: every desired node has a voter and the leader is on ...'
    """
    return _run(explain_placement_async(name))


def leader_status(name: str) -> dict | None:
    """The status of the member of ``name`` that says it leads (highest term), or None."""
    _check_name(name)
    lead = best_leader(_run(get_client().statuses(name)))
    return lead.as_dict() if lead is not None else None


def group_ready(name: str, n_replica: int) -> bool:
    """True when ``name`` has a leader with ``n_replica`` members, all answering and caught up
    to the same applied index: what a test or a demo waits for after ``add_consensus_group``
    (followers join in the background)."""
    _check_name(name)
    statuses = _run(get_client().statuses(name))
    sts = [s for s in statuses.values() if s]
    lead = best_leader(statuses)
    return (
        lead is not None
        and len(lead.members) == n_replica
        and not lead.unresponsive_followers
        and len(sts) == n_replica
        and len({s.applied_index for s in sts}) == 1
    )

