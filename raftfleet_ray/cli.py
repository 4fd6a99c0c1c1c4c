"""``raftfleet``: the operator's command line, on the public API only.

It connects like Ray's own CLI (``--address``, default ``auto``: ``RAY_ADDRESS``, else the
cluster running on this machine) and keeps Ray's logs quiet unless ``--verbose``. Every
command takes ``--json``: then stdout carries one JSON document and nothing else.

Exit codes: 0 done (``status``: the fleet is healthy); 1 ``status`` found a failing group
(``group_verdict``: lost, no leader, fewer voters than it should have, a quarantined member,
or, with 3 replicas or more, one failure away from losing its quorum), a drain did not finish
in time, a repair was refused, or an operation failed; 2 no cluster to connect to, or bad input
(unknown group or node, an ambiguous node-id prefix). Errors are one line on stderr.

Example::

    raftfleet activate --all
    raftfleet status            # nodes per zone, groups, one-line verdict; exit 1 if unhealthy
    raftfleet drain 3f2a        # a node-id prefix; a live bar until the node is empty
    raftfleet repair orders     # a lost group: what a recovery would keep and may lose
    raftfleet repair orders --unsafe   # ... and do it
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

import raftfleet_ray as fleet

LAG_WARNING = 100
"""A member whose applied index is this many entries behind its leader's commit index makes
its group "degraded" (a warning, not a failure: it catches up or the reconciler replaces it)."""

DRAIN_POLL_INTERVAL = 0.5

app = typer.Typer(
    name="raftfleet",
    help="Operate a raftfleet_ray fleet: many Raft groups on a Ray cluster, placed across zones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Address = Annotated[
    str,
    typer.Option("--address", help="Ray cluster address (HOST:PORT), or 'auto': RAY_ADDRESS, else the local cluster."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show Ray's and raftfleet's logs, and tracebacks.")]


class CliError(Exception):
    """A failure reported as one line on stderr with ``code`` as the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------
# Connecting


def resolve_address(address: str) -> str:
    """``address`` as Ray would resolve it (``auto``: ``RAY_ADDRESS``, else the local cluster),
    checked to accept TCP connections: Ray itself retries an unreachable address for minutes."""
    if address.startswith("ray://"):
        return address  # Ray Client: Ray reports its own errors quickly
    from_env = address == "auto" and bool(os.environ.get("RAY_ADDRESS"))
    resolved: str | None = address
    try:  # Ray's own resolution, so that "auto" means exactly what it means to `ray status`
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # pragma: no cover - a Ray without it: let ray.init resolve
        return address
    try:
        resolved = canonicalize_bootstrap_address(address)
    except ConnectionError:
        resolved = None
    except ValueError as exc:
        raise CliError(f"bad --address {address!r}: {exc}") from None
    if resolved is None:
        raise CliError(
            "no Ray cluster found: RAY_ADDRESS is not set and no Ray instance runs on this "
            "machine; pass --address HOST:PORT, or start one with `ray start --head`"
        )
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        via = " (from RAY_ADDRESS)" if from_env else (f" (resolved from {address!r})" if resolved != address else "")
        raise CliError(f"no Ray cluster answers at {resolved}{via}: {why}") from None
    return resolved


def connect(address: str, verbose: bool) -> None:
    """Connect to the cluster in the fleet's namespace; ``CliError`` (exit 2) if there is none."""
    resolved = resolve_address(address)
    try:
        fleet.connect(resolved, log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - whatever ray.init raises: one line, exit 2
        raise CliError(f"cannot connect to the Ray cluster at {resolved}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ---------------------------------------------------------------------------------------
# Output


@dataclass(slots=True)
class Out:
    """Where a command writes: JSON or tables on stdout, progress and errors on stderr."""

    json: bool
    stdout: Console
    stderr: Console

    def emit(self, data: Any, render: Callable[[], None]) -> None:
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        else:
            render()


def _out(as_json: bool) -> Out:
    return Out(as_json, Console(highlight=False, soft_wrap=False), Console(stderr=True, highlight=False))


@contextlib.contextmanager
def _session(address: str, as_json: bool, verbose: bool) -> Iterator[Out]:
    """Set up logging, connect, and turn every failure into one line on stderr + exit code."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    out = _out(as_json)
    try:
        connect(address, verbose)
        yield out
    except typer.Exit:
        raise
    except CliError as exc:
        _fail(str(exc), exc.code, verbose)
    except KeyboardInterrupt:
        _fail("interrupted", 130, verbose)
    except (fleet.InvalidNameError, fleet.NotFoundError, fleet.NotInactiveError, fleet.InactiveError,
            fleet.NoActiveNodeError, ValueError, TypeError) as exc:
        _fail(_one_line(exc), 2, verbose)
    except Exception as exc:  # noqa: BLE001 - an operation failed: one line, exit 1
        hint = "" if verbose else " (--verbose shows the traceback)"
        _fail(f"{type(exc).__name__}: {_one_line(exc)}{hint}", 1, verbose)


def _fail(message: str, code: int, verbose: bool) -> NoReturn:
    if verbose and sys.exc_info()[0] is not None:
        traceback.print_exc(file=sys.stderr)
    sys.stderr.write(f"raftfleet: error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def _short(node_id: str | None) -> str:
    return "-" if not node_id else node_id[:12]


def _ago(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return f"{time.strftime('%H:%M:%S', time.localtime(epoch))} ({max(0.0, time.time() - epoch):.0f}s ago)"


# ---------------------------------------------------------------------------------------
# Pure summaries (unit-tested without a cluster)


def resolve_node(prefix: str, nodes: dict[str, Any]) -> str:
    """The one node id in ``nodes`` equal to or starting with ``prefix``; ``CliError`` (exit 2)
    if none or several match."""
    prefix = prefix.strip()
    if not prefix:
        raise CliError("NODE must be a node id or a prefix of one")
    if prefix in nodes:
        return prefix
    matches = sorted(n for n in nodes if n.startswith(prefix))
    if not matches:
        raise CliError(f"no node id starts with {prefix!r}; `raftfleet nodes` lists them")
    if len(matches) > 1:
        shown = ", ".join(m[:16] for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise CliError(f"node prefix {prefix!r} is ambiguous: it matches {len(matches)} nodes ({shown}); give more characters")
    return matches[0]


def _node_of_host(host: str, nodes: dict[str, Any]) -> str | None:
    """The node of a member host from its actor name (``raftfleet.host|<node prefix>|<id>``)."""
    parts = host.split("|")
    if len(parts) != 3 or not parts[1]:
        return None
    found = [n for n in nodes if n.startswith(parts[1])]
    return found[0] if len(found) == 1 else parts[1]


def _best_leader(statuses: dict[str, dict | None]) -> dict | None:
    leaders = [s for s in statuses.values() if s and s["state_name"] == "leader"]
    return max(leaders, key=lambda s: s["current_term"]) if leaders else None


FAILURES = ("lost", "no leader", "under-replicated", "at risk", "quarantined")
"""Group healths that make ``raftfleet status`` exit 1, most severe first."""


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """What ``raftfleet status`` concludes about one group (``group_verdict``).

    ``health``: the most severe of ``FAILURES`` that applies, else ``"degraded"`` (a member
    not answering, lagging or unresponsive: a warning) or ``"ok"``; ``failing``: it is one of
    ``FAILURES``; ``problems``: every reason, failures first; ``healthy_voters``: voters that
    are alive and responsive (the leader; followers that answered, are not quarantined, run
    on a node Ray reports alive, and that the leader does not report unresponsive);
    ``quorum``: a majority of the voters."""

    group: str
    health: str
    failing: bool
    problems: tuple[str, ...]
    healthy_voters: int
    quorum: int


def group_verdict(
    name: str, n_replica: int, statuses: dict[str, dict | None], nodes: dict[str, Any], n_active: int,
    lost: dict[str, Any] | None = None,
) -> GroupVerdict:
    """The verdict on one group from its members' statuses (``group_status``) and the nodes
    (``describe_nodes``): it fails when it has no leader, fewer voters than
    ``min(n_replica, active nodes)``, a quarantined member, or, with ``n_replica >= 3``, fewer
    than a quorum plus one voters alive and responsive (one more failure would cost it its
    quorum). A voter on a node Ray reports dead counts as gone; one that does not answer, or
    that the leader reports unresponsive, is not counted as healthy either: not proof that it
    is dead (it is never removed on that basis), but no proof that it would vote."""
    lead = _best_leader(statuses)
    voters = list(lead["members"]) if lead else []
    expected = min(n_replica, n_active)
    by_member = {st["from_"]: st for st in statuses.values() if st is not None}
    quarantined = sorted(st["from_"] for st in by_member.values() if st.get("quarantine") is not None)
    unresponsive = set(lead.get("unresponsive_followers", ())) if lead else set()
    gone: dict[str, str] = {}  # voter -> why it does not count as healthy
    for mid in voters:
        st = by_member.get(mid)
        node = st.get("node_id") if st is not None else _node_of_host(mid.split("#")[0], nodes)
        if node is not None and node in nodes and not nodes[node].get("alive", True):
            gone[mid] = "its node is dead"
        elif st is None:
            gone[mid] = "does not answer"
        elif mid in quarantined:
            gone[mid] = "is quarantined"
        elif mid in unresponsive:
            gone[mid] = "is unresponsive to the leader"
    healthy = len(voters) - len(gone)
    quorum = len(voters) // 2 + 1 if voters else 0

    failures: list[tuple[str, str]] = []  # (health, problem)
    if lost is not None and lead is None:
        failures.append(("lost", f"LOST since {_ago(lost.get('since'))}: {lost.get('reason', '?')}; "
                                 f"`raftfleet repair {name}` shows what a recovery would keep and may lose, "
                                 "--unsafe does it"))
    elif lead is None:
        failures.append(("no leader", "no member says it leads"))
    elif len(voters) < expected:
        failures.append(("under-replicated", f"{len(voters)} voter(s), expected {expected}"))
    if lead is not None and n_replica >= 3 and healthy < quorum + 1:
        why = "; ".join(f"voter on {_node_label(m, nodes)}: {w}" for m, w in sorted(gone.items()))
        failures.append(("at risk", f"{healthy} of {len(voters)} voter(s) alive and responsive, quorum {quorum}: "
                                    "one more failure loses the quorum" + (f" ({why})" if why else "")))
    if quarantined:
        causes = "; ".join(f"on {_node_label(m, nodes)}: {by_member[m]['quarantine'].cause}" for m in quarantined)
        failures.append(("quarantined", f"{len(quarantined)} member(s) quarantined ({causes})"))

    warnings: list[str] = []
    learners = list(lead.get("learners", ())) if lead else []
    silent = [h for h, st in statuses.items() if st is None] + [m for m in [*voters, *learners] if m not in by_member]
    lagging = [st for st in by_member.values() if lead and lead["commit_index"] - st["applied_index"] >= LAG_WARNING]
    if silent:
        warnings.append(f"{len(silent)} member(s) not answering")
    if lagging:
        warnings.append(f"{len(lagging)} member(s) {LAG_WARNING}+ entries behind")
    if unresponsive:
        warnings.append(f"{len(unresponsive)} follower(s) unresponsive to the leader")
    if failures:
        health = min((h for h, _ in failures), key=FAILURES.index)
    else:
        health = "degraded" if warnings else "ok"
    return GroupVerdict(name, health, bool(failures), tuple(p for _, p in failures) + tuple(warnings),
                        healthy, quorum)


def _node_label(mid: str, nodes: dict[str, Any]) -> str:
    """The node of member ``mid`` as ``raftfleet status`` shows nodes (12 characters)."""
    return _short(_node_of_host(mid.split("#")[0], nodes))


def summarize_group(
    name: str, n_replica: int, statuses: dict[str, dict | None], nodes: dict[str, Any], n_active: int,
    lost: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One group's health from its members' statuses (``group_status``): leader, term, voters,
    each member's node, zone, role (``quarantined`` for a member its host quarantined, with
    why), commit and applied index and lag (leader's commit index minus the member's applied
    index), ``lost`` (its entry in ``lost_consensus_groups()``, reason and since, or None: only
    an operator can recover a lost group), and the verdict of ``group_verdict``: ``health``,
    ``failing``, ``problems``, ``healthy_voters`` and ``quorum``."""
    lead = _best_leader(statuses)
    voters = list(lead["members"]) if lead else []
    learners = list(lead.get("learners", ())) if lead else []
    verdict = group_verdict(name, n_replica, statuses, nodes, n_active, lost)

    def zone(node: str | None) -> str | None:
        info = nodes.get(node or "")
        if not info:
            return None
        return info.get("zone") or (info["zones"][0] if info.get("zones") else None)

    members: list[dict[str, Any]] = []
    seen: set[str] = set()
    for host, st in sorted(statuses.items()):
        if st is None:
            node = _node_of_host(host, nodes)
            members.append({"member": None, "host": host, "node": node, "zone": zone(node), "role": "no answer",
                            "kind": None, "term": None, "commit_index": None, "applied_index": None, "lag": None,
                            "quarantine": None})
            continue
        mid = st["from_"]
        seen.add(mid)
        kind = "voter" if mid in voters else ("learner" if mid in learners else ("unknown" if lead is None else "not in the configuration"))
        q = st.get("quarantine")
        members.append({
            "member": mid, "host": host, "node": st.get("node_id"), "zone": zone(st.get("node_id")),
            "role": st["state_name"], "kind": kind, "term": st["current_term"],
            "commit_index": st["commit_index"], "applied_index": st["applied_index"],
            "lag": (lead["commit_index"] - st["applied_index"]) if lead else None,
            "quarantine": q.describe() if q is not None else None,
        })
    for mid in [*voters, *learners]:
        if mid not in seen:  # in the configuration, but no agent lists it (its node is gone?)
            host = mid.split("#")[0]
            node = _node_of_host(host, nodes)
            members.append({"member": mid, "host": host, "node": node, "zone": zone(node), "role": "missing",
                            "kind": "voter" if mid in voters else "learner", "term": None,
                            "commit_index": None, "applied_index": None, "lag": None, "quarantine": None})
    lags = [m["lag"] for m in members if m["lag"] is not None]
    return {
        "name": name,
        "n_replica": n_replica,
        "expected_voters": min(n_replica, n_active),
        "leader": lead["from_"] if lead else None,
        "leader_node": lead.get("node_id") if lead else None,
        "term": lead["current_term"] if lead else max((m["term"] for m in members if m["term"] is not None), default=None),
        "commit_index": lead["commit_index"] if lead else None,
        "voters": len(voters),
        "learners": len(learners),
        "healthy_voters": verdict.healthy_voters,
        "quorum": verdict.quorum,
        "max_lag": max(lags) if lags else None,
        "health": verdict.health,
        "failing": verdict.failing,
        "problems": list(verdict.problems),
        "lost": lost,
        "members": members,
    }


def fleet_summary(
    nodes: dict[str, Any], unreachable: dict[str, float], groups: list[dict[str, Any]],
    members_per_node: dict[str, int | None],
) -> dict[str, Any]:
    """The whole fleet: nodes per zone, groups, and a one-line verdict; ``healthy`` is False
    when a group fails (``group_verdict``: no leader, under-replicated, at risk of losing its
    quorum at the next failure, a quarantined member); the verdict names those groups and why."""
    zones: dict[str, dict[str, list[str]]] = {}
    for node_id, info in nodes.items():
        if info["state"] in ("active", "draining"):
            zones.setdefault(info["zone"], {"active": [], "draining": []})[info["state"]].append(node_id)
    failing = {h: [g for g in groups if g["health"] == h] for h in FAILURES}
    degraded = [g["name"] for g in groups if g["health"] == "degraded"]
    n_active = sum(len(z["active"]) for z in zones.values())
    n_draining = sum(len(z["draining"]) for z in zones.values())
    healthy = not any(failing.values())

    def names(xs: list[str]) -> str:
        return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "")

    def why(gs: list[dict[str, Any]]) -> str:
        shown = "; ".join(f"{g['name']}: {g['problems'][0]}" for g in gs[:5])
        return shown + (f"; and {len(gs) - 5} more" if len(gs) > 5 else "")

    if not healthy:
        parts = []
        if failing["lost"]:
            parts.append(f"{len(failing['lost'])} group(s) LOST ({names([g['name'] for g in failing['lost']])}): "
                         "`raftfleet repair GROUP` shows the recovery")
        if failing["no leader"]:
            parts.append(f"{len(failing['no leader'])} group(s) without a leader "
                         f"({names([g['name'] for g in failing['no leader']])})")
        if failing["under-replicated"]:
            parts.append(f"{len(failing['under-replicated'])} under-replicated ({why(failing['under-replicated'])})")
        if failing["at risk"]:
            parts.append(f"{len(failing['at risk'])} would lose their quorum at the next failure "
                         f"({why(failing['at risk'])})")
        if failing["quarantined"]:
            parts.append(f"{len(failing['quarantined'])} with a quarantined member ({why(failing['quarantined'])})")
        verdict = "UNHEALTHY: " + "; ".join(parts)
    elif n_active == 0 and not groups:
        verdict = "no node is active: run `raftfleet activate --all`"
    else:
        verdict = (f"healthy: {len(groups)} group(s) with a leader and their voters on {n_active} active "
                   f"node(s) in {sum(1 for z in zones.values() if z['active'])} zone(s)")
    notes = []
    if degraded:
        notes.append(f"{len(degraded)} degraded ({names(degraded)})")
    if n_draining:
        notes.append(f"{n_draining} node(s) draining")
    if unreachable:
        notes.append(f"{len(unreachable)} node(s) unreachable")
    if notes:
        verdict += "; " + "; ".join(notes)
    node_rows = {
        node_id: {**info, "members": members_per_node.get(node_id), "unreachable_since": unreachable.get(node_id)}
        for node_id, info in nodes.items()
    }
    return {"healthy": healthy, "verdict": verdict, "zones": dict(sorted(zones.items())), "nodes": node_rows,
            "unreachable": unreachable, "groups": groups}


# ---------------------------------------------------------------------------------------
# Gathering


def _members_per_node(nodes: dict[str, Any]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for node_id, info in nodes.items():
        if not info["alive"]:
            continue
        members = fleet.members_on_node(node_id)
        out[node_id] = None if members is None else len(members)
    return out


def _gather_groups(nodes: dict[str, Any], names: list[str] | None = None) -> list[dict[str, Any]]:
    registered = fleet.consensus_groups()
    names = sorted(registered) if names is None else names
    statuses = fleet.group_statuses(names)
    lost = fleet.lost_consensus_groups()
    n_active = sum(1 for i in nodes.values() if i["state"] == "active")
    return [summarize_group(n, registered[n], statuses.get(n, {}), nodes, n_active, lost.get(n)) for n in names]


def _gather_fleet() -> dict[str, Any]:
    nodes = fleet.describe_nodes()
    unreachable = fleet.unreachable_nodes()
    groups = _gather_groups(nodes)
    return fleet_summary(nodes, unreachable, groups, _members_per_node(nodes))


# ---------------------------------------------------------------------------------------
# Rendering


def _nodes_table(summary: dict[str, Any]) -> Table:
    t = Table(title="nodes", title_justify="left")
    for col in ("node", "address", "zone", "zone from", "state", "alive", "members", "unreachable since"):
        t.add_column(col)
    rows = sorted(summary["nodes"].items(), key=lambda kv: (kv[1]["zone"] or "~", kv[1]["state"], kv[0]))
    for node_id, n in rows:
        declared = n.get("declared_zone")
        zone = n["zone"] or (f"({declared})" if declared else ("head" if n["head"] else "-"))
        members = "-" if n.get("members") is None else str(n["members"])
        t.add_row(_short(node_id), n["address"] or "-", zone, n.get("zone_source") or "-", n["state"],
                  "yes" if n["alive"] else "DEAD", members, _ago(n.get("unreachable_since")))
    return t


def _groups_table(groups: list[dict[str, Any]]) -> Table:
    t = Table(title="groups", title_justify="left")
    for col in ("group", "leader node", "term", "voters", "responsive", "learners", "max lag", "health"):
        t.add_column(col)
    for g in groups:
        health = g["health"] if not g["problems"] else f"{g['health']}: {'; '.join(g['problems'])}"
        t.add_row(g["name"], _short(g["leader_node"]), str(g["term"] if g["term"] is not None else "-"),
                  f"{g['voters']}/{g['expected_voters']}", str(g["healthy_voters"]), str(g["learners"]),
                  "-" if g["max_lag"] is None else str(g["max_lag"]), health)
    return t


def _members_table(g: dict[str, Any]) -> Table:
    t = Table(title=f"members of {g['name']}", title_justify="left")
    for col in ("node", "zone", "role", "kind", "term", "commit", "applied", "lag"):
        t.add_column(col)
    for m in g["members"]:
        t.add_row(_short(m["node"]), m["zone"] or "-", m["role"], m["kind"] or "-",
                  *("-" if m[k] is None else str(m[k]) for k in ("term", "commit_index", "applied_index", "lag")))
    return t


# ---------------------------------------------------------------------------------------
# Commands


@app.command()
def status(address: Address = "auto", as_json: Json = False, verbose: Verbose = False) -> None:
    """Nodes per zone, groups and a one-line verdict; exit 1 if unhealthy.

    Groups with leader, term, voters, lag and health. Exit code 1 when a group has no leader,
    fewer voters than min(n_replica, active nodes), a quarantined member, or (3 replicas or
    more) fewer than a quorum plus one voters alive and responsive: one more failure would
    cost it its quorum."""
    with _session(address, as_json, verbose) as out:
        summary = _gather_fleet()

        def render() -> None:
            for zone, z in summary["zones"].items():
                draining = f", draining: {', '.join(_short(n) for n in z['draining'])}" if z["draining"] else ""
                out.stdout.print(f"zone {zone}: active: {', '.join(_short(n) for n in z['active']) or '-'}{draining}")
            out.stdout.print(_nodes_table(summary))
            out.stdout.print(_groups_table(summary["groups"]))
            out.stdout.print(summary["verdict"], soft_wrap=True)

        out.emit(summary, render)
    if not summary["healthy"]:
        raise typer.Exit(1)


@app.command()
def groups(address: Address = "auto", as_json: Json = False, verbose: Verbose = False) -> None:
    """Every consensus group: leader node, term, voters, learners, lag, health."""
    with _session(address, as_json, verbose) as out:
        summaries = _gather_groups(fleet.describe_nodes())
        out.emit([{k: v for k, v in g.items() if k != "members"} for g in summaries],
                 lambda: out.stdout.print(_groups_table(summaries)))


@app.command()
def group(name: Annotated[str, typer.Argument(help="The consensus group.")],
          address: Address = "auto", as_json: Json = False, verbose: Verbose = False) -> None:
    """One group's members: node, zone, role, voter or learner, commit and applied index, lag."""
    with _session(address, as_json, verbose) as out:
        if name not in fleet.consensus_groups():
            raise CliError(f"no consensus group named {name!r}; `raftfleet groups` lists them")
        g = _gather_groups(fleet.describe_nodes(), [name])[0]

        def render() -> None:
            out.stdout.print(f"{g['name']}: {g['n_replica']} replicas, leader on {_short(g['leader_node'])}, "
                             f"term {g['term']}, commit index {g['commit_index']}, health {g['health']}"
                             + (f" ({'; '.join(g['problems'])})" if g["problems"] else ""))
            out.stdout.print(_members_table(g))

        out.emit(g, render)


@app.command()
def explain(name: Annotated[str, typer.Argument(help="The consensus group.")],
            address: Address = "auto", as_json: Json = False, verbose: Verbose = False) -> None:
    """Why a group's members are where they are, and the reconciler's next step."""
    with _session(address, as_json, verbose) as out:
        ex = fleet.explain_placement(name)
        if ex.get("registered") is False:
            raise CliError(f"no consensus group named {name!r}; `raftfleet groups` lists them")
        if ex.get("registered") is None:
            raise CliError(f"cannot explain {name!r}: {ex.get('why', 'the reconciler has not observed the fleet yet')}", 1)

        def render() -> None:
            out.stdout.print(f"{name}: {ex['n_replica']} replicas, leader {ex['leader'] or '-'}")
            d = Table(title="desired", title_justify="left")
            for col in ("node", "zone", "rendezvous rank", "desired leader"):
                d.add_column(col)
            for row in ex["desired"]:
                d.add_row(_short(row["node"]), row["zone"] or "-", str(row["rank"]), "yes" if row["desired_leader"] else "")
            out.stdout.print(d)
            m = Table(title="actual", title_justify="left")
            for col in ("node", "zone", "role", "kind", "applied", "lag"):
                m.add_column(col)
            for row in ex["members"]:
                m.add_row(_short(row["node"]), row["zone"] or "-", row["role"], row["kind"],
                          *("-" if row[k] is None else str(row[k]) for k in ("applied_index", "lag")))
            out.stdout.print(m)
            out.stdout.print(f"next step: {ex['next_step']}")
            if ex.get("last_step"):
                last = ex["last_step"]
                out.stdout.print(f"last step: {last['step']} -> {last['outcome']}")

        out.emit(ex, render)


@app.command()
def nodes(address: Address = "auto", as_json: Json = False, verbose: Verbose = False) -> None:
    """Every Ray node: address, zone, fleet state, alive, members, unreachable since."""
    with _session(address, as_json, verbose) as out:
        described = fleet.describe_nodes()
        summary = fleet_summary(described, fleet.unreachable_nodes(), [], _members_per_node(described))
        out.emit(summary["nodes"], lambda: out.stdout.print(_nodes_table(summary)))


@app.command()
def activate(
    node: Annotated[str | None, typer.Argument(help="Node id or prefix (default: this machine's node).")] = None,
    zone: Annotated[str | None, typer.Option("--zone", help="Zone to activate the node in (default: the one it declares).")] = None,
    all_nodes: Annotated[bool, typer.Option("--all", help="Activate every node that declares a zone (zone:<name> resource or zone label).")] = False,
    address: Address = "auto", as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Activate a node (it then hosts members), or every zone node with --all."""
    with _session(address, as_json, verbose) as out:
        if all_nodes:
            if node or zone:
                raise CliError("--all activates every zone node: give no NODE and no --zone with it")
            activated = fleet.activate_all()
            source = {n: d.get("zone_source") for n, d in fleet.describe_nodes().items()} if activated else {}
            rows = [{"node": n, "zone": z, "zone_source": source.get(n)}
                    for n, z in sorted(activated.items(), key=lambda kv: (kv[1], kv[0]))]

            def render_all() -> None:
                if not rows:
                    out.stdout.print("nothing to activate: every node declaring a zone is active")
                for r in rows:
                    out.stdout.print(f"activated {_short(r['node'])} in zone {r['zone']} "
                                     f"(declared by {r['zone_source'] or '?'})")

            out.emit({"activated": rows}, render_all)
            return
        import ray

        described = fleet.describe_nodes()
        node_id = resolve_node(node, described) if node else ray.get_runtime_context().get_node_id()
        info = described.get(node_id, {"zones": []})
        if zone is None:
            # The zone activate_all would choose: a zone:<name> resource (exactly one), else
            # the label raftfleet.io/zone, else ray.io/availability-zone.
            if len(info["zones"]) > 1 or not info.get("declared_zone"):
                where = "this machine's node" if node is None else "node"
                n = len(info["zones"])
                raise CliError(f"{where} {_short(node_id)} declares {n} zone{'' if n == 1 else 's'} "
                               f"({', '.join(info['zones']) or 'no zone:<name> resource and no zone label'}): "
                               "pass --zone, a NODE that declares one, or --all")
            zone = info["declared_zone"]
        fleet.activate(zone, node_id)
        out.emit({"activated": [{"node": node_id, "zone": zone}]},
                 lambda: out.stdout.print(f"activated {_short(node_id)} in zone {zone}"))


@app.command()
def drain(
    node: Annotated[str, typer.Argument(help="Node id or prefix.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until no member is left on the node.")] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait (the drain goes on after).")] = 600.0,
    address: Address = "auto", as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Deactivate a node and wait until its members moved away (a live progress bar).

    Leaderships move first, then members; --no-wait returns at once."""
    with _session(address, as_json, verbose) as out:
        described = fleet.describe_nodes()
        node_id = resolve_node(node, described)
        state = described[node_id]["state"]
        if state == "inactive":
            raise CliError(f"node {_short(node_id)} is not active (nothing to drain); `raftfleet nodes` shows the fleet")
        if state == "active":
            fleet.deactivate(node_id)
        start = fleet.members_on_node(node_id) or {}
        if not wait:
            data = {"node": node_id, "state": "draining", "members_left": len(start)}
            out.emit(data, lambda: out.stdout.print(
                f"draining {_short(node_id)}: {len(start)} member(s) to move; `raftfleet nodes` shows progress"))
            return
        drained, left, elapsed = _wait_drained(node_id, len(start), timeout, out)
        data = {"node": node_id, "state": "drained" if drained else "draining", "members_left": left,
                "seconds": round(elapsed, 1)}
        if not drained:
            out.emit(data, lambda: None)
            raise CliError(f"node {_short(node_id)} is still draining after {timeout:g}s ({left} member(s) left); "
                           "the drain goes on (`raftfleet nodes` shows progress)", 1)
        out.emit(data, lambda: out.stdout.print(f"drained {_short(node_id)} in {elapsed:.1f}s: no member left"))


def _wait_drained(node_id: str, total: int, timeout: float, out: Out) -> tuple[bool, int, float]:
    """Poll until ``node_id`` is no longer draining (the reconciler found it empty), with a
    live bar on stderr of the members moved away (also with ``--json``: stdout stays JSON).
    Returns (drained, members left, seconds)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.monotonic()
    left = total
    with Progress(TextColumn(f"draining {_short(node_id)}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("members moved"), TimeElapsedColumn(), console=out.stderr) as bar:
        task = bar.add_task("drain", total=max(total, 1))
        while True:
            members = fleet.members_on_node(node_id)
            draining = node_id in fleet.draining_nodes()
            left = len(members) if members is not None else left
            total = max(total, left)
            bar.update(task, total=max(total, 1), completed=total - left if draining else max(total, 1))
            if not draining:
                return True, 0, time.monotonic() - t0
            if time.monotonic() - t0 >= timeout:
                return False, left, time.monotonic() - t0
            time.sleep(DRAIN_POLL_INTERVAL)


@app.command()
def repair(
    target: Annotated[str, typer.Argument(help="A lost group's name, or the id (or a prefix) of a dead node.")],
    unsafe: Annotated[bool, typer.Option("--unsafe", help="Recover a lost GROUP: it may lose acknowledged entries "
                                                          "(without it: say what it would keep and may lose).")] = False,
    force: Annotated[bool, typer.Option("--force", help="NODE: also for a node Ray reports alive (its members must be gone).")] = False,
    address: Address = "auto", as_json: Json = False, verbose: Verbose = False,
) -> None:
    """Recover a lost group (GROUP --unsafe), or remove a dead node's members (NODE).

    A lost GROUP: without --unsafe, print what the recovery would keep (the most up-to-date
    surviving voter, else the newest files, else nothing) and what it may lose, and exit 1;
    with --unsafe, do it. A registered group name wins over a node-id prefix.

    A NODE: remove its members from every group and forget the node; refuses a node that Ray
    reports alive unless --force."""
    with _session(address, as_json, verbose) as out:
        if unsafe or target in fleet.consensus_groups():
            _repair_group(target, unsafe, force, out)
            return
        node = target
        described = fleet.describe_nodes()
        node_id = resolve_node(node, described)
        if described[node_id]["alive"] and not force:
            raise CliError(f"node {_short(node_id)} is alive according to Ray, so its members may be alive: refusing "
                           f"(`raftfleet drain {_short(node_id)}` moves them away safely; --force if you are sure they are gone)")
        fleet.remove_dead_pids_located_in_dead_node(node_id, force=force)
        out.emit({"node": node_id, "repaired": True},
                 lambda: out.stdout.print(f"removed the members of {_short(node_id)} from every group"))


def _repair_group(name: str, unsafe: bool, force: bool, out: Out) -> None:
    if force:
        raise CliError("--force is for a node; a lost group is recovered with --unsafe")
    if name not in fleet.consensus_groups():
        raise CliError(f"no consensus group named {name!r}; `raftfleet groups` lists them")
    try:
        report = fleet.repair_consensus_group(name, unsafe=unsafe)
    except fleet.RepairRefusedError as exc:
        plan = exc.plan or {}
        out.emit({"group": name, "repaired": False, "reason": exc.reason, "plan": plan},
                 lambda: out.stdout.print(f"{name}: {plan['summary']}", soft_wrap=True) if plan.get("summary") else None)
        raise CliError(f"repair of {name} refused: {exc.reason}", 1) from None

    def render() -> None:
        out.stdout.print(f"repaired {name} (lost since {_ago(report['lost_since'])}): {report['summary']}", soft_wrap=True)

    out.emit({"repaired": True, **report}, render)


def main() -> None:  # pragma: no cover - `python -m raftfleet_ray.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
