"""The direct data plane on a real cluster (issue 15): once a group has served commands, its
hosts talk to each other and the client talks to the leader's host over authenticated direct
connections (``runtime/transport.py``), not Ray calls; and a host's listener refuses whoever
does not hold the fleet's secret, without disturbing the group."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

import raftfleet_ray as fleet
from raftfleet_ray.api import leader_status
from raftfleet_ray.runtime.cluster_actor import transport_secret
from raftfleet_ray.runtime.transport import MAGIC, Channel, TransportError, connect, new_secret

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fleet_on(ray_cluster, members_per_host, zone_nodes):
    fleet.configure(fleet.FleetConfig(members_per_host=members_per_host))
    fleet.activate_all()
    yield
    fleet.shutdown_fleet()


def _host_of_leader(group: str):
    return ray.get_actor(leader_status(group)["host"], namespace="raftfleet")


def test_traffic_moves_onto_direct_connections(fleet_on, wait_for) -> None:
    group = f"direct_{time.monotonic_ns()}"
    fleet.add_consensus_group(group, 3, fleet.RaftConfig(data=fleet.Counter))
    for i in range(50):
        assert fleet.command(group, "inc") == i
    host = _host_of_leader(group)
    # The leader's host reaches its followers over connections it opened (their answers ride
    # back on them), and accepted the client's.
    wait_for(lambda: ray.get(host.stats.remote())["direct_peers"] >= 2, timeout=30,
             what="the leader's host to connect to both followers' hosts")
    before = ray.get(host.stats.remote())
    assert before["direct_connections"] >= 1 and before["direct_refused"] == 0
    for i in range(50, 100):
        assert fleet.command(group, "inc") == i
    after = ray.get(host.stats.remote())
    assert after["direct_calls"] > before["direct_calls"], "client operations must arrive over the connection"
    assert fleet.query(group, None) == 100


def test_a_host_refuses_a_wrong_secret_and_garbage_and_serves_on(fleet_on) -> None:
    group = f"guarded_{time.monotonic_ns()}"
    fleet.add_consensus_group(group, 3, fleet.RaftConfig(data=fleet.Counter))
    assert fleet.command(group, "inc") == 0
    host = _host_of_leader(group)
    address, port = ray.get(host.endpoint.remote())
    refused = ray.get(host.stats.remote())["direct_refused"]

    async def attack() -> None:
        with pytest.raises(TransportError):
            ch = Channel(await connect(address, port, new_secret()))
            await ch.call("submit_many", [])
        reader, writer = await asyncio.open_connection(address, port)
        assert (await reader.readexactly(len(MAGIC) + 32))[:4] == MAGIC
        writer.write(b"\x00" * 4096)  # garbage where the proof should be
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10.0) == b""
        # With the secret, only the host's data-plane methods answer.
        ch = Channel(await connect(address, port, transport_secret()))
        with pytest.raises(Exception, match="cannot be called"):
            await ch.call("stop_member", group)
        ch.close()

    asyncio.run(attack())
    assert ray.get(host.stats.remote())["direct_refused"] >= refused + 2
    assert fleet.command(group, "inc") == 1  # the group never noticed
