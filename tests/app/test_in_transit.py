"""A file's link while it is In Transit: served from the spool of the POP that holds it,
redirected there from the coordinator and other POPs, and from the bucket once Complete.

The POP's transfer to the bucket is held (its driver's `upload_part` and `put` wait for an
event),
so the file stays In Transit exactly as long as a test needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import upload_client
from aiohttp.test_utils import TestClient, TestServer
from support import APP_SECRET, Network, shipped, start_network

from common.protocol.security import encode_policy, sign_policy
from common.web.download import content_disposition
from common.web.file_routes import FILE_IN_TRANSIT
from common.web.in_transit import HolderRedirect
from edge.app import make_app as make_edge_app
from edge.heartbeat import HEARTBEAT
from edge.keys import PART_SPOOL, STORAGE

PART = 5 * 1024**2  # S3's smallest part (but the last)
SIZE = PART + 54_321  # two parts, so ranges can cross from one to the next
FILENAME = "movie.bin"
MIMETYPE = "application/x-demo"


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


@pytest.fixture
def release(network: Network, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set it to let the POP's parts go to the bucket; until then the file is In Transit.
    Only the POP's driver waits: the coordinator's (which completes the upload) does not."""
    driver = network.pop.app[STORAGE]["bucket"]
    upload_part, put = driver.upload_part, driver.put
    released = asyncio.Event()

    async def held_upload_part(*args: Any, **kwargs: Any) -> str:
        await released.wait()
        return str(await upload_part(*args, **kwargs))

    async def held_put(*args: Any, **kwargs: Any) -> Any:  # a small file's one put
        await released.wait()
        return await put(*args, **kwargs)

    monkeypatch.setattr(driver, "upload_part", held_upload_part)
    monkeypatch.setattr(driver, "put", held_put)
    return released


@pytest.fixture
async def west(network: Network) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The second POP, eu-west-1: it does not hold the file."""
    pop = network.config.pops[1]
    async with TestClient(TestServer(make_edge_app(network.config, pop), host="127.0.0.1",
                                     port=pop.listen.port)) as client:
        yield client


async def upload(network: Network, payload: bytes) -> dict[str, Any]:
    """A multipart upload in regular parts through the POP, up to its complete."""
    return await upload_client.upload(network.config.pops[0].public_url, payload,
                                      filename=FILENAME, mimetype=MIMETYPE)


async def in_transit(network: Network, payload: bytes) -> str:
    reply = await upload(network, payload)
    assert reply["status"] == "InTransit"
    await shipped(network)  # the POP answered alone; the coordinator hears of it now
    assert await status_of(network, reply["handle"]) == "In Transit"
    return str(reply["handle"])


async def status_of(network: Network, handle: str) -> str:
    response = await network.coordinator.get(f"/api/file/{handle}/metadata")
    return str((await response.json())["upload_status"])


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str,
                   seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.05)


async def wait_complete(network: Network, handle: str) -> None:
    async def complete() -> bool:
        return await status_of(network, handle) == "Complete"

    await wait_for(complete, f"{handle} to be Complete")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_policy(handle: str) -> dict[str, str]:
    policy = encode_policy({"expiry": int(time.time()) + 3600, "call": ["read"],
                            "handle": handle})
    return {"policy": policy, "signature": sign_policy(APP_SECRET, policy)}


async def check_download(client: TestClient, handle: str,  # type: ignore[type-arg]
                         payload: bytes) -> str:
    """The whole file, with every header a download has; returns its ETag."""
    response = await client.get(f"/api/file/{handle}")
    assert response.status == 200, await response.text()
    assert sha256(await response.read()) == sha256(payload)
    headers = response.headers
    assert headers["Content-Type"] == MIMETYPE
    assert headers["Content-Length"] == str(len(payload))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == content_disposition(FILENAME, False)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox"
    etag = headers["ETag"]
    attached = await client.get(f"/{handle}", params={"dl": "true"})
    assert attached.headers["Content-Disposition"] == content_disposition(FILENAME, True)
    assert sha256(await attached.read()) == sha256(payload)
    head = await client.head(f"/{handle}")
    assert (head.status, head.headers["Content-Length"], head.headers["ETag"]) == (
        200, str(len(payload)), etag)
    assert await head.read() == b""
    unchanged = await client.get(f"/{handle}", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    return etag


async def check_ranges(client: TestClient, handle: str,  # type: ignore[type-arg]
                       payload: bytes) -> None:
    size = len(payload)
    for header, first, last in [
        ("bytes=0-99", 0, 99),
        (f"bytes={PART - 50}-{PART + 49}", PART - 50, PART + 49),  # across the two parts
        (f"bytes={PART}-{PART}", PART, PART),  # the first byte of part 2
        ("bytes=-100", size - 100, size - 1),
        (f"bytes={size - 1}-", size - 1, size - 1),
        (f"bytes=1000-{size + 5000}", 1000, size - 1),  # clipped at the end
    ]:
        response = await client.get(f"/{handle}", headers={"Range": header})
        assert response.status == 206, header
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert response.headers["Content-Length"] == str(last - first + 1), header
        assert await response.read() == payload[first:last + 1], header
    past = await client.get(f"/{handle}", headers={"Range": f"bytes={size}-"})
    assert past.status == 416
    assert past.headers["Content-Range"] == f"bytes */{size}"
    assert (await past.json())["code"] == "range_not_satisfiable"


async def test_the_holding_pop_serves_an_in_transit_file_from_its_spool(
        network: Network, release: asyncio.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = os.urandom(SIZE)
    handle = await in_transit(network, payload)
    spool = network.pop.app[PART_SPOOL]
    read_range = spool.read_range
    blocks: list[int] = []

    async def counted_read_range(*args: Any) -> AsyncIterator[bytes]:
        async def counted() -> AsyncIterator[bytes]:
            async for block in await read_range(*args):
                blocks.append(len(block))
                yield block

        return counted()

    monkeypatch.setattr(spool, "read_range", counted_read_range)
    etag = await check_download(network.pop, handle, payload)
    assert etag.startswith('W/"transit-'), etag
    # Read from the spool a block at a time, never a whole part.
    assert sum(blocks) == 2 * SIZE  # the GET and the GET with dl; HEAD and 304 read nothing
    assert max(blocks) <= 1024 * 1024
    await check_ranges(network.pop, handle, payload)
    cdn = await network.pop.get(f"/{handle}", params=read_policy(handle))
    assert (cdn.status, cdn.headers["ETag"]) == (200, etag)
    assert sha256(await cdn.read()) == sha256(payload)
    # No byte of it could have come from the bucket.
    assert await status_of(network, handle) == "In Transit"

    release.set()
    await wait_complete(network, handle)
    stored_etag = await check_download(network.pop, handle, payload)
    assert not stored_etag.startswith("W/")
    await check_ranges(network.pop, handle, payload)
    direct = await network.coordinator.get(f"/{handle}", allow_redirects=False)
    assert direct.status == 200
    assert sha256(await direct.read()) == sha256(payload)


async def test_the_status_goes_started_in_transit_complete_in_order(
        network: Network, release: asyncio.Event) -> None:
    pop = network.config.pops[0].public_url
    payload = os.urandom(SIZE)
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        start = await upload_client.start_upload(session, pop, len(payload))
        status = await upload_client.part_status(session, pop, start["upload_id"])
        handle = status["handle"]

        async def watch() -> None:  # what a client polling the metadata sees
            while not seen or seen[-1] != "Complete":
                status = await status_of(network, handle)
                if not seen or seen[-1] != status:
                    seen.append(status)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            parts = await upload_client.send_parts(session, pop, start["upload_id"], payload)
            await wait_for(lambda: asyncio.sleep(0, seen == ["Started"]), "Started")
            reply = await upload_client.complete(session, pop, start["upload_id"],
                                                 len(payload), parts)
            assert (reply["handle"], reply["status"]) == (handle, "InTransit")
            await wait_for(lambda: asyncio.sleep(0, seen[-1] == "In Transit"), "In Transit")
            # The bucket is held: these bytes can only come from the POP's spool.
            await check_download(network.coordinator, handle, payload)
            release.set()
            await asyncio.wait_for(watcher, 30)
        finally:
            watcher.cancel()
    assert seen == ["Started", "In Transit", "Complete"]


async def test_the_coordinator_and_other_pops_redirect_to_the_holder(
        network: Network, release: asyncio.Event,
        west: TestClient) -> None:  # type: ignore[type-arg]
    payload = os.urandom(SIZE)
    handle = await in_transit(network, payload)
    holder = network.config.pops[0].public_url
    credentials = read_policy(handle)
    query = f"dl=true&policy={credentials['policy']}&signature={credentials['signature']}"
    segment = f"security=p:{credentials['policy']},s:{credentials['signature']}"
    for client in (network.coordinator, west):
        for path in (f"/api/file/{handle}", f"/{handle}?{query}", f"/{segment}/{handle}"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 302, (path, await response.text())
            assert response.headers["Location"] == holder + path
            assert response.headers["Cache-Control"] == "no-store"
        head = await client.head(f"/{handle}", allow_redirects=False)
        assert (head.status, head.headers["Location"]) == (302, f"{holder}/{handle}")

    # A client following the link from anywhere gets the file from the holder.
    async with aiohttp.ClientSession() as session:
        for node in (network.config.coordinator.public_url, network.config.pops[1].public_url):
            async with session.get(f"{node}/{handle}?{query}") as followed:
                assert followed.status == 200
                assert str(followed.url).startswith(holder)
                assert followed.headers["Content-Disposition"] == content_disposition(
                    FILENAME, True)
                assert sha256(await followed.read()) == sha256(payload)
            async with session.get(f"{node}/{handle}", headers={"Range": "bytes=-10"}) as tail:
                assert (tail.status, await tail.read()) == (206, payload[-10:])
            # A HEAD followed through the 302 is still a HEAD at the holder.
            async with session.head(f"{node}/{handle}", allow_redirects=True) as followed_head:
                assert followed_head.status == 200
                assert str(followed_head.url).startswith(holder)
                assert followed_head.headers["Content-Length"] == str(len(payload))
                assert await followed_head.read() == b""
    assert await status_of(network, handle) == "In Transit"

    release.set()
    await wait_complete(network, handle)
    for client in (network.coordinator, west):
        stored = await client.get(f"/{handle}", allow_redirects=False)
        assert stored.status == 200
        assert sha256(await stored.read()) == sha256(payload)


async def test_authorization_comes_before_the_redirect(network: Network,
                                                       release: asyncio.Event) -> None:
    handle = await in_transit(network, os.urandom(1000))
    good = read_policy(handle)
    for query, status in [
        ({"policy": good["policy"], "signature": "0" * 64}, 403),
        (read_policy("b" * 20), 403),  # a policy for another handle
        ({"key": "OTHERAPIKEY0123"}, 404),  # another app's key: as if there were no file
    ]:
        for client in (network.coordinator, network.pop):
            response = await client.get(f"/{handle}", params=query, allow_redirects=False)
            assert response.status == status, (query, await response.text())
            assert "Location" not in response.headers


async def test_a_holder_missing_from_the_config_is_a_503(
        network: Network, release: asyncio.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = await in_transit(network, os.urandom(1000))
    redirect = network.coordinator.app[FILE_IN_TRANSIT]
    assert isinstance(redirect, HolderRedirect)
    monkeypatch.setattr(redirect, "config",
                        dataclasses.replace(redirect.config, pops=redirect.config.pops[1:]))
    response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
    assert response.status == 503
    body = await response.json()
    assert body["code"] == "in_transit_unavailable"
    assert "us-east-1" in body["error"]


async def test_a_holder_that_lost_its_spool_answers_503(
        network: Network, release: asyncio.Event) -> None:
    payload = os.urandom(1000)
    handle = await in_transit(network, payload)
    spool = network.pop.app[PART_SPOOL]
    for upload_id in [path.name for path in spool.uploads.iterdir()]:
        await spool.remove_upload(upload_id)
    response = await network.pop.get(f"/{handle}")
    assert response.status == 503
    assert (await response.json())["code"] == "in_transit_unavailable"


async def test_a_spool_freed_before_the_answer_is_served_from_the_bucket(
        network: Network, release: asyncio.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is In Transit when the request arrives, and Complete (its spool freed) by
    the time the POP looks in its spool."""
    payload = os.urandom(SIZE)
    handle = await in_transit(network, payload)
    spool = network.pop.app[PART_SPOOL]
    part_state = spool.part_state
    raced: list[int] = []

    async def racing_part_state(upload_id: str, part: int) -> Any:
        if not raced:
            raced.append(part)
            release.set()
            await wait_for(lambda: _gone(spool, upload_id), "the spool to be freed")
        return await part_state(upload_id, part)

    monkeypatch.setattr(spool, "part_state", racing_part_state)
    response = await network.pop.get(f"/{handle}", headers={"Range": f"bytes={PART - 5}-"})
    assert raced == [1]
    assert response.status == 206
    assert not response.headers["ETag"].startswith("W/")  # the bucket's
    assert await response.read() == payload[PART - 5:]


async def test_a_spool_freed_mid_download_is_finished_from_the_bucket(
        network: Network, release: asyncio.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 1 is sent from the spool; before part 2 is read the transfer finishes and the
    POP frees the spool: the rest of the same response comes from the bucket."""
    payload = os.urandom(SIZE)
    handle = await in_transit(network, payload)
    spool = network.pop.app[PART_SPOOL]
    read_range = spool.read_range
    reads: list[tuple[int, bool]] = []

    async def racing_read_range(upload_id: str, part: int, start: int, length: int) -> Any:
        if part == 2:
            release.set()
            await wait_for(lambda: _gone(spool, upload_id), "the spool to be freed")
        reads.append((part, await _gone(spool, upload_id)))
        return await read_range(upload_id, part, start, length)

    monkeypatch.setattr(spool, "read_range", racing_read_range)
    response = await network.pop.get(f"/{handle}", headers={"Range": "bytes=100-"})
    assert response.status == 206
    assert response.headers["ETag"].startswith('W/"transit-')  # the answer began in transit
    assert sha256(await response.read()) == sha256(payload[100:])
    assert reads == [(1, False), (2, True)]
    assert await status_of(network, handle) == "Complete"


async def _gone(spool: Any, upload_id: str) -> bool:
    return not (spool.uploads / upload_id).exists()


async def test_the_coordinator_sends_no_client_to_a_holder_that_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Heartbeats every 50 ms, a POP down after a second without one.
    async with start_network(tmp_path, heartbeat={"interval": 0.05, "timeout": 1.0}) as network:
        released = asyncio.Event()
        driver = network.pop.app[STORAGE]["bucket"]
        put = driver.put

        async def held_put(*args: Any, **kwargs: Any) -> Any:
            await released.wait()
            return await put(*args, **kwargs)

        monkeypatch.setattr(driver, "put", held_put)
        payload = os.urandom(1000)
        handle = await in_transit(network, payload)
        response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
        assert response.status == 302

        await network.pop.app[HEARTBEAT].stop()  # with its leave: shutting down, then down
        for state in ("shutting down", "down (no heartbeat for"):
            async def answered(state: str = state) -> bool:
                response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
                body = await response.json() if response.status == 503 else {}
                return state in body.get("error", "")

            await wait_for(answered, f"the coordinator to answer that the holder is {state}")
            response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
            assert response.status == 503 and "Location" not in response.headers
            body = await response.json()
            assert body["code"] == "in_transit_unavailable"
            assert "us-east-1" in body["error"]
        # The holder itself still serves the file, and once it is in the bucket, so does
        # the coordinator.
        assert await (await network.pop.get(f"/{handle}")).read() == payload
        released.set()
        await wait_complete(network, handle)
        assert await (await network.coordinator.get(f"/{handle}")).read() == payload
