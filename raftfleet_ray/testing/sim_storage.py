"""Storage faults for the simulator, and the checks of recovery against what was fsynced.

*Bit rot*: while a member is down, one bit flips inside the fsynced bytes of its log (a
segment or a snapshot file). On restart the log must refuse with ``CorruptLogError`` naming
the file; the simulator then "restores the disk from a backup" (undoes the flip) and the
member starts. A flip that recovery cuts or accepts, returning something other than what
was fsynced, is a safety violation. Half the flips are aimed at the newest fsynced record
of the newest segment: the one a tail rule may mistake for a torn write (issue 13, 5a).

*Frame values*: some client writes put bytes that hold valid record frames (of the current
format and of format 1) into the log, so that a torn write of such a record tests that
recovery never reads a payload's bytes as records (issue 13, 5b).

*Zero-filled tails*: a power loss may leave the end of the unsynced bytes as zeros
(``MemFileSystem.power_loss(zeros=...)``), which recovery must cut as a torn write.

*Page cache, then power* (targeted, issue 13, finding 3): a follower of a three-voter group
crashes while its flush is in flight (its new entries are in the page cache only), with
its leader cut off from the third member; it restarts at once and, on the leader's next
append, vouches for what recovery read; once the leader committed on its word, its power
fails and the leader is cut off. The two others elect a leader: only a recovery that made
what it returned durable kept the committed entries on the follower. (Any write after the
restart fsyncs the whole segment, so random faults almost never hit the window.)

*The checks* (:func:`check_recovered`), at every restart: recovery returns at least
everything that was fsynced (the durable image: the log's own recovery over the bytes a
power loss keeps for sure, ``MemFileSystem.durable_copy``); exactly that if nothing
unsynced was left; and it refuses nothing that only crashes and power losses touched.

Every random number here comes from a generator of its own, seeded by the plan's
``storage_seed`` (drawn last in ``draw_plan``), so a seed whose storage faults never fire
runs exactly as it did before they existed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftfleet_ray.raft.types import HardState
from raftfleet_ray.storage import MemberImage, MemFileSystem, StorageError
from raftfleet_ray.storage.log import frame, frame_v1, scan
from raftfleet_ray.testing.sim_checker import SimViolation

if TYPE_CHECKING:
    from raftfleet_ray.testing.simulator import Simulator

ROT_MIXES = {"crashes": 1.0, "power_loss": 1.0, "chaos": 0.4}
"""The mixes with bit rot, and how much of the drawn rate each keeps."""
TORN_MIXES = ("power_loss", "chaos")
"""The mixes with power losses, where frame values and zero-filled tails matter."""
FRAME_OVERHEAD = len(frame(b""))


@dataclass(slots=True)
class BitRot:
    """A flipped bit on a stopped member's disk, and what that disk held before it."""

    path: str
    offset: int
    bit: int
    sure: MemberImage  # the durable image before the flip (the "backup")
    clean: bool  # nothing unsynced was on the disk: recovery must return exactly ``sure``


class StorageFaults:
    """The storage faults of one run (see the module doc)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        rng = random.Random(sim.plan.storage_seed)
        self.rng = rng
        name = sim.mix.name
        rot = ROT_MIXES.get(name, 0.0)
        self.p_rot = rot * rng.uniform(0.03, 0.15) if rot and rng.random() < 0.6 else 0.0
        torn = name in TORN_MIXES
        self.p_frame_value = rng.uniform(0.2, 0.8) if torn and rng.random() < 0.5 else 0.0
        self.zeros: random.Random | None = random.Random(rng.getrandbits(64)) if torn and rng.random() < 0.5 else None
        self.p_page_cache = sim.mix.intensity * rng.uniform(0.005, 0.03) if torn and rng.random() < 0.67 else 0.0
        self.rots = 0
        self.rots_refused = 0
        self.page_cache_strikes = 0

    def note(self, what: str) -> None:
        self.sim.note(what)

    def value(self, client: int, op_no: int) -> Any:
        """The value a client writes: unique per write (the linearizability check needs it),
        sometimes bytes holding a valid record frame of each format."""
        n = client * 1_000_000 + op_no
        if self.p_frame_value and self.rng.random() < self.p_frame_value:
            inner = b"value %d" % n
            return b"v%d|" % n + frame(inner) + b"|" + frame_v1(inner)
        return n

    def strikes(self) -> bool:
        """Whether bit rot strikes a member that just stopped."""
        return bool(self.p_rot) and self.rng.random() < self.p_rot

    def rot(self, fs: MemFileSystem, directory: str) -> tuple[str, int, int] | None:
        """Flip one bit in the fsynced bytes of the log in ``directory`` (its member is
        down). Returns (path, offset, bit), or None if there is none."""
        sure = fs.durable_copy()
        spans: list[tuple[str, int, int]] = []  # (path, start, end) of every fsynced record
        for name in sure.listdir(directory):
            path = f"{directory}/{name}"
            if not (name.startswith("wal-") or (name.startswith("snap-") and name.endswith(".snap"))):
                continue
            data = sure.read(path)
            if not fs.exists(path) or not fs.read(path).startswith(data):
                continue  # a name a power loss would bring back, or replaced since: not what is read
            try:
                payloads, _ = scan(data, path, tail_allowed=True)
            except StorageError:
                continue  # not ours to judge here: recovery will say
            off = 0
            for p in payloads:
                spans.append((path, off, off + len(p) + FRAME_OVERHEAD))
                off += len(p) + FRAME_OVERHEAD
        if not spans:
            return None
        rng = self.rng
        segs = [s for s in spans if "/wal-" in s[0]]
        if segs and rng.random() < 0.5:
            # The newest fsynced record: a tail rule must not take its rot for a torn write.
            path, lo, hi = max(segs)
        else:
            k = rng.randrange(sum(hi - lo for _, lo, hi in spans))
            for span in spans:
                if k < span[2] - span[1]:
                    break
                k -= span[2] - span[1]
            path, lo, hi = span
        offset = rng.randrange(lo, hi)
        bit = rng.randrange(8)
        fs.corrupt(path, offset, bit)
        self.rots += 1
        return path, offset, bit


    # -- page cache, then power ---------------------------------------------------------

    def on_flush(self, nid: str, entries: bool) -> None:
        """Member ``nid`` handed a flush to the OS (``entries``: new log entries in it)."""
        if entries and self.p_page_cache and not self.sim.healing and self.rng.random() < self.p_page_cache:
            self.sim.call_later(0.0, self._t_crash_in_flush, nid)

    def _t_crash_in_flush(self, nid: str) -> None:
        sim = self.sim
        sn = sim.nodes[nid]
        if sim.healing or not sn.up or not sn.disk.flushing or sn.core.role != "follower":
            return
        ld = sim.nodes.get(sn.core.leader_id) if sn.core.leader_id is not None else None
        if ld is None or not ld.up or ld.core.role != "leader" or ld.core.term != sn.core.term:
            return
        if len(ld.core.members) != 3 or nid not in ld.core.members:
            return  # the leader must be able to commit on this follower's word alone
        index = sn.core.last_index
        if ld.core.commit_index >= index:
            return
        rng = self.rng
        others = [o for o in sim.nodes if o not in (nid, ld.id)]
        sim.block([(ld.id, o) for o in others] + [(o, ld.id) for o in others], rng.uniform(15.0, 40.0),
                  f"cut {ld.id} off from all but {nid}")
        sim.note(f"aim: crash {nid} with its flush in flight (entries to {index} in the page cache only)")
        sim.stop_for(sn, False, rng.uniform(0.2, 2.0))
        sim.call_later(0.05, self._t_power_after_commit, (nid, ld.id, index, sn.inc, 400))

    def _t_power_after_commit(self, arg: tuple[str, str, int, int, int]) -> None:
        nid, lid, index, inc, tries = arg
        sim = self.sim
        sn, ld = sim.nodes[nid], sim.nodes[lid]
        if sim.healing or not ld.up or ld.core.role != "leader" or sn.inc != inc:
            return  # over: healed, the leader gone, or the follower stopped again
        if not (sn.up and ld.core.commit_index >= index):
            if tries > 1:
                sim.call_later(0.05, self._t_power_after_commit, (nid, lid, index, inc, tries - 1))
            return
        # The leader committed on the word of the restarted follower: the entries must be on
        # its disk, not only in its page cache.
        self.page_cache_strikes += 1
        rng = self.rng
        sim.note(f"aim: {lid} committed {index} on {nid}'s word after its restart: power loss of {nid}")
        sim.block(sim.isolation(lid), rng.uniform(15.0, 40.0), f"isolate {lid}")
        sim.stop_for(sn, True, rng.uniform(0.2, 3.0))


def missing(recovered: MemberImage, sure: MemberImage, *, exact: bool) -> str | None:
    """What of the durable image ``sure`` the ``recovered`` image lacks, or None.

    ``exact``: nothing unsynced was on the disk, so recovery must return ``sure`` itself.
    Otherwise recovery may also return later writes (a process crash left bytes in the page
    cache): a newer hard state, a later snapshot, entries that replace a suffix. But no
    write takes an entry away without putting another at its index, so an entry of ``sure``
    that the recovered log neither holds, nor replaced, nor covers by a snapshot was lost."""
    if exact:
        if (recovered.hard_state, recovered.snapshot, recovered.entries) == (sure.hard_state, sure.snapshot,
                                                                             sure.entries):
            return None
        return f"recovered {_show(recovered)}, but the fsynced bytes hold {_show(sure)}"
    hr, hd = recovered.hard_state or HardState(), sure.hard_state or HardState()
    if hr.term < hd.term or (hr.term == hd.term and hd.voted_for is not None and hr.voted_for != hd.voted_for):
        return f"hard state {hd} was fsynced, recovery returned {hr}"
    if recovered.base < sure.base:
        return f"a snapshot at {sure.base} was fsynced, recovery returned one at {recovered.base}"
    snap = recovered.snapshot
    if snap is not None and recovered.base > sure.base:
        k = recovered.base - sure.base - 1
        if k < len(sure.entries) and sure.entries[k].term != snap.meta.term:
            return None  # a later snapshot that conflicts with the log: it replaced all of it
    last = recovered.last_index()
    for e in sure.entries:
        if e.index <= recovered.base:
            continue
        if e.index > last:
            return f"entry {e.index} (term {e.term}) was fsynced, recovery returned the log up to {last}"
        if recovered.entries[e.index - recovered.base - 1].term != e.term:
            return None  # replaced from here on by a later write
    return None


def _show(im: MemberImage) -> str:
    last = im.entries[-1] if im.entries else None
    return (f"hard state {im.hard_state}, snapshot at {im.base}, {len(im.entries)} entries"
            + (f" up to {last.index} (term {last.term})" if last else ""))


def violation(what: str) -> SimViolation:
    v = SimViolation(f"storage: {what}")
    v.kind = "safety"
    return v


__all__ = ["BitRot", "StorageFaults", "missing", "violation"]
