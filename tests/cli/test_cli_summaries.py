"""The CLI's pure parts, without a cluster: how a group's health and the fleet's verdict are
derived from member statuses (what decides ``raftfleet status``'s exit code), and how a
node-id prefix is resolved.

Issue 14, finding 8: status said healthy (exit 0) for 3-replica groups left with 2 voters after
a node died, which cannot survive one more failure; now such a group fails ("at risk"), as
does one with a quarantined member."""

from __future__ import annotations

import pytest

from raftfleet_ray.cli import CliError, fleet_summary, group_verdict, resolve_node, summarize_group
from raftfleet_ray.runtime.wire import Quarantine

N1, N2, N3 = "aa11" + "0" * 52, "bb22" + "0" * 52, "bb33" + "0" * 52
NODES = {
    N1: {"alive": True, "address": "10.0.0.1", "head": False, "zones": ["z1"], "state": "active", "zone": "z1"},
    N2: {"alive": True, "address": "10.0.0.2", "head": False, "zones": ["z2"], "state": "active", "zone": "z2"},
    N3: {"alive": True, "address": "10.0.0.3", "head": False, "zones": ["z3"], "state": "draining", "zone": "z3"},
}


def host(node: str) -> str:
    return f"raftfleet.host|{node[:16]}|abcd1234"


def mid(node: str, group: str = "g") -> str:
    return f"{host(node)}#{group}#1"


def status(node: str, role: str, *, term: int = 2, commit: int = 10, applied: int = 10,
           voters: tuple[str, ...] = (), learners: tuple[str, ...] = (), unresponsive: tuple[str, ...] = (),
           quarantine: Quarantine | None = None) -> dict:
    return {"from_": mid(node), "node_id": node, "state_name": role, "current_term": term,
            "commit_index": commit, "applied_index": applied, "members": voters, "learners": learners,
            "unresponsive_followers": unresponsive, "leader": mid(N1) if role not in ("candidate", "quarantined") else None,
            "quarantine": quarantine}


def quarantined(node: str) -> dict:
    """The status a host reports for its member that it quarantined."""
    q = Quarantine("g", mid(node), host(node), node, "deliver", "RuntimeError", "a poisoned message", 0.0)
    return status(node, "quarantined", applied=8, voters=ALL3, quarantine=q)


ALL3 = (mid(N1), mid(N2), mid(N3))


def test_a_group_with_its_leader_and_all_voters_caught_up_is_ok():
    sts = {host(N1): status(N1, "leader", voters=ALL3), host(N2): status(N2, "follower"),
           host(N3): status(N3, "follower", applied=7)}
    g = summarize_group("g", 3, sts, NODES, n_active=3)
    assert g["health"] == "ok" and g["problems"] == []
    assert (g["leader_node"], g["term"], g["voters"], g["expected_voters"], g["max_lag"]) == (N1, 2, 3, 3, 3)
    lag = {m["node"]: (m["zone"], m["role"], m["kind"], m["lag"]) for m in g["members"]}
    assert lag == {N1: ("z1", "leader", "voter", 0), N2: ("z2", "follower", "voter", 0),
                   N3: ("z3", "follower", "voter", 3)}


def test_no_leader_fails():
    sts = {host(N1): status(N1, "candidate", term=5), host(N2): None}
    g = summarize_group("g", 3, sts, NODES, n_active=3)
    assert g["health"] == "no leader" and g["leader"] is None and g["term"] == 5
    assert {m["role"] for m in g["members"]} == {"candidate", "no answer"}
    assert next(m for m in g["members"] if m["role"] == "no answer")["node"] == N2


def test_fewer_voters_than_replicas_fails_and_two_voters_of_three_replicas_are_at_risk():
    sts = {host(N1): status(N1, "leader", voters=ALL3[:2], learners=ALL3[2:]), host(N2): status(N2, "follower"),
           host(N3): status(N3, "follower", applied=4)}
    g = summarize_group("g", 3, sts, NODES, n_active=3)
    assert g["health"] == "under-replicated" and g["failing"] and g["problems"][0] == "2 voter(s), expected 3"
    assert [m["kind"] for m in g["members"]] == ["voter", "voter", "learner"]
    # Only two active nodes: two voters are all the group can have, and yet one more failure
    # would leave it without a quorum: it is not healthy (it was, before finding 8).
    g = summarize_group("g", 3, sts, NODES, n_active=2)
    assert g["health"] == "at risk" and g["failing"] and (g["healthy_voters"], g["quorum"]) == (2, 2)
    assert g["problems"] == ["2 of 2 voter(s) alive and responsive, quorum 2: one more failure loses the quorum"]
    # "every node" (a large n_replica) expects one voter per active node.
    assert summarize_group("g", 1000, sts, NODES, n_active=2)["expected_voters"] == 2


def test_a_three_replica_group_left_with_two_voters_after_a_node_died_fails():
    """Finding 8's case: node 3 died, the reconciler removed its member (Ray said its node was
    dead) and no third node is left to replace it: 2 voters, 2 active nodes."""
    dead = {**NODES, N3: {**NODES[N3], "alive": False, "state": "inactive", "zone": None}}
    sts = {host(N1): status(N1, "leader", voters=ALL3[:2]), host(N2): status(N2, "follower")}
    g = summarize_group("orders", 3, sts, dead, n_active=2)
    assert g["health"] == "at risk" and g["voters"] == 2 == g["expected_voters"]
    s = fleet_summary(dead, {}, [g], {})
    assert s["healthy"] is False
    assert s["verdict"].startswith("UNHEALTHY: 1 would lose their quorum at the next failure (orders: 2 of 2 voter(s)")
    # Before the reconciler removed it: still a voter, on a node Ray reports dead.
    sts = {host(N1): status(N1, "leader", voters=ALL3), host(N2): status(N2, "follower"), host(N3): None}
    g = summarize_group("orders", 3, sts, dead, n_active=2)
    assert g["health"] == "at risk" and g["healthy_voters"] == 2
    assert f"voter on {N3[:12]}: its node is dead" in g["problems"][0]


@pytest.mark.parametrize("third", ["no answer", "missing", "unresponsive", "quarantined"])
def test_a_voter_that_cannot_be_counted_on_puts_a_three_voter_group_at_risk(third):
    """Silence is not death: a voter that does not answer is not removed for it, but it does
    not count as healthy either (no proof it would vote)."""
    unresponsive = (mid(N3),) if third == "unresponsive" else ()
    sts = {host(N1): status(N1, "leader", voters=ALL3, unresponsive=unresponsive), host(N2): status(N2, "follower")}
    if third == "no answer":
        sts[host(N3)] = None
    elif third == "unresponsive":
        sts[host(N3)] = status(N3, "follower")
    elif third == "quarantined":
        sts[host(N3)] = quarantined(N3)
    v = group_verdict("g", 3, sts, NODES, n_active=3)
    assert v.health == "at risk" and v.failing and (v.healthy_voters, v.quorum) == (2, 2)
    why = {"no answer": "does not answer", "missing": "does not answer", "unresponsive": "is unresponsive to the leader",
           "quarantined": "is quarantined"}[third]
    assert f"voter on {N3[:12]}: {why}" in v.problems[0]
    if third == "quarantined":
        assert v.problems[1] == f"1 member(s) quarantined (on {N3[:12]}: deliver raised RuntimeError: a poisoned message)"
        g = summarize_group("g", 3, sts, NODES, n_active=3)
        row = next(m for m in g["members"] if m["node"] == N3)
        assert row["role"] == "quarantined" and "quarantined at" in row["quarantine"]
    # Five voters: one voter down leaves four, a quorum (3) plus one: still fine.
    five = (*ALL3, "raftfleet.host|cc44|x#g#1", "raftfleet.host|dd55|x#g#1")
    five_sts = {**sts, host(N1): status(N1, "leader", voters=five, unresponsive=unresponsive),
                "raftfleet.host|cc44|x": {**status(N2, "follower"), "from_": five[3]},
                "raftfleet.host|dd55|x": {**status(N2, "follower"), "from_": five[4]}}
    v5 = group_verdict("g", 5, five_sts, NODES, n_active=5)
    assert v5.health == ("quarantined" if third == "quarantined" else "degraded") and v5.healthy_voters == 4


def test_groups_of_fewer_than_three_replicas_are_not_at_risk():
    sts = {host(N1): status(N1, "leader", voters=ALL3[:2]), host(N2): status(N2, "follower")}
    assert summarize_group("g", 2, sts, NODES, n_active=3)["health"] == "ok"
    one = {host(N1): status(N1, "leader", voters=ALL3[:1])}
    assert summarize_group("g", 1, one, NODES, n_active=3)["health"] == "ok"


def test_a_quarantined_learner_fails_a_group_that_is_otherwise_healthy():
    sts = {host(N1): status(N1, "leader", voters=ALL3[:2], learners=ALL3[2:]), host(N2): status(N2, "follower"),
           host(N3): quarantined(N3)}
    g = summarize_group("g", 2, sts, NODES, n_active=3)
    assert g["health"] == "quarantined" and g["failing"]
    s = fleet_summary(NODES, {}, [g], {})
    assert s["verdict"].startswith("UNHEALTHY: 1 with a quarantined member (g: 1 member(s) quarantined (on ")


def test_lagging_members_or_a_missing_learner_degrade_without_failing():
    sts = {host(N1): status(N1, "leader", commit=500, applied=500, voters=ALL3), host(N2): status(N2, "follower", applied=100),
           host(N3): status(N3, "follower", applied=500)}
    g = summarize_group("g", 3, sts, NODES, n_active=3)
    assert g["health"] == "degraded" and not g["failing"] and g["max_lag"] == 400
    assert any("behind" in p for p in g["problems"])
    sts = {host(N1): status(N1, "leader", voters=ALL3[:2], learners=ALL3[2:]), host(N2): status(N2, "follower")}
    g = summarize_group("g", 2, sts, NODES, n_active=3)
    assert g["health"] == "degraded" and "1 member(s) not answering" in g["problems"]
    missing = next(m for m in g["members"] if m["role"] == "missing")
    assert missing["member"] == mid(N3) and missing["node"] == N3 and missing["zone"] == "z3"


def test_fleet_verdict_and_health():
    ok = summarize_group("ok", 3, {host(N1): status(N1, "leader", voters=ALL3), host(N2): status(N2, "follower"),
                                   host(N3): status(N3, "follower")}, NODES, 3)
    bad = summarize_group("bad", 3, {host(N1): status(N1, "candidate")}, NODES, 3)
    s = fleet_summary(NODES, {N2: 1700000000.0}, [ok], {N1: 1, N2: 1, N3: 1})
    assert s["healthy"] is True and s["verdict"].startswith("healthy: 1 group(s)")
    assert "1 node(s) draining" in s["verdict"] and "1 node(s) unreachable" in s["verdict"]
    assert s["zones"] == {"z1": {"active": [N1], "draining": []}, "z2": {"active": [N2], "draining": []},
                          "z3": {"active": [], "draining": [N3]}}
    assert s["nodes"][N2]["unreachable_since"] == 1700000000.0 and s["nodes"][N1]["members"] == 1
    s = fleet_summary(NODES, {}, [ok, bad], {})
    assert s["healthy"] is False and s["verdict"].startswith("UNHEALTHY: 1 group(s) without a leader (bad)")
    idle = {n: {**d, "state": "inactive", "zone": None} for n, d in NODES.items()}
    assert "activate --all" in fleet_summary(idle, {}, [], {})["verdict"]


def test_a_lost_group_fails_the_verdict_and_says_how_to_repair():
    """Issue 14: a lost group is kept and reported, never removed: health "lost", a problem
    naming when, why and the repair command, and an UNHEALTHY verdict that names it."""
    mark = {"reason": "3 of its 3 voter(s) are definitely gone", "since": 1700000000.0, "highest_commit_index": 12}
    lost = summarize_group("orders", 3, {}, NODES, 3, lost=mark)
    assert lost["health"] == "lost" and lost["lost"] == mark
    assert "definitely gone" in lost["problems"][0] and "raftfleet repair orders" in lost["problems"][0]
    # A leader seen again wins (the reconciler clears the mark at its next round).
    sts = {host(N1): status(N1, "leader", voters=ALL3), host(N2): status(N2, "follower"), host(N3): status(N3, "follower")}
    assert summarize_group("orders", 3, sts, NODES, 3, lost=mark)["health"] == "ok"
    s = fleet_summary(NODES, {}, [lost], {})
    assert s["healthy"] is False and s["verdict"].startswith("UNHEALTHY: 1 group(s) LOST (orders)")


def test_resolve_node_prefixes():
    assert resolve_node(N1, NODES) == N1
    assert resolve_node("aa", NODES) == N1
    assert resolve_node("bb3", NODES) == N3
    with pytest.raises(CliError, match="ambiguous: it matches 2 nodes"):
        resolve_node("bb", NODES)
    with pytest.raises(CliError, match="no node id starts with 'cc'"):
        resolve_node("cc", NODES)
    with pytest.raises(CliError, match="prefix"):
        resolve_node("  ", NODES)
