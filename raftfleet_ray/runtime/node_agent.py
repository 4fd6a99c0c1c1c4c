"""The per-node agent (raft_fleet's per-node ``Manager``).

It starts and stops the members on its node when the reconciler (``balancer.py``) says so,
and keeps the node's member directory: which host actor carries which group. With
``FleetConfig.members_per_host = N > 1`` it packs the node's members into hosts of up to N
members, so creating a member is a method call on a running host, not a new process. It
reports what runs on its node (``observe``, one call per node and round for the reconciler).
It also probes the other nodes' agents for liveness: a node that stops answering is
reported to the local hosts (``peers_down_on_node``), whose members then stop waiting for
peers there, to the reconciler, and to ``unreachable_nodes()``.

Ray restarts a dead agent on its node (``max_restarts=-1``): the new one adopts the hosts
that run there, so no member is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ..config import FleetConfig, RaftConfig
from ..placement.planner import FileCopy
from ..storage import HostLog
from . import env
from .directory import get_directory
from .member import _is_dead_actor_error, _restorable
from .names import HOST_PREFIX, host_actor_name, is_host_on_node, node_prefix
from .wire import MemberObservation

NODE_NAME_PREFIX = "raftfleet_node:"

log = logging.getLogger(__name__)

HOSTED_TIMEOUT = 5.0  # a host that does not answer hosted() in time is busy, not gone
STOP_TIMEOUT = 10.0  # a member stop (with persistence: its retirement made durable)
HOST_START_TIMEOUT = 100.0  # a member start, a new host process included (under the reconciler's 120 s)
DURABLE_TIMEOUT = 10.0  # an emptied host making its log durable before it is killed
REPORT_AGAIN = 5.0  # seconds between reports of a node that stays unreachable
KICK_TIMEOUT = 10.0  # an agent's call that wakes the reconciler gives up after this long
BALANCER_KICK = 5.0  # seconds between an agent's calls that keep the reconciler's loop running


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
        self.node_name = node_id  # replaced at start() by a declared raftfleet_node:<name>
        self._stale_summaries: dict[str, list[tuple[str, bool, tuple]]] = {}  # path -> (group, retired, files)
        self._members: dict[str, tuple[str, str]] = {}  # group -> (member id, host name)
        self._hosts: dict[str, _Host] = {}
        self._unadopted: set[str] = set()  # hosts on this node that did not say what they run
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
        """Start (idempotent): adopt the hosts already running on this node (after an agent
        restart) and start probing the other nodes."""
        if fleet is None and not self._started:
            # Restarted by Ray (no one passed the fleet's config): ask the ClusterActor. Run
            # with the defaults instead, and a persistent fleet's new members would keep
            # nothing on disk (the fleet simulator found such groups gone after a whole-cluster
            # restart). If it does not answer, this raises: the node stays silent until it does.
            e = env.current()
            cluster = await asyncio.wait_for(e.in_thread(e.cluster_actor), KICK_TIMEOUT)
            fleet = await asyncio.wait_for(cluster.fleet_config.remote(), KICK_TIMEOUT)
        if fleet is not None:
            self._fleet = fleet
        if not self._started:
            self._started = True
            self.node_name = await env.current().in_thread(self._declared_name)
            await self._adopt_hosts()
            self._spawn(self._probe_loop())

    def _declared_name(self) -> str:
        """The node's stable name: a ``raftfleet_node:<name>`` resource it declares (files are
        found again under it after the node restarts with a new Ray node id), else the id."""
        for n in env.current().nodes():
            if n.get("NodeID") == self.node_id:
                names = [r.split(":", 1)[1] for r in n.get("Resources", {}) if r.startswith(NODE_NAME_PREFIX)]
                if len(names) == 1 and names[0]:
                    return names[0]
                if len(names) > 1:
                    log.error("node %s declares several names %s: using its node id", self.node_id[:12], names)
        return self.node_id

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

    async def observe(self, timeout: float = HOSTED_TIMEOUT) -> dict[str, MemberObservation]:
        """``{group: MemberObservation}`` of every member on this node, for the reconciler: one
        ``statuses()`` call per host (status None: its host did not answer in time, busy or
        stuck; ``quarantine`` set: its host quarantined it). Members their host freed (removed
        from their group by a committed configuration) leave the directory here.

        What this answers is taken as the whole truth of the node: a member it does not list
        is dead (CONVENTIONS §18). So while a host on this node has not said what it runs (it
        did not answer when this agent started), this raises instead: the node is silent,
        its members unknown, until the host answers or is gone."""
        if not self._started:
            await self.start()
        if self._unadopted:
            await self._adopt_hosts()
            if self._unadopted:
                raise RuntimeError(f"node agent {self.node_id[:12]}: host(s) {', '.join(sorted(self._unadopted))} "
                                   "did not say which members they run: this node's members are unknown")
        hosts = list(self._hosts.values())
        before = [{g: self._members.get(g) for g in h.groups} for h in hosts]

        async def ask(h: _Host) -> dict[str, dict] | None | Exception:
            try:
                return await asyncio.wait_for(h.handle.statuses.remote(None, True), timeout)
            except TimeoutError:
                return None  # busy, not gone: killing a slow host could break its groups' quorums
            except Exception as exc:  # noqa: BLE001
                if _is_dead_actor_error(exc):
                    return exc  # dead: its members are gone
                return None  # unavailable (e.g. Ray restarting a persistent host): no answer

        answers = await asyncio.gather(*(ask(h) for h in hosts))
        out: dict[str, MemberObservation] = {}
        for h, seen, ans in zip(hosts, before, answers, strict=True):
            if isinstance(ans, Exception):
                self._forget_host(h.name)
                continue
            if ans is not None:
                for g, e in seen.items():
                    if g not in ans and e is not None and self._members.get(g) == e:
                        self._drop_member(g)
                await self._release_if_empty(h)
            for g in list(h.groups):
                entry = self._members.get(g)
                if entry is not None and entry[1] == h.name:
                    st = ans.get(g) if ans is not None else None
                    out[g] = MemberObservation(entry[0], h.name, st, st.quarantine if st is not None else None)
        return out

    async def _adopt_hosts(self) -> None:
        """Rebuild the directory from the hosts that run on this node (at start: an agent that
        died and came back must not lose track of its node's members). A host that does not
        answer is remembered as *unadopted* (tried again at each ``observe``): a busy host's
        members are alive, and must never be reported gone."""
        e = env.current()
        names = [n for n in await e.in_thread(e.actor_names, HOST_PREFIX) if is_host_on_node(n, self.node_id)]
        self._unadopted = set()
        for name in names:
            if name in self._hosts:
                continue
            try:
                handle = await asyncio.wait_for(e.in_thread(e.get_actor, name), HOSTED_TIMEOUT)
                hosted = await asyncio.wait_for(handle.hosted.remote(), HOSTED_TIMEOUT)
            except ValueError:
                continue  # no such actor any more: gone
            except Exception as exc:  # noqa: BLE001 - dead (gone), or busy/restarting (unknown)
                if not _is_dead_actor_error(exc):
                    self._unadopted.add(name)
                continue
            host = self._register_host(name, handle)
            for group, mid in hosted.items():
                host.groups.add(group)
                self._members[group] = (mid, name)
        if names:
            log.info("node agent %s: adopted %d host(s), %d member(s)", self.node_id[:12], len(self._hosts), len(self._members))

    def _host_dir(self, host_name: str) -> str | None:
        """The write-ahead log directory of a host: ``<persistence_dir_parent>/<node name>/
        <host>`` (None without persistence). The node name is stable across restarts when
        the node declares one (``raftfleet_node:<name>`` resource), else its Ray node id."""
        parent = self._fleet.persistence_dir_parent
        if parent is None:
            return None
        return os.path.join(parent, self.node_name, host_name.rsplit("|", 1)[1])

    def _register_host(self, name: str, handle: Any) -> _Host:
        host = self._hosts[name] = _Host(name, handle)
        self._spawn(self._watch_host(host))
        return host

    async def _watch_host(self, host: _Host) -> None:
        """A long-polled ``watch`` call on a local host: when the host dies, Ray fails it at
        once and its members leave the directory (each is lost, as any member is)."""
        while self._hosts.get(host.name) is host:
            try:
                await host.handle.watch.remote()
            except Exception as exc:  # noqa: BLE001
                if _is_dead_actor_error(exc):
                    if self._hosts.get(host.name) is host:  # not one we stopped ourselves
                        self._forget_host(host.name)
                        if await self._restarting(host.name):
                            # A persistent host that Ray restarts: its members recover from
                            # their files. Unknown until it says what it runs (this node is
                            # silent meanwhile), never reported gone: the fleet simulator saw
                            # a group marked lost because its agent answered without them.
                            self._unadopted.add(host.name)
                            log.warning("node agent %s: host %s died and is restarting with %d member(s)",
                                        self.node_id[:12], host.name, len(host.groups))
                            return
                        log.warning("node agent %s: host %s died with %d member(s)", self.node_id[:12],
                                    host.name, len(host.groups))
                        await _kick_balancer(wake=True)  # its members must be replaced
                    return
                await asyncio.sleep(1.0)

    async def _restarting(self, name: str) -> bool:
        """Whether Ray restarts the dead host ``name`` (a persistent host: its named actor is
        still registered); False without persistence (never restarted) or when unsure."""
        if self._fleet.persistence_dir_parent is None:
            return False
        e = env.current()
        try:
            await asyncio.wait_for(e.in_thread(e.get_actor, name), HOSTED_TIMEOUT)
        except ValueError:
            return False  # no such actor any more: gone for good
        except Exception:  # noqa: BLE001 - the GCS did not answer: its files may bring it back
            return True
        return True

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
            name = host_actor_name(self.node_id, env.current().new_id())
            best = self._register_host(name, env.current().start_member_host(name, self.node_id, self.zone,
                                                                             self._host_dir(name)))
        return best

    async def start_member(self, group: str, config: RaftConfig, bootstrap: bool, n_replica: int = 0) -> str:
        """Start a member of ``group`` on this node and return its member id: the only member
        of a new 1-member group (``bootstrap``: it elects itself at once), or a passive member
        (a voter of a group being born, or a joiner)."""
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
            if st is not None and st.state_name == "quarantined" and host is not None:
                # Its host quarantined it: it takes no part in its group any more, and its
                # leader was asked to replace it. Stopped here (its report goes with it).
                await asyncio.wait_for(host.handle.stop_member.remote(group), STOP_TIMEOUT)
            elif st is not None and st.state_name != "removed":
                raise RuntimeError(f"node {self.node_id[:12]} already runs member {existing[0]} of group {group!r}")
            self._drop_member(group)
        host = self._pick_host()
        host.reserved += 1
        try:
            mid = await asyncio.wait_for(host.handle.start_member.remote(group, config, bootstrap, n_replica),
                                         HOST_START_TIMEOUT)
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
        """A host with no member left goes (its process is the cost of a member). With
        persistence, only once its log is durable: what its last stops and removals wrote
        (retired, dropped) must survive the kill, or a restart would find the files of a
        removed group unretired and bring it back (issue 14). A host that cannot say so in
        time stays, and goes at a later look."""
        if host.groups or host.reserved or self._hosts.get(host.name) is not host:
            return
        if self._fleet.persistence_dir_parent is not None:
            try:
                await asyncio.wait_for(host.handle.durable.remote(), DURABLE_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - dead: nothing more can be written
                if not _is_dead_actor_error(exc):
                    log.warning("node agent %s: emptied host %s did not make its log durable (%r): kept for now",
                                self.node_id[:12], host.name, exc)
                    return
            if host.groups or host.reserved or self._hosts.get(host.name) is not host:
                return  # a member started there meanwhile
        del self._hosts[host.name]
        try:
            env.current().kill(host.handle)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def stop_member(self, group: str, member_id: str | None = None) -> bool:
        """Stop this node's member of ``group`` (with persistence its files stay, retired);
        with ``member_id``, only if that is the one running. Its host is asked even when it is
        its last member (the process then goes): the retirement must be durable first, or a
        restart would find the member unretired (issue 14). Raises if the host does not answer
        in time: the member may still run, so it stays listed."""
        entry = self._members.get(group)
        if entry is None or (member_id is not None and entry[0] != member_id):
            return False
        host = self._hosts.get(entry[1])
        if host is not None:
            try:
                await asyncio.wait_for(host.handle.stop_member.remote(group), STOP_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - dead: its members are gone with it
                if not _is_dead_actor_error(exc):
                    raise RuntimeError(f"member {entry[0]} of group {group!r} did not stop within {STOP_TIMEOUT} s "
                                       f"(its host is busy or stuck): it may still run ({exc!r})") from exc
        if self._members.get(group) == entry:
            self._drop_member(group)
        if host is not None:
            await self._release_if_empty(host)  # its last member: the process goes
        log.info("group %s: stopped member %s", group, entry[0])
        return True

    # -- restoring groups from files (persistence) ---------------------------------------

    def _stale_dirs(self) -> list[str]:
        """Log directories on this node that no live host owns: left by hosts of an earlier
        Ray cluster or an earlier life of this node (same node name)."""
        parent = self._fleet.persistence_dir_parent
        if parent is None:
            return []
        base = os.path.join(parent, self.node_name)
        live = {name.rsplit("|", 1)[1] for name in self._hosts}
        fs = env.current().filesystem(self.node_id)
        try:
            names = sorted(fs.listdir(base))
        except FileNotFoundError:
            return []
        finally:
            fs.close()
        return [os.path.join(base, n) for n in names if n not in live and self._is_dir(os.path.join(base, n))]

    def _is_dir(self, path: str) -> bool:
        fs = env.current().filesystem(self.node_id)
        try:
            fs.listdir(path)
            return True
        except OSError:  # NotADirectoryError, FileNotFoundError
            return False
        finally:
            fs.close()

    def _read_dir(self, path: str) -> list[Any]:
        fs = env.current().filesystem(self.node_id)
        try:
            return HostLog(fs, path).open()
        finally:
            fs.close()

    async def restorable(self) -> dict[str, list[FileCopy]]:
        """What this node's files could restore: ``{group: [FileCopy, ...]}``, each naming its
        member, its last (term, index), the configuration its log ends with and whether it is
        retired; ``source`` is ``("host", name)`` for a retired member in a live host's log,
        ``("dir", path)`` for a log no live host owns (after a restart of the node or of the
        whole cluster). Empty without persistence."""
        out: dict[str, list[FileCopy]] = {}
        if self._fleet.persistence_dir_parent is None:
            return out
        for h in list(self._hosts.values()):
            try:
                found = await asyncio.wait_for(h.handle.restorable.remote(), HOSTED_TIMEOUT)
            except Exception:  # noqa: BLE001 - dead or busy: its files are read when it is back
                continue
            for g, c in found.items():
                out.setdefault(g, []).append(FileCopy(c.member, self.node_id, ("host", h.name), c.term, c.index,
                                                      c.config, True, c.n_replica))
        for path in self._stale_dirs():
            summary = self._stale_summaries.get(path)
            if summary is None:
                # Read once per agent: no live host writes a stale directory.
                try:
                    found = await env.current().in_thread(self._read_dir, path)
                except Exception as exc:  # noqa: BLE001 - a corrupt log: say so, restore nothing from it
                    log.error("node agent %s: cannot read %s: %s", self.node_id[:12], path, exc)
                    found = []
                summary = self._stale_summaries[path] = [(r.key, r.retired, _restorable(r)) for r in found]
            for key, retired, c in summary:
                out.setdefault(key, []).append(FileCopy(c.member, self.node_id, ("dir", path), c.term, c.index,
                                                        c.config, retired, c.n_replica))
        return out

    async def restore_state(self, source: tuple[str, str], group: str) -> Any:
        """The durable state of ``group`` at ``source`` (see ``restorable``), or None."""
        kind, where = source
        if kind == "host":
            h = self._hosts.get(where)
            return None if h is None else await h.handle.restorable_state.remote(group)
        found = await env.current().in_thread(self._read_dir, where)
        return next((r.state for r in found if r.key == group), None)

    async def config_of(self, source: tuple[str, str], group: str) -> RaftConfig | None:
        """The RaftConfig ``group``'s member at ``source`` was created with (from its log)."""
        from .. import codec

        if source[0] != "dir":
            return None
        found = await env.current().in_thread(self._read_dir, source[1])
        rec = next((r for r in found if r.key == group), None)
        return None if rec is None or not rec.info else codec.loads(rec.info[1])

    async def stop_members(self, groups: list[str]) -> list[str]:
        """Stop this node's members of ``groups``; raises (after trying every one) if one may
        still run, so that a removal is never acknowledged while its member runs."""
        stopped, failed = [], []
        for g in groups:
            try:
                if await self.stop_member(g):
                    stopped.append(g)
            except Exception as exc:  # noqa: BLE001 - reported below, after the others
                failed.append(f"{g}: {exc}")
        if failed:
            raise RuntimeError(f"node agent {self.node_id[:12]}: {len(failed)} member(s) did not stop: "
                               + "; ".join(failed[:3]))
        return stopped

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

    async def cleanup_removed(self) -> list[str]:
        """Stop this node's members of removed groups, then ack to the ClusterActor so the
        names can be reused (raft_fleet's RecentlyRemovedGroups, reference §3.8)."""
        cluster = _cluster_actor()
        names, index = await cluster.removed_names_for_node.remote(self.node_id)
        stopped = await self.stop_members(names)
        await cluster.stopped_extra_members.remote(env.current().new_id(), self.node_id, index)
        return stopped

    async def _probe_loop(self) -> None:
        last_kick = 0.0
        while True:
            try:
                await self.probe()
                if env.current().mono() - last_kick >= BALANCER_KICK:
                    # The reconciler is restarted by Ray after a crash, and its loop starts on
                    # its first call: the agents keep calling, so it never stays idle.
                    last_kick = env.current().mono()
                    await _kick_balancer()
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

        cluster = _cluster_actor()
        active = await cluster.active_nodes.remote()
        others = [n for nodes in active.values() for n in nodes if n != self.node_id]
        e = env.current()
        alive = {n["NodeID"] for n in await e.in_thread(e.nodes) if n.get("Alive")}
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
        now, mono = e.wall(), e.mono()
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
        await _kick_balancer(wake=True)  # its members must be replaced

    async def unreachable_nodes(self) -> dict[str, float]:
        """Active nodes this node cannot reach (Ray says dead, or their agent does not answer),
        with the epoch time they were first seen so; kept fresh by the probe loop."""
        return dict(self._unhealthy_since)


def _cluster_actor() -> Any:
    """The ClusterActor, looked up only: an agent never re-creates a fleet that was torn down."""
    return env.current().cluster_actor()


async def _kick_balancer(wake: bool = False) -> None:
    """Make sure the reconciler's loop runs (``wake``: and start a round now)."""
    try:
        b = env.current().balancer()
        await asyncio.wait_for(b.wake.remote() if wake else b.ensure_running.remote(), KICK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - it is restarting: the next kick will do
        log.debug("could not reach the balancer: %r", exc)


__all__ = ["NodeAgent"]
