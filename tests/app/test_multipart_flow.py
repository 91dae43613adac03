"""A whole multipart upload through a POP: start, parts, complete, In Transit, Complete."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from typing import Any

import aiohttp
import pytest
import upload_client
from support import APIKEY, APP_SECRET, Network, wait_complete
from upload_client import PART

from common.storage import StorageError, StorageErrorKind, open_storage

BASIC = {"Authorization": "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def upload(network: Network, payload: bytes, **options: Any) -> dict[str, Any]:
    return await upload_client.upload(network.config.pops[0].public_url, payload,
                                      path="movies/", **options)


@pytest.mark.parametrize("fii", [False, True], ids=["regular", "intelligent"])
async def test_a_multipart_upload_ends_complete_and_whole(network: Network, fii: bool) -> None:
    payload = os.urandom(2 * PART + 12345)
    reply = await upload(network, payload, fii=fii, chunk=2 * 1024**2, tags={"user": "42"})
    assert reply["status"] in ("InTransit", "Stored")
    assert (reply["size"], reply["filename"], reply["mimetype"]) == (
        len(payload), "movie.bin", "application/x-demo")
    assert reply["upload_tags"] == {"user": "42"}
    assert reply["key"].startswith("movies/")
    metadata = await wait_complete(network, reply["handle"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["upload_tags"] == {"user": "42"}
    download = await network.pop.get(f"/api/file/{reply['handle']}")
    assert hashlib.sha256(await download.read()).hexdigest() == metadata["sha256"]
    # The POP freed its spool once the file was Complete.
    spool = network.config.pops[0].spool_dir / "uploads"
    deadline = time.monotonic() + 10
    while any(spool.iterdir()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(spool.iterdir())


async def test_a_small_file_in_one_part(network: Network) -> None:
    payload = os.urandom(1024)
    reply = await upload(network, payload, fii=False)
    metadata = await wait_complete(network, reply["handle"])
    assert metadata["size"] == 1024
    assert metadata["md5"] == hashlib.md5(payload).hexdigest()


async def test_complete_refuses_missing_bytes(network: Network) -> None:
    payload = os.urandom(PART + 10)
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "x.bin", "size": len(payload),
        "store": {"location": "s3"}})
    start = await response.json()
    ids = {"apikey": APIKEY, "upload_id": start["upload_id"]}
    target = await (await network.pop.post("/multipart/upload", json={
        **ids, "part": 1, "size": PART})).json()
    async with aiohttp.ClientSession() as session, session.put(
            target["url"], data=payload[:PART]) as put:
        assert put.status == 200
    short = await network.pop.post("/multipart/complete", json={**ids, "parts": []})
    body = await short.json()
    assert (short.status, body["code"]) == (409, "conflict")
    assert f"the parts hold {PART} bytes, the file is {PART + 10}" in body["error"]


async def test_a_file_uploaded_in_parts_downloads_and_deletes(network: Network) -> None:
    """On S3, the object a multipart upload leaves carries no ACL when it is private, and
    some S3-compatible services (moto among them) then fail GetObjectAcl: serving and
    deleting the file must not need it."""
    payload = os.urandom(2 * PART + 999)
    reply = await upload(network, payload, fii=False)
    handle = reply["handle"]
    assert (await wait_complete(network, handle))["upload_status"] == "Complete"

    for client in (network.pop, network.coordinator):
        whole = await client.get(f"/{handle}")
        assert (whole.status, await whole.read()) == (200, payload)
        tail = await client.get(f"/{handle}", headers={"Range": f"bytes={PART}-"})
        assert (tail.status, await tail.read()) == (206, payload[PART:])
        head = await client.head(f"/api/file/{handle}")
        assert (head.status, head.content_length) == (200, len(payload))

    deleted = await network.pop.delete(f"/api/file/{handle}", headers=BASIC)
    assert deleted.status == 200, await deleted.text()
    gone = await network.coordinator.get(f"/{handle}")
    assert (gone.status, (await gone.json())["code"]) == (404, "file_not_found")
    async with open_storage(network.config.storage["bucket"]) as storage:
        with pytest.raises(StorageError) as missing:
            await storage.head(reply["container"], reply["key"])
    assert missing.value.kind is StorageErrorKind.NOT_FOUND
