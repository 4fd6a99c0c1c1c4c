"""The desired layout of the whole fleet: members by rendezvous hashing, leaders balanced.

Members of each group come from zone-aware rendezvous hashing (``desired_members``). The
desired *leader* of a group is the first of its members in rendezvous order whose node has
fewer than ``ceil(groups / nodes)`` desired leaders so far, taking the groups in the
order of a hash of their names, else the least loaded of its members (consistent hashing
with bounded loads, Mirrokni et al., 2018). Rendezvous order alone gives a node about
``groups / nodes`` leaders on average but far more on an unlucky node; the bound keeps
every node near the fair share (tested: at most one above it), while most groups keep their
rendezvous leader, so a node joining or leaving moves few leaders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from raftfleet_ray.placement.rendezvous import HashFn, desired_members, node_hash


def fleet_layout(
    nodes_per_zone: Mapping[str, Sequence[str]],
    groups: Mapping[str, int],
    *,
    hash_fn: HashFn = node_hash,
) -> dict[str, list[str]]:
    """``{group: [desired leader node, other desired member nodes...]}`` for every group in
    ``groups`` (``{name: n_replica}``); ``{}`` without nodes."""
    n_nodes = sum(len(v) for v in nodes_per_zone.values())
    if not n_nodes:
        return {}
    cap = math.ceil(len(groups) / n_nodes)
    members = {g: desired_members(nodes_per_zone, g, n, hash_fn=hash_fn) for g, n in groups.items()}
    leader: dict[str, str] = {}
    led: dict[str, list[str]] = {}  # node -> groups it leads
    for name in sorted(groups, key=lambda g: (hash_fn("", g), g)):
        ms = members[name]
        pick = next((m for m in ms if len(led.get(m, ())) < cap), None)
        if pick is None:
            pick = _make_room(name, ms, members, leader, led, cap)
        leader[name] = pick
        led.setdefault(pick, []).append(name)
    return {g: [leader[g]] + [m for m in members[g] if m != leader[g]] for g in groups}


def _make_room(
    name: str, ms: list[str], members: dict[str, list[str]], leader: dict[str, str], led: dict[str, list[str]], cap: int
) -> str:
    """Every member node of ``name`` is at the fair share: look for a chain of leader moves
    (group A's leader to another of its members, whose place ...) that ends on a node with
    room (an augmenting path, as in a bipartite matching), and make it. If there is none,
    the least loaded member takes one more than the fair share."""
    from collections import deque

    prev: dict[str, tuple[str, str] | None] = dict.fromkeys(ms)  # node -> (node it came from, group moved)
    queue = deque(ms)
    end = None
    while queue and end is None:
        u = queue.popleft()
        for g in led.get(u, ()):
            for v in members[g]:
                if v in prev:
                    continue
                prev[v] = (u, g)
                if len(led.get(v, ())) < cap:
                    end = v
                    break
                queue.append(v)
            if end is not None:
                break
    if end is None:
        return min(ms, key=lambda m: (len(led.get(m, ())), ms.index(m)))
    v = end
    while prev[v] is not None:
        u, g = prev[v]  # type: ignore[misc]
        led[u].remove(g)
        led.setdefault(v, []).append(g)
        leader[g] = v
        v = u
    return v


__all__ = ["fleet_layout"]
