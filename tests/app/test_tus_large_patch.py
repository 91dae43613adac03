"""A PATCH that spans parts: the next part's bytes are read while the one before is made
durable, and a PATCH cut off keeps every piece acknowledged before the cut."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import pytest
from support import APIKEY, Network

from common.protocol.tus import PART_SIZE
from edge.multipart.part_ledger import ChunkReceipt
from edge.tus.tus_uploads import TUS_UPLOADS

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def create(network: Network, length: int) -> str:
    response = await network.pop.post("/files/", headers={
        **V, "Upload-Length": str(length),
        "Upload-Metadata": "apikey " + base64.b64encode(APIKEY.encode()).decode()})
    assert response.status == 201, await response.text()
    return str(response.headers["Location"]).removeprefix(network.config.pops[0].public_url)


async def sha256_once_complete(network: Network, url: str) -> str:
    handle = (await network.pop.head(url, headers=V)).headers["Cin-Handle"]
    deadline = time.monotonic() + 30
    while True:
        response = await network.coordinator.get(f"/api/file/{handle}/metadata")
        metadata: dict[str, Any] = await response.json()
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return str(metadata.get("sha256"))
        await asyncio.sleep(0.05)


async def test_the_next_part_is_read_while_the_one_before_is_made_durable(
        network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = network.pop.app[TUS_UPLOADS].spool
    write_chunk = spool.write_chunk
    seen: list[tuple[str, int]] = []

    async def watched(upload_id: str, part: int, offset: int, body: AsyncIterable[bytes],
                      size: int, md5_b64: str | None = None) -> ChunkReceipt:
        seen.append(("started", part))
        receipt: ChunkReceipt = await write_chunk(upload_id, part, offset, body, size, md5_b64)
        seen.append(("acknowledged", part))
        return receipt

    monkeypatch.setattr(spool, "write_chunk", watched)
    payload = os.urandom(2 * PART_SIZE + 12_345)
    url = await create(network, len(payload))
    response = await network.pop.patch(url, data=payload, headers={
        **V, **OFFSET, "Upload-Offset": "0"})
    assert response.status == 204, await response.text()
    assert response.headers["Upload-Offset"] == str(len(payload))
    assert seen.index(("started", 2)) < seen.index(("acknowledged", 1))
    assert seen.index(("started", 3)) < seen.index(("acknowledged", 2))
    assert await sha256_once_complete(network, url) == hashlib.sha256(payload).hexdigest()


async def test_a_patch_cut_in_its_third_part_keeps_the_two_before(network: Network) -> None:
    payload = os.urandom(3 * PART_SIZE)
    url = await create(network, len(payload))
    cut = 2 * PART_SIZE + PART_SIZE // 2

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, cut, 1024 * 1024):
            yield payload[start:min(start + 1024 * 1024, cut)]
        raise ConnectionResetError("the client went away")

    with pytest.raises(Exception):  # noqa: B017 - the client's own failure, whatever its type
        await network.pop.patch(url, data=body(), headers={
            **V, **OFFSET, "Upload-Offset": "0", "Content-Length": str(len(payload))})
    deadline = time.monotonic() + 10
    offset = -1
    while offset != 2 * PART_SIZE and time.monotonic() < deadline:
        head: Any = await network.pop.head(url, headers=V)
        offset = int(head.headers["Upload-Offset"])
        if offset != 2 * PART_SIZE:
            await asyncio.sleep(0.05)
    assert offset == 2 * PART_SIZE
    response = await network.pop.patch(url, data=payload[offset:], headers={
        **V, **OFFSET, "Upload-Offset": str(offset)})
    assert response.status == 204, await response.text()
    assert await sha256_once_complete(network, url) == hashlib.sha256(payload).hexdigest()
