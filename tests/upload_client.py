"""A small Upload API client for tests: start, parts (regular or FII chunks), complete.

It speaks to a POP by URL with a plain aiohttp session, so the same code drives an
in-process network and real processes. The real SDKs are tested on their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Collection
from typing import Any

import aiohttp
from support import APIKEY

PART = 5 * 1024**2  # S3's smallest part (but the last)


async def start_upload(session: aiohttp.ClientSession, pop: str, size: int, *,
                       filename: str = "movie.bin", mimetype: str = "application/x-demo",
                       path: str | None = None, fii: bool = False) -> dict[str, Any]:
    store: dict[str, Any] = {"location": "s3"} if path is None else {"location": "s3",
                                                                      "path": path}
    async with session.post(f"{pop}/multipart/start", json={
            "apikey": APIKEY, "filename": filename, "mimetype": mimetype, "size": size,
            "store": store, "fii": fii}) as response:
        start: dict[str, Any] = await response.json()
        assert response.status == 200, start
    return start


async def send_parts(session: aiohttp.ClientSession, pop: str, upload_id: str,
                     payload: bytes, *, fii: bool = False, chunk: int = PART,
                     numbers: Collection[int] | None = None) -> list[dict[str, Any]]:
    """Send the parts of `payload` (only `numbers` when given; FII: in `chunk`-sized
    pieces, then a commit); the regular parts' numbers and ETags, for complete."""
    ids = {"apikey": APIKEY, "upload_id": upload_id}
    parts = []
    for number, part_start in enumerate(range(0, len(payload), PART), 1):
        if numbers is not None and number not in numbers:
            continue
        part = payload[part_start:part_start + PART]
        step = chunk if fii else len(part)
        for offset in range(0, len(part), step):
            piece = part[offset:offset + step]
            fields = {**ids, "part": number, "size": len(piece),
                      "md5": base64.b64encode(hashlib.md5(piece).digest()).decode()}
            if fii:
                fields.update(offset=offset, fii=True)
            async with session.post(f"{pop}/multipart/upload", json=fields) as response:
                target = await response.json()
                assert response.status == 200, target
            async with session.put(target["url"], data=piece,
                                   headers=target["headers"]) as put:
                assert put.status == 200, await put.text()
                etag = put.headers["ETag"]
        if fii:
            async with session.post(f"{pop}/multipart/commit", json={
                    **ids, "part": number, "size": len(payload)}) as commit:
                assert commit.status == 200, await commit.text()
        else:
            parts.append({"part_number": number, "etag": etag})
    return parts


async def complete(session: aiohttp.ClientSession, pop: str, upload_id: str, size: int,
                   parts: list[dict[str, Any]], *, fii: bool = False,
                   tags: dict[str, str] | None = None) -> dict[str, Any]:
    async with session.post(f"{pop}/multipart/complete", json={
            "apikey": APIKEY, "upload_id": upload_id, "size": size, "parts": parts,
            "fii": fii, "upload_tags": tags or {}}) as response:
        reply: dict[str, Any] = await response.json()
        assert response.status == 200, reply
    return reply


async def send_and_complete(session: aiohttp.ClientSession, pop: str, upload_id: str,
                            payload: bytes, *, fii: bool = False, chunk: int = PART,
                            tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Send every part and complete."""
    parts = await send_parts(session, pop, upload_id, payload, fii=fii, chunk=chunk)
    return await complete(session, pop, upload_id, len(payload), parts, fii=fii, tags=tags)


async def part_status(session: aiohttp.ClientSession, url: str,
                      upload_id: str) -> dict[str, Any]:
    """`POST /multipart/status` at a POP or the coordinator."""
    async with session.post(f"{url}/multipart/status", json={
            "apikey": APIKEY, "upload_id": upload_id}) as response:
        status: dict[str, Any] = await response.json()
        assert response.status == 200, status
    return status


async def wait_for_stored(session: aiohttp.ClientSession, url: str, upload_id: str,
                          numbers: Collection[int], timeout: float = 60) -> dict[str, Any]:
    """The part status once every part in `numbers` is stored."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await part_status(session, url, upload_id)
        stored = {p["part_number"] for p in status["parts"] if p["state"] == "stored"}
        if set(numbers) <= stored or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.05)


async def upload(pop: str, payload: bytes, *, fii: bool = False, chunk: int = PART,
                 tags: dict[str, str] | None = None, **start: Any) -> dict[str, Any]:
    """A whole multipart upload through the POP at `pop`, up to its complete's reply."""
    async with aiohttp.ClientSession() as session:
        started = await start_upload(session, pop, len(payload), fii=fii, **start)
        return await send_and_complete(session, pop, started["upload_id"], payload,
                                       fii=fii, chunk=chunk, tags=tags)
