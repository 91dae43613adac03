"""POPs register and beat; the coordinator's start hands out a healthy POP, `GET /pops`.

Both POPs run here, over real loopback HTTP, with heartbeats every 50 ms and a timeout of
a second, so that health changes come quickly. The tests wait for what `GET /pops`
shows, never for a length of time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, Network, start_network

from common.web.drain import DRAIN
from edge.app import make_app as make_edge_app
from edge.heartbeat import HEARTBEAT

FAST = {"interval": 0.05, "timeout": 1.0}
EAST, WEST = "us-east-1", "eu-west-1"


@asynccontextmanager
async def both_pops(root: Path, **settings: Any) -> AsyncIterator[tuple[Network, TestClient]]:  # type: ignore[type-arg]
    """The network, and its eu-west-1 POP as well; both heard from before it is used."""
    async with start_network(root, heartbeat=FAST, **settings) as network:
        west = network.config.pops[1]
        server = TestServer(make_edge_app(network.config, west), host="127.0.0.1",
                            port=west.listen.port)
        async with TestClient(server) as west_client:
            await pops_until(network, lambda pops: pops[EAST]["healthy"]
                             and pops[WEST]["healthy"])
            yield network, west_client


async def pops_until(network: Network, check: Callable[[dict[str, Any]], bool],
                     deadline: float = 20.0) -> dict[str, Any]:
    """`GET /pops` by name, once `check` holds for it."""
    give_up = time.monotonic() + deadline
    while True:
        response = await network.coordinator.get("/pops")
        assert response.status == 200
        pops = {pop["name"]: pop for pop in (await response.json())["pops"]}
        if check(pops):
            return pops
        assert time.monotonic() < give_up, f"GET /pops never got there: {pops}"
        await asyncio.sleep(0.02)


async def start_at(client: TestClient) -> tuple[int, dict[str, Any]]:  # type: ignore[type-arg]
    response = await client.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "clip.mp4", "mimetype": "video/mp4", "size": 1024,
        "store": {"location": "s3"}})
    return response.status, dict(await response.json())


async def handed_out(network: Network) -> str:
    """The POP a start at the coordinator names, by its name."""
    status, reply = await start_at(network.coordinator)
    assert status == 200, reply
    by_host = {urlsplit(pop.public_url).netloc: pop.name for pop in network.config.pops}
    return by_host[reply["location_url"]]


async def test_get_pops_shows_every_pop_and_health_sums_it_up(tmp_path: Path) -> None:
    async with both_pops(tmp_path) as (network, _):
        response = await network.coordinator.get("/pops")
        body = await response.json()
        assert response.headers["Content-Type"].startswith("application/json")
        assert body["heartbeat"] == {"interval": 0.05, "timeout": 1.0}
        assert [pop["name"] for pop in body["pops"]] == [EAST, WEST]
        for shown, configured in zip(body["pops"], network.config.pops, strict=True):
            assert shown["region"] == configured.region
            assert shown["url"] == configured.public_url
            assert shown["healthy"] is True and shown["state"] == "up"
            assert shown["load"] >= 0
            assert set(shown["load_detail"]) == {"requests", "transfers", "backlog_bytes"}
            assert shown["seconds_since_heartbeat"] >= 0
        health = await (await network.coordinator.get("/health")).json()
        assert health["pops"] == {EAST: "up", WEST: "up"}


async def test_a_pop_whose_heartbeats_stop_is_not_handed_out(tmp_path: Path) -> None:
    # The test client is 127.0.0.1: its network makes eu-west-1 the choice while it is up.
    async with both_pops(tmp_path, networks={WEST: ["127.0.0.0/8"]}) as (network, west):
        assert await handed_out(network) == WEST
        await west.app[HEARTBEAT].stop(leave=False)  # as if it hung or lost its network
        await pops_until(network, lambda pops: pops[WEST]["state"] == "down")
        assert await handed_out(network) == EAST
        health = await (await network.coordinator.get("/health")).json()
        assert health["pops"][WEST] == "down"


async def test_the_client_network_picks_the_most_specific_pop(tmp_path: Path) -> None:
    networks = {EAST: ["127.0.0.0/8", "2001:db8::/32"], WEST: ["127.0.0.1/32"]}
    async with both_pops(tmp_path, networks=networks) as (network, _):
        assert await handed_out(network) == WEST
        # A start at a POP keeps that POP, whatever the client's network.
        status, reply = await start_at(network.pop)
        assert status == 200
        assert reply["location_url"] == urlsplit(network.config.pops[0].public_url).netloc


async def test_a_draining_pop_says_so_and_is_not_handed_out(tmp_path: Path) -> None:
    async with both_pops(tmp_path, networks={WEST: ["127.0.0.1/32"]}) as (network, west):
        assert await west.app[DRAIN].drain(5)
        pops = await pops_until(network, lambda pops: pops[WEST]["state"] == "draining")
        assert pops[WEST]["healthy"] is False
        assert await handed_out(network) == EAST


async def test_the_least_loaded_pop_is_handed_out(tmp_path: Path) -> None:
    async with both_pops(tmp_path) as (network, _):
        assert await handed_out(network) == EAST  # equal load: the first configured
        # A store whose body is still arriving keeps us-east-1 busy.
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b"the first bytes, "
            await release.wait()
            yield b"and the rest\n"

        store = asyncio.create_task(network.pop.post(
            f"/api/store/S3?key={APIKEY}&filename=slow.txt", data=slow_body(),
            headers={"Content-Type": "text/plain"}))
        try:
            pops = await pops_until(network, lambda pops: pops[EAST]["load_detail"]
                                    ["requests"] >= 1 and pops[WEST]["load"] == 0)
            assert pops[EAST]["load"] >= 1
            assert await handed_out(network) == WEST
        finally:
            release.set()
            response = await store
        assert response.status == 200, await response.text()


async def test_no_healthy_pop_is_a_503_that_says_so(tmp_path: Path) -> None:
    # Only us-east-1 runs; eu-west-1 is configured but never heard from.
    async with start_network(tmp_path, heartbeat=FAST) as network:
        await network.pop.app[HEARTBEAT].stop()  # with its leave: draining, then down
        pops = await pops_until(network, lambda pops: all(
            pop["state"] in ("draining", "down") for pop in pops.values()))
        status, reply = await start_at(network.coordinator)
        assert status == 503
        assert reply["code"] == "pop_unavailable"
        assert reply["error"].startswith("no POP could take the bytes; retry: no POP is "
                                         f"healthy ({EAST} ")
        health = await (await network.coordinator.get("/health")).json()
        assert set(health["pops"]) == {EAST, WEST}
        assert not {"up", "pending"} & set(health["pops"].values())
        assert pops[WEST]["seconds_since_heartbeat"] is None
