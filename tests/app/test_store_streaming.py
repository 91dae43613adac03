"""A raw REST store that declares its length goes to the bucket as it arrives (to S3 only
while it is under one staging batch), over real loopback HTTP: nothing is staged, a client
that hangs up or stalls midway leaves no object and no file (the POP's journal forgets the
store, and the coordinator never hears of it), and what the policy or the app refuses is
refused before a byte is kept.

The POP names a file itself, from its lease, and records it in its journal
(edge/rest/store.py); the coordinator learns of a finished store when the journal's
events reach it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest
from support import APIKEY, APP_SECRET, Network, read_answer, shipped, sqlite_state

from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord
from common.protocol.security import encode_policy, sign_policy
from common.storage import StorageError, StorageErrorKind, open_storage
from common.storage.drivers import LocalSettings
from edge.keys import JOURNAL

MiB = 1024 * 1024
CHUNK = 256 * 1024


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def staged_files(network: Network) -> list[Path]:
    return list((network.config.pops[0].spool_dir / "incoming").iterdir())


def files_by_status(network: Network) -> list[tuple[str, str, str]]:
    """(status, key, container) of every file the coordinator has, from its database."""
    path = sqlite_state(network.config)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT status, key, container FROM files"))


async def begun_stores(network: Network) -> list[FileRecord]:
    """The stores the POP has named (in its journal) and neither finished nor forgotten."""
    begun: list[FileRecord] = await network.pop.app[JOURNAL].interrupted_stores()
    return begun


async def named_store(network: Network) -> FileRecord:
    """The one store the POP is taking, once it has named it."""
    deadline = time.monotonic() + 10
    while not (begun := await begun_stores(network)):
        assert time.monotonic() < deadline, "timed out waiting for the store to be named"
        await asyncio.sleep(0.05)
    [record] = begun
    return record


async def open_raw_store(network: Network, declared: int) -> tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]:
    listen = network.config.pops[0].listen
    reader, writer = await asyncio.open_connection(listen.host, listen.port)
    writer.write(f"POST /api/store/S3?key={APIKEY}&filename=big.bin HTTP/1.1\r\n"
                 f"Host: {listen.host}\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode())
    return reader, writer


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    for start in range(0, len(data), CHUNK):
        writer.write(data[start:start + CHUNK])
        await writer.drain()


async def eventually(check: object, what: str, seconds: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def driver(network: Network) -> str:
    return network.config.storage["bucket"].driver


def straight_sizes(network: Network) -> tuple[int, int]:
    """A body size that goes straight to this network's bucket, and how much of it to
    send before the test looks: past the first write batch where the driver allows."""
    return (8 * MiB, 3 * MiB) if driver(network) == "local" else (900 * 1024, 300 * 1024)


@pytest.mark.parametrize("network_on_each_driver", ["s3"], indirect=True)
async def test_a_large_body_for_s3_is_staged_before_the_file_is_named(
        network: Network) -> None:
    assert driver(network) == "s3"
    data = os.urandom(3 * MiB)
    reader, writer = await open_raw_store(network, len(data))
    try:
        await send(writer, data[:2 * MiB])
        await eventually(lambda: staged_files(network) != [], "the body to be staged")
        assert await begun_stores(network) == []
        await send(writer, data[2 * MiB:])
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
    finally:
        writer.close()
    await shipped(network)
    assert [row[0] for row in files_by_status(network)] == ["Complete"]
    assert staged_files(network) == []


@pytest.mark.parametrize("network_on_each_driver", ["local"], indirect=True)
async def test_bytes_reach_a_local_bucket_before_the_body_ends(network: Network) -> None:
    data = os.urandom(6 * MiB + 7)
    reader, writer = await open_raw_store(network, len(data))
    try:
        await send(writer, data[:4 * MiB])
        # The POP has named the file while the body is still arriving.
        assert (await named_store(network)).status is FileStatus.STARTED
        assert staged_files(network) == []
        await send(writer, data[4 * MiB:])
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
    finally:
        writer.close()
    await shipped(network)
    [(status, key, container)] = files_by_status(network)
    assert status == "Complete"
    async with open_storage(network.config.storage["bucket"]) as storage:
        reading = await storage.get(container, key)
        try:
            stored = hashlib.sha256()
            async for chunk in reading.chunks():
                stored.update(chunk)
        finally:
            await reading.close()
    assert stored.hexdigest() == hashlib.sha256(data).hexdigest()
    assert staged_files(network) == []


async def test_a_client_that_hangs_up_midway_leaves_no_object(network: Network) -> None:
    declared, sent = straight_sizes(network)
    _, writer = await open_raw_store(network, declared)
    await send(writer, os.urandom(sent))
    named = await named_store(network)
    writer.close()
    await writer.wait_closed()

    deadline = time.monotonic() + 10
    while await begun_stores(network):
        assert time.monotonic() < deadline, "the POP's journal kept the store"
        await asyncio.sleep(0.05)
    await _nothing_stored(network, named)


@pytest.mark.parametrize("network_settings", [{"timeouts": {"body_idle": 0.5}}])
async def test_a_client_that_stalls_midway_is_answered_408_and_leaves_no_object(
        network: Network) -> None:
    declared, sent = straight_sizes(network)
    reader, writer = await open_raw_store(network, declared)
    try:
        await send(writer, os.urandom(sent))
        named = await named_store(network)
        status, answer = await asyncio.wait_for(read_answer(reader), 10)
        assert (status, answer["code"]) == (408, "body_timeout"), answer
    finally:
        writer.close()
    assert await begun_stores(network) == []
    await _nothing_stored(network, named)


async def _nothing_stored(network: Network, named: FileRecord) -> None:
    """Nothing of the store the POP named and gave up: no record at the coordinator
    once the POP's journal has reached it (a failed store is never reported), no
    object at its key, no pending upload, no stray file."""
    await shipped(network)
    assert files_by_status(network) == []
    async with open_storage(network.config.storage["bucket"]) as storage:
        with pytest.raises(StorageError) as missing:
            await storage.head(named.container, named.key)
        assert missing.value.kind is StorageErrorKind.NOT_FOUND
        assert await storage.list_multipart_uploads(named.container) == []
    settings = network.config.storage["bucket"].settings
    if isinstance(settings, LocalSettings):
        assert [path for path in settings.root.rglob("*") if path.is_file()] == []
    assert staged_files(network) == []


async def test_a_policy_refuses_a_declared_size_before_any_byte_is_kept(
        network: Network) -> None:
    for limit in ("maxSize", "minSize"):
        size = 1000 if limit == "maxSize" else 10 * MiB
        policy = encode_policy({"expiry": int(time.time()) + 600, limit: size})
        signature = sign_policy(APP_SECRET, policy)
        response = await network.pop.post(
            "/api/store/S3", params={"key": APIKEY, "policy": policy, "signature": signature},
            data=os.urandom(5000), headers={"Content-Type": "application/octet-stream"})
        body = await response.json()
        assert (response.status, body["code"]) == (403, "policy_denies"), body
        assert limit in body["error"]
    assert files_by_status(network) == []
    assert staged_files(network) == []


async def test_an_empty_raw_body_is_refused(network: Network) -> None:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"",
                                      headers={"Content-Type": "application/octet-stream"})
    body = await response.json()
    assert (response.status, body["code"]) == (400, "empty_file")
    assert files_by_status(network) == []
