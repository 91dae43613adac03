"""REST stores interrupted mid-store, on both storage drivers, over loopback HTTP: the
coordinator's sweep fails a store its POP never finished and removes what it left in the
bucket (never another file's bytes), and a POP cuts off a store that takes longer than
a store may, so that the sweep never meets a live one.

A POP killed mid-store is staged here (the file named, an object put at its key, a
pending multipart upload of the driver's own put there, and no report): tests/e2e/
test_interrupted_requests.py kills a real one. No test waits for the TTL: the sweep is run
once, at a time past it (`now=`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import APIKEY, APP_SECRET, Network, read_answer, shipped

from common.protocol.naming import new_handle
from common.protocol.new_files import NewStore, new_file_record
from common.protocol.records import FileRecord
from common.protocol.security import encode_policy, sign_policy
from common.storage import Storage, StorageError, StorageErrorKind
from common.storage.drivers import LocalSettings
from coordinator.keys import STATE, STORE_EXPIRY
from coordinator.keys import STORAGE as COORDINATOR_STORAGE
from coordinator.state import StateStore
from coordinator.store_expiry import StoreSweepResult

STORE_TTL = 1.5


@pytest.fixture
def network_settings() -> dict[str, Any]:
    return {"upload_expiry": {"store_ttl": STORE_TTL}, "url_fetch_timeout": 0.5}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def storage(network: Network) -> Storage:
    found: Storage = network.coordinator.app[COORDINATOR_STORAGE]["bucket"]
    return found


def credentials() -> dict[str, str]:
    policy = encode_policy({"expiry": int(time.time()) + 600})
    return {"policy": policy, "signature": sign_policy(APP_SECRET, policy)}


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def started_at_coordinator(network: Network, container: str, path: str,
                                 origin: str) -> FileRecord:
    """A REST store the coordinator holds Started: what a POP that named its stores at the
    coordinator (before POPs took handles from their lease) left when it died mid-store."""
    record = new_file_record(NewStore(apikey=APIKEY, storage="bucket", provider="s3",
                                      container=container, path=path, filename="f.bin",
                                      mimetype="application/octet-stream", size=5,
                                      pop="us-east-1"),
                             handle=new_handle(), pop="us-east-1", now=time.time())
    state: StateStore = network.coordinator.app[STATE]
    return await state.create_file(record, f"us-east-1:{origin}")


async def interrupted_store(network: Network, path: str) -> FileRecord:
    """What a POP killed mid-store leaves: its file named and Started, an object put at its
    key but never reported, and a pending multipart upload there."""
    record = await started_at_coordinator(network, network.config.storage["bucket"].container,
                                          path, "killed-mid-store")
    bucket = storage(network)
    await bucket.put(record.container, record.key, body(b"bytes"),
                     content_type="application/octet-stream")
    await bucket.create_multipart(record.container, record.key,
                                  content_type="application/octet-stream")
    return record


async def status_of(network: Network, handle: str) -> str:
    response = await network.coordinator.get(f"/api/file/{handle}/metadata")
    assert response.status == 200
    return str((await response.json())["upload_status"])


async def sweep_past_the_ttl(network: Network) -> tuple[str, ...]:
    swept: StoreSweepResult = await network.coordinator.app[STORE_EXPIRY].sweep_once(
        now=time.time() + STORE_TTL + 1)
    assert swept.owed == 0
    return swept.expired


async def test_a_store_its_pop_never_finished_is_failed_and_leaves_nothing(
        network: Network) -> None:
    record = await interrupted_store(network, "stores/interrupted.bin")
    # What the issue saw: a file stuck Started, that can be neither read nor deleted.
    for method in ("GET", "DELETE"):
        response = await network.coordinator.request(
            method, f"/api/file/{record.handle}", params={"key": APIKEY, **credentials()})
        assert response.status == 409, await response.text()

    assert await sweep_past_the_ttl(network) == (record.handle,)
    assert await status_of(network, record.handle) == "Failed"
    with pytest.raises(StorageError) as missing:
        await storage(network).head(record.container, record.key)
    assert missing.value.kind is StorageErrorKind.NOT_FOUND
    assert await storage(network).list_multipart_uploads(record.container) == []
    response = await network.coordinator.delete(f"/api/file/{record.handle}",
                                                 params={"key": APIKEY, **credentials()})
    assert response.status == 200, await response.text()
    assert await sweep_past_the_ttl(network) == ()  # nothing left to do


async def test_the_bytes_of_another_file_at_the_key_stay(network: Network) -> None:
    path = "stores/shared.bin"
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY, "path": path},
                                    data=b"the first store's bytes")
    first = await stored.json()
    assert stored.status == 200, first
    await shipped(network)  # the coordinator knows the first file is Complete at that key
    # A second store to the same path, whose POP died before it put anything.
    second = await started_at_coordinator(network, first["container"], path, "second")
    assert second.key == first["key"]

    assert await sweep_past_the_ttl(network) == (second.handle,)
    response = await network.coordinator.get(f"/api/file/{first['handle']}")
    assert (response.status, await response.read()) == (200, b"the first store's bytes")


async def open_raw_store(network: Network, declared: int) -> tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]:
    listen = network.config.pops[0].listen
    reader, writer = await asyncio.open_connection(listen.host, listen.port)
    writer.write(f"POST /api/store/S3?key={APIKEY}&path=slow.bin HTTP/1.1\r\n"
                 f"Host: {listen.host}\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_a_store_that_takes_longer_than_the_store_ttl_is_cut_off(
        network: Network) -> None:
    # A client that never stalls long enough for the body timeout, but would take 20 s:
    # small enough to go straight to either bucket.
    declared = 200 * 1024
    reader, writer = await open_raw_store(network, declared)

    async def trickle() -> None:
        for _ in range(200):
            writer.write(os.urandom(1024))
            await writer.drain()
            await asyncio.sleep(0.1)

    sending = asyncio.create_task(trickle())
    began = time.monotonic()
    try:
        status, answer = await asyncio.wait_for(read_answer(reader), 10)
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    assert (status, answer["code"]) == (408, "store_timeout"), answer
    assert STORE_TTL <= time.monotonic() - began < STORE_TTL + 5
    # Recorded Failed by the POP itself: the sweep finds nothing to do.
    assert await sweep_past_the_ttl(network) == ()
    container = network.config.storage["bucket"].container
    with pytest.raises(StorageError):
        await storage(network).head(container, "slow.bin")
    assert await storage(network).list_multipart_uploads(container) == []
    settings = network.config.storage["bucket"].settings
    if isinstance(settings, LocalSettings):
        assert list(settings.root.rglob(".tmp-*")) == []
