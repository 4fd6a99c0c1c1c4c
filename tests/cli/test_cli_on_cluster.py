"""The installed ``raftfleet`` script against a cluster started with ``ray start`` (head + zones
a, b, c; ``conftest.ray_cli_cluster``), as an operator uses it, plus the two API fixes that
need a real fleet: ``configure`` after ``activate`` is refused, and a command or query to a
removed group raises ``NotFoundError``.

The tests run in file order and build on each other (activate, create a group, inspect,
drain and re-activate, an unhealthy group, a dead node repaired)."""

from __future__ import annotations

import json
import time

import pytest
from cli_harness import FLEET_CONFIG, ZONES, RayCluster

pytestmark = pytest.mark.timeout(120)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def one_line_error(res, code: int = 2) -> str:
    assert res.code == code, (res.code, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("raftfleet: error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cluster(ray_cli_cluster: RayCluster) -> RayCluster:
    return ray_cli_cluster


@pytest.mark.timeout(240)  # includes starting the cluster
def test_activate_all_then_nodes(cluster):
    res = cluster.cli("activate", "--all", "--json")
    assert res.code == 0, res.stderr
    activated = {r["node"]: r["zone"] for r in res.json()["activated"]}
    assert activated == {n: z for z, n in cluster.node_ids.items()}
    again = cluster.cli("activate", "--all", "--verbose")
    assert again.code == 0 and "nothing to activate" in again.stdout

    res = cluster.cli("nodes", "--json")
    assert res.code == 0, res.stderr
    nodes = res.json()
    assert len(nodes) == 4  # the head and the three zone nodes
    for zone, node in cluster.node_ids.items():
        assert nodes[node]["state"] == "active" and nodes[node]["zone"] == zone and nodes[node]["alive"]
        assert nodes[node]["zones"] == [zone] and nodes[node]["unreachable_since"] is None
    (head,) = [n for n, d in nodes.items() if d["head"]]
    assert nodes[head]["state"] == "inactive" and nodes[head]["zones"] == []


def test_configure_after_activate_is_refused_and_changes_nothing(cluster):
    res = cluster.py(f"""
        from raftfleet_ray import FleetConfig, FleetConfigLockedError
        fleet.configure({FLEET_CONFIG})  # the configuration in force: accepted, a no-op
        try:
            fleet.configure(FleetConfig(members_per_host=1000))
        except FleetConfigLockedError as e:
            print("refused:", e)
        else:
            raise SystemExit("configure() after activate was accepted")
        from raftfleet_ray.runtime.cluster_actor import get_or_create_cluster_actor
        import ray
        print("in force:", ray.get(get_or_create_cluster_actor().fleet_config.remote()) == {FLEET_CONFIG})
    """)
    out = res.stdout
    assert "refused: configure() refused: the fleet is running (3 active node(s)" in out
    assert "members_per_host (16 -> 1000)" in out and "before the first activate()" in out
    assert "shutdown_fleet()" in out
    assert "in force: True" in out


def test_status_group_explain_groups_on_a_healthy_group(cluster):
    cluster.py("""
        import time
        fleet.add_consensus_group("orders", 3, fleet.RaftConfig(data=fleet.KeyValue))
        for i in range(5):
            fleet.command("orders", ("put", f"o-{i}", i))
        deadline = time.monotonic() + 60
        while not fleet.group_ready("orders", 3):
            assert time.monotonic() < deadline, fleet.group_status("orders")
            time.sleep(0.2)
    """)
    res = cluster.cli("status", "--json")
    assert res.code == 0, (res.stdout, res.stderr)
    st = res.json()
    assert st["healthy"] is True and st["verdict"].startswith("healthy: 1 group(s)")
    assert {z: (len(v["active"]), len(v["draining"])) for z, v in st["zones"].items()} == {z: (1, 0) for z in ZONES}
    assert st["unreachable"] == {}
    (g,) = st["groups"]
    assert g["name"] == "orders" and g["health"] == "ok" and g["problems"] == []
    assert g["voters"] == 3 == g["expected_voters"] and g["learners"] == 0 and g["term"] >= 1
    assert g["leader_node"] in cluster.node_ids.values() and g["max_lag"] == 0
    assert sorted(m["zone"] for m in g["members"]) == list(ZONES)
    assert sum(n["members"] or 0 for n in st["nodes"].values()) == 3

    human = cluster.cli("status")
    assert human.code == 0 and human.stdout.rstrip().splitlines()[-1] == st["verdict"]
    assert "orders" in human.stdout and "zone a: active:" in human.stdout

    res = cluster.cli("group", "orders", "--json")
    assert res.code == 0, res.stderr
    g = res.json()
    assert [m["role"] for m in g["members"]].count("leader") == 1
    assert {m["node"]: m["zone"] for m in g["members"]} == {n: z for z, n in cluster.node_ids.items()}
    for m in g["members"]:
        assert m["kind"] == "voter" and m["lag"] == 0
        assert m["commit_index"] >= m["applied_index"] >= 6  # 5 puts + the leader's no-op

    res = cluster.cli("explain", "orders", "--json")
    assert res.code == 0, res.stderr
    ex = res.json()
    assert ex["registered"] is True and ex["n_replica"] == 3
    assert sorted(d["zone"] for d in ex["desired"]) == list(ZONES)
    assert sum(d["desired_leader"] for d in ex["desired"]) == 1
    assert isinstance(ex["next_step"], str) and ex["next_step"]

    res = cluster.cli("groups", "--json")
    assert res.code == 0 and [g["name"] for g in res.json()] == ["orders"]
    assert "members" not in res.json()[0]


def test_bad_input_is_one_line_and_exit_2(cluster):
    assert "no consensus group named 'nope'" in one_line_error(cluster.cli("group", "nope"))
    assert "no consensus group named 'nope'" in one_line_error(cluster.cli("explain", "nope", "--json"))
    assert "not a valid consensus group name" in one_line_error(cluster.cli("explain", "bad name!"))
    assert "no node id starts with 'zzz'" in one_line_error(cluster.cli("drain", "zzz"))
    node_a = cluster.node_ids["a"]
    line = one_line_error(cluster.cli("repair", node_a[:8]))
    assert "alive according to Ray" in line and "--force" in line
    head = next(n for n, d in cluster.cli("nodes", "--json").json().items() if d["head"])
    assert "declares 0 zones" in one_line_error(cluster.cli("activate", head[:10]))
    assert "is active, not inactive" in one_line_error(cluster.cli("activate", node_a[:10]))
    assert "does not declare the custom resource 'zone:b'" in one_line_error(
        cluster.cli("activate", node_a[:10], "--zone", "b"))
    assert "give no NODE" in one_line_error(cluster.cli("activate", node_a[:10], "--all"))


def test_command_and_query_to_a_removed_group_raise_not_found(cluster):
    """Callers that were using a group when it was removed get NotFoundError naming it, never
    NoLeaderError: from this process (cache forgotten) and from another one (its leader cache
    still points at the removed members), for calls sent while its members stop."""
    res = cluster.py("""
        import subprocess, sys, threading, time
        from raftfleet_ray import NoLeaderError, NotFoundError
        bad = []
        for name in ("gone-1", "gone-2"):
            fleet.add_consensus_group(name, 3, fleet.RaftConfig(data=fleet.Counter))
            while not fleet.group_ready(name, 3):
                time.sleep(0.2)
            removed_at = [None]

            def caller(kind):
                while True:
                    t = time.monotonic()
                    try:
                        if kind == "command":
                            fleet.command(name, "inc", timeout=0.3, retry=0)
                        else:
                            fleet.query(name, None, timeout=0.3, retry=0)
                    except NotFoundError as e:
                        assert e.group == name and repr(name) in str(e), e
                        return
                    except NoLeaderError as e:
                        if removed_at[0] is not None and t > removed_at[0]:
                            bad.append((name, kind, str(e)))
                            return
                    if removed_at[0] is not None and time.monotonic() > removed_at[0] + 30:
                        bad.append((name, kind, "still answered 30 s after the removal"))
                        return

            threads = [threading.Thread(target=caller, args=(k,)) for k in ("command", "query") * 2]
            for th in threads:
                th.start()
            time.sleep(0.5)
            if name == "gone-1":  # removed here: this process forgets its cached leader
                fleet.remove_consensus_group(name)
            else:  # removed by another process: the cache here is stale
                subprocess.run([sys.executable, "-c", "import raftfleet_ray as f; "
                                f"f.connect({ADDRESS!r}); f.remove_consensus_group({name!r})"], check=True)
            removed_at[0] = time.monotonic()
            for th in threads:
                th.join(60)
        print("bad:", bad)
        for kind in ("command", "query"):
            try:
                getattr(fleet, kind)("gone-1", None if kind == "query" else "inc")
            except NotFoundError as e:
                print(kind, "after:", type(e).__name__, e.group)
    """, timeout=110)
    assert "bad: []" in res.stdout, res.stdout
    assert "command after: NotFoundError gone-1" in res.stdout
    assert "query after: NotFoundError gone-1" in res.stdout


def test_no_leader_on_a_registered_group_stays_no_leader_error(cluster):
    """The other side of the fix: NoLeaderError from the retry loop becomes NotFoundError only
    for a group that is not registered."""
    res = cluster.py("""
        from raftfleet_ray import NoLeaderError, NotFoundError
        from raftfleet_ray.client import Client

        def no_leader(self, group, op, *, operation, **kw):
            raise NoLeaderError(group, operation=operation)

        Client.call_sync = no_leader
        for name, expected in (("orders", NoLeaderError), ("never-there", NotFoundError)):
            try:
                fleet.query(name, ("get", "o-1"))
            except Exception as e:
                print(name, type(e).__name__, type(e) is expected)
    """)
    assert "orders NoLeaderError True" in res.stdout
    assert "never-there NotFoundError True" in res.stdout


def test_drain_then_activate_again(cluster):
    def node_state(node: str) -> str:
        return cluster.cli("nodes", "--json").json()[node]["state"]

    def three_voters() -> bool:
        r = cluster.cli("status", "--json")
        return r.code == 0 and r.json()["groups"][0]["voters"] == 3 and r.json()["groups"][0]["max_lag"] == 0

    # --no-wait: deactivated at once, the reconciler empties it in the background.
    node_a = cluster.node_ids["a"]
    res = cluster.cli("drain", node_a[:10], "--no-wait", "--json")
    assert res.code == 0, (res.stdout, res.stderr)
    assert res.json()["node"] == node_a and res.json()["state"] == "draining"
    wait_until(lambda: node_state(node_a) == "inactive", 60, "node a drained")
    assert cluster.cli("nodes", "--json").json()[node_a]["members"] == 0
    # Two zones left for a 3-replica group: it runs on 2 voters, which is all it can have, and
    # one more failure would cost it its quorum: status says so and exits 1 (finding 14.8).
    st = cluster.cli("status", "--json")
    assert st.code == 1, st.stdout
    g = st.json()["groups"][0]
    assert g["voters"] == 2 == g["expected_voters"] and g["health"] == "at risk"
    assert st.json()["verdict"].startswith("UNHEALTHY: 1 would lose their quorum at the next failure (orders: ")
    assert "is not active (nothing to drain)" in one_line_error(cluster.cli("drain", node_a[:10]))
    res = cluster.cli("activate", node_a[:10])  # the zone: the one the node declares
    assert res.code == 0 and f"activated {node_a[:12]} in zone a" in res.stdout, res.stderr
    wait_until(three_voters, 60, "orders back on 3 voters")

    # Waiting: a progress bar of the members moved on stderr, the outcome on stdout.
    node_b = cluster.node_ids["b"]
    res = cluster.cli("drain", node_b[:10], "--json", timeout=100)
    assert res.code == 0, (res.stdout, res.stderr)
    out = res.json()
    assert out["node"] == node_b and out["state"] == "drained" and out["members_left"] == 0
    assert f"draining {node_b[:12]}" in res.stderr and "members moved" in res.stderr
    assert node_state(node_b) == "inactive"
    res = cluster.cli("activate", node_b[:10], "--zone", "b")
    assert res.code == 0, res.stderr
    wait_until(three_voters, 60, "orders back on 3 voters")


def test_status_exits_1_when_a_group_is_under_replicated(cluster):
    """A group whose Data cannot be built on node c gets only 2 of its 3 voters: status says
    UNHEALTHY and exits 1; once the group is removed, it exits 0 again."""
    node_c = cluster.node_ids["c"]
    res = cluster.py(f"""
        import ray, time

        class Picky(fleet.Counter):
            def __init__(self):
                if ray.get_runtime_context().get_node_id() == {node_c!r}:
                    raise RuntimeError("this node refuses to build Picky")
                super().__init__()

        for i in range(10):  # a name whose desired leader is not node c
            try:
                fleet.add_consensus_group(f"picky-{{i}}", 3, fleet.RaftConfig(data=Picky))
                print("created", f"picky-{{i}}")
                break
            except RuntimeError:
                time.sleep(0.5)
    """)
    name = res.stdout.split("created ")[1].split()[0]

    def unhealthy():
        r = cluster.cli("status", "--json")
        return r if r.code == 1 else None

    r = wait_until(unhealthy, 60, f"{name} to show as under-replicated")
    st = r.json()
    assert st["healthy"] is False and st["verdict"].startswith("UNHEALTHY: 1 under-replicated")
    g = next(g for g in st["groups"] if g["name"] == name)
    assert g["health"] == "under-replicated" and g["voters"] < 3 == g["expected_voters"]
    assert next(g for g in st["groups"] if g["name"] == "orders")["health"] in ("ok", "degraded")
    human = cluster.cli("status")
    assert human.code == 1 and "UNHEALTHY" in human.stdout and name in human.stdout
    cluster.py(f"fleet.remove_consensus_group({name!r})")
    wait_until(lambda: cluster.cli("status", "--json").code == 0, 60, "status healthy again")


def test_repair_a_dead_node(cluster):
    """Node c dies: its voter of orders is gone, and orders, left with 2 of its 3 voters,
    cannot survive one more failure. status says so (exit 1) before and after the repair:
    it said healthy before (issue 14, finding 8)."""
    node_c = cluster.node_ids["c"]
    cluster.stop_node("c")
    wait_until(lambda: not cluster.cli("nodes", "--json").json()[node_c]["alive"], 60, "Ray to see node c dead")
    res = cluster.cli("status", "--json")
    assert res.code == 1, (res.stdout, res.stderr)
    orders = next(g for g in res.json()["groups"] if g["name"] == "orders")
    assert orders["health"] == "at risk" and orders["healthy_voters"] == 2, orders
    res = cluster.cli("repair", node_c[:10], "--json")
    assert res.code == 0, res.stderr
    assert res.json() == {"node": node_c, "repaired": True}

    def settled():
        r = cluster.cli("status", "--json")
        st = r.json()
        return (r, st) if st["groups"][0]["voters"] == 2 and "c" not in st["zones"] else None

    r, st = wait_until(settled, 60, "orders on the two nodes left")
    assert st["nodes"][node_c]["alive"] is False and st["nodes"][node_c]["state"] == "inactive"
    # Two voters on the two nodes left: all it can have, and still one failure from no quorum.
    assert r.code == 1 and st["healthy"] is False
    assert st["groups"][0]["health"] == "at risk" and st["groups"][0]["expected_voters"] == 2
    assert "would lose their quorum at the next failure (orders: 2 of 2 voter(s)" in st["verdict"]
    human = cluster.cli("status")
    assert human.code == 1 and "UNHEALTHY" in human.stdout and "orders" in human.stdout
    assert json.dumps(st)  # plain JSON all the way down
