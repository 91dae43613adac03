"""A POP frees the spool of an upload as soon as it learns the upload has ended (its file
Complete or Failed), on both storage drivers over loopback HTTP: from the part transfer's
own result, or from its spool sweep. A full spool turns stores away: bytes nothing needs
must not wait for the expiry TTL (a day) to go.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import Network, shipped
from upload_client import PART, complete, send_parts, start_upload, wait_for_stored

from coordinator.expiry import SweepResult
from coordinator.keys import EXPIRY
from edge.keys import STORAGE as POP_STORAGE
from edge.keys import SWEEPER, TRANSFER, UPLOADS


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def spool_of(network: Network, upload_id: str) -> Path:
    return network.config.pops[0].spool_dir / "uploads" / upload_id


async def eventually_gone(path: Path, what: str) -> None:
    deadline = time.monotonic() + 20
    while path.exists():
        assert time.monotonic() < deadline, f"{what} was kept"
        await asyncio.sleep(0.05)


async def expire_uploads(network: Network) -> SweepResult:
    """Move past the upload ttl: the coordinator's expiry sweep fails (and aborts) the
    uploads it knows, once the POP's journal has told it of them; the POP that started
    one judges its age by its own clock, moved on as well."""
    later = time.time() + network.config.upload_expiry.ttl + 60
    await shipped(network)
    network.pop.app[UPLOADS].clock = lambda: later
    swept: SweepResult = await network.coordinator.app[EXPIRY].sweep_once(now=later)
    return swept


async def wait_complete(network: Network, handle: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        response = await network.coordinator.get(f"/api/file/{handle}/metadata")
        if (await response.json())["upload_status"] == "Complete":
            return
        assert time.monotonic() < deadline, f"{handle} never became Complete"
        await asyncio.sleep(0.05)


async def test_a_spool_whose_upload_another_pop_completed_goes_at_the_next_sweep(
        network: Network, west: str) -> None:
    east, coordinator = network.config.pops[0].public_url, network.config.coordinator.public_url
    payload = os.urandom(2 * PART + 777)
    async with aiohttp.ClientSession() as session:
        upload_id = (await start_upload(session, east, len(payload)))["upload_id"]
        sent = await send_parts(session, east, upload_id, payload, numbers={1, 2})
        await wait_for_stored(session, coordinator, upload_id, {1, 2})
        # The client moves to the other POP and finishes there.
        sent += await send_parts(session, west, upload_id, payload, numbers={3})
        reply = await complete(session, west, upload_id, len(payload), sent)
        await wait_for_stored(session, coordinator, upload_id, {1, 2, 3})
    assert spool_of(network, upload_id).is_dir()  # east held parts 1 and 2, and knows nothing

    await wait_complete(network, reply["handle"])
    # Not idle for the TTL: gone all the same, because the file is Complete.
    assert await network.pop.app[SWEEPER].sweep_once() == [upload_id]
    assert not spool_of(network, upload_id).exists()


async def test_a_spool_whose_upload_expired_goes_at_the_next_sweep(network: Network) -> None:
    east = network.config.pops[0].public_url
    async with aiohttp.ClientSession() as session:
        upload_id = (await start_upload(session, east, 2 * PART))["upload_id"]
        await send_parts(session, east, upload_id, os.urandom(2 * PART), numbers={1})
    # Part 1 in the bucket first: a transfer still going would learn of the expiry itself.
    deadline = time.monotonic() + 20
    while network.pop.app[TRANSFER].in_flight:
        assert time.monotonic() < deadline, "part 1 never reached the bucket"
        await asyncio.sleep(0.02)
    assert (await expire_uploads(network)).expired == (upload_id,)
    assert spool_of(network, upload_id).is_dir()
    assert await network.pop.app[SWEEPER].sweep_once() == [upload_id]
    assert not spool_of(network, upload_id).exists()


async def test_a_part_that_finds_its_upload_ended_frees_the_spool_at_once(
        network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    # Part 1 waits on its way to the bucket while the upload expires and its bucket
    # upload is aborted; then the bucket refuses it (no such upload).
    driver = network.pop.app[POP_STORAGE]["bucket"]
    upload_part = driver.upload_part
    released, waiting = asyncio.Event(), asyncio.Event()

    async def held_upload_part(*args: Any, **kwargs: Any) -> str:
        waiting.set()
        await released.wait()
        return str(await upload_part(*args, **kwargs))

    monkeypatch.setattr(driver, "upload_part", held_upload_part)
    east = network.config.pops[0].public_url
    async with aiohttp.ClientSession() as session:
        upload_id = (await start_upload(session, east, 2 * PART))["upload_id"]
        await send_parts(session, east, upload_id, os.urandom(2 * PART), numbers={1})
    await asyncio.wait_for(waiting.wait(), 10)
    swept = await expire_uploads(network)
    assert swept.aborted == (upload_id,)

    released.set()
    await eventually_gone(spool_of(network, upload_id), "the spool of the expired upload")
