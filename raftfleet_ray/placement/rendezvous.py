"""Zone-aware rendezvous hashing: where the members of a consensus group should live.

raft_fleet's ``NodesPerZone.lrw_members/3`` ("lowest random weight", reference §3.2):

1. in every zone, rank the nodes by ``hash(node, group)`` ascending (rank 0, 1, 2, ...);
2. pool the ``(rank, hash, node)`` triples of all zones, sort them, take the first ``n``.

So the rank-0 node of every zone comes first (ordered by hash), then the rank-1 nodes, and so
on: replicas spread over as many zones as possible, and element 0, the node with the globally
smallest hash, is the group's *desired leader*. The zone name itself is not hashed.

The result depends only on (nodes per zone, group, n), and adding a node changes a group's
top-n set only by bringing that node in (the usual rendezvous minimal-disruption property),
so a node joining or leaving moves only the groups whose top-n set changes.

The hash is the first 4 bytes of BLAKE2b over a length-prefixed encoding of (node, group):
stable across processes and machines, unlike Python's salted ``hash()``. Values differ from
Erlang's ``phash2``; nothing may depend on them (reference §7).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

HashFn = Callable[[str, str], int]
"""``hash_fn(node, group) -> int``: the weight of ``node`` for ``group`` (lower wins)."""

_PERSON = b"raftfleet-lrw"  # BLAKE2 personalization: these hashes mean nothing elsewhere


def node_hash(node: str, group: str) -> int:
    """The stable 32-bit rendezvous weight of ``node`` for ``group`` (lower = preferred).

    The node id is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` hash differently.
    """
    node_bytes = node.encode()
    h = hashlib.blake2b(digest_size=4, person=_PERSON)
    h.update(len(node_bytes).to_bytes(4, "big"))
    h.update(node_bytes)
    h.update(group.encode())
    return int.from_bytes(h.digest(), "big")


def desired_members(
    nodes_per_zone: Mapping[str, Sequence[str]],
    group: str,
    n: int,
    *,
    hash_fn: HashFn = node_hash,
) -> list[str]:
    """The ``n`` nodes that should hold members of ``group``; element 0 is the desired leader.

    Returns every node when ``n`` exceeds the node count, and ``[]`` for an empty map.
    Ties in hash are broken by node id, so the result is a total function of its inputs.

    Raises ``ValueError`` if ``n < 0`` or a node is listed twice (the same node in two zones
    would be counted twice and could receive two members).

    Example::

        >>> desired_members({"z1": ["a", "b"], "z2": ["c"]}, "orders", 2)
        ['a', 'c']
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    seen: set[str] = set()
    ranked: list[tuple[int, int, str]] = []
    for zone in nodes_per_zone:
        weighted = []
        for node in nodes_per_zone[zone]:
            if node in seen:
                raise ValueError(
                    f"node {node!r} is listed twice in nodes_per_zone (zone {zone!r}); a node "
                    "belongs to exactly one zone"
                )
            seen.add(node)
            weighted.append((hash_fn(node, group), node))
        weighted.sort()
        ranked.extend((rank, h, node) for rank, (h, node) in enumerate(weighted))
    ranked.sort()
    return [node for _, _, node in ranked[:n]]


def desired_leader(
    nodes_per_zone: Mapping[str, Sequence[str]], group: str, *, hash_fn: HashFn = node_hash
) -> str | None:
    """The node where ``group``'s leader should live (``None`` when there are no nodes)."""
    top = desired_members(nodes_per_zone, group, 1, hash_fn=hash_fn)
    return top[0] if top else None


__all__ = ["HashFn", "desired_leader", "desired_members", "node_hash"]
