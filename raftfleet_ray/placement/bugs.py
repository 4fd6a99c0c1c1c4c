"""Deliberately broken variants of the fleet layer, for tests only (as ``raft/bugs.py`` is for
the core). Each name re-opens a mistake the fleet once made; ``tests/fleetsim`` runs the fleet
simulator with each one planted and requires it to be caught. The simulator passes them in
through its environment (``runtime.env``); nothing else ever does.
"""

from __future__ import annotations

SILENCE_IS_DEATH = "silence_is_death"
"""What answering agents report is all that is observed, and a member nobody observed (its
node's agent does not answer) is taken for dead (issue 14, finding 1): live members are
removed from their groups, and a group whose agents are all silent (a GCS hiccup) is given up
as lost, when its agents were only silent."""

CREATED_WITH_ONE_VOTER = "created_with_one_voter"
"""A new group starts with its first member alone and gets its followers later, as learners
(raft_fleet's way): until they are promoted, acknowledged writes live on one node, and that
node's death loses them (issue 14, the creation-then-kill report)."""

STOP_KEEPS_FILES_LIVE = "stop_keeps_files_live"
"""A stopped member's files are not retired (issue 14, finding 2: the agent killed an emptied
host before its member's retirement was durable). After the whole cluster restarts (a new
ClusterActor, which no longer remembers the removal), the files bring the removed group back."""

RESTORE_FROM_ANY = "restore_from_any"
"""A group whose members are all gone is restored from the newest files among whichever nodes
answered, a majority of its last configuration or not (issue 14, finding 3): a lagging copy
read first rolls back acknowledged writes."""

LONE_MEMBER_UNSEEN = "lone_member_unseen"
"""Members behind an agent that does not answer are looked for only in the configurations that
observed members report, not in the one recorded last: a 1-replica group on that node has no
other member to report it, so it is never seen, never moved, and the node's drain never ends
(found on a real cluster: ``tests/ray/test_runtime_regressions.py``, flaky as the placement of
its 1-replica group)."""

ALL = frozenset({SILENCE_IS_DEATH, CREATED_WITH_ONE_VOTER, STOP_KEEPS_FILES_LIVE, RESTORE_FROM_ANY,
                 LONE_MEMBER_UNSEEN})
