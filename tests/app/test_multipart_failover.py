"""Parts go to the bucket as they arrive, the part status says which are stored, and a
second POP finishes an upload the first began; a small file goes up in one put."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from typing import Any

import aiohttp
import pytest
from support import APIKEY, SECURE_APIKEY, Network, shipped, wait_complete
from upload_client import (
    PART,
    complete,
    part_status,
    send_parts,
    start_upload,
    wait_for_stored,
)

from common.storage import Storage
from coordinator.keys import STORAGE

PAYLOAD_SIZE = 2 * PART + 777  # three parts, the last a short one


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def bucket(network: Network) -> Storage:
    storage: Storage = network.coordinator.app[STORAGE]["bucket"]
    return storage


async def pending_uploads(network: Network) -> list[tuple[str, str]]:
    storage = bucket(network)
    return await storage.list_multipart_uploads(storage.default_container)


async def downloaded_sha256(network: Network, handle: str) -> str:
    response = await network.coordinator.get(f"/api/file/{handle}")
    assert response.status == 200
    return hashlib.sha256(await response.read()).hexdigest()


async def test_whole_parts_are_stored_before_complete(network: Network) -> None:
    east = network.config.pops[0].public_url
    payload = os.urandom(PAYLOAD_SIZE)
    async with aiohttp.ClientSession() as session:
        start = await start_upload(session, east, len(payload))
        upload_id = start["upload_id"]
        early = await send_parts(session, east, upload_id, payload, numbers={1, 2})
        status = await wait_for_stored(session, network.config.coordinator.public_url,
                                       upload_id, {1, 2})
        assert status["status"] == "Started"
        assert [(p["part_number"], p["state"], p["pop"], p["size"])
                for p in status["parts"]] == [(1, "stored", "us-east-1", PART),
                                              (2, "stored", "us-east-1", PART)]
        assert status["stored_bytes"] == 2 * PART and status["size"] == len(payload)
        assert all(p["etag"] for p in status["parts"])

        last = await send_parts(session, east, upload_id, payload, numbers={3})
        reply = await complete(session, east, upload_id, len(payload), early + last)
    metadata = await wait_complete(network, reply["handle"])
    assert metadata["upload_status"] == "Complete"
    assert await downloaded_sha256(network, reply["handle"]) == hashlib.sha256(
        payload).hexdigest()
    assert await pending_uploads(network) == []


async def test_committed_chunks_are_stored_before_complete(network: Network) -> None:
    east = network.config.pops[0].public_url
    payload = os.urandom(PAYLOAD_SIZE)
    async with aiohttp.ClientSession() as session:
        start = await start_upload(session, east, len(payload), fii=True)
        upload_id = start["upload_id"]
        await send_parts(session, east, upload_id, payload, fii=True, chunk=1024**2,
                         numbers={1, 2})
        status = await wait_for_stored(session, east, upload_id, {1, 2})
        assert [(p["part_number"], p["state"]) for p in status["parts"]] == [
            (1, "stored"), (2, "stored")]
        await send_parts(session, east, upload_id, payload, fii=True, chunk=1024**2,
                         numbers={3})
        await wait_for_stored(session, east, upload_id, {1, 2, 3})
        reply = await complete(session, east, upload_id, len(payload), [], fii=True)
    # Every part was in the bucket before the complete: the POP answers In Transit
    # without asking, and the coordinator finishes the bucket upload when the POP's
    # journal reaches it, with no part left to send. Then the POP frees its spool.
    assert reply["status"] == "InTransit"
    await shipped(network)
    assert (await wait_complete(network, reply["handle"]))["upload_status"] == "Complete"
    spool = network.config.pops[0].spool_dir / "uploads" / upload_id
    deadline = time.monotonic() + 10
    while spool.exists():
        assert time.monotonic() < deadline, "the spool of a Complete upload stayed"
        await asyncio.sleep(0.05)
    assert await downloaded_sha256(network, reply["handle"]) == hashlib.sha256(
        payload).hexdigest()


async def test_another_pop_finishes_an_upload_the_first_began(network: Network,
                                                              west: str) -> None:
    east = network.config.pops[0].public_url
    payload = os.urandom(PAYLOAD_SIZE)
    async with aiohttp.ClientSession() as session:
        start = await start_upload(session, east, len(payload))
        upload_id = start["upload_id"]
        early = await send_parts(session, east, upload_id, payload, numbers={1, 2})
        await wait_for_stored(session, east, upload_id, {1, 2})
        # East knows at once that a part is stored; west learns it from the coordinator,
        # which hears it from east's journal a moment later.
        await shipped(network)

        # From here on the client uses the other POP only, as if the first were gone.
        status = await part_status(session, west, upload_id)
        stored = {p["part_number"] for p in status["parts"] if p["state"] == "stored"}
        assert stored == {1, 2}
        missing = {1, 2, 3} - stored
        last = await send_parts(session, west, upload_id, payload, numbers=missing)
        reply = await complete(session, west, upload_id, len(payload), early + last)
    metadata = await wait_complete(network, reply["handle"])
    assert metadata["upload_status"] == "Complete", metadata
    assert await downloaded_sha256(network, reply["handle"]) == hashlib.sha256(
        payload).hexdigest()
    assert await pending_uploads(network) == []


async def test_a_pop_reports_the_chunks_it_holds(network: Network) -> None:
    east = network.config.pops[0].public_url
    payload = os.urandom(PAYLOAD_SIZE)
    chunk = 256 * 1024
    async with aiohttp.ClientSession() as session:
        start = await start_upload(session, east, len(payload), fii=True)
        ids = {"apikey": APIKEY, "upload_id": start["upload_id"]}
        for offset in (0, chunk, 3 * chunk):  # a gap at [2 * chunk, 3 * chunk)
            piece = payload[offset:offset + chunk]
            async with session.post(f"{east}/multipart/upload", json={
                    **ids, "part": 1, "size": chunk, "offset": offset, "fii": True,
                    "md5": base64.b64encode(hashlib.md5(piece).digest()).decode()}) as r:
                target = await r.json()
            async with session.put(target["url"], data=piece) as put:
                assert put.status == 200
        at_pop = await part_status(session, east, start["upload_id"])
        at_coordinator = await part_status(session, network.config.coordinator.public_url,
                                           start["upload_id"])
    # An FII chunk is not a whole part: nothing goes to the bucket before its commit.
    assert at_pop["parts"] == [{"part_number": 1, "size": 2 * chunk, "state": "spooled",
                                "pop": "us-east-1", "etag": None}]
    assert at_coordinator["parts"] == [] and at_coordinator["stored_bytes"] == 0


async def test_a_small_file_goes_up_in_one_put(network: Network) -> None:
    east = network.config.pops[0].public_url
    payload = os.urandom(3000)
    async with aiohttp.ClientSession() as session:
        start = await start_upload(session, east, len(payload))
        # Nothing is pending in the bucket: a file this small has no multipart upload.
        assert await pending_uploads(network) == []
        ids = {"apikey": APIKEY, "upload_id": start["upload_id"]}
        parts = []
        for number, (begin, end) in enumerate(((0, 1000), (1000, 3000)), 1):
            async with session.post(f"{east}/multipart/upload", json={
                    **ids, "part": number, "size": end - begin}) as response:
                target = await response.json()
            async with session.put(target["url"], data=payload[begin:end]) as put:
                assert put.status == 200
                parts.append({"part_number": number, "etag": put.headers["ETag"]})
        reply = await complete(session, east, start["upload_id"], len(payload), parts)
    metadata = await wait_complete(network, reply["handle"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["size"] == len(payload)
    assert await downloaded_sha256(network, reply["handle"]) == hashlib.sha256(
        payload).hexdigest()
    assert await pending_uploads(network) == []


@pytest.mark.parametrize("where", ["coordinator", "pop"])
async def test_the_part_status_refuses_what_it_cannot_answer(network: Network,
                                                             where: str) -> None:
    client = network.coordinator if where == "coordinator" else network.pop
    start = await start_upload(client.session, str(client.make_url("")).rstrip("/"), 1024)
    cases: list[tuple[Any, int, str]] = [
        ({"apikey": SECURE_APIKEY, "upload_id": start["upload_id"]}, 404, "file_not_found"),
        ({"apikey": APIKEY, "upload_id": "no-such-upload-0123456789"}, 404, "file_not_found"),
        ({"apikey": APIKEY}, 400, "bad_parameter"),
        (["not", "an", "object"], 400, "bad_parameter"),
    ]
    for body, status, code in cases:
        response = await client.post("/multipart/status", json=body)
        error = await response.json()
        assert (response.status, error["code"]) == (status, code), (body, error)
