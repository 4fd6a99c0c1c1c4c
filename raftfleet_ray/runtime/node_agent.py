"""The per-node agent (raft_fleet's per-node ``Manager``): starts and stops the members on
its node, and grows a new group to its desired size in the background."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from ..config import RaftConfig
from .names import NAMESPACE, agent_name, member_actor_name

log = logging.getLogger(__name__)

FOLLOWER_START_TRIES = 3  # raft_fleet's Manager: 3 attempts per follower


class NodeAgent:
    """Plain class; ``factory.start_node_agent`` makes it a detached actor pinned to its node."""

    def __init__(self, node_id: str, zone: str) -> None:
        self.node_id = node_id
        self.zone = zone
        self._members: dict[str, tuple[str, Any]] = {}  # group -> (member id, host handle)
        self._tasks: set[asyncio.Task] = set()
        self._unhealthy_since: dict[str, float] = {}  # node -> epoch seconds first seen down
        self._started = False

    def ping(self) -> tuple[str, str]:
        return self.node_id, self.zone

    async def start(self) -> None:
        """Start the periodic loop (idempotent): stop members of removed groups and probe the
        other active nodes, every ``FleetConfig`` interval."""
        if not self._started:
            self._started = True
            self._spawn(self._periodic())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("node agent %s: background task failed: %r", self.node_id[:12], t.exception())

        task.add_done_callback(done)

    async def _periodic(self) -> None:
        last_cleanup = last_probe = 0.0
        while True:
            try:
                cluster = _cluster_actor()
                fleet = await cluster.fleet_config.remote()
                now = time.monotonic()
                if now - last_cleanup >= fleet.balancing_interval:
                    last_cleanup = now
                    await self.cleanup_removed()
                    await self.forget_removed()
                    await self.stop_unregistered(await cluster.consensus_groups.remote())
                if now - last_probe >= fleet.node_purge_reconnect_interval:
                    last_probe = now
                    await self.unreachable_nodes(purge_after=fleet.node_purge_failure_time_window)
                await asyncio.sleep(min(fleet.balancing_interval, fleet.node_purge_reconnect_interval, 5.0))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a reconcile loop never dies (conventions §7)
                log.warning("node agent %s: periodic round failed: %r", self.node_id[:12], exc)
                await asyncio.sleep(1.0)

    async def cleanup_removed(self) -> list[str]:
        """Stop this node's members of removed groups, then ack to the ClusterActor so the
        names can be reused (raft_fleet's RecentlyRemovedGroups, reference §3.8)."""
        cluster = _cluster_actor()
        names, index = await cluster.removed_names_for_node.remote(self.node_id)
        stopped = await self.stop_members(names)
        await cluster.stopped_extra_members.remote(uuid.uuid4().hex, self.node_id, index)
        return stopped

    async def unreachable_nodes(self, purge_after: float | None = None) -> dict[str, float]:
        """Active nodes this node cannot reach (Ray says dead, or their agent does not answer
        within 2 s), with the epoch time they were first seen so. With ``purge_after``, nodes
        unreachable for longer are purged (``remove_dead_pids_located_in_dead_node``)."""
        import ray

        cluster = _cluster_actor()
        active = await cluster.active_nodes.remote()
        others = [n for nodes in active.values() for n in nodes if n != self.node_id]
        loop = asyncio.get_running_loop()
        # GCS lookups run on a thread: this loop also grows groups and must not freeze.
        alive = {n["NodeID"] for n in await loop.run_in_executor(None, ray.nodes) if n.get("Alive")}

        async def reachable(node: str) -> bool:
            if node not in alive:
                return False
            try:
                agent = await loop.run_in_executor(
                    None, lambda: ray.get_actor(agent_name(node), namespace=NAMESPACE)
                )
                await asyncio.wait_for(agent.ping.remote(), 2.0)
                return True
            except Exception:  # noqa: BLE001
                return False

        ok = await asyncio.gather(*(reachable(n) for n in others))
        now = time.time()
        for node, up in zip(others, ok, strict=True):
            if up:
                self._unhealthy_since.pop(node, None)
            else:
                self._unhealthy_since.setdefault(node, now)
        for node in list(self._unhealthy_since):
            if node not in others:
                del self._unhealthy_since[node]
        if purge_after is not None and self.node_id in {n for ns in active.values() for n in ns}:
            # Only nodes that Ray itself reports dead are purged: a node whose agent alone does
            # not answer is unreachable, not dead, and purging it would drop live members.
            # (An inactive node's agent does not purge anyone, as in raft_fleet.)
            for node, since in list(self._unhealthy_since.items()):
                if now - since > purge_after and node not in alive:
                    from ..api import remove_dead_pids_located_in_dead_node_async

                    log.warning("node %s unreachable for %.0fs: purging it", node[:12], now - since)
                    await remove_dead_pids_located_in_dead_node_async(node)
        return dict(self._unhealthy_since)

    def members(self) -> dict[str, str]:
        return {g: mid for g, (mid, _) in self._members.items()}

    async def start_member(self, group: str, config: RaftConfig, bootstrap: bool) -> str:
        """Start a member of ``group`` on this node and return its member id: the first member
        of a new group (``bootstrap``: it elects itself at once), or a joiner."""
        from .factory import start_member_host

        existing = self._members.get(group)
        if existing is not None:
            try:
                await asyncio.wait_for(existing[1].ping.remote(), 5.0)
                raise RuntimeError(
                    f"node {self.node_id[:12]} already runs member {existing[0]} of group {group!r}"
                )
            except TimeoutError as exc:
                raise RuntimeError(f"member {existing[0]} of {group!r} does not answer") from exc
            except RuntimeError:
                raise
            except Exception:  # noqa: BLE001 - the old member is dead: start a new one
                self._members.pop(group, None)
        name = member_actor_name(group, self.node_id)
        handle = start_member_host(name, self.node_id, self.zone)
        try:
            mid = await handle.start_member.remote(group, config, bootstrap)
        except BaseException:
            # e.g. the Data class's __init__ raised: never leave an orphan actor behind (it
            # would hold the group's name and make add_consensus_group say cleanup_ongoing).
            import ray

            ray.kill(handle, no_restart=True)
            raise
        self._members[group] = (mid, handle)
        log.info("group %s: started member %s (bootstrap=%s)", group, mid, bootstrap)
        return mid

    async def stop_member(self, group: str) -> bool:
        """Stop this node's member of ``group`` (its state is discarded)."""
        import ray

        entry = self._members.pop(group, None)
        if entry is None:
            return False
        try:
            ray.kill(entry[1], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        log.info("group %s: stopped member %s", group, entry[0])
        return True

    async def stop_members(self, groups: list[str]) -> list[str]:
        return [g for g in groups if await self.stop_member(g)]

    async def stop_unregistered(self, groups: dict[str, int]) -> list[str]:
        """Stop members of groups the fleet no longer knows: e.g. a follower whose start raced
        with the removal of its group, after this node had already acknowledged the removal."""
        return await self.stop_members([g for g in self._members if g not in groups])

    async def forget_removed(self) -> list[str]:
        """Stop members that learned they were removed from their group."""
        gone = []
        for group, (_mid, handle) in list(self._members.items()):
            try:
                hosted = await asyncio.wait_for(handle.hosted.remote(), 5.0)
            except TimeoutError:
                continue  # busy, not gone: killing a slow member could break its group's quorum
            except Exception:  # noqa: BLE001 - the actor is dead
                hosted = {}
            if group not in hosted:
                await self.stop_member(group)
                gone.append(group)
        return gone

    def grow_group(
        self, group: str, config: RaftConfig, leader_mid: str, follower_nodes: list[str], delay: float
    ) -> None:
        """Add one follower on each of ``follower_nodes`` in the background, the i-th after
        ``i * delay`` seconds (raft_fleet's staggered start), each with a few retries."""
        self._spawn(self._grow(group, config, leader_mid, follower_nodes, delay))

    async def _grow(
        self, group: str, config: RaftConfig, leader_mid: str, nodes: list[str], delay: float
    ) -> None:
        for node in nodes:
            await asyncio.sleep(delay)
            try:
                if group not in await _cluster_actor().consensus_groups.remote():
                    return  # removed meanwhile: starting followers would only leave orphans
            except Exception as exc:  # noqa: BLE001 - e.g. the ClusterActor is restarting
                log.warning("group %s: could not check the group before adding a follower: %r", group, exc)
            await add_follower(group, config, node, delay)


def _cluster_actor() -> Any:
    """The ClusterActor, looked up only: an agent never re-creates a fleet that was torn down."""
    import ray

    from .cluster_actor import CLUSTER_ACTOR_NAME

    return ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE)


async def add_follower(group: str, config: RaftConfig, node: str, delay: float) -> str | None:
    """Start a joiner of ``group`` on ``node`` and have the leader add it; retried a few times.
    Returns the new member id, or None if every attempt failed (logged)."""
    import ray

    from ..client import get_client

    client = get_client()
    joiner: str | None = None
    for attempt in range(FOLLOWER_START_TRIES):
        if attempt:
            await asyncio.sleep(2 * delay)
        try:
            if joiner is None:
                agent = ray.get_actor(agent_name(node), namespace=NAMESPACE)
                joiner = await agent.start_member.remote(group, config, False)
            res = await client.run_async(_admin(client, group, "add_member", joiner))
            if res[0] == "ok" or (res[0] == "rejected" and res[1] == "already_member"):
                return joiner
            log.info("group %s: adding %s: %s; retrying", group, joiner, res)
        except Exception as exc:  # noqa: BLE001 - logged, retried; the balancer repairs later
            log.warning("group %s: adding a follower on %s failed: %r", group, node[:12], exc)
    log.error("group %s: could not add a follower on node %s", group, node[:12])
    if joiner is not None:
        # A joiner never added would sit there forever, and block the next start on its node.
        try:
            await ray.get_actor(agent_name(node), namespace=NAMESPACE).stop_member.remote(group)
        except Exception:  # noqa: BLE001 - the node is gone: nothing to stop
            pass
    return None


async def _admin(client: Any, group: str, op: str, *args: Any) -> tuple:
    lead = client.cached_leader(group) or await client.discover(group)
    for _ in range(10):
        if lead is None:
            await asyncio.sleep(0.2)
            lead = await client.discover(group)
            continue
        res = await lead.handle.admin.remote(group, op, *args)
        if res[0] == "rejected" and res[1] in ("not_leader", "leadership_lost"):
            client.forget_group(group)
            lead = await client.discover(group)
            continue
        if res[0] == "rejected" and res[1] == "uncommitted_membership_change":
            await asyncio.sleep(0.2)
            continue
        return res
    return ("rejected", "not_leader", None)
