"""Pictures of a fleet for notebooks: where each group's members are (and which one leads),
and how command latency behaves across a node failure.

Each function takes plain data and returns a ``matplotlib.figure.Figure`` (no pyplot, no Ray:
they are unit-tested without either). ``placement_from_statuses`` turns ``group_status``
answers into the data ``placement_figure`` draws. Needs matplotlib (the ``test`` extra).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

ROLE_STYLE = {
    "leader": {"marker": "*", "s": 320, "color": "tab:red", "label": "leader"},
    "follower": {"marker": "o", "s": 140, "color": "tab:blue", "label": "follower"},
    "other": {"marker": "o", "s": 140, "color": "none", "edgecolors": "tab:gray", "label": "learner / candidate"},
}


def placement_from_statuses(statuses: Mapping[str, Mapping[str, Mapping[str, Any] | None]]) -> dict[str, dict[str, str]]:
    """``{group: {member_id: status}}`` (``group_statuses``, or ``{g: group_status(g)}``) to
    ``{group: {node_id: role}}``; members that did not answer (None) are left out."""
    return {
        group: {s["node_id"]: s["state_name"] for s in sts.values() if s}
        for group, sts in statuses.items()
    }


def placement_figure(
    placement: Mapping[str, Mapping[str, str]],
    node_zone: Mapping[str, str],
    dead: Iterable[str] = (),
    title: str = "placement",
) -> Figure:
    """Groups (rows) by nodes (columns, grouped by zone): a star for the leader, a dot for
    each follower, a ring for a learner or candidate; dead nodes are shaded.

    ``placement`` is ``{group: {node_id: role}}`` (role as in ``state_name``), ``node_zone``
    ``{node_id: zone}`` of the nodes to draw (a node that hosts a member but is missing from it
    is drawn in zone "?")."""
    dead = set(dead)
    zone_of = dict(node_zone)
    for roles in placement.values():
        for node in roles:
            zone_of.setdefault(node, "?")
    nodes = sorted(zone_of, key=lambda n: (zone_of[n] == "?", zone_of[n], n))  # "?" last
    groups = sorted(placement)
    col = {n: i for i, n in enumerate(nodes)}
    fig = Figure(figsize=(1.6 + 1.3 * max(len(nodes), 1), 1.4 + 0.5 * max(len(groups), 1)))
    ax = fig.add_subplot()
    for n in dead & set(col):
        ax.axvspan(col[n] - 0.5, col[n] + 0.5, color="0.85", zorder=0)
    drawn: set[str] = set()
    for row, group in enumerate(groups):
        for node, role in placement[group].items():
            kind = role if role in ("leader", "follower") else "other"
            style = dict(ROLE_STYLE[kind])
            label = style.pop("label")
            ax.scatter([col[node]], [row], zorder=2, label=None if kind in drawn else label, **style)
            drawn.add(kind)
    # Zones: a dashed line between two zones, each zone's name above its nodes.
    for i in range(1, len(nodes)):
        if zone_of[nodes[i]] != zone_of[nodes[i - 1]]:
            ax.axvline(i - 0.5, color="0.6", lw=0.8, ls="--")
    for zone in sorted(set(zone_of.values())):
        cols = [col[n] for n in nodes if zone_of[n] == zone]
        ax.annotate(zone, ((min(cols) + max(cols)) / 2, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontweight="bold")
    ax.set_xticks(range(len(nodes)), [n[:8] + (" (dead)" if n in dead else "") for n in nodes],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(groups)), groups)
    ax.set_xlim(-0.5, max(len(nodes), 1) - 0.5)
    ax.set_ylim(max(len(groups), 1) - 0.5, -0.5)  # first group on top
    ax.set_title(title, pad=18)
    if drawn:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def latency_figure(
    samples: Sequence[tuple[float, float | None]],
    events: Mapping[str, float] | None = None,
    title: str = "command latency",
) -> Figure:
    """Command latency over time: ``samples`` are ``(t, latency_ms)`` (t in seconds from any
    origin; latency None for a command that failed, drawn as a red cross on the axis), and
    ``events`` ``{label: t}`` are drawn as vertical lines (e.g. the node kill)."""
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    ok = [(t, ms) for t, ms in samples if ms is not None]
    failed = [t for t, ms in samples if ms is None]
    if ok:
        ax.plot([t for t, _ in ok], [ms for _, ms in ok], ".-", lw=0.8, ms=4, label="command")
    if failed:
        ax.plot(failed, [0] * len(failed), "x", color="tab:red", label="failed")
    for i, (label, t) in enumerate(sorted((events or {}).items(), key=lambda kv: kv[1])):
        ax.axvline(t, color=f"C{i + 1}", ls="--", lw=1)
        ax.annotate(label, (t, 1), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=9)
    ax.set_yscale("log" if ok and max(ms for _, ms in ok) > 20 * max(min(ms for _, ms in ok), 1e-3) else "linear")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    if ok or failed:
        ax.legend(loc="upper right", frameon=False)
    fig.tight_layout()
    return fig
