"""Helpers for the ``raftfleet`` CLI tests: the installed script run as a subprocess, and a
Ray cluster started the way an operator starts one (``ray start``), on this machine.

The cluster: a head without a zone (``--num-cpus=1 --resources='{}'``, so no member is ever
placed there) and one worker per zone ``a``, ``b``, ``c`` declaring ``{"zone:<z>": 1}``, each
with 1 CPU and a 100 MB object store (a 2-core machine; members ask for a sliver of the zone
resource and no CPU). Workers are started one after another: two ``ray start`` at once on
one machine can time out.

Each ``ray start`` runs with ``--block``, as a child of the test process, in a temp dir of
its own (``RAY_TMPDIR``: nothing is written to ``/tmp/ray``, so ``address="auto"`` elsewhere
on the machine does not pick this cluster from ``ray_current_cluster``). Teardown sends
SIGTERM to those processes, which stop their own Ray processes, then ends any descendant
left over, by pid. It does not run ``ray stop --force``: that kills every Ray process on
the machine, including clusters other test runs or engineers have started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

BIN = Path(sys.executable).parent
ZONES = ("a", "b", "c")
OBJECT_STORE_BYTES = 100 * 1000 * 1000
START_MARKER = "This command will now block forever"

FLEET_CONFIG = (
    "FleetConfig(balancing_interval=1.0, node_purge_reconnect_interval=1.0, "
    "leader_pid_cache_refresh_interval=1.0, members_per_host=16)"
)
"""The configuration the fixture sets before the first activate (packed members: a member is a
method call on a running host, not a new process, which keeps this 2-core machine calm)."""


def script(name: str) -> str:
    """An installed console script: next to this interpreter (the venv running pytest), else
    on PATH."""
    here = BIN / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the {name!r} console script is not installed: pip install -e .")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmpdir: str) -> dict[str, str]:
    """The environment of every subprocess: no RAY_ADDRESS, Ray's files in ``tmpdir``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tmpdir
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # SIGTERM stops a node at once
    env["PYTHONUNBUFFERED"] = "1"
    # Ray >= 2.5x turns token authentication on for a `ray start --head` when a token file
    # (~/.ray/auth_token, written by any earlier local ray.init()) exists, while a joining
    # `ray start --address` does not, and then cannot join. These clusters are local and
    # short-lived: pin the mode so the tests do not depend on what ran before on the machine.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(argv: list[str], env: dict[str, str], timeout: float = 60.0) -> Result:
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return Result(p.returncode, p.stdout, p.stderr)


@dataclass
class RayCluster:
    """A cluster of ``ray start --block`` processes; ``cli()`` and ``py()`` run against it."""

    address: str
    tmpdir: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)  # "head" / zone -> process
    node_ids: dict[str, str] = field(default_factory=dict)  # zone -> node id

    def cli(self, *args: str, timeout: float = 60.0) -> Result:
        return run([script("raftfleet"), *args, "--address", self.address], self.env, timeout)

    def py(self, code: str, timeout: float = 90.0) -> Result:
        """Run ``code`` in a fresh interpreter connected to the cluster (``fleet`` imported,
        ``ADDRESS`` set); fail the test if it fails."""
        prelude = (
            "import raftfleet_ray as fleet\n"
            f"ADDRESS = {self.address!r}\n"
            "fleet.connect(ADDRESS)\n"
        )
        res = run([sys.executable, "-c", prelude + textwrap.dedent(code)], self.env, timeout)
        if res.code != 0:
            pytest.fail(f"python subprocess failed ({res.code}):\n{res.stdout}\n{res.stderr}")
        return res

    def stop_node(self, name: str, timeout: float = 30.0) -> None:
        """Stop one node as its machine's shutdown would (SIGTERM to its ``ray start``)."""
        proc = self.procs.pop(name)
        terminate(proc, timeout)


def descendants(procs: list[subprocess.Popen]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            out.extend(psutil.Process(p.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return out


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    leftovers = descendants([proc])
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    end_processes(leftovers)


def end_processes(procs: list[psutil.Process]) -> None:
    """End the given processes (ours: descendants of our ``ray start``), by pid."""
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(alive, timeout=5)
    for p in still:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=5)


def start_node(argv: list[str], env: dict[str, str], log: Path, timeout: float = 90.0) -> subprocess.Popen:
    """Start a ``ray start --block`` and wait until it says the node runs."""
    f = log.open("w")
    proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while START_MARKER not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            terminate(proc, 10)
            pytest.fail(f"`{' '.join(argv)}` did not start a node:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc
