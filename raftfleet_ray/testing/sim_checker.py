"""Raft's safety properties, checked incrementally after every simulator event.

Each check costs O(what changed): the simulator reports the entries a member appended,
its commit index moving, the entries it applied and its role changing, and the checker
compares them with global maps of everything seen so far, over all members and all
their incarnations (a restarted member must stay consistent with what it said before).

The properties (Raft §5.2, §5.3, §5.4, Figure 3):

* election safety: at most one leader per term, over all time;
* log matching: two logs never hold different entries at the same (index, term), and
  an entry at (index, term) always follows the same term at index - 1;
* leader completeness: a new leader holds every entry known to be committed;
* state-machine safety: every member applies the same entry at each index, and its
  value is the same at the same applied index;
* a member's commit and applied indexes never go back within one incarnation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raftfleet_ray.raft.types import Entry, SnapshotMeta


class SimViolation(Exception):
    """A safety or liveness property failed in a simulator run.

    ``description`` says what failed; the simulator fills in ``seed``, ``mix``,
    ``bugs``, ``event_no``, ``time`` and ``trace`` (the last events before the failure)
    and ``replay`` (the one-line command that replays the run exactly).
    """

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
        self.seed: int | None = None
        self.mix: str | None = None
        self.bugs: frozenset[str] = frozenset()
        self.event_no = 0
        self.time = 0.0
        self.trace: list[str] = []
        self.replay = ""
        self.kind = "safety"  # "safety" | "liveness" | "linearizability" | "exception"

    def __str__(self) -> str:
        head = (
            f"seed={self.seed} mix={self.mix} event={self.event_no} t={self.time:.3f} "
            f"[{self.kind}] {self.description}"
        )
        parts = [head]
        if self.replay:
            parts.append(f"replay: {self.replay}")
        if self.trace:
            parts.append("last events:")
            parts.extend("  " + line for line in self.trace)
        return "\n".join(parts)


@dataclass(slots=True)
class SafetyChecker:
    """Global maps of what every member ever claimed, and the checks against them."""

    leaders: dict[int, str] = field(default_factory=dict)  # term -> the one leader of it
    # (index, term) -> (entry, term at index - 1 or None if unknown when first seen)
    log_map: dict[tuple[int, int], tuple[Entry, int | None]] = field(default_factory=dict)
    committed: list[int] = field(default_factory=lambda: [0])  # index -> committed term (0 = unknown)
    # index -> the lowest term in which a member is known to have had it committed (a member's
    # current term when its commit index passed it: the committing leader's, or later)
    commit_term: list[int] = field(default_factory=lambda: [0])
    applied: list[Entry | None] = field(default_factory=lambda: [None])  # index -> applied entry
    states: dict[int, Any] = field(default_factory=dict)  # applied index -> value fingerprint
    checks: int = 0

    # --- election safety ------------------------------------------------------------

    def on_leader(self, node: str, term: int) -> None:
        """``node`` is leader of ``term``: no one else may ever be."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise SimViolation(f"election safety: {other} and {node} are both leaders of term {term}")

    # --- log matching ---------------------------------------------------------------

    def on_entries(self, node: str, entries: list[Entry], prev_term: int | None) -> None:
        """``node`` appended ``entries`` (contiguous), after an entry of term ``prev_term``."""
        log_map = self.log_map
        for e in entries:
            key = (e.index, e.term)
            seen = log_map.get(key)
            if seen is None:
                log_map[key] = (e, prev_term)
            else:
                if seen[0] != e:
                    raise SimViolation(
                        f"log matching: {node} holds {e} but another log held {seen[0]} at the same (index, term)"
                    )
                if prev_term is not None and seen[1] is not None and seen[1] != prev_term:
                    raise SimViolation(
                        f"log matching: {node} holds entry ({e.index}, term {e.term}) after term {prev_term} "
                        f"at {e.index - 1}, another log after term {seen[1]}"
                    )
                if seen[1] is None and prev_term is not None:
                    log_map[key] = (seen[0], prev_term)
            prev_term = e.term

    def check_log(self, node: str, entries: list[Entry], prev_term: int | None) -> None:
        """A full pass over a member's log (after a restart, an election, at the end)."""
        self.on_entries(node, entries, prev_term)

    # --- commit and leader completeness ----------------------------------------------

    def on_commit(self, node: str, lo: int, hi: int, terms: list[int | None], in_term: int = 0) -> None:
        """``node``'s commit index moved from ``lo`` to ``hi``; ``terms[k]`` is its term at lo+1+k.
        ``in_term``: the member's current term (0 = unknown): the entries were committed in
        that term or an earlier one."""
        committed = self.committed
        if len(committed) <= hi:
            committed.extend([0] * (hi + 1 - len(committed)))
            self.commit_term.extend([0] * (hi + 1 - len(self.commit_term)))
        if in_term:
            ct = self.commit_term
            for i in range(lo + 1, hi + 1):
                if ct[i] == 0 or in_term < ct[i]:
                    ct[i] = in_term
        for k, t in enumerate(terms):
            if t is None:
                continue  # compacted away (a snapshot install): checked through the snapshot
            i = lo + 1 + k
            c = committed[i]
            if c == 0:
                committed[i] = t
            elif c != t:
                raise SimViolation(
                    f"commit safety: {node} committed index {i} with term {t}, but term {c} was committed there"
                )

    def on_snapshot(self, node: str, meta: SnapshotMeta) -> None:
        """A snapshot covers committed entries only: its last term must match."""
        c = self.committed[meta.index] if meta.index < len(self.committed) else 0
        if c and c != meta.term:
            raise SimViolation(
                f"snapshot safety: {node} holds a snapshot at {meta.index} of term {meta.term}, "
                f"but term {c} was committed there"
            )
        a = self.applied[meta.index] if meta.index < len(self.applied) else None
        if a is not None and a.term != meta.term:
            raise SimViolation(
                f"snapshot safety: {node} holds a snapshot at {meta.index} of term {meta.term}, "
                f"but {a} was applied there"
            )

    def check_leader_complete(self, node: str, term: int, first_index: int, term_at: Any) -> None:
        """Raft §5.4.3, Leader Completeness: an entry committed in some term is in the log of
        every leader of a *higher* term (above its snapshot). A leader of a lower term may lack
        it: late votes can elect a candidate of term t after a leader of a later term committed
        (its voters granted while still in term t). Such a leader cannot commit anything (a
        majority is past its term), so that is legal and not flagged."""
        committed = self.committed
        commit_term = self.commit_term
        for i in range(max(first_index, 1), len(committed)):
            c = committed[i]
            if c and commit_term[i] and commit_term[i] < term and term_at(i) != c:
                raise SimViolation(
                    f"leader completeness: new leader {node} has term {term_at(i)} at index {i}, "
                    f"where an entry of term {c} is committed"
                )

    # --- state-machine safety -------------------------------------------------------

    def on_applied(self, node: str, last_applied: int, entries: list[Entry]) -> None:
        """``node`` applied ``entries`` in order, after index ``last_applied``."""
        applied = self.applied
        expect = last_applied + 1
        for e in entries:
            if e.index != expect:
                raise SimViolation(f"state-machine safety: {node} applied index {e.index}, expected {expect}")
            expect += 1
            if e.index < len(applied):
                seen = applied[e.index]
                if seen is None:
                    applied[e.index] = e
                elif seen != e:
                    raise SimViolation(
                        f"state-machine safety: {node} applied {e} at index {e.index}, another member applied {seen}"
                    )
            else:
                applied.extend([None] * (e.index - len(applied)))
                applied.append(e)
            # An applied entry is committed: feed the commit map too.
            self.on_commit(node, e.index - 1, e.index, [e.term])

    def on_state(self, node: str, applied_index: int, fingerprint: Any) -> None:
        """``node``'s value at ``applied_index``: equal for every member at the same index."""
        seen = self.states.setdefault(applied_index, fingerprint)
        if seen != fingerprint:
            raise SimViolation(
                f"state-machine safety: {node} has value {fingerprint!r} at applied index {applied_index}, "
                f"another member had {seen!r}"
            )
