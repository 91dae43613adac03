"""An overwrite racing a delete of the same file, on both drivers.

Whichever lands first, the bucket must end up holding exactly the objects of the files
still on record: an overwrite told its file is gone must not leave its new bytes behind,
and a file that is kept must keep its object.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiobotocore.session
import aiohttp
import pytest
from support import APIKEY, APP_SECRET, Network, local_object_keys, shipped

from common.protocol.security import encode_policy, sign_policy
from common.storage.drivers import LocalSettings, S3Settings, settings_of
from coordinator.keys import STATE

TRIALS = 40
# The overwrite is sent first; the delete follows after a delay that sweeps the time one
# overwrite takes, so the trials cover every order of the put, its report and the delete.
STAGGER_STEPS = 10


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def signed(**fields: Any) -> dict[str, str]:
    text = encode_policy({"expiry": int(time.time()) + 3600, **fields})
    return {"policy": text, "signature": sign_policy(APP_SECRET, text)}


@asynccontextmanager
async def bucket_lister(network: Network, container: str) -> AsyncIterator[
        Callable[[], Awaitable[set[str]]]]:
    """Lists every object key in the container, read from the bucket itself."""
    location = network.config.storage["bucket"]
    if isinstance(location.settings, LocalSettings):
        objects = location.settings.root / container / "objects"

        async def on_disk() -> set[str]:
            return set(local_object_keys(objects))

        yield on_disk
        return
    async with aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=settings_of(location, S3Settings).endpoint_url,
            region_name="us-east-1") as s3:

        async def in_s3() -> set[str]:
            keys: set[str] = set()
            async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=container):
                keys.update(item["Key"] for item in page.get("Contents", []))
            return keys

        yield in_s3


async def store(network: Network, payload: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("fileUpload", payload, filename="racer.bin",
                   content_type="application/octet-stream")
    response = await network.pop.post("/api/store/S3", data=form, params={"key": APIKEY})
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def overwrite(network: Network, handle: str, payload: bytes) -> tuple[int, str]:
    response = await network.pop.post(f"/api/file/{handle}", data=payload,
                                      params=signed(call=["write"], handle=handle))
    body = await response.json()
    return response.status, body.get("code", "")


async def delete(network: Network, handle: str, after: float) -> tuple[int, str]:
    await asyncio.sleep(after)
    response = await network.coordinator.delete(f"/api/file/{handle}",
                                                params=signed(call=["remove"], handle=handle))
    body = await response.json()
    return response.status, body.get("code", "")


async def test_overwrite_racing_delete_leaves_no_orphan(network: Network) -> None:
    payload = os.urandom(256 * 1024)
    # How long one overwrite takes here: the range the delete's start is swept over.
    calibration = await store(network, b"calibrate")
    began = time.monotonic()
    assert await overwrite(network, calibration["handle"], payload) == (200, "")
    span = time.monotonic() - began

    handles = [calibration["handle"]]
    outcomes: dict[tuple[int, str], int] = {}
    async with bucket_lister(network, calibration["container"]) as bucket_keys:
        for trial in range(TRIALS):
            stored = await store(network, b"version one")
            # The delete goes straight to the coordinator: it has to know of the file
            # first (until then it is at the POP, a 503), or nothing would race.
            await shipped(network)
            handles.append(stored["handle"])
            after = span * (trial % STAGGER_STEPS) / STAGGER_STEPS
            written, deleted = await asyncio.gather(
                overwrite(network, stored["handle"], payload),
                delete(network, stored["handle"], after))
            outcomes[written] = outcomes.get(written, 0) + 1
            # The delete always takes the file; the overwrite either went first or is
            # told the file is gone.
            assert deleted == (200, ""), (trial, written, deleted)
            assert written in ((200, ""), (404, "file_not_found")), (trial, written)

            records = [await network.coordinator.app[STATE].get_file(handle)
                       for handle in handles]
            on_record = {record.key for record in records if record is not None}
            assert await bucket_keys() == on_record, (trial, outcomes)
    # Both orders happened, or the test did not race anything.
    assert set(outcomes) == {(200, ""), (404, "file_not_found")}, outcomes
