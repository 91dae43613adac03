"""A POP killed -9 in the middle of a tus upload loses none of the bytes it acknowledged:
restarted, it answers HEAD with the offset it last gave, takes the rest, and the file is
Complete with the client's bytes. A partial upload (concatenation) survives the same way.
Real processes, local-disk bucket."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp
import pytest
from support import APIKEY, CinProcess, config_data, write_config

from common.protocol.tus import PART_SIZE

pytestmark = pytest.mark.e2e

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


async def wait_complete(session: aiohttp.ClientSession, coordinator: str,
                        handle: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{coordinator}/api/file/{handle}/metadata") as response:
            metadata: dict[str, object] = await response.json()
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return metadata
        await asyncio.sleep(0.05)


async def patch(session: aiohttp.ClientSession, url: str, offset: int, body: bytes) -> int:
    async with session.patch(url, data=body, headers={
            **V, **OFFSET, "Upload-Offset": str(offset)}) as response:
        assert response.status == 204, await response.text()
        return int(response.headers["Upload-Offset"])


async def head_offset(session: aiohttp.ClientSession, url: str) -> int:
    async with session.head(url, headers=V) as response:
        assert response.status == 200
        return int(response.headers["Upload-Offset"])


async def test_a_killed_pop_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    config = write_config(data, tmp_path / "cin.yaml")
    coordinator_url, pop_url = data["coordinator"]["public_url"], data["pops"][0]["public_url"]
    edge = ["edge", "-c", str(config), "--pop", "us-east-1"]
    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    pop = CinProcess(edge, tmp_path).wait_ready()
    payload = os.urandom(2 * PART_SIZE + 3 * 1024 * 1024 + 5)
    pieces = [os.urandom(3000), os.urandom(7000)]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{pop_url}/files/?key={APIKEY}", headers={
                    **V, "Upload-Length": str(len(payload))}) as response:
                url, handle = response.headers["Location"], response.headers["Cin-Handle"]
            acknowledged = await patch(session, url, 0, payload[:PART_SIZE + 12345])
            partials = []
            for piece in pieces:
                async with session.post(f"{pop_url}/files/?key={APIKEY}", headers={
                        **V, "Upload-Length": str(len(piece)),
                        "Upload-Concat": "partial"}) as response:
                    partials.append(response.headers["Location"])
            await patch(session, partials[0], 0, pieces[0])
            pop.kill9()

            pop = CinProcess(edge, tmp_path).wait_ready()
            assert await head_offset(session, url) == acknowledged
            assert await patch(session, url, acknowledged,
                               payload[acknowledged:]) == len(payload)
            metadata = await wait_complete(session, coordinator_url, handle)
            assert metadata["upload_status"] == "Complete", metadata
            assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()

            assert await head_offset(session, partials[0]) == len(pieces[0])
            await patch(session, partials[1], 0, pieces[1])
            async with session.post(f"{pop_url}/files/?key={APIKEY}", headers={
                    **V, "Upload-Concat": "final;" + " ".join(partials)}) as response:
                assert response.status == 201, await response.text()
                final = response.headers["Cin-Handle"]
            metadata = await wait_complete(session, coordinator_url, final)
            assert metadata["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    finally:
        pop.stop()
        coordinator.stop()
