"""Abandoned uploads expire, on both storage drivers, over loopback HTTP: the bucket keeps
no pending multipart upload, the file is Failed, the POP's spool lets the bytes go, and
late requests are told why. In Transit uploads are never expired.

No test waits for the TTL: each sweep is run once, at a time past it (`now=`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import upload_client
from support import APIKEY, Network, shipped
from upload_client import PART

from common.protocol.records import FileRecord, UploadRecord
from common.storage import Storage
from coordinator.keys import EXPIRY, FILES, MULTIPART, STATE
from coordinator.keys import STORAGE as COORDINATOR_STORAGE
from edge.keys import STORAGE as POP_STORAGE
from edge.keys import SWEEPER, TRANSFER, UPLOADS

EXPIRED = "expired: not completed within 24 h"


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def past_the_ttl(network: Network) -> float:
    return time.time() + network.config.upload_expiry.ttl + 60


def pop_clock_past_the_ttl(network: Network, later: float,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A POP tells a late client about an upload it started by itself, from its own clock
    (edge/multipart/uploads.py): it reads the time the sweeps were run at."""
    monkeypatch.setattr(network.pop.app[UPLOADS], "clock", lambda: later)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class Abandoned:
    """An upload of two parts through the POP: part 1 sent, part 2's URL asked for and
    never used. The client is gone."""

    def __init__(self, network: Network, ids: dict[str, str], part_two: dict[str, Any],
                 upload: UploadRecord, record: FileRecord) -> None:
        self.network = network
        self.ids = ids
        self.part_two = part_two
        self.upload = upload
        self.record = record

    @property
    def storage(self) -> Storage:
        storage: Storage = self.network.coordinator.app[COORDINATOR_STORAGE][
            self.record.storage]
        return storage

    @property
    def spool(self) -> Path:
        return self.network.config.pops[0].spool_dir / "uploads" / self.upload.upload_id

    async def pending(self) -> list[tuple[str, str]]:
        return await self.storage.list_multipart_uploads(self.record.container)

    async def upload_status(self) -> str:
        response = await self.network.coordinator.get(
            f"/api/file/{self.record.handle}/metadata")
        assert response.status == 200
        return str((await response.json())["upload_status"])


async def abandon(network: Network) -> Abandoned:
    pop = network.config.pops[0].public_url
    payload = os.urandom(2 * PART)
    async with aiohttp.ClientSession() as session:
        started = await upload_client.start_upload(session, pop, len(payload))
        ids = {"apikey": APIKEY, "upload_id": started["upload_id"]}
        targets = []
        for number in (1, 2):
            piece = payload[(number - 1) * PART:number * PART]
            async with session.post(f"{pop}/multipart/upload", json={
                    **ids, "part": number, "size": PART, "md5": md5_b64(piece)}) as response:
                assert response.status == 200
                targets.append({**await response.json(), "data": piece})
        async with session.put(targets[0]["url"], data=targets[0]["data"],
                               headers=targets[0]["headers"]) as put:
            assert put.status == 200
    # Part 1 is on its way to the bucket: let it get there (and be reported), or it would
    # meet the expiry and free the spool itself, before the sweeps the tests run.
    deadline = time.monotonic() + 30
    while network.pop.app[TRANSFER].in_flight:
        assert time.monotonic() < deadline, "part 1 never reached the bucket"
        await asyncio.sleep(0.02)
    await shipped(network)  # the coordinator knows the upload and its part 1
    upload = await network.coordinator.app[MULTIPART].get(ids["upload_id"])
    record = await network.coordinator.app[FILES].get(upload.handle)
    abandoned = Abandoned(network, ids, targets[1], upload, record)
    assert await abandoned.pending() == [(record.key, upload.storage_upload_id)]
    assert abandoned.spool.is_dir()
    return abandoned


async def assert_expired_error(response: aiohttp.ClientResponse) -> None:
    body = await response.json()
    assert response.status == 409, body
    assert body["code"] == "conflict"
    assert f"the upload is Failed ({EXPIRED})" in body["error"]


async def late_requests(abandoned: Abandoned) -> list[aiohttp.ClientResponse]:
    """A client coming back after expiry: every step it could take next."""
    network, ids = abandoned.network, abandoned.ids
    part_two = abandoned.part_two
    answers = []
    for path, body in (
            ("/multipart/upload", {**ids, "part": 2, "size": PART}),
            ("/multipart/commit", {**ids, "part": 1}),
            ("/multipart/complete", {**ids, "parts": [{"part_number": 1, "etag": "x"}]})):
        response = await network.pop.post(path, json=body)
        await response.read()
        answers.append(response)
    async with aiohttp.ClientSession() as session, session.put(
            part_two["url"], data=part_two["data"], headers=part_two["headers"]) as put:
        await put.read()  # kept: read again after the session closes
        answers.append(put)
    return answers


async def test_an_abandoned_upload_leaves_nothing_behind(
        network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    abandoned = await abandon(network)
    later = past_the_ttl(network)
    pop_clock_past_the_ttl(network, later, monkeypatch)

    swept = await network.coordinator.app[EXPIRY].sweep_once(now=later)
    assert swept.expired == swept.aborted == (abandoned.upload.upload_id,)
    assert swept.owed == 0
    assert await abandoned.pending() == []
    assert await abandoned.upload_status() == "Failed"

    removed = await network.pop.app[SWEEPER].sweep_once(now=later)
    assert removed == [abandoned.upload.upload_id]
    assert not abandoned.spool.exists()

    for response in await late_requests(abandoned):
        await assert_expired_error(response)
    assert not abandoned.spool.exists()  # the late PUT did not bring the spool back
    assert await abandoned.pending() == []

    # Sweeping again finds nothing to do.
    again = await network.coordinator.app[EXPIRY].sweep_once(now=later)
    assert (again.expired, again.aborted, again.owed) == ((), (), 0)
    assert await network.pop.app[SWEEPER].sweep_once(now=later) == []


async def test_a_late_request_frees_the_spool_before_the_pop_sweeps(
        network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    abandoned = await abandon(network)
    later = past_the_ttl(network)
    await network.coordinator.app[EXPIRY].sweep_once(now=later)
    pop_clock_past_the_ttl(network, later, monkeypatch)
    assert abandoned.spool.is_dir()  # the POP has not swept yet
    response = await network.pop.post("/multipart/upload", json={
        **abandoned.ids, "part": 2, "size": PART})
    await assert_expired_error(response)
    assert not abandoned.spool.exists()
    for response in await late_requests(abandoned):
        await assert_expired_error(response)
    assert not abandoned.spool.exists()


async def test_a_sweep_that_stopped_after_aborting_is_finished_by_the_next(
        network: Network) -> None:
    abandoned = await abandon(network)
    later = past_the_ttl(network)
    state = network.coordinator.app[STATE]
    # The first two steps of a sweep, then the coordinator stops: Failed and aborted, but
    # the abort not recorded.
    ended = await state.expire_uploads(later - network.config.upload_expiry.ttl, EXPIRED,
                                       later, 10)
    assert [e.upload_id for e in ended] == [abandoned.upload.upload_id]
    await abandoned.storage.abort_multipart(abandoned.record.container, abandoned.record.key,
                                            abandoned.upload.storage_upload_id)
    swept = await network.coordinator.app[EXPIRY].sweep_once(now=later)
    assert (swept.expired, swept.aborted, swept.owed) == ((), (abandoned.upload.upload_id,), 0)
    assert await state.pending_aborts(10) == []
    assert await abandoned.pending() == []
    assert await abandoned.upload_status() == "Failed"


async def test_an_in_transit_upload_never_expires(network: Network,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The POP's parts wait before they go to the bucket: the file stays In Transit.
    driver = network.pop.app[POP_STORAGE]["bucket"]
    upload_part = driver.upload_part
    released = asyncio.Event()

    async def held_upload_part(*args: Any, **kwargs: Any) -> str:
        await released.wait()
        return str(await upload_part(*args, **kwargs))

    monkeypatch.setattr(driver, "upload_part", held_upload_part)
    payload = os.urandom(PART + 1000)
    reply = await upload_client.upload(network.config.pops[0].public_url, payload)
    assert reply["status"] == "InTransit"
    handle = reply["handle"]
    await shipped(network)  # the coordinator has heard it is In Transit
    upload, _ = await network.coordinator.app[MULTIPART].of_file(handle)
    spool = network.config.pops[0].spool_dir / "uploads" / upload.upload_id

    later = past_the_ttl(network)
    swept = await network.coordinator.app[EXPIRY].sweep_once(now=later)
    assert (swept.expired, swept.aborted) == ((), ())
    assert await network.pop.app[SWEEPER].sweep_once(now=later) == []
    assert spool.is_dir()
    record = await network.coordinator.app[FILES].get(handle)
    assert record.status.value == "In Transit"
    pending = await network.coordinator.app[COORDINATOR_STORAGE][record.storage] \
        .list_multipart_uploads(record.container)
    assert pending == [(record.key, upload.storage_upload_id)]

    released.set()
    deadline = time.monotonic() + 30
    while (await network.coordinator.app[FILES].get(handle)).status.value != "Complete":
        assert time.monotonic() < deadline, "the In Transit upload never completed"
        await asyncio.sleep(0.05)
    response = await network.coordinator.get(f"/api/file/{handle}")
    assert hashlib.sha256(await response.read()).digest() == hashlib.sha256(payload).digest()
