"""The in-memory filesystem's failure semantics (storage/fs.py), which the log's tests and the
simulator rely on: what a power loss keeps for sure (``durable_copy``), zero-filled tails."""

from __future__ import annotations

import random

from raftfleet_ray.storage import MemFileSystem


def test_the_durable_copy_holds_fsynced_bytes_and_names_only() -> None:
    fs = MemFileSystem()
    fs.makedirs("d")
    fs.append("d/a", b"synced")
    fs.fsync("d/a")
    fs.fsync_dir("d")
    fs.append("d/a", b" and not")
    fs.append("d/b", b"never fsynced")  # its name is not durable either
    fs.fsync("d/b")
    assert fs.unsynced()
    copy = fs.durable_copy()
    assert copy.listdir("d") == ["a"] and copy.read("d/a") == b"synced"
    assert not copy.unsynced()
    assert fs.read("d/a") == b"synced and not"  # the original is untouched
    fs.fsync("d/a")
    fs.fsync_dir("d")
    assert not fs.unsynced() and fs.durable_copy().listdir("d") == ["a", "b"]


def test_every_power_loss_keeps_the_durable_copy() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        fs = MemFileSystem()
        fs.makedirs("d")
        fs.append("d/a", b"x" * 10)
        fs.fsync("d/a")
        fs.fsync_dir("d")
        fs.append("d/a", b"y" * rng.randint(0, 10))
        sure = fs.durable_copy().read("d/a")
        version = fs.version
        fs.power_loss(rng, zeros=random.Random(seed))
        assert fs.read("d/a").startswith(sure) and fs.version != version


def test_a_power_loss_may_leave_zeros_where_unsynced_bytes_were() -> None:
    zeroed = 0
    for seed in range(100):
        fs = MemFileSystem()
        fs.makedirs("d")
        fs.append("d/a", b"x" * 10)
        fs.fsync("d/a")
        fs.append("d/a", b"y" * 20)
        fs.power_loss(random.Random(seed), zeros=random.Random(seed + 1000))
        data = fs.read("d/a")
        assert data[:10] == b"x" * 10
        tail = data[10:].lstrip(b"y")
        assert tail == bytes(len(tail))  # a prefix of what was written, then zeros to the end
        zeroed += bool(tail)
    assert 10 < zeroed < 50
