"""The installed ``raftfleet`` script with no cluster to connect to: one line on stderr, exit
code 2, nothing on stdout, no traceback, and quickly (Ray itself would retry for minutes)."""

from __future__ import annotations

import os

import pytest
from cli_harness import clean_env, free_port, run, script

pytestmark = pytest.mark.timeout(120)

COMMANDS = [["status"], ["status", "--json"], ["groups"], ["group", "orders"], ["explain", "orders"],
            ["nodes", "--json"], ["activate", "--all"], ["drain", "abc"], ["repair", "abc"]]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    # An empty RAY_TMPDIR: no ray_current_cluster file to find.
    return clean_env(str(tmp_path))


def assert_one_line_error(res, *fragments: str) -> None:
    assert res.code == 2, (res.code, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("raftfleet: error: "), lines
    assert "Traceback" not in res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def _other_ray_running() -> bool:
    """``address="auto"`` also connects to any Ray running on this machine (Ray scans the
    processes for a GCS): then there *is* a cluster, and the "auto" case cannot be checked."""
    from ray._private.services import find_gcs_addresses

    return bool(find_gcs_addresses())


def test_auto_with_no_local_ray_fails_in_one_line(env):
    if _other_ray_running():
        pytest.skip("another Ray instance runs on this machine; 'auto' would connect to it")
    res = run([script("raftfleet"), "status"], env, timeout=60)
    assert_one_line_error(res, "no Ray cluster found", "--address")


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a))
def test_every_command_fails_in_one_line_when_nothing_listens(env, argv):
    port = free_port()  # nothing listens there
    res = run([script("raftfleet"), *argv, "--address", f"127.0.0.1:{port}"], env, timeout=60)
    assert_one_line_error(res, "no Ray cluster answers at", str(port))


def test_ray_address_is_honoured_and_named(env):
    port = free_port()
    res = run([script("raftfleet"), "groups", "--json"], {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=60)
    assert_one_line_error(res, str(port), "RAY_ADDRESS")


def test_a_malformed_address_is_bad_input(env):
    res = run([script("raftfleet"), "nodes", "--address", "no-port-here"], env, timeout=60)
    assert_one_line_error(res, "no-port-here")


def test_usage_errors_exit_2(env):
    res = run([script("raftfleet"), "group"], env, timeout=60)  # NAME missing
    assert res.code == 2 and res.stdout == ""
    res = run([script("raftfleet"), "--help"], env, timeout=60)
    assert res.code == 0
    for command in ("status", "groups", "group", "explain", "nodes", "activate", "drain", "repair"):
        assert command in res.stdout


def test_installed_script_is_the_one_of_this_environment():
    assert os.access(script("raftfleet"), os.X_OK)
