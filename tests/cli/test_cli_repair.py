"""``raftfleet repair GROUP [--unsafe]`` without a cluster: the public functions it calls are
replaced by fakes, so what is checked is the command's own logic (a registered group name wins
over a node-id prefix, the refusal prints the plan and exits 1, --unsafe prints what may be
lost, --force is for nodes)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import raftfleet_ray as fleet
from raftfleet_ray import cli

PLAN = {"source": "survivor", "member": "m1", "node": "n1", "term": 3, "recovered_index": 10,
        "highest_commit_index": 12, "may_lose_at_least": 2, "stop": [], "force_remove": ["m2", "m3"],
        "blocked": "", "summary": "recover from the surviving voter m1 ...: at least 2 acknowledged entries may be lost"}


@pytest.fixture
def fake_fleet(monkeypatch):
    calls: list[tuple[str, bool]] = []

    def repair(name: str, *, unsafe: bool = False) -> dict:
        calls.append((name, unsafe))
        if not unsafe:
            raise fleet.RepairRefusedError(name, reason="it would recover from ... That is unsafe", plan=PLAN)
        return {**PLAN, "group": name, "lost_since": 1.7e9, "lost_reason": "2 of its 3 voter(s) are definitely gone"}

    monkeypatch.setattr(cli, "connect", lambda address, verbose: None)
    monkeypatch.setattr(fleet, "consensus_groups", lambda: {"orders": 3}, raising=False)
    monkeypatch.setattr(fleet, "repair_consensus_group", repair, raising=False)
    monkeypatch.setattr(fleet, "remove_dead_pids_located_in_dead_node",
                        lambda node, force=False: calls.append((node, force)), raising=False)
    monkeypatch.setattr(fleet, "describe_nodes", lambda: {"aa" + "0" * 54: {"alive": False}}, raising=False)
    return calls


def test_without_unsafe_it_prints_the_plan_and_exits_1(fake_fleet):
    res = CliRunner().invoke(cli.app, ["repair", "orders"])
    assert res.exit_code == 1, res.output
    assert "at least 2 acknowledged entries may be lost" in res.stdout
    assert "repair of orders refused" in res.stderr and fake_fleet == [("orders", False)]
    res = CliRunner().invoke(cli.app, ["repair", "orders", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["plan"]["source"] == "survivor"


def test_with_unsafe_it_repairs_and_says_what_may_be_lost(fake_fleet):
    res = CliRunner().invoke(cli.app, ["repair", "orders", "--unsafe", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["repaired"] is True and out["may_lose_at_least"] == 2 and out["group"] == "orders"
    res = CliRunner().invoke(cli.app, ["repair", "orders", "--unsafe"])
    assert res.exit_code == 0 and "repaired orders" in res.stdout and "may be lost" in res.stdout


def test_groups_and_nodes_are_told_apart(fake_fleet):
    res = CliRunner().invoke(cli.app, ["repair", "nope", "--unsafe"])
    assert res.exit_code == 2 and "no consensus group named 'nope'" in res.stderr
    res = CliRunner().invoke(cli.app, ["repair", "orders", "--force"])
    assert res.exit_code == 2 and "--force is for a node" in res.stderr
    res = CliRunner().invoke(cli.app, ["repair", "aa"])  # not a group: a node-id prefix, as before
    assert res.exit_code == 0, res.output
    assert fake_fleet == [("aa" + "0" * 54, False)]
