"""The fleet's metadata as a pure state machine: raft_fleet's ``RaftFleet.Cluster`` state.

raft_fleet replicates this state with Raft on every active node (reference §3.3). Here one
ClusterActor holds it and checkpoints it to Ray's GCS key-value store after every command,
so this module is the whole behaviour and the actor is a thin durable shell around it.

State:

- ``nodes_per_zone``: the active nodes, by zone (a node is in exactly one zone); and the
  *draining* nodes: deactivated, still running members that the reconciler moves away,
  no longer listed by ``active_nodes`` nor given new members;
- consensus groups: ``name -> GroupSpec(n_replica, RaftConfig)``;
- the removed-groups log (:class:`RemovedGroupsLog`, reference §3.8): which removed names
  every node still has to stop members of; a name is not reusable until they all did;
- the groups a leader was seen for once (``created``), and the last error met while creating
  a group (``group_error``), both reported by the reconciler;
- what the reconciler observed that must outlive it: each group's last configuration seen
  from a leader (``record_configs``: which members must be known dead before the group is
  called lost) and the highest commit index seen (now and then: what a recovery may lose is
  measured against it), and the *lost* groups (``mark_lost``: a majority of their last
  configuration's voters is definitely gone, no safe automatic restore was possible; only an
  operator's repair or ``remove_group`` ends it, never the reconciler's guess);
- the names removed while this state lived (bounded), so that files of a removed group found
  later (a node back under its name) never register it again (``register_found_group``);
- the fleet-wide :class:`FleetConfig`;
- a bounded FIFO of recent request ids and their results, so that a client retrying a
  command with the same request id (after a timeout or an actor restart) gets the first
  result and the command is applied once (rafted_value's command de-duplication).

Not here: node reachability bookkeeping (``unreachable_nodes``), which is per observer.

No ``ray``, no clock: time comes in through the commands (``now``), as it would in a
replicated log. The object pickles; the leader-node cache is rebuilt on unpickling.
"""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cloudpickle

from raftfleet_ray.config import FleetConfig, RaftConfig
from raftfleet_ray.errors import (
    AlreadyAddedError,
    CleanupOngoingError,
    FleetConfigLockedError,
    GroupLostError,
    InactiveError,
    InvalidNameError,
    NoActiveNodeError,
    NotFoundError,
    RaftFleetError,
)
from raftfleet_ray.placement.layout import fleet_layout
from raftfleet_ray.placement.rendezvous import desired_members as _lrw_members

GROUP_NAME_MAX_LEN = 200
RESERVED_NAME_PREFIX = "raftfleet"
"""Group names starting with this (any case) are reserved for the library's own groups, so a
user group can never shadow one (raft_fleet keeps ``RaftFleet.Cluster`` out of the user's
namespace the same way: it is an Elixir module name, not a plain atom)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")

DEFAULT_DEDUP_CAPACITY = 1000
"""Request ids remembered. Far more than rafted_value's 100: the metadata is shared by every
node and client of the fleet, and a retry may come after an actor restart."""

FORGET_INACTIVE_NODE_AFTER = 1800.0
"""raft_fleet's ``@wait_time_before_forgetting_deactivated_node`` (30 min): a node not seen
for this long stops blocking the cleanup of removed groups (the default ``wait``)."""

REMEMBERED_REMOVALS = 100_000
"""Removed names remembered (oldest forgotten first), so that a node coming back with files of
a removed group never brings it back (``register_found_group``). Bounded: a fleet that churns
through unique names must not grow its checkpoint forever; a name forgotten this way is only
at risk if a node kept a member of it that was never retired (it died before its removal)."""

RequestId = Hashable
T = TypeVar("T")

Config = tuple[tuple[str, ...], tuple[str, ...]]
"""A group's configuration: (voters, learners), member ids."""


def validate_group_name(name: Any) -> str:
    """Return ``name`` if it can name a consensus group, else raise ``InvalidNameError``.

    Rules and why:

    - a ``str`` of 1..200 characters from ``A-Z a-z 0-9 _ . : -``: the name becomes part of
      Ray actor names and of an on-disk directory name (``persistence_dir_parent/<name>``),
      so no ``/``, no spaces, nothing that needs quoting;
    - the first character is a letter, digit or ``_``: no ``.``/``..`` (path traversal, hidden
      directories) and no leading ``-`` (read as an option by command lines);
    - not starting with ``raftfleet`` in any case: reserved for internal groups.
    """
    if not isinstance(name, str):
        raise InvalidNameError(name, f"it is a {type(name).__name__}, not a str")
    if not name:
        raise InvalidNameError(name, "it is empty")
    if len(name) > GROUP_NAME_MAX_LEN:
        raise InvalidNameError(name, f"it has {len(name)} characters, more than {GROUP_NAME_MAX_LEN}")
    if not _NAME_RE.match(name):
        bad = sorted({c for c in name if not re.match(r"[A-Za-z0-9_.:-]", c)})
        if bad:
            raise InvalidNameError(name, f"it contains {''.join(bad)!r}")
        raise InvalidNameError(name, f"it starts with {name[0]!r}")
    if name.lower().startswith(RESERVED_NAME_PREFIX):
        raise InvalidNameError(name, f"names starting with {RESERVED_NAME_PREFIX!r} are reserved")
    return name


def _validate_node_id(node_id: Any) -> str:
    if not isinstance(node_id, str) or not node_id:
        raise ValueError(f"node_id must be a non-empty str (a Ray node id), got {node_id!r}")
    return node_id


def _validate_time(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """What the fleet knows about one consensus group."""

    n_replica: int
    config: RaftConfig


@dataclass(frozen=True, slots=True)
class LostMark:
    """Why a group is lost and since when (``ClusterState.mark_lost``)."""

    reason: str
    since: float
    """Epoch seconds (the ClusterActor's clock) when the reconciler marked it."""
    highest_commit: int = 0
    """The highest commit index the reconciler saw any member report: what a recovery that
    keeps less may lose (it only knows what it saw: a lower bound)."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """Everything one node's agent needs in a round (raft_fleet's ``{:consensus_groups, node}``
    query): all active nodes, the groups this node should lead with their desired members,
    and the removed names it still has to stop (``removed_index`` is what to ack, ``None`` if
    there is nothing to do)."""

    active_nodes: dict[str, list[str]]
    groups_led: list[tuple[str, list[str]]]
    removed_names: list[str]
    removed_index: int | None


@dataclass(frozen=True, slots=True)
class ReconcileView:
    """Everything the reconciler needs in a round, in one call: the groups with their desired
    layout (``fleet_layout``: element 0 the desired leader node), the nodes, which groups
    were created, and whether removed groups are still being cleaned up."""

    groups: dict[str, GroupSpec]
    layout: dict[str, list[str]]
    active_nodes: dict[str, list[str]]
    draining: dict[str, str]  # node -> zone
    created: frozenset[str]
    cleanup_pending: bool
    fleet_config: FleetConfig
    lost: dict[str, LostMark] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreationView:
    """One group, as the reconciler's creation fast path needs it (``creation_view``)."""

    spec: GroupSpec
    desired: list[str]  # element 0 the desired leader node
    created: bool
    active_nodes: dict[str, list[str]]
    fleet_config: FleetConfig


@dataclass(slots=True)
class _NodeAck:
    last_touched: float | None  # None: registered, not yet seen by an update
    acked_index: int | None  # None: has acked nothing since it was registered


@dataclass(slots=True)
class RemovedGroupsLog:
    """raft_fleet's ``RecentlyRemovedGroups`` (reference §3.8), without its first-entry quirk.

    Every removal gets the next index (1, 2, ...). Each known node acks the highest index
    it has processed (it stopped its local members of every name up to there). Entries up to
    ``done_index``, the minimum ack over the known nodes, are finished and dropped.

    raft_fleet starts ``min_index`` at 1 and calls a name ongoing only if its index is
    ``> min_index``, so the very first removal is never reported as ongoing and the name can
    be re-added while old members still run. We do not copy that: ``done_index`` starts at 0,
    so the first removal, like every other, is ongoing until every known node acked it.
    """

    nodes: dict[str, _NodeAck] = field(default_factory=dict)
    done_index: int = 0
    max_index: int = 0
    pending: dict[int, str] = field(default_factory=dict)  # index -> name, for index > done_index

    def add(self, name: str) -> int:
        self.max_index += 1
        self.pending[self.max_index] = name
        return self.max_index

    def register_node(self, node_id: str) -> None:
        """Make ``node_id`` a node that must ack removals (done when it becomes active)."""
        self.nodes.setdefault(node_id, _NodeAck(last_touched=None, acked_index=None))

    def forget_node(self, node_id: str) -> None:
        """Stop waiting for ``node_id`` (it is dead for good and runs nothing)."""
        self.nodes.pop(node_id, None)
        self._advance()

    def is_ongoing(self, name: str) -> bool:
        return name in self.pending.values()

    def names_for_node(self, node_id: str) -> tuple[list[str], int | None]:
        """Names ``node_id`` still has to stop, and the index to ack when done (None: nothing)."""
        ack = self.nodes.get(node_id)
        start = ack.acked_index if ack is not None and ack.acked_index is not None else 0
        start = max(start, self.done_index)
        names: list[str] = []
        for index in sorted(self.pending):
            if index > start and self.pending[index] not in names:
                names.append(self.pending[index])
        return (names, self.max_index) if names else ([], None)

    def update(
        self,
        active_nodes: Iterable[str],
        node_id: str,
        index: int | None,
        now: float,
        wait: float,
    ) -> None:
        """``node_id`` reports that it stopped its members of every name up to ``index``
        (``None``: a plain touch). Forget nodes unseen for ``wait`` seconds, then advance."""
        for active in active_nodes:  # (1) touch every active node
            ack = self.nodes.setdefault(active, _NodeAck(None, None))
            ack.last_touched = now
        for known in list(self.nodes):  # (2) forget nodes not seen for `wait`
            ack = self.nodes[known]
            if ack.last_touched is None:
                ack.last_touched = now  # start its clock at the first update that sees it
            elif now - ack.last_touched > wait:
                del self.nodes[known]
        ack = self.nodes.get(node_id)
        if ack is not None and index is not None:  # (3) record the ack, never backwards
            index = min(index, self.max_index)
            ack.acked_index = max(ack.acked_index or 0, index)
        self._advance()  # (4)

    def _advance(self) -> None:
        if self.nodes:
            # A node that has acked nothing counts as done_index: it holds everything pending.
            floor = min(
                a.acked_index if a.acked_index is not None else self.done_index
                for a in self.nodes.values()
            )
        else:
            floor = self.max_index  # nobody is left who could run old members
        if floor > self.done_index:
            self.done_index = floor
            for index in [i for i in self.pending if i <= floor]:
                del self.pending[index]


# A remembered outcome: (fingerprint of the command, ok, result or the RaftFleetError raised).
# Plain tuples, not dataclasses: the state is pickled after every command, and the C pickler
# handles tuples without a Python-level call per object.
_Remembered = tuple[tuple[Any, ...], bool, Any]


class ClusterState:
    """The metadata state machine. Commands take a ``request_id`` and are idempotent;
    queries are plain methods. See the module docstring.

    Example::

        state = ClusterState()
        state.add_node("r1", "n1", "zone1")
        state.add_group("r2", "orders", 3, RaftConfig())  # -> ["n1"]
        state.consensus_groups()  # -> {"orders": 3}
    """

    _FORMAT = 3  # bump and migrate in __setstate__ when the pickled layout changes

    def __init__(
        self,
        fleet_config: FleetConfig | None = None,
        *,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
    ) -> None:
        if dedup_capacity < 1:
            raise ValueError(f"dedup_capacity must be >= 1, got {dedup_capacity!r}")
        self._nodes_per_zone: dict[str, list[str]] = {}
        self._zone_of: dict[str, str] = {}
        # name -> (n_replica, config). Equal configs are interned to one object, so the
        # pickled state holds each distinct config once (most groups share one).
        self._groups: dict[str, tuple[int, RaftConfig]] = {}
        self._removed = RemovedGroupsLog()
        self._draining: dict[str, str] = {}  # node -> zone
        self._created: set[str] = set()
        self._errors: dict[str, bytes] = {}  # group -> pickled exception met creating it
        # group -> its last configuration seen from a leader. What it costs: measured with 5,000
        # groups of 3, the pickled state grows from 0.15 to 1.2 MB (with the commits below) and a
        # checkpoint from 2.3 to 7.7 ms; recorded only when a configuration changes, and
        # commit indexes at most every few seconds (balancer.COMMIT_RECORD_INTERVAL).
        self._configs: dict[str, Config] = {}
        self._commits: dict[str, int] = {}  # group -> the highest commit index recorded
        self._lost: dict[str, LostMark] = {}
        self._removed_names: OrderedDict[str, None] = OrderedDict()  # oldest first, bounded
        self._fleet_config = fleet_config if fleet_config is not None else FleetConfig()
        self._dedup_capacity = dedup_capacity
        self._results: OrderedDict[RequestId, _Remembered] = OrderedDict()
        self._init_derived()

    def _init_derived(self) -> None:
        """Caches, never pickled, rebuilt after unpickling."""
        self._interned: dict[RaftConfig, RaftConfig] = {}
        for _, config in self._groups.values():
            self._interned.setdefault(config, config)
        # The desired layout of every group (placement.fleet_layout), recomputed lazily: a
        # burst of group or node changes costs one recomputation, at the next read.
        self._layout: dict[str, list[str]] = {}
        self._layout_dirty = True

    # -----------------------------------------------------------------------------------
    # pickling
    #
    # The ClusterActor pickles this state after every command, so it must be fast: plain
    # pickle (the C pickler) for everything, except the few distinct RaftConfigs, which go
    # through cloudpickle because their Data class may exist only by value (defined in a
    # notebook's __main__ and shipped here by Ray). cloudpickle on the whole state is ~40x
    # slower (measured: 148 ms vs 3.4 ms for 5,000 groups).

    def __getstate__(self) -> dict[str, Any]:
        configs: list[RaftConfig] = []
        index_of: dict[int, int] = {}
        groups: dict[str, tuple[int, int]] = {}
        for name, (n, config) in self._groups.items():
            i = index_of.get(id(config))
            if i is None:
                i = index_of[id(config)] = len(configs)
                configs.append(config)
            groups[name] = (n, i)
        skip = {"_groups", "_interned", "_layout", "_layout_dirty"}
        state = {k: v for k, v in self.__dict__.items() if k not in skip}
        state["_groups"] = groups
        state["_configs_blob"] = cloudpickle.dumps(configs, protocol=pickle.HIGHEST_PROTOCOL)
        state["_format"] = self._FORMAT
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        fmt = state.pop("_format", None)
        if fmt == 1:  # before draining nodes and creation reports
            state.update(_draining={}, _created=set(state["_groups"]), _errors={})
            fmt = 2
        if fmt == 2:  # before lost groups, recorded configurations and removed names
            state.update(_configs={}, _commits={}, _lost={}, _removed_names=OrderedDict())
            fmt = 3
        if fmt != self._FORMAT:
            raise ValueError(
                f"cannot restore ClusterState format {fmt!r}; this version reads format "
                f"{self._FORMAT}"
            )
        configs: list[RaftConfig] = pickle.loads(state.pop("_configs_blob"))
        groups = state.pop("_groups")
        self.__dict__.update(state)
        self._groups = {name: (n, configs[i]) for name, (n, i) in groups.items()}
        self._init_derived()

    # -----------------------------------------------------------------------------------
    # idempotency

    def _idempotent(
        self, request_id: RequestId, fingerprint: tuple[Any, ...], apply: Callable[[], T]
    ) -> T:
        """Run ``apply`` once per ``request_id``; a repeat returns (or raises) the first outcome.

        Only ``RaftFleetError`` outcomes are remembered: they are answers, like a value.
        Bad input (``ValueError``/``TypeError``) is refused before this and changes nothing.
        """
        if request_id is None:
            raise TypeError("request_id must not be None: use a fresh uuid per logical request")
        try:
            seen = self._results.get(request_id)
        except TypeError:
            raise TypeError(f"request_id must be hashable, got {request_id!r}") from None
        if seen is not None:
            seen_fingerprint, ok, outcome = seen
            if seen_fingerprint != fingerprint:
                raise ValueError(
                    f"request_id {request_id!r} was already used for {seen_fingerprint!r}, not "
                    f"{fingerprint!r}; use a new request id for every logical request"
                )
            if ok:
                return _copy_result(outcome)
            raise outcome
        try:
            value = apply()
        except RaftFleetError as err:
            self._remember(request_id, (fingerprint, False, err))
            raise
        self._remember(request_id, (fingerprint, True, _copy_result(value)))
        return value

    def _remember(self, request_id: RequestId, outcome: _Remembered) -> None:
        self._results[request_id] = outcome
        while len(self._results) > self._dedup_capacity:
            self._results.popitem(last=False)  # FIFO, as rafted_value's cache

    def has_result(self, request_id: RequestId) -> bool:
        """True if ``request_id`` is remembered (a retry would not apply anything)."""
        return request_id in self._results

    # -----------------------------------------------------------------------------------
    # commands

    def add_group(
        self, request_id: RequestId, name: str, n_replica: int, config: RaftConfig
    ) -> list[str]:
        """Register group ``name`` with ``n_replica`` members; return its desired member nodes
        (element 0 = the desired leader).

        Raises ``AlreadyAddedError``, ``NoActiveNodeError`` or ``CleanupOngoingError`` (checked
        in this order, as raft_fleet); ``InvalidNameError``/``ValueError``/``TypeError`` for
        bad input.
        """
        validate_group_name(name)
        if isinstance(n_replica, bool) or not isinstance(n_replica, int) or n_replica < 1:
            raise ValueError(
                f"n_replica must be an int >= 1 (a large number means every node), got {n_replica!r}"
            )
        if not isinstance(config, RaftConfig):
            raise TypeError(f"config must be a RaftConfig, got {type(config).__name__}")

        def apply() -> list[str]:
            if name in self._groups:
                raise AlreadyAddedError(name)
            if not self._nodes_per_zone:
                raise NoActiveNodeError(name, operation="add_consensus_group")
            if self._removed.is_ongoing(name):
                raise CleanupOngoingError(name)
            self._groups[name] = (n_replica, self._interned.setdefault(config, config))
            self._errors.pop(name, None)
            self._removed_names.pop(name, None)  # added again by its user: files may restore it
            self._layout_dirty = True
            return list(_lrw_members(self._nodes_per_zone, name, n_replica))

        return self._idempotent(request_id, ("add_group", name, n_replica), apply)

    def register_found_group(
        self, request_id: RequestId, name: str, n_replica: int, config: RaftConfig, last_config: Config
    ) -> bool:
        """The reconciler found files of ``name``, a group this state does not know (the whole
        fleet restarted: this state is new): register it as *created* (it existed, so it is
        never started afresh, only restored from files, and only safely) with ``last_config``,
        the configuration its newest file holds. Returns False, changing nothing, if ``name`` is
        registered or was removed while this state lived (a removed group stays removed: its
        files are what a node that died before the removal kept)."""
        validate_group_name(name)
        if isinstance(n_replica, bool) or not isinstance(n_replica, int) or n_replica < 1:
            raise ValueError(f"n_replica must be an int >= 1, got {n_replica!r}")
        if not isinstance(config, RaftConfig):
            raise TypeError(f"config must be a RaftConfig, got {type(config).__name__}")
        found = _config(last_config)

        def apply() -> bool:
            if name in self._groups or name in self._removed_names or self._removed.is_ongoing(name):
                return False
            self._groups[name] = (n_replica, self._interned.setdefault(config, config))
            self._created.add(name)
            self._configs[name] = found
            self._layout_dirty = True
            return True

        return self._idempotent(request_id, ("register_found_group", name), apply)

    def remove_group(self, request_id: RequestId, name: str) -> None:
        """Forget group ``name`` and log its removal: every node must then stop its members
        before the name can be added again. Raises ``NotFoundError``."""
        if not isinstance(name, str):
            raise NotFoundError(repr(name), operation="remove_consensus_group")

        def apply() -> None:
            if name not in self._groups:
                raise NotFoundError(name, operation="remove_consensus_group")
            del self._groups[name]
            self._created.discard(name)
            self._errors.pop(name, None)
            self._configs.pop(name, None)
            self._commits.pop(name, None)
            self._lost.pop(name, None)
            self._removed_names[name] = None
            self._removed_names.move_to_end(name)
            while len(self._removed_names) > REMEMBERED_REMOVALS:
                self._removed_names.popitem(last=False)
            self._layout_dirty = True
            # Every node active or draining now must ack this removal, even one no update has
            # seen yet (a draining node still runs members).
            for node in [*self._zone_of, *self._draining]:
                self._removed.register_node(node)
            self._removed.add(name)

        return self._idempotent(request_id, ("remove_group", name), apply)

    def add_node(self, request_id: RequestId, node_id: str, zone: str) -> None:
        """Make ``node_id`` an active node of ``zone``. Adding it again is a no-op; adding it
        under another zone moves it (a node is in exactly one zone)."""
        _validate_node_id(node_id)
        if not isinstance(zone, str) or not zone:
            raise ValueError(f"zone must be a non-empty str, got {zone!r}")

        def apply() -> None:
            current = self._zone_of.get(node_id)
            if current == zone:
                return
            if current is not None:
                self._drop_from_zone(node_id, current)
            self._draining.pop(node_id, None)  # activating a draining node stops its drain
            self._zone_of[node_id] = zone
            self._nodes_per_zone.setdefault(zone, []).append(node_id)
            self._nodes_per_zone[zone].sort()
            self._removed.register_node(node_id)
            self._layout_dirty = True

        return self._idempotent(request_id, ("add_node", node_id, zone), apply)

    def remove_node(self, request_id: RequestId, node_id: str, *, dead: bool = False) -> None:
        """Make ``node_id`` inactive (an emptied zone disappears). Unknown nodes: no-op.

        ``dead=True`` says the node is gone for good (Ray never revives a dead node id), so
        the removed-groups log stops waiting for its acks at once instead of after
        ``FORGET_INACTIVE_NODE_AFTER``. A deactivated but alive node still runs members and
        must ack like the others: leave ``dead`` False for it.
        """
        _validate_node_id(node_id)

        def apply() -> None:
            zone = self._zone_of.pop(node_id, None)
            if zone is not None:
                self._drop_from_zone(node_id, zone)
                self._layout_dirty = True
            self._draining.pop(node_id, None)
            if dead:
                self._removed.forget_node(node_id)

        return self._idempotent(request_id, ("remove_node", node_id, dead), apply)

    def deactivate_node(self, request_id: RequestId, node_id: str) -> None:
        """Start draining ``node_id``: at once it is no longer active (``active_nodes`` stops
        listing it, no new member goes there), and the reconciler moves its members away; it
        becomes inactive with ``node_drained``. Raises ``InactiveError`` if it is not active."""
        _validate_node_id(node_id)

        def apply() -> None:
            zone = self._zone_of.pop(node_id, None)
            if zone is None:
                raise InactiveError(node_id)
            self._drop_from_zone(node_id, zone)
            self._draining[node_id] = zone
            self._layout_dirty = True

        return self._idempotent(request_id, ("deactivate_node", node_id), apply)

    def node_drained(self, request_id: RequestId, node_id: str) -> None:
        """The reconciler found no member left on draining node ``node_id``: it is inactive.
        (It still acks removals until it is forgotten, as any deactivated node.)"""
        _validate_node_id(node_id)

        def apply() -> None:
            self._draining.pop(node_id, None)

        return self._idempotent(request_id, ("node_drained", node_id), apply)

    def mark_created(self, request_id: RequestId, names: list[str]) -> None:
        """A leader was seen for each of ``names``: they exist (a group that loses every
        member afterwards is not silently created again, empty)."""

        def apply() -> None:
            for n in names:
                if n in self._groups:
                    self._created.add(n)
                    self._errors.pop(n, None)

        return self._idempotent(request_id, ("mark_created", tuple(names)), apply)

    def set_group_error(self, request_id: RequestId, name: str, error: bytes) -> None:
        """The reconciler could not create group ``name``: ``error`` is the pickled exception
        (e.g. its Data class raised), for ``add_consensus_group`` to raise."""

        def apply() -> None:
            if name in self._groups:
                self._errors[name] = error

        return self._idempotent(request_id, ("set_group_error", name), apply)

    def record_configs(
        self, request_id: RequestId, configs: dict[str, Config], commits: dict[str, int] | None = None
    ) -> None:
        """The reconciler saw these configurations (voters, learners) from the groups'
        leaders: they are what must be known dead before a group is called lost. ``commits``:
        commit indexes it saw (kept as the highest per group: a lost mark's lower bound of
        what was acknowledged)."""
        checked = {name: _config(c) for name, c in configs.items()}
        indexes = {name: int(i) for name, i in (commits or {}).items()}

        def apply() -> None:
            for name, c in checked.items():
                if name in self._groups:
                    self._configs[name] = c
            for name, i in indexes.items():
                if name in self._groups:
                    self._commits[name] = max(self._commits.get(name, 0), i)

        return self._idempotent(request_id, ("record_configs", tuple(sorted(checked)), tuple(sorted(indexes))), apply)

    def mark_lost(self, request_id: RequestId, marks: dict[str, tuple[str, int]], now: float) -> None:
        """The reconciler found these groups lost: ``{name: (reason, highest commit index
        seen)}``. A group already lost keeps the time of its first mark (``since`` says how
        long) and takes the latest reason (what is readable now may have changed)."""
        now = _validate_time("now", now)

        def apply() -> None:
            for name, (reason, highest) in marks.items():
                if name not in self._groups:
                    continue
                old = self._lost.get(name)
                highest = max(int(highest), self._commits.get(name, 0))
                if old is None:
                    self._lost[name] = LostMark(str(reason), now, highest)
                else:
                    self._lost[name] = LostMark(str(reason), old.since, max(old.highest_commit, highest))

        return self._idempotent(request_id, ("mark_lost", tuple(sorted(marks))), apply)

    def clear_lost(self, request_id: RequestId, names: list[str]) -> None:
        """These groups are no longer lost (repaired, restored, or a leader was seen again)."""

        def apply() -> None:
            for name in names:
                self._lost.pop(name, None)

        return self._idempotent(request_id, ("clear_lost", tuple(sorted(names))), apply)

    def stopped_extra_members(
        self,
        request_id: RequestId,
        node_id: str,
        index: int | None,
        now: float,
        wait: float = FORGET_INACTIVE_NODE_AFTER,
    ) -> None:
        """``node_id`` stopped its members of every removed name up to ``index`` (from
        ``removed_names_for_node``); ``index=None`` only touches the active nodes. Nodes not
        seen for ``wait`` seconds are forgotten (they stop blocking cleanup)."""
        _validate_node_id(node_id)
        now = _validate_time("now", now)
        wait = _validate_time("wait", wait)
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise ValueError(f"index must be None or an int, got {index!r}")

        def apply() -> None:
            self._removed.update([*self._zone_of, *self._draining], node_id, index, now, wait)

        return self._idempotent(request_id, ("stopped_extra_members", node_id, index), apply)

    def set_fleet_config(self, request_id: RequestId, config: FleetConfig) -> None:
        """Replace the fleet-wide configuration."""
        if not isinstance(config, FleetConfig):
            raise TypeError(f"config must be a FleetConfig, got {type(config).__name__}")

        def apply() -> None:
            self._fleet_config = config

        return self._idempotent(request_id, ("set_fleet_config",), apply)

    def configure(self, request_id: RequestId, config: FleetConfig) -> None:
        """The public ``configure()``: set the fleet-wide configuration while the fleet is not
        running yet (no node active or draining, no group registered). Once it runs, a
        different configuration raises ``FleetConfigLockedError`` (the same one is a no-op):
        agents took the configuration when their node was activated, and some fields cannot
        change under running members. The check and the change are one command, so a
        concurrent ``activate`` cannot slip between them. (``set_fleet_config`` replaces the
        configuration unconditionally, for tests and tools.)"""
        if not isinstance(config, FleetConfig):
            raise TypeError(f"config must be a FleetConfig, got {type(config).__name__}")

        def apply() -> None:
            current = self._fleet_config
            if config == current:
                return
            if self._zone_of or self._draining or self._groups:
                changed = tuple(
                    f"{f} ({getattr(current, f)!r} -> {getattr(config, f)!r})"
                    for f in FleetConfig.__dataclass_fields__
                    if getattr(current, f) != getattr(config, f)
                )
                raise FleetConfigLockedError(
                    changed=changed,
                    active=len(self._zone_of),
                    draining=len(self._draining),
                    groups=len(self._groups),
                )
            self._fleet_config = config

        return self._idempotent(request_id, ("configure",), apply)

    # -----------------------------------------------------------------------------------
    # queries

    def active_nodes(self) -> dict[str, list[str]]:
        """``{zone: [node_id, ...]}`` of the active nodes (node ids sorted)."""
        return {zone: list(nodes) for zone, nodes in self._nodes_per_zone.items()}

    def zone_of(self, node_id: str) -> str | None:
        """The zone of an active node, ``None`` if it is not active."""
        return self._zone_of.get(node_id)

    def node_state(self, node_id: str) -> str:
        """``"active"``, ``"draining"`` or ``"inactive"``."""
        if node_id in self._zone_of:
            return "active"
        return "draining" if node_id in self._draining else "inactive"

    def draining_nodes(self) -> dict[str, str]:
        """``{node_id: zone}`` of the nodes being drained."""
        return dict(self._draining)

    def group_error(self, name: str) -> bytes | None:
        """The pickled exception met creating ``name``, if any (cleared once it is created)."""
        return self._errors.get(name)

    def is_created(self, name: str) -> bool:
        return name in self._created

    def lost_groups(self) -> dict[str, LostMark]:
        """``{name: LostMark}`` of the lost groups."""
        return dict(self._lost)

    def configs_of(self, names: Iterable[str]) -> dict[str, Config]:
        """The last configuration recorded for each of ``names`` that has one."""
        return {n: self._configs[n] for n in names if n in self._configs}

    def commits_of(self, names: Iterable[str]) -> dict[str, int]:
        """The highest commit index recorded for each of ``names`` that has one."""
        return {n: self._commits[n] for n in names if n in self._commits}

    def check_group(self, name: str, operation: str | None = None) -> None:
        """Raise ``NotFoundError`` if ``name`` is not registered, ``GroupLostError`` if it is
        lost; else nothing. (A command that found no leader asks this.)"""
        if not self.has_group(name):
            raise NotFoundError(str(name), operation=operation)
        mark = self._lost.get(name)
        if mark is not None:
            raise GroupLostError(name, operation=operation, reason=mark.reason, since=mark.since)

    def layout(self) -> dict[str, list[str]]:
        """``{group: desired member nodes}``, element 0 the desired leader node (leaders
        balanced over the active nodes, ``placement.fleet_layout``)."""
        if self._layout_dirty:
            self._layout = fleet_layout(self._nodes_per_zone, {n: r for n, (r, _) in self._groups.items()})
            self._layout_dirty = False
        return self._layout

    def reconcile_view(self) -> ReconcileView:
        """What the reconciler reads at the start of a round (one call)."""
        return ReconcileView(
            groups={name: GroupSpec(n, config) for name, (n, config) in self._groups.items()},
            layout={k: list(v) for k, v in self.layout().items()},
            active_nodes=self.active_nodes(),
            draining=dict(self._draining),
            created=frozenset(self._created),
            cleanup_pending=bool(self._removed.pending),
            fleet_config=self._fleet_config,
            lost=dict(self._lost),
        )

    def consensus_groups(self) -> dict[str, int]:
        """``{name: n_replica}``."""
        return {name: n for name, (n, _) in self._groups.items()}

    def has_group(self, name: str) -> bool:
        return isinstance(name, str) and name in self._groups

    def group_spec(self, name: str) -> GroupSpec:
        """The ``GroupSpec`` of ``name``; raises ``NotFoundError``."""
        try:
            n_replica, config = self._groups[name]
        except (KeyError, TypeError):
            raise NotFoundError(str(name), operation="group_spec") from None
        return GroupSpec(n_replica, config)

    def creation_view(self, name: str) -> CreationView | None:
        """What creating one group needs (the reconciler's creation fast path): its spec, its
        desired nodes, whether it was created, the active nodes; None if it is not registered."""
        if not self.has_group(name):
            return None
        return CreationView(self.group_spec(name), list(self.layout().get(name, [])), name in self._created,
                            self.active_nodes(), self._fleet_config)

    def desired_members(self, name: str) -> list[str]:
        """The desired member nodes of ``name`` now (element 0 = desired leader, balanced over
        the nodes); raises ``NotFoundError``."""
        self.group_spec(name)
        return list(self.layout().get(name, []))

    def groups_for_leader_node(self, node_id: str) -> list[tuple[str, list[str]]]:
        """``[(group, desired members)]`` of the groups whose desired leader is ``node_id``,
        sorted by name: the groups that node's balancer round is responsible for."""
        layout = self.layout()
        return [(name, list(m)) for name, m in sorted(layout.items()) if m and m[0] == node_id]

    def removed_names_for_node(self, node_id: str) -> tuple[list[str], int | None]:
        """Removed names whose members ``node_id`` must still stop, and the index to pass to
        ``stopped_extra_members`` afterwards (``([], None)`` if nothing is pending)."""
        return self._removed.names_for_node(node_id)

    def cleanup_ongoing(self, name: str) -> bool:
        """True while members of a removed group ``name`` may still run somewhere."""
        return self._removed.is_ongoing(name)

    def node_view(self, node_id: str) -> NodeView:
        """Everything a node needs for one balancing round, in one call."""
        names, index = self.removed_names_for_node(node_id)
        return NodeView(
            active_nodes=self.active_nodes(),
            groups_led=self.groups_for_leader_node(node_id),
            removed_names=names,
            removed_index=index,
        )

    def fleet_config(self) -> FleetConfig:
        """The fleet-wide configuration."""
        return self._fleet_config

    # -----------------------------------------------------------------------------------

    def _drop_from_zone(self, node_id: str, zone: str) -> None:
        nodes = self._nodes_per_zone[zone]
        nodes.remove(node_id)
        if not nodes:
            del self._nodes_per_zone[zone]


def _config(c: Any) -> Config:
    """A configuration as two tuples of member-id strings; ``ValueError`` otherwise."""
    try:
        voters, learners = c
        out = (tuple(voters), tuple(learners))
    except (TypeError, ValueError):
        raise ValueError(f"a configuration is (voters, learners), got {c!r}") from None
    if not all(isinstance(m, str) and m for m in (*out[0], *out[1])):
        raise ValueError(f"a configuration's members are member-id strings, got {c!r}")
    return out


def _copy_result(value: Any) -> Any:
    # Results are None or a list of node ids; hand out copies so callers cannot edit the cache.
    return list(value) if isinstance(value, list) else value


__all__ = [
    "DEFAULT_DEDUP_CAPACITY",
    "FORGET_INACTIVE_NODE_AFTER",
    "GROUP_NAME_MAX_LEN",
    "REMEMBERED_REMOVALS",
    "RESERVED_NAME_PREFIX",
    "ClusterState",
    "Config",
    "GroupSpec",
    "LostMark",
    "NodeView",
    "ReconcileView",
    "RemovedGroupsLog",
    "validate_group_name",
]
