"""User code inside the core: whatever ``Data.command``, ``Data.query`` or ``Data.snapshot``
does, it decides its own answer and nothing else (review findings 13.4 and 13.6).

- An exception that pickles but does not unpickle (the classic ``__init__`` whose arguments
  are not its ``args``) is answered as a :class:`CommandError` naming it, so the replicated
  de-dup cache, and every snapshot that carries it, stays loadable: a lagging follower still
  installs the leader's snapshot and a restarted member still loads its own.
- A ``BaseException`` (``sys.exit()``, ``KeyboardInterrupt``, ``CancelledError``) raised by a
  command is its outcome like any exception: the value is rolled back, the entry counts as
  applied, the member goes on and the log replays.
- A value whose ``snapshot()`` fails keeps its log (no compaction), reports the failure in
  ``status().snapshot_error`` and is snapshotted again once it works.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from typing import Any

import pytest
from raft_harness import Net

from raftfleet_ray.raft import CommandError, CoreConfig, Ok, RaftNode, Raised


class InsufficientFunds(Exception):
    def __init__(self, account: str, missing: int) -> None:
        super().__init__(f"{account} is short of {missing}")
        self.account = account
        self.missing = missing


class Funds(Exception):
    """A picklable exception (its args are its __init__'s arguments)."""


class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.fail_snapshots = False

    def command(self, arg: Any) -> Any:
        match arg:
            case ("deposit", n):
                self.balance += n
                return self.balance
            case ("withdraw_unpicklable", n):
                self.balance -= n  # a change made before raising: rolled back
                raise InsufficientFunds("acc", n)
            case ("withdraw_picklable", n):
                self.balance -= n
                raise Funds(n)
            case ("exit", _):
                self.balance += 1000
                sys.exit(3)
            case ("interrupt", _):
                raise KeyboardInterrupt
            case ("cancel", _):
                raise asyncio.CancelledError
            case ("break_snapshots", flag):
                self.fail_snapshots = flag
                return flag
        raise ValueError(arg)

    def query(self, arg: Any) -> Any:
        if arg == "exit":
            sys.exit(1)
        return self.balance

    def snapshot(self) -> bytes:
        if self.fail_snapshots:
            raise RuntimeError("snapshot refused")
        return pickle.dumps((self.balance, self.fail_snapshots))

    @classmethod
    def restore(cls, blob: bytes) -> Account:
        a = cls()
        a.balance, a.fail_snapshots = pickle.loads(blob)
        return a


CFG = CoreConfig(election_ticks=10, heartbeat_ticks=2, snapshot_interval=4, log_retention=0,
                 snapshot_chunk_bytes=64)


def group(cfg: CoreConfig = CFG) -> tuple[Net, RaftNode]:
    net = Net("abc", cfg, data=Account)
    return net, net.elect()


def test_an_exception_that_does_not_unpickle_is_answered_by_name_and_snapshots_stay_loadable() -> None:
    net, lead = group()
    assert net.propose(lead.id, "d", "d", ("deposit", 10)) == Ok(10)
    res = net.propose(lead.id, "w", "w", ("withdraw_unpicklable", 3))
    assert isinstance(res, Raised) and isinstance(res.exc, CommandError)
    assert res.exc.type_name.endswith("InsufficientFunds") and "short of 3" in res.exc.text
    assert "InsufficientFunds" in str(res.exc)
    back = pickle.loads(pickle.dumps(res))
    assert isinstance(back.exc, CommandError) and back.exc.type_name == res.exc.type_name
    # A picklable exception is handed on as it is.
    res = net.propose(lead.id, "w2", "w2", ("withdraw_picklable", 2))
    assert isinstance(res, Raised) and type(res.exc) is Funds
    # A retry is answered from the de-dup cache, alike.
    assert isinstance(net.propose(lead.id, "w-again", "w", ("withdraw_unpicklable", 3)).exc, CommandError)
    # The value was rolled back, every time.
    assert all(n.data.balance == 10 for n in net.nodes.values())
    # Snapshots carry the cache: a lagging follower installs one, a member restarts from one.
    lag = next(i for i in "abc" if i != lead.id)
    net.down.add(lag)
    for k in range(8):
        net.propose(lead.id, f"d{k}", f"d{k}", ("deposit", 1))
    assert lead.snapshot_meta is not None and lead.first_index > 1
    net.down.discard(lag)
    net.tick_all(6)
    f = net.nodes[lag]
    assert f.data.balance == lead.data.balance == 18
    assert isinstance(f._results.lookup("w").exc, CommandError)  # the cache came with the snapshot
    assert f.status().snapshot_error is None
    back = net.disks[lead.id].restart(lead.id, CFG, members=tuple("abc"), data=Account)
    assert back.data.balance == 18


def test_the_planted_unpicklable_answer_would_poison_the_snapshot() -> None:
    """Without the core's check, the cache holds the raw exception and a snapshot that
    carries it cannot be loaded: what 13.4 found."""
    blob = pickle.dumps(InsufficientFunds("acc", 3))
    with pytest.raises(TypeError):
        pickle.loads(blob)


@pytest.mark.parametrize("kind, name", [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt"),
                                        ("cancel", "CancelledError")])
def test_a_base_exception_from_a_command_is_its_answer_and_the_member_goes_on(kind: str, name: str) -> None:
    net, lead = group()
    assert net.propose(lead.id, "d", "d", ("deposit", 5)) == Ok(5)
    res = net.propose(lead.id, "x", "x", (kind, 0))  # would have escaped from step() before
    assert isinstance(res, Raised) and isinstance(res.exc, CommandError) and name in res.exc.type_name
    net.tick_all(2)  # the followers learn the commit index and apply it too
    for n in net.nodes.values():
        assert n.applied_index == lead.commit_index and n.data.balance == 5
    assert net.propose(lead.id, "d2", "d2", ("deposit", 1)) == Ok(6)
    # The log replays on a restart (a member rebuilt from its disk applies it again).
    back = net.disks[lead.id].restart(lead.id, CFG, members=tuple("abc"), data=Account)
    assert back.data.balance in (5, 6)  # depends on what its snapshot covers; no exception


def test_a_base_exception_from_a_query_is_its_answer() -> None:
    net, lead = group()
    res = net.read(lead.id, "q", "exit")
    assert isinstance(res, Raised) and isinstance(res.exc, CommandError) and "SystemExit" in res.exc.type_name
    assert net.read(lead.id, "q2", "balance") == Ok(0)


def test_a_failing_snapshot_keeps_the_log_reports_and_retries() -> None:
    net, lead = group()
    assert net.propose(lead.id, "b", "b", ("break_snapshots", True)) == Ok(True)
    for k in range(10):
        assert net.propose(lead.id, f"d{k}", f"d{k}", ("deposit", 1)) == Ok(k + 1)
    st = lead.status()
    assert st.snapshot_error is not None and "snapshot refused" in st.snapshot_error
    assert lead.first_index == 1, "the log was compacted without a snapshot"
    assert lead.snapshot_meta is None
    assert net.propose(lead.id, "f", "f", ("break_snapshots", False)) == Ok(False)
    for k in range(CFG.snapshot_interval + 1):
        net.propose(lead.id, f"e{k}", f"e{k}", ("deposit", 1))
    assert lead.snapshot_meta is not None and lead.status().snapshot_error is None
    assert lead.first_index > 1
