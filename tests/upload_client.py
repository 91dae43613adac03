"""A small Upload API client for tests: start, parts (regular or FII chunks), complete.

It speaks to a POP by URL with a plain aiohttp session, so the same code drives an
in-process network and real processes. The real SDKs are tested on their own.

`fii_upload` is the plain Intelligent Ingestion client of the bad-network proofs: fixed
chunks, a timeout on every request and a bounded number of attempts, as a simple SDK
without adaptive chunk sizes does it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from support import APIKEY

PART = 5 * 1024**2  # S3's smallest part (but the last)
FII_PART = 8 * 1024**2  # the part size Filestack's SDKs use for Intelligent Ingestion

T = TypeVar("T")


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


# ------------------------------------------------------- a client that gives up


@dataclass(frozen=True)
class Retries:
    """How long a client waits for each request, and how often it tries one."""

    timeout: float = 3.0  # seconds, for the whole of one request and its answer
    attempts: int = 3


class GaveUp(Exception):
    """A request failed on every attempt the client allows it."""

    def __init__(self, what: str, errors: list[BaseException]) -> None:
        super().__init__(f"{what}: all {len(errors)} attempts failed, the last with "
                         f"{errors[-1]!r}")
        self.what = what
        self.errors = errors


class _ServerError(Exception):
    """A 5xx: worth another attempt, as a network error is."""


async def _attempts(what: str, retries: Retries, request: Callable[[], Awaitable[T]]) -> T:
    errors: list[BaseException] = []
    for _ in range(retries.attempts):
        try:
            return await request()
        except (TimeoutError, aiohttp.ClientError, _ServerError) as error:
            errors.append(error)
    raise GaveUp(what, errors)


async def _post(session: aiohttp.ClientSession, url: str, fields: dict[str, Any],
                retries: Retries) -> dict[str, Any]:
    async with session.post(url, json=fields,
                            timeout=aiohttp.ClientTimeout(total=retries.timeout)) as response:
        if response.status >= 500:
            raise _ServerError(f"{response.status} {await response.text()}")
        reply: dict[str, Any] = await response.json()
        assert response.status == 200, reply
    return reply


async def _send_chunk(session: aiohttp.ClientSession, pop: str, fields: dict[str, Any],
                      piece: bytes, retries: Retries) -> None:
    """One attempt at a chunk: its URL, then its bytes."""
    target = await _post(session, f"{pop}/multipart/upload", fields, retries)
    async with session.put(target["url"], data=piece, headers=target["headers"],
                           timeout=aiohttp.ClientTimeout(total=retries.timeout)) as put:
        if put.status >= 500:
            raise _ServerError(f"{put.status} {await put.text()}")
        assert put.status == 200, await put.text()


async def send_fii_chunks(session: aiohttp.ClientSession, pop: str, upload_id: str,
                          payload: bytes, *, chunk: int, part_size: int = FII_PART,
                          retries: Retries = Retries(), parallel: int = 4) -> None:
    """Every part of `payload` in `chunk`-sized FII chunks, `parallel` at a time, then a
    commit for each part; GaveUp when a request fails `retries.attempts` times."""
    ids = {"apikey": APIKEY, "upload_id": upload_id}
    gate = asyncio.Semaphore(parallel)

    async def send(number: int, offset: int, piece: bytes) -> None:
        fields = {**ids, "part": number, "size": len(piece), "offset": offset, "fii": True,
                  "md5": base64.b64encode(hashlib.md5(piece).digest()).decode()}
        async with gate:
            await _attempts(f"part {number}'s chunk at {offset}", retries,
                            lambda: _send_chunk(session, pop, fields, piece, retries))

    for number, part_start in enumerate(range(0, len(payload), part_size), 1):
        part = payload[part_start:part_start + part_size]
        sending = [asyncio.ensure_future(send(number, offset, part[offset:offset + chunk]))
                   for offset in range(0, len(part), chunk)]
        try:
            await asyncio.gather(*sending)
        finally:
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
        commit = {**ids, "part": number, "size": len(payload)}
        await _attempts(f"part {number}'s commit", retries, functools.partial(
            _post, session, f"{pop}/multipart/commit", commit, retries))


async def fii_upload(pop: str, payload: bytes, *, chunk: int, part_size: int = FII_PART,
                     retries: Retries = Retries(), parallel: int = 4) -> dict[str, Any]:
    """A whole FII upload through the POP at `pop` (start, chunks, commits, complete),
    every request bounded by `retries`; complete's reply."""
    async with aiohttp.ClientSession() as session:
        started = await _attempts("start", retries, lambda: _post(
            session, f"{pop}/multipart/start",
            {"apikey": APIKEY, "filename": "movie.bin", "mimetype": "application/x-demo",
             "size": len(payload), "store": {"location": "s3"}, "fii": True}, retries))
        upload_id = started["upload_id"]
        await send_fii_chunks(session, pop, upload_id, payload, chunk=chunk,
                              part_size=part_size, retries=retries, parallel=parallel)
        return await _attempts("complete", retries, lambda: _post(
            session, f"{pop}/multipart/complete",
            {"apikey": APIKEY, "upload_id": upload_id, "size": len(payload), "parts": [],
             "fii": True, "upload_tags": {}}, retries))
