"""A tus upload is a cin file while its bytes are still on their way to the bucket: once
its last PATCH is answered it is In Transit, served whole from the POP's spool, and
Complete when the bucket has it. The POP's transfer is held (its driver's `upload_part`
and `put` wait for an event), so it stays In Transit as long as the test needs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import pytest
from support import APIKEY, Network, shipped

from common.protocol.tus import PART_SIZE
from edge.keys import STORAGE

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


@pytest.fixture
def release(network: Network, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    driver = network.pop.app[STORAGE]["bucket"]
    upload_part, put = driver.upload_part, driver.put
    released = asyncio.Event()

    async def held_upload_part(*args: Any, **kwargs: Any) -> str:
        await released.wait()
        return str(await upload_part(*args, **kwargs))

    async def held_put(*args: Any, **kwargs: Any) -> Any:
        await released.wait()
        return await put(*args, **kwargs)

    monkeypatch.setattr(driver, "upload_part", held_upload_part)
    monkeypatch.setattr(driver, "put", held_put)
    return released


async def status(network: Network, handle: str) -> str:
    response = await network.coordinator.get(f"/api/file/{handle}/metadata")
    return str((await response.json())["upload_status"])


@pytest.mark.parametrize("size", [PART_SIZE + 54_321, 4321], ids=["two parts", "one put"])
async def test_served_from_the_pop_while_in_transit(network: Network, release: asyncio.Event,
                                                    size: int) -> None:
    payload = os.urandom(size)
    # Created, then sent in a PATCH: a creation that carried the whole file would be
    # stored as a REST store is, never In Transit (tests/app/test_tus_whole_creation.py).
    response = await network.pop.post(f"/files/?key={APIKEY}", headers={
        **V, "Upload-Length": str(size)})
    assert response.status == 201
    handle = response.headers["Cin-Handle"]
    url = response.headers["Location"].removeprefix(network.config.pops[0].public_url)
    response = await network.pop.patch(url, headers={**V, **OFFSET, "Upload-Offset": "0"},
                                       data=payload)
    assert response.status == 204
    assert response.headers["Upload-Offset"] == str(size)
    await shipped(network)
    assert await status(network, handle) == "In Transit"
    download = await network.pop.get(f"/api/file/{handle}")
    assert download.status == 200
    assert hashlib.sha256(await download.read()).hexdigest() == \
        hashlib.sha256(payload).hexdigest()
    release.set()
    deadline = time.monotonic() + 30
    while await status(network, handle) != "Complete" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await status(network, handle) == "Complete"
