"""raftfleet_ray/plots.py without Ray: each helper returns a Figure that renders to PNG."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from raftfleet_ray.plots import latency_figure, placement_figure, placement_from_statuses  # noqa: E402

NODE_ZONE = {"n-a-000000": "zone-a", "n-b-000000": "zone-b", "n-c-000000": "zone-c"}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_placement_from_statuses_keeps_answers_only() -> None:
    statuses = {
        "g": {"m1": {"node_id": "n-a-000000", "state_name": "leader"},
              "m2": {"node_id": "n-b-000000", "state_name": "follower"}, "m3": None},
    }
    assert placement_from_statuses(statuses) == {"g": {"n-a-000000": "leader", "n-b-000000": "follower"}}


def test_placement_figure_marks_leaders_and_dead_nodes() -> None:
    placement = {
        "orders": {"n-a-000000": "leader", "n-b-000000": "follower", "n-c-000000": "follower"},
        "hits": {"n-a-000000": "follower", "n-b-000000": "candidate", "n-x-000000": "leader"},
    }
    fig = placement_figure(placement, NODE_ZONE, dead={"n-c-000000"}, title="before")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_title() == "before"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["hits", "orders"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:3] == ["n-a-0000", "n-b-0000", "n-c-0000 (dead)"] and ticks[3] == "n-x-0000"  # zone "?" last
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["follower", "leader", "learner / candidate"]
    assert {t.get_text() for t in ax.texts} >= {"zone-a", "zone-b", "zone-c", "?"}
    assert _png(fig).startswith(b"\x89PNG")


def test_placement_figure_of_nothing() -> None:
    assert _png(placement_figure({}, {})).startswith(b"\x89PNG")


def test_latency_figure_draws_samples_failures_and_events() -> None:
    samples = [(0.0, 4.0), (0.1, 5.0), (0.2, None), (1.9, 1800.0), (2.0, 6.0)]
    fig = latency_figure(samples, {"node killed": 0.15, "new leader": 1.9})
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"  # a failover spike next to ms-scale commands
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["command", "failed"]
    assert [t.get_text() for t in ax.texts] == ["node killed", "new leader"]
    assert _png(fig).startswith(b"\x89PNG")
    assert latency_figure([(0.0, 4.0), (1.0, 5.0)]).axes[0].get_yscale() == "linear"
    assert _png(latency_figure([])).startswith(b"\x89PNG")


def test_plots_import_neither_ray_nor_pyplot() -> None:
    code = ("import sys, raftfleet_ray.plots; "
            "print(sorted(m for m in ('ray', 'matplotlib.pyplot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
