"""A chunk PUT whose client stalls mid-body, retried on a new connection, over real
loopback HTTP: the retry is answered at once, and the stalled request changes nothing
however it ends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from support import APIKEY, Network, read_answer

MiB = 1024 * 1024
BOUNDED = aiohttp.ClientTimeout(total=10)


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def fii_upload(network: Network, size: int) -> dict[str, Any]:
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "data.bin", "size": size, "store": {"location": "s3"},
        "fii": True})
    reply = await response.json()
    assert response.status == 200, reply
    return {"apikey": APIKEY, "upload_id": reply["upload_id"], "uri": reply["uri"],
            "region": reply["region"], "store": {"location": "s3"}}


async def chunk_url(network: Network, ids: dict[str, Any], data: bytes) -> str:
    response = await network.pop.post("/multipart/upload", json={
        **ids, "part": 1, "size": len(data), "offset": 0, "md5": md5_b64(data), "fii": True})
    reply = await response.json()
    assert response.status == 200, reply
    return str(reply["url"])


async def start_stalled_put(url: str, data: bytes, sent: int) -> tuple[asyncio.StreamReader,
                                                                       asyncio.StreamWriter]:
    """A PUT of `data` on its own connection that sends only its first `sent` bytes."""
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    writer.write(f"PUT {where.path}?{where.query} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                 f"Content-Type: application/octet-stream\r\nContent-MD5: {md5_b64(data)}\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:sent])
    await writer.drain()
    return reader, writer


async def eventually(check: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def part_file(network: Network, ids: dict[str, Any]) -> Path:
    upload_id: str = ids["upload_id"]
    return network.config.pops[0].spool_dir / "uploads" / upload_id / "part-1.data"


async def committed_etag(network: Network, ids: dict[str, Any]) -> str:
    commit = await network.pop.post("/multipart/commit", json={**ids, "part": 1})
    assert commit.status == 200, await commit.text()
    return commit.headers["ETag"]


@pytest.mark.parametrize("ending", ["sends other bytes", "hangs up"])
async def test_a_retry_of_a_stalled_chunk_is_answered_at_once(network: Network,
                                                              ending: str) -> None:
    data = os.urandom(3 * MiB)
    ids = await fii_upload(network, len(data))
    url = await chunk_url(network, ids, data)
    half = len(data) // 2
    reader, writer = await start_stalled_put(url, data, half)
    try:
        # The stalled request holds the range, and some of its bytes are on disk.
        await eventually(lambda: part_file(network, ids).exists()
                         and part_file(network, ids).stat().st_size >= MiB,
                         "the stalled chunk's first bytes to be written")

        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=BOUNDED) as session, session.put(
                url, data=data, headers={"Content-MD5": md5_b64(data)}) as retried:
            assert retried.status == 200, await retried.text()
            assert retried.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert time.monotonic() - started < 1.0
        assert part_file(network, ids).read_bytes() == data
        assert await committed_etag(network, ids) == f'"{hashlib.md5(data).hexdigest()}"'

        if ending == "sends other bytes":
            writer.write(os.urandom(len(data) - half))
            await writer.drain()
            status, body = await asyncio.wait_for(read_answer(reader), timeout=5)
            assert (status, body["code"]) == (409, "conflict"), body
            assert "taken over by a newer request" in body["error"]
        else:
            writer.close()
            await writer.wait_closed()
            # The acknowledged chunk stands: sent again, it is compared and accepted.
            async with aiohttp.ClientSession(timeout=BOUNDED) as session, session.put(
                    url, data=data, headers={"Content-MD5": md5_b64(data)}) as again:
                assert again.status == 200, await again.text()
    finally:
        writer.close()
    assert part_file(network, ids).read_bytes() == data
    assert await committed_etag(network, ids) == f'"{hashlib.md5(data).hexdigest()}"'
