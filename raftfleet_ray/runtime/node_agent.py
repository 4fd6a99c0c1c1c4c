"""The per-node agent (raft_fleet's per-node ``Manager``).

It starts and stops the members on its node and keeps the node's member directory: which
host actor carries which group. With ``FleetConfig.members_per_host = N > 1`` it packs the
node's members into hosts of up to N members, so creating a member is a method call on a
running host, not a new process. It also probes the other nodes' agents for liveness: a
node that stops answering is reported to the local hosts (``peers_down_on_node``), whose
members then stop waiting for peers there, and to ``unreachable_nodes()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..config import FleetConfig, RaftConfig
from .directory import get_directory
from .names import HOST_PREFIX, NAMESPACE, host_actor_name, is_host_on_node, node_prefix

log = logging.getLogger(__name__)

FOLLOWER_START_TRIES = 3  # raft_fleet's Manager: 3 attempts per follower
HOSTED_TIMEOUT = 5.0  # a host that does not answer hosted() in time is busy, not gone
REPORT_AGAIN = 5.0  # seconds between reports of a node that stays unreachable


@dataclass(slots=True)
class _Host:
    name: str
    handle: Any
    groups: set[str] = field(default_factory=set)
    reserved: int = 0  # member starts under way


class NodeAgent:
    """Plain class; ``factory.start_node_agent`` makes it a detached actor pinned to its node."""

    def __init__(self, node_id: str, zone: str) -> None:
        self.node_id = node_id
        self.zone = zone
        self._members: dict[str, tuple[str, str]] = {}  # group -> (member id, host name)
        self._hosts: dict[str, _Host] = {}
        self._tasks: set[asyncio.Task] = set()
        self._unhealthy_since: dict[str, float] = {}  # node -> epoch seconds first seen down
        self._reported_at: dict[str, float] = {}  # node -> monotonic time of the last report
        self._started = False
        self._fleet = FleetConfig()

    def ping(self) -> tuple[str, str]:
        return self.node_id, self.zone

    def process_info(self) -> dict[str, int]:
        """pid, RSS, USS and CPU time of the agent's process (``procinfo.process_info``)."""
        from .procinfo import process_info

        return process_info()

    async def start(self, fleet: FleetConfig | None = None) -> None:
        """Start the periodic loops (idempotent): adopt the hosts already running on this node
        (after an agent restart), stop members of removed groups, probe the other nodes."""
        if fleet is not None:
            self._fleet = fleet
        if not self._started:
            self._started = True
            await self._adopt_hosts()
            self._spawn(self._periodic())
            self._spawn(self._probe_loop())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("node agent %s: background task failed: %r", self.node_id[:12], t.exception())

        task.add_done_callback(done)

    # -- the member directory ----------------------------------------------------------

    def members(self) -> dict[str, str]:
        """``{group: member id}`` of the members on this node."""
        return {g: mid for g, (mid, _) in self._members.items()}

    def members_of(self, group: str) -> dict[str, str]:
        """``{member id: host name}`` of this node's member of ``group`` (0 or 1 entries)."""
        entry = self._members.get(group)
        return {entry[0]: entry[1]} if entry else {}

    def directory(self) -> dict[str, tuple[str, str]]:
        """``{group: (member id, host name)}`` for every member on this node."""
        return dict(self._members)

    def hosts(self) -> dict[str, int]:
        """``{host name: number of members}``."""
        return {name: len(h.groups) for name, h in self._hosts.items()}

    async def _adopt_hosts(self) -> None:
        """Rebuild the directory from the hosts that run on this node (once, at start: an
        agent that died and came back must not lose track of its node's members)."""
        import ray

        loop = asyncio.get_running_loop()
        names = await loop.run_in_executor(None, lambda: [
            a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(HOST_PREFIX) and is_host_on_node(a["name"], self.node_id)
        ])
        for name in names:
            try:
                handle = await loop.run_in_executor(None, lambda n=name: ray.get_actor(n, namespace=NAMESPACE))
                hosted = await asyncio.wait_for(handle.hosted.remote(), HOSTED_TIMEOUT)
            except Exception:  # noqa: BLE001 - died meanwhile, or stuck: skip it
                continue
            host = self._register_host(name, handle)
            for group, mid in hosted.items():
                host.groups.add(group)
                self._members[group] = (mid, name)
        if names:
            log.info("node agent %s: adopted %d host(s), %d member(s)", self.node_id[:12], len(self._hosts), len(self._members))

    def _register_host(self, name: str, handle: Any) -> _Host:
        host = self._hosts[name] = _Host(name, handle)
        self._spawn(self._watch_host(host))
        return host

    async def _watch_host(self, host: _Host) -> None:
        """A long-polled ``watch`` call on a local host: when the host dies, Ray fails it at
        once and its members leave the directory (each is lost, as any member is)."""
        from .member import _is_dead_actor_error

        while self._hosts.get(host.name) is host:
            try:
                await host.handle.watch.remote()
            except Exception as exc:  # noqa: BLE001
                if _is_dead_actor_error(exc):
                    if self._hosts.get(host.name) is host:  # not one we stopped ourselves
                        self._forget_host(host.name)
                        log.warning("node agent %s: host %s died with %d member(s)", self.node_id[:12],
                                    host.name, len(host.groups))
                    return
                await asyncio.sleep(1.0)

    def _forget_host(self, name: str) -> None:
        host = self._hosts.pop(name, None)
        if host is None:
            return
        for g in host.groups:
            if self._members.get(g, ("", ""))[1] == name:
                del self._members[g]

    def _pick_host(self) -> _Host:
        """A host with room for one more member (the fullest, so hosts fill up and empty ones
        can go), or a new one. Synchronous: no other start can interleave."""
        limit = self._fleet.members_per_host
        best: _Host | None = None
        for h in self._hosts.values():
            n = len(h.groups) + h.reserved
            if n < limit and (best is None or n > len(best.groups) + best.reserved):
                best = h
        if best is None:
            from .factory import start_member_host

            name = host_actor_name(self.node_id)
            best = self._register_host(name, start_member_host(name, self.node_id, self.zone))
        return best

    async def start_member(self, group: str, config: RaftConfig, bootstrap: bool) -> str:
        """Start a member of ``group`` on this node and return its member id: the first member
        of a new group (``bootstrap``: it elects itself at once), or a joiner."""
        existing = self._members.get(group)
        if existing is not None:
            host = self._hosts.get(existing[1])
            try:
                st = await asyncio.wait_for(host.handle.status.remote(group), 5.0) if host else None
            except TimeoutError as exc:
                raise RuntimeError(f"member {existing[0]} of {group!r} does not answer") from exc
            except Exception:  # noqa: BLE001 - its host is dead: start a new member
                st = None
                self._forget_host(existing[1])
            if st is not None and st["state_name"] != "removed":
                raise RuntimeError(f"node {self.node_id[:12]} already runs member {existing[0]} of group {group!r}")
            self._drop_member(group)
        host = self._pick_host()
        host.reserved += 1
        try:
            mid = await host.handle.start_member.remote(group, config, bootstrap)
        except BaseException:
            # e.g. the Data class's __init__ raised: never leave an orphan behind (it would
            # hold the group's name and make add_consensus_group say cleanup_ongoing).
            host.reserved -= 1
            await self._release_if_empty(host)
            raise
        host.reserved -= 1
        host.groups.add(group)
        self._members[group] = (mid, host.name)
        log.info("group %s: started member %s (bootstrap=%s)", group, mid, bootstrap)
        return mid

    def _drop_member(self, group: str) -> _Host | None:
        entry = self._members.pop(group, None)
        if entry is None:
            return None
        host = self._hosts.get(entry[1])
        if host is not None:
            host.groups.discard(group)
        return host

    async def _release_if_empty(self, host: _Host) -> None:
        """A host with no member left goes (its process is the cost of a member)."""
        if host.groups or host.reserved or self._hosts.get(host.name) is not host:
            return
        import ray

        del self._hosts[host.name]
        try:
            ray.kill(host.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def stop_member(self, group: str) -> bool:
        """Stop this node's member of ``group`` (its state is discarded)."""
        entry = self._members.get(group)
        if entry is None:
            return False
        host = self._drop_member(group)
        if host is not None:
            if host.groups or host.reserved:
                try:
                    await asyncio.wait_for(host.handle.stop_member.remote(group), 10.0)
                except Exception:  # noqa: BLE001 - the host is dead or stuck: nothing to stop there
                    pass
            else:
                await self._release_if_empty(host)  # its last member: the process goes
        log.info("group %s: stopped member %s", group, entry[0])
        return True

    async def stop_members(self, groups: list[str]) -> list[str]:
        return [g for g in groups if await self.stop_member(g)]

    async def stop_unregistered(self) -> list[str]:
        """Stop members of groups the fleet no longer knows: e.g. a follower whose start raced
        with the removal of its group, after this node had already acknowledged the removal.
        Only members that existed before the registry was read: a group is registered before
        its first member starts, so a member started meanwhile may be of a group the read
        missed."""
        before = dict(self._members)
        groups = await _cluster_actor().consensus_groups.remote()
        return await self.stop_members([g for g, e in before.items() if g not in groups and self._members.get(g) == e])

    async def sync_hosts(self) -> list[str]:
        """Drop from the directory the members their host freed (removed from their group by
        a committed configuration). One call per host, not per member."""
        gone: list[str] = []
        for host in list(self._hosts.values()):
            # Only members known before the call: one started meanwhile is not in its answer.
            before = {g: self._members.get(g) for g in host.groups}
            try:
                hosted = await asyncio.wait_for(host.handle.hosted.remote(), HOSTED_TIMEOUT)
            except TimeoutError:
                continue  # busy, not gone: killing a slow host could break its groups' quorums
            except Exception:  # noqa: BLE001 - dead: its members are gone
                gone.extend(host.groups)
                self._forget_host(host.name)
                continue
            for g in [g for g, e in before.items() if g not in hosted and e is not None and self._members.get(g) == e]:
                self._drop_member(g)
                gone.append(g)
            await self._release_if_empty(host)
        return gone

    # -- periodic work -------------------------------------------------------------------

    async def _periodic(self) -> None:
        last_cleanup = last_purge = 0.0
        while True:
            try:
                cluster = _cluster_actor()
                self._fleet = fleet = await cluster.fleet_config.remote()
                now = time.monotonic()
                if now - last_cleanup >= fleet.balancing_interval:
                    last_cleanup = now
                    await self.cleanup_removed()
                    await self.sync_hosts()
                    await self.stop_unregistered()
                if now - last_purge >= fleet.node_purge_reconnect_interval:
                    last_purge = now
                    await self._purge(fleet.node_purge_failure_time_window)
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

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe()
                await asyncio.sleep(self._fleet.peer_probe_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("node agent %s: probe failed: %r", self.node_id[:12], exc)
                await asyncio.sleep(1.0)

    async def probe(self) -> dict[str, float]:
        """Probe every other active node (Ray says it is alive, and its agent answers a ping
        within the probe interval, at least 1 s). A node that turns unreachable is reported
        to this node's hosts at once. Returns ``unreachable_nodes()``."""
        import ray

        cluster = _cluster_actor()
        active = await cluster.active_nodes.remote()
        others = [n for nodes in active.values() for n in nodes if n != self.node_id]
        loop = asyncio.get_running_loop()
        alive = {n["NodeID"] for n in await loop.run_in_executor(None, ray.nodes) if n.get("Alive")}
        timeout = max(1.0, self._fleet.peer_probe_interval)
        directory = get_directory()

        async def reachable(node: str) -> bool:
            if node not in alive:
                return False
            agent = await directory.agent(node)
            if agent is None:
                return False
            try:
                await asyncio.wait_for(agent.ping.remote(), timeout)
                return True
            except Exception:  # noqa: BLE001
                directory.forget_agent(node)
                return False

        ok = await asyncio.gather(*(reachable(n) for n in others))
        now, mono = time.time(), time.monotonic()
        for node, up in zip(others, ok, strict=True):
            if up:
                self._unhealthy_since.pop(node, None)
                self._reported_at.pop(node, None)
                continue
            self._unhealthy_since.setdefault(node, now)
            # Reported at once, then every REPORT_AGAIN seconds while it stays unreachable: a
            # member that went quiet again after the first report (its leader was still up
            # for a moment and quiesced it anew) hears of it again, within a bounded time.
            if mono - self._reported_at.get(node, -1e9) >= REPORT_AGAIN:
                if node not in self._reported_at:
                    log.warning("node agent %s: node %s is unreachable", self.node_id[:12], node[:12])
                self._reported_at[node] = mono
                await self._report_node_down(node)
        for node in list(self._unhealthy_since):
            if node not in others:
                del self._unhealthy_since[node]
                self._reported_at.pop(node, None)
        return dict(self._unhealthy_since)

    async def _report_node_down(self, node: str) -> None:
        prefix = node_prefix(node)
        await asyncio.gather(
            *(h.handle.peers_down_on_node.remote(prefix) for h in list(self._hosts.values())),
            return_exceptions=True,
        )

    async def unreachable_nodes(self) -> dict[str, float]:
        """Active nodes this node cannot reach (Ray says dead, or their agent does not answer),
        with the epoch time they were first seen so; kept fresh by the probe loop."""
        return dict(self._unhealthy_since)

    async def _purge(self, purge_after: float) -> None:
        # Only nodes that Ray itself reports dead are purged: a node whose agent alone does
        # not answer is unreachable, not dead, and purging it would drop live members.
        # (An inactive node's agent does not purge anyone, as in raft_fleet.)
        import ray

        from .repair import remove_dead_members

        cluster = _cluster_actor()
        if await cluster.zone_of.remote(self.node_id) is None:
            return
        loop = asyncio.get_running_loop()
        alive = {n["NodeID"] for n in await loop.run_in_executor(None, ray.nodes) if n.get("Alive")}
        now = time.time()
        for node, since in list(self._unhealthy_since.items()):
            if now - since > purge_after and node not in alive:
                log.warning("node %s unreachable for %.0fs: purging it", node[:12], now - since)
                await remove_dead_members(node)

    # -- growing a new group (raft_fleet's staggered follower start) ------------------------

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
                if not await _cluster_actor().has_group.remote(group):
                    return  # removed meanwhile: starting followers would only leave orphans
            except Exception as exc:  # noqa: BLE001 - e.g. the ClusterActor is restarting
                log.warning("group %s: could not check the group before adding a follower: %r", group, exc)
            await add_follower(group, config, node, delay, leader_mid)


def _cluster_actor() -> Any:
    """The ClusterActor, looked up only: an agent never re-creates a fleet that was torn down."""
    import ray

    from .cluster_actor import CLUSTER_ACTOR_NAME

    return ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE)


async def add_follower(group: str, config: RaftConfig, node: str, delay: float, leader_hint: str | None = None) -> str | None:
    """Start a joiner of ``group`` on ``node`` and have the leader add it; retried a few times.
    Returns the new member id, or None if every attempt failed (logged)."""
    directory = get_directory()
    joiner: str | None = None
    for attempt in range(FOLLOWER_START_TRIES):
        if attempt:
            await asyncio.sleep(2 * delay)
        try:
            if joiner is None:
                agent = await directory.agent(node)
                if agent is None:
                    raise RuntimeError(f"node {node[:12]} has no agent")
                joiner = await agent.start_member.remote(group, config, False)
            res = await admin(group, "add_member", joiner, leader_hint=leader_hint)
            if res[0] == "ok" or (res[0] == "rejected" and res[1] == "already_member"):
                return joiner
            log.info("group %s: adding %s: %s; retrying", group, joiner, res)
        except Exception as exc:  # noqa: BLE001 - logged, retried; the balancer repairs later
            log.warning("group %s: adding a follower on %s failed: %r", group, node[:12], exc)
    log.error("group %s: could not add a follower on node %s", group, node[:12])
    if joiner is not None:
        # A joiner never added would sit there forever, and block the next start on its node.
        try:
            agent = await directory.agent(node)
            if agent is not None:
                await agent.stop_member.remote(group)
        except Exception:  # noqa: BLE001 - the node is gone: nothing to stop
            pass
    return None


async def admin(group: str, op: str, *args: Any, leader_hint: str | None = None, tries: int = 10) -> tuple:
    """An admin call (add_member, remove_member, transfer_leadership) on the leader of
    ``group``, following not-leader hints and waiting out an uncommitted membership change."""
    from .names import parse_member_id

    directory = get_directory()
    lead = leader_hint
    for _ in range(tries):
        if lead is None:
            lead, _ = await directory.find_leader(group)
            if lead is None:
                await asyncio.sleep(0.2)
                continue
        handle = await directory.host(parse_member_id(lead)[0])
        if handle is None:
            lead = None
            continue
        res = await handle.admin.remote(group, op, *args)
        if res[0] == "rejected" and res[1] in ("not_leader", "leadership_lost"):
            lead = res[2] if res[2] and res[2] != lead else None
            if lead is None:
                await asyncio.sleep(0.2)
            continue
        if res[0] == "rejected" and res[1] == "uncommitted_membership_change":
            await asyncio.sleep(0.2)
            continue
        return res
    return ("rejected", "not_leader", None)


__all__ = ["NodeAgent", "add_follower", "admin"]
