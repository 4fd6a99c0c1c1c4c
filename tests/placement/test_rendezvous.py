"""Zone-aware rendezvous hashing (reference §3.2, raft_fleet's test/nodes_per_zone_test.exs)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftfleet_ray.placement import desired_leader, desired_members, node_hash

# raft_fleet's test fixes phash2 values with this global order: d < g < c < b < f < i < a < h < e
# (zone1 = a,b,c with c<b<a; zone2 = d,e,f with d<f<e; zone3 = g,h,i with g<i<h).
_ORDER = "dgcbfiahe"
_FAKE = {node: rank for rank, node in enumerate(_ORDER, start=1)}


def fake_hash(node: str, group: str) -> int:
    return _FAKE[node]


Z1 = {"zone1": ["a", "b", "c"]}
Z2 = {"zone1": ["a", "b", "c"], "zone2": ["d", "e", "f"]}
Z3 = {"zone1": ["a", "b", "c"], "zone2": ["d", "e", "f"], "zone3": ["g", "h", "i"]}
Z4 = {"zone1": ["a", "b"], "zone2": ["c"]}
Z5 = {"zone1": ["a"], "zone2": ["b", "c"]}

TABLE = [
    ({}, 1, []),
    ({}, 2, []),
    (Z1, 1, ["c"]),
    (Z1, 2, ["c", "b"]),
    (Z1, 3, ["c", "b", "a"]),
    (Z1, 4, ["c", "b", "a"]),
    (Z2, 1, ["d"]),
    (Z2, 2, ["d", "c"]),
    (Z2, 3, ["d", "c", "b"]),
    (Z2, 4, ["d", "c", "b", "f"]),
    (Z2, 5, ["d", "c", "b", "f", "a"]),
    (Z2, 6, ["d", "c", "b", "f", "a", "e"]),
    (Z2, 7, ["d", "c", "b", "f", "a", "e"]),
    (Z3, 1, ["d"]),
    (Z3, 2, ["d", "g"]),
    (Z3, 3, ["d", "g", "c"]),
    (Z3, 4, ["d", "g", "c", "b"]),
    (Z3, 5, ["d", "g", "c", "b", "f"]),
    (Z3, 6, ["d", "g", "c", "b", "f", "i"]),
    (Z3, 7, ["d", "g", "c", "b", "f", "i", "a"]),
    (Z3, 8, ["d", "g", "c", "b", "f", "i", "a", "h"]),
    (Z3, 9, ["d", "g", "c", "b", "f", "i", "a", "h", "e"]),
    (Z3, 10, ["d", "g", "c", "b", "f", "i", "a", "h", "e"]),
    (Z4, 1, ["c"]),
    (Z4, 2, ["c", "b"]),
    (Z4, 3, ["c", "b", "a"]),
    (Z4, 4, ["c", "b", "a"]),
    (Z5, 1, ["c"]),
    (Z5, 2, ["c", "a"]),
    (Z5, 3, ["c", "a", "b"]),
    (Z5, 4, ["c", "a", "b"]),
]


@pytest.mark.parametrize(("nodes", "n", "expected"), TABLE)
def test_raft_fleet_table(nodes, n, expected):
    assert desired_members(nodes, "cg_name", n, hash_fn=fake_hash) == expected


def test_order_of_zones_and_nodes_in_input_does_not_matter():
    shuffled = {"zone3": ["i", "h", "g"], "zone1": ["c", "a", "b"], "zone2": ["f", "d", "e"]}
    for n in range(11):
        assert desired_members(shuffled, "cg_name", n, hash_fn=fake_hash) == desired_members(
            Z3, "cg_name", n, hash_fn=fake_hash
        )


def test_n_zero_gives_no_members_and_negative_n_is_refused():
    assert desired_members(Z3, "g", 0) == []
    with pytest.raises(ValueError, match="n must be"):
        desired_members(Z3, "g", -1)


def test_a_node_listed_in_two_zones_is_refused():
    with pytest.raises(ValueError, match="listed twice"):
        desired_members({"z1": ["a"], "z2": ["a"]}, "g", 2)


def test_equal_hashes_are_broken_by_node_id():
    assert desired_members({"z": ["b", "a", "c"]}, "g", 3, hash_fn=lambda node, group: 7) == [
        "a",
        "b",
        "c",
    ]


def test_desired_leader_is_the_first_member():
    assert desired_leader(Z3, "cg_name", hash_fn=fake_hash) == "d"
    assert desired_leader({}, "cg_name") is None


PINNED = 3214151537


def test_node_hash_is_stable_32_bit_and_unambiguous():
    # Pinned values: the hash must not change between processes, hosts or releases, or every
    # group would migrate after an upgrade.
    assert node_hash("node-1", "orders") == node_hash("node-1", "orders")
    assert 0 <= node_hash("node-1", "orders") < 2**32
    assert node_hash("ab", "c") != node_hash("a", "bc")
    assert node_hash("node-1", "orders") == PINNED


# ---------------------------------------------------------------------------------------
# Properties, with the real hash.

node_ids = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=6)


@st.composite
def clusters(draw, min_nodes=1):
    """A nodes_per_zone map with unique node ids, 1-4 zones, 1-12 nodes."""
    nodes = draw(st.lists(node_ids, min_size=min_nodes, max_size=12, unique=True))
    n_zones = draw(st.integers(1, 4))
    zones: dict[str, list[str]] = {}
    for node in nodes:
        zones.setdefault(f"z{draw(st.integers(0, n_zones - 1))}", []).append(node)
    return zones


groups = st.text(alphabet=string.ascii_letters + "_.:-", min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(clusters(), groups, st.integers(0, 15), node_ids, st.integers(0, 4))
def test_adding_a_node_only_brings_that_node_in(zones, group, n, new_node, zone_i):
    all_nodes = {node for members in zones.values() for node in members}
    if new_node in all_nodes:
        return
    before = desired_members(zones, group, n)
    grown = {zone: list(members) for zone, members in zones.items()}
    grown.setdefault(f"z{zone_i}", []).append(new_node)
    after = desired_members(grown, group, n)
    assert set(after) - set(before) <= {new_node}
    if new_node in after:
        # it displaced at most one member (none if there was room)
        assert len(set(before) - set(after)) <= 1
    else:
        assert set(after) == set(before)


@settings(max_examples=300, deadline=None)
@given(clusters(), groups, st.integers(0, 15))
def test_members_are_distinct_spread_over_zones_and_led_by_the_smallest_hash(zones, group, n):
    members = desired_members(zones, group, n)
    node_count = sum(len(v) for v in zones.values())
    assert len(members) == len(set(members)) == min(n, node_count)
    zone_of = {node: zone for zone, nodes in zones.items() for node in nodes}
    assert len({zone_of[m] for m in members}) == min(n, len(zones))
    if members:
        assert members[0] == min(zone_of, key=lambda node: (node_hash(node, group), node))


@settings(max_examples=200, deadline=None)
@given(clusters(), groups, st.integers(0, 15))
def test_a_larger_n_extends_the_list(zones, group, n):
    assert desired_members(zones, group, n + 1)[:n] == desired_members(zones, group, n)
