"""The fleet's metrics, recorded through Ray's metrics API (``ray.util.metrics``).

Ray's per-node metrics agent exports them to Prometheus on each node's metrics export port
(``ray.nodes()[i]["MetricsExportPort"]``), with Ray's ``ray_`` prefix and its own tags
(``WorkerId``, ``NodeAddress``, ...) added. The agent comes with ``ray[default]``; under a
plain ``ray`` install the calls below cost a few microseconds and nothing is exported.

What is recorded, and by whom:

- ``raftfleet_operations_total`` {group, kind, outcome}: commands and queries answered, by
  the host that answered the call.
- ``raftfleet_operation_latency_seconds`` {kind}: a histogram of the time from a call's
  arrival at the leader's host to its reply, for operations that succeeded.
- ``raftfleet_elections_total`` {group}: a member became candidate (an election started).
- ``raftfleet_leader_changes_total`` {group}: a member became its group's leader.
- ``raftfleet_members``, ``raftfleet_leaders``, ``raftfleet_awake_members``,
  ``raftfleet_max_apply_lag_entries`` {node, zone}: set by every host every few seconds;
  sum (or max) them by node over its hosts.
- ``raftfleet_log_entries``, ``raftfleet_apply_lag_entries`` {group}: set by the group's
  leader; a member that stops leading sets them to 0, so sum them by group.
- ``raftfleet_quarantines_total`` {group, during}: a host quarantined a member of ``group``
  because ``during`` (``deliver``, ``persisted``, ``tick``, ``submit``, ``recover``...) raised;
  ``raftfleet_quarantined_members`` {node, zone}: quarantined members in a host process, set
  with the other host gauges (sum by node).
- ``raftfleet_reconcile_actions_total`` {action, outcome}, ``raftfleet_reconcile_rounds_total``,
  ``raftfleet_reconcile_round_seconds`` (the last round): the reconciler (BalancerActor).
- ``raftfleet_lost_groups``: groups the reconciler found lost (a majority of their voters is
  definitely gone; kept until an operator repairs or removes them), set every round. Alert
  on it being above 0.

``kind`` is ``command`` or ``query``; ``outcome`` is ``ok``, ``raised`` (the Data class
raised), ``too_large``, ``error``, ``quarantined`` (the member was quarantined), or the reason
a member refused it (``not_leader``, ``removed``, ``no_member``, ...); the reconciler's outcomes are ``ok``, ``failed``,
``refused`` or ``other``. The apply lag of a leader is its last log index minus its
applied index (entries not yet committed or not yet applied); ``max_apply_lag`` is, per
host, the largest commit minus applied index of its members.

Set ``RAFTFLEET_METRICS=0`` in the workers' environment to record nothing.
"""

from __future__ import annotations

import collections
import os

import ray

from .per_cluster import PerCluster
from .wire import (
    ClientOp,
    Quarantine,
    QueryOp,
    RaisedReply,
    RejectedReply,
    Reply,
    TooLargeReply,
    UnpicklableReply,
    ValueReply,
)

LATENCY_BOUNDARIES = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
"""Seconds: the buckets of the operation latency histogram."""

GAUGE_INTERVAL = 5.0
"""How often each host sets its gauges (s); only the values that changed are set again."""

REFUSALS = {"ok", "failed", "refused"}


class Metrics:
    """Records nothing: the interface, used where Ray is not (unit tests, ``RAFTFLEET_METRICS=0``)."""

    enabled = False

    def operations(self, group: str, kind: str, outcome: str, n: int = 1) -> None:
        pass

    def latency(self, kind: str, seconds: float, n: int = 1) -> None:
        pass

    def election(self, group: str) -> None:
        pass

    def leader_change(self, group: str) -> None:
        pass

    def host_gauges(self, members: int, leaders: int, awake: int, max_apply_lag: int) -> None:
        pass

    def group_gauges(self, group: str, log_entries: int, apply_lag: int) -> None:
        pass

    def quarantine(self, group: str, during: str) -> None:
        pass

    def quarantined_members(self, n: int) -> None:
        pass

    def reconcile_action(self, action: str, outcome: str) -> None:
        pass

    def reconcile_round(self, seconds: float) -> None:
        pass

    def lost_groups(self, n: int) -> None:
        pass


def action_outcome(outcome: str) -> str:
    """The reconciler's outcome text ("ok", "failed: ...", "refused: ...") as a tag value."""
    head = outcome.split(":", 1)[0].strip()
    return head if head in REFUSALS else "other"


class RecordingMetrics(Metrics):
    """Keeps what was recorded in dicts (the shell's unit tests read them)."""

    enabled = True

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.latencies: list[tuple[str, float]] = []
        self.gauges: dict[tuple, float] = {}

    def operations(self, group: str, kind: str, outcome: str, n: int = 1) -> None:
        self.counts[("operations", group, kind, outcome)] += n

    def latency(self, kind: str, seconds: float, n: int = 1) -> None:
        self.latencies.extend([(kind, seconds)] * n)

    def election(self, group: str) -> None:
        self.counts[("elections", group)] += 1

    def leader_change(self, group: str) -> None:
        self.counts[("leader_changes", group)] += 1

    def host_gauges(self, members: int, leaders: int, awake: int, max_apply_lag: int) -> None:
        self.gauges[("host",)] = (members, leaders, awake, max_apply_lag)

    def group_gauges(self, group: str, log_entries: int, apply_lag: int) -> None:
        self.gauges[("group", group)] = (log_entries, apply_lag)

    def quarantine(self, group: str, during: str) -> None:
        self.counts[("quarantines", group, during)] += 1

    def quarantined_members(self, n: int) -> None:
        self.gauges[("quarantined",)] = n

    def reconcile_action(self, action: str, outcome: str) -> None:
        self.counts[("reconcile_action", action, action_outcome(outcome))] += 1

    def reconcile_round(self, seconds: float) -> None:
        self.counts[("reconcile_rounds",)] += 1

    def lost_groups(self, n: int) -> None:
        self.gauges[("lost_groups",)] = n


class RayMetrics(Metrics):
    """The fleet's metrics in this Ray worker process (one set per process: Ray keys its
    metrics by name, so hosts and the reconciler share these)."""

    enabled = True

    def __init__(self, node: str = "", zone: str = "") -> None:
        from ray.util.metrics import Counter, Gauge, Histogram

        self._ops = Counter("raftfleet_operations_total",
                            description="Commands and queries answered, by group, kind and outcome.",
                            tag_keys=("group", "kind", "outcome"))
        self._latency = Histogram("raftfleet_operation_latency_seconds",
                                  description="Time from a call's arrival at the leader's host to its "
                                              "reply, for operations that succeeded.",
                                  boundaries=LATENCY_BOUNDARIES, tag_keys=("kind",))
        self._elections = Counter("raftfleet_elections_total",
                                  description="Elections started (a member became candidate).",
                                  tag_keys=("group",))
        self._leader_changes = Counter("raftfleet_leader_changes_total",
                                       description="A member became its group's leader.",
                                       tag_keys=("group",))
        host_tags = ("node", "zone")
        self._members = Gauge("raftfleet_members", description="Members in this host process.",
                              tag_keys=host_tags)
        self._leaders = Gauge("raftfleet_leaders", description="Leaders in this host process.",
                              tag_keys=host_tags)
        self._awake = Gauge("raftfleet_awake_members",
                            description="Members of this host that are not quiesced.", tag_keys=host_tags)
        self._max_lag = Gauge("raftfleet_max_apply_lag_entries",
                              description="Largest commit index minus applied index among this host's members.",
                              tag_keys=host_tags)
        self._quarantined = Gauge("raftfleet_quarantined_members",
                                  description="Members of this host process that it quarantined (their step raised).",
                                  tag_keys=host_tags)
        for g in (self._members, self._leaders, self._awake, self._max_lag, self._quarantined):
            g.set_default_tags({"node": node, "zone": zone})
        self._log_entries = Gauge("raftfleet_log_entries",
                                  description="Entries in the leader's log (since its snapshot).",
                                  tag_keys=("group",))
        self._apply_lag = Gauge("raftfleet_apply_lag_entries",
                                description="The leader's last log index minus its applied index.",
                                tag_keys=("group",))
        self._quarantines = Counter("raftfleet_quarantines_total",
                                    description="Members quarantined by their host, by group and by what raised.",
                                    tag_keys=("group", "during"))
        self._actions = Counter("raftfleet_reconcile_actions_total",
                                description="Reconciler actions carried out, by action and outcome.",
                                tag_keys=("action", "outcome"))
        self._rounds = Counter("raftfleet_reconcile_rounds_total", description="Reconcile rounds.")
        self._round_seconds = Gauge("raftfleet_reconcile_round_seconds",
                                    description="Duration of the last reconcile round.")
        self._lost = Gauge("raftfleet_lost_groups",
                           description="Groups found lost (a majority of their voters definitely gone), "
                                       "kept until an operator repairs or removes them.")

    def operations(self, group: str, kind: str, outcome: str, n: int = 1) -> None:
        self._ops.inc(n, tags={"group": group, "kind": kind, "outcome": outcome})

    def latency(self, kind: str, seconds: float, n: int = 1) -> None:
        tags = {"kind": kind}
        for _ in range(n):
            self._latency.observe(seconds, tags=tags)

    def election(self, group: str) -> None:
        self._elections.inc(1, tags={"group": group})

    def leader_change(self, group: str) -> None:
        self._leader_changes.inc(1, tags={"group": group})

    def host_gauges(self, members: int, leaders: int, awake: int, max_apply_lag: int) -> None:
        self._members.set(members)
        self._leaders.set(leaders)
        self._awake.set(awake)
        self._max_lag.set(max_apply_lag)

    def group_gauges(self, group: str, log_entries: int, apply_lag: int) -> None:
        tags = {"group": group}
        self._log_entries.set(log_entries, tags=tags)
        self._apply_lag.set(apply_lag, tags=tags)

    def quarantine(self, group: str, during: str) -> None:
        self._quarantines.inc(1, tags={"group": group, "during": during})

    def quarantined_members(self, n: int) -> None:
        self._quarantined.set(n)

    def reconcile_action(self, action: str, outcome: str) -> None:
        self._actions.inc(1, tags={"action": action, "outcome": action_outcome(outcome)})

    def reconcile_round(self, seconds: float) -> None:
        self._rounds.inc(1)
        self._round_seconds.set(seconds)

    def lost_groups(self, n: int) -> None:
        self._lost.set(n)


_process_metrics: PerCluster[Metrics] = PerCluster(Metrics)


def process_metrics(node: str = "", zone: str = "") -> Metrics:
    """This process's metrics: Ray's when running in a Ray worker (created once per cluster
    connection; the first caller's node and zone tag the host gauges), else ones that record
    nothing."""
    return _process_metrics.get(lambda: _new_metrics(node, zone))


def _new_metrics(node: str, zone: str) -> Metrics:
    if os.environ.get("RAFTFLEET_METRICS", "1").strip().lower() in ("0", "false", "no", "off"):
        return Metrics()
    try:
        if ray.is_initialized():
            return RayMetrics(node, zone)
    except Exception:  # noqa: BLE001 - metrics never stop a member from starting
        pass
    return Metrics()


_OUTCOMES: dict[type, str] = {ValueReply: "ok", RaisedReply: "raised", UnpicklableReply: "error",
                              TooLargeReply: "too_large", Quarantine: "quarantined"}


def ops_outcomes(ops: list[ClientOp], results: list[Reply | Quarantine]) -> dict[tuple[str, str], int]:
    """``{(kind, outcome): n}`` of a batch of client operations and their replies (a
    rejection's outcome is its reason)."""
    out: dict[tuple[str, str], int] = {}
    for op, r in zip(ops, results, strict=True):
        kind = "query" if isinstance(op, QueryOp) else "command"
        outcome = r.reason if isinstance(r, RejectedReply) else _OUTCOMES[type(r)]
        out[(kind, outcome)] = out.get((kind, outcome), 0) + 1
    return out


def record_ops(metrics: Metrics, group: str, ops: list[ClientOp], results: list[Reply | Quarantine],
               seconds: float) -> None:
    for (kind, outcome), n in ops_outcomes(ops, results).items():
        metrics.operations(group, kind, outcome, n)
        if outcome == "ok":
            metrics.latency(kind, seconds, n)


__all__ = ["GAUGE_INTERVAL", "LATENCY_BOUNDARIES", "Metrics", "RayMetrics", "RecordingMetrics",
           "action_outcome", "process_metrics", "record_ops"]
