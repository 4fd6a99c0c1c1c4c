"""Deliberately broken variants of the core, for tests only.

Each name switches one well-known safety rule off. ``tests/sim/test_planted_bugs.py``
runs the simulator on every one and asserts that it is caught: the simulator is only
worth trusting while it catches these. Pass them as ``RaftNode(..., bugs=frozenset({...}))``;
nothing outside the tests should ever do so.
"""

from __future__ import annotations

ACK_BEFORE_PERSIST = "ack_before_persist"
"""A follower acknowledges appended entries before they are durable (Raft §5.3 / etcd msgsAfterAppend)."""

LEADER_COUNTS_UNPERSISTED = "leader_counts_unpersisted"
"""The leader counts its own log toward a commit before its own write is durable."""

NO_TRUNCATION = "no_truncation"
"""A follower overwrites conflicting entries but keeps the stale suffix after them and reports
its whole log as matching (rafted_value's behaviour; Raft Fig. 2 receiver rule 3)."""

VOTE_BEFORE_PERSIST = "vote_before_persist"
"""Votes (granted and a candidate's own) count before term and vote are durable (Raft §5.2, Fig. 2)."""

COMMIT_OLD_TERM = "commit_old_term"
"""The leader commits entries of earlier terms by counting replicas (Raft §5.4.2, Figure 8)."""

QUIESCE_KEEPS_LEASE = "quiesce_keeps_lease"
"""A quiesced leader keeps its lease: its clock stands still while quiesced, so the lease never
ends, while followers woken by a failure report elect a new leader (thesis §6.4.1)."""

LEASE_IGNORES_MARGIN = "lease_ignores_margin"
"""The leader's lease lasts the whole election timeout instead of the election timeout minus the
clock-drift margin (``lease_ticks``): a follower whose clock runs fast stops refusing votes, and
a new leader is elected, while the old one still answers reads from its lease (thesis §6.4.1)."""

LEASE_COUNTS_STALE_ACKS = "lease_counts_stale_acks"
"""A woken leader counts acks of what it sent before it quiesced toward its lease. Its clock stood
still while quiesced, so a late or duplicated ack of the last pre-quiesce heartbeat looks fresh,
while the followers' vote guards may have ended long ago (thesis §6.4.1; review finding 13.1)."""

QUIESCE_STALE = "quiesce_stale"
"""A follower accepts any Quiesce at its log end, even one older than the leader's newest message
it has seen: a duplicated Quiesce re-quiesces a follower whose fresh ack backs the current lease,
and a failure report then drops its vote guard (review finding 13.1, second path)."""

VOTE_GUARD_HIGHER_TERM_ONLY = "vote_guard_higher_term_only"
"""The vote guard of thesis §4.2.3 (refuse votes for an election timeout after hearing from a
leader) is applied only to a RequestVote of a higher term. A member that adopted that term by
another way (a rejected pre-vote's response) then grants it at an equal term while the leader it
heard still holds a lease (review finding 13.2)."""

ALL = frozenset(
    {ACK_BEFORE_PERSIST, LEADER_COUNTS_UNPERSISTED, NO_TRUNCATION, VOTE_BEFORE_PERSIST, COMMIT_OLD_TERM,
     QUIESCE_KEEPS_LEASE, LEASE_IGNORES_MARGIN, LEASE_COUNTS_STALE_ACKS, QUIESCE_STALE,
     VOTE_GUARD_HIGHER_TERM_ONLY}
)
