"""Repairs that act on members: removing the members of a dead node from their groups.

Used by the public ``remove_dead_pids_located_in_dead_node`` and by the node agents' purge
of nodes that Ray reports dead; it lives in the runtime so that the agents never call the
public face.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from .directory import established_leader, get_directory
from .names import NAMESPACE, on_node, parse_member_id

log = logging.getLogger(__name__)


def _cluster_actor() -> Any:
    import ray

    from .cluster_actor import CLUSTER_ACTOR_NAME

    return ray.get_actor(CLUSTER_ACTOR_NAME, namespace=NAMESPACE)


REPAIR_POLLS = 4  # observations without a leader before the unsafe repair ...
REPAIR_WINDOW = 2.5  # ... spanning this many election timeouts


async def remove_dead_members(node_id: str, *, force: bool = False) -> None:
    """Drop ``node_id`` from the active nodes and remove the members that lived there from
    every group: through the group's leader when one is established; otherwise, only once
    the group has shown no leader over ``REPAIR_POLLS`` observations spanning more than
    ``REPAIR_WINDOW`` election timeouts (an ordinary election looks leaderless for a moment,
    and shrinking the quorum then could elect a member that lacks a committed entry), by
    ``force_remove_member`` on every survivor (rafted_value's unsafe repair, reference
    §4.5). Refuses a node that Ray reports alive, whose members may be alive too, unless
    ``force``. Idempotent. (The reconciler does all this by itself for dead nodes.)"""
    import ray

    alive = {n["NodeID"] for n in await asyncio.get_running_loop().run_in_executor(None, ray.nodes) if n.get("Alive")}
    if node_id in alive and not force:
        raise ValueError(
            f"node {node_id[:12]} is alive according to Ray, so its members may be alive: refusing to "
            "remove them (deactivate the node to move them away safely, or pass force=True if you are "
            "sure they are gone)"
        )
    cluster = _cluster_actor()
    await cluster.remove_node.remote(uuid.uuid4().hex, node_id, node_id not in alive)
    directory = get_directory()
    for name in sorted(await cluster.consensus_groups.remote()):
        try:
            spec = await cluster.group_spec.remote(name)
            await remove_dead_members_of_group(directory, name, node_id, spec.config.election_timeout)
        except Exception as exc:  # noqa: BLE001 - one group must not stop the sweep
            log.warning("group %s: removing the members of node %s failed: %r", name, node_id[:12], exc)


async def remove_dead_members_of_group(directory: Any, name: str, node_id: str, election_timeout: float) -> None:
    start = asyncio.get_running_loop().time()
    polls = 0
    while True:
        sts = await directory.statuses(name)
        polls += 1
        known = {m for s in sts.values() if s is not None for m in s.members}
        dead = sorted(m for m in known if on_node(m, node_id))
        if not dead:
            return
        leader = established_leader(sts)
        lead = await directory.host(parse_member_id(leader)[0]) if leader else None
        if lead is not None:
            for m in dead:
                try:
                    res = await asyncio.wait_for(lead.admin.remote(name, "remove_member", m), 10.0)
                    log.info("group %s: removed dead member %s: %s", name, m, type(res).__name__)
                except Exception as exc:  # noqa: BLE001 - one group must not stop the sweep
                    log.warning("group %s: removing dead member %s failed: %r", name, m, exc)
            return
        waited = asyncio.get_running_loop().time() - start
        if polls >= REPAIR_POLLS and waited > REPAIR_WINDOW * election_timeout:
            break
        await asyncio.sleep(REPAIR_WINDOW * election_timeout / (REPAIR_POLLS - 1))
    # No leader for long: the unsafe, local repair, on every surviving member, for each dead one.
    survivors = [await directory.host(h) for h, s in sts.items() if s is not None and not on_node(s.from_, node_id)]
    for m in dead:
        await asyncio.gather(*(h.force_remove_member.remote(name, m) for h in survivors if h is not None),
                             return_exceptions=True)
        log.warning("group %s: force-removed dead member %s (no leader over %d observations)", name, m, polls)
