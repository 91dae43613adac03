"""What the benchmarks send: REST stores, Upload API uploads, and the same bytes in the
same shape to the ceiling, all through bench.http's lean client.

Part bodies repeat one random block, so every 8 MiB part has the same MD5: the client
announces it (as the Filestack SDKs do) without hashing a gigabyte on the cores the
server needs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.http import Body, Connection
from bench.processes import APIKEY

PART_SIZE = 8 * 1024 * 1024  # the S3 driver's part size, and near the SDKs' defaults
PARTS_IN_FLIGHT = 4  # as many as a POP sends to the bucket at once
COMPLETE_POLL = 0.05  # seconds between status polls while waiting for Complete
_BLOCK = os.urandom(1024 * 1024)
_PART = _BLOCK * (PART_SIZE // len(_BLOCK))
_PART_MD5 = base64.b64encode(hashlib.md5(_PART, usedforsecurity=False).digest()).decode()

T = TypeVar("T")


def body(size: int) -> Body:
    return Body(_BLOCK, size)


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Timed:
    seconds: float
    client_cpu: float
    result: Any = None


async def timed(work: Callable[[], Awaitable[T]]) -> Timed:
    cpu, start = client_cpu_seconds(), time.perf_counter()
    result = await work()
    return Timed(time.perf_counter() - start, client_cpu_seconds() - cpu, result)


async def rest_store(url: str, size: int, name: str = "bench.bin") -> dict[str, Any]:
    """One REST store of `size` bytes; the POP's reply (the file, Complete)."""
    connection = Connection.to(url)
    try:
        response = await connection.request(
            "POST", f"/api/store/S3?key={APIKEY}&filename={name}", body(size),
            {"Content-Type": "application/octet-stream"})
        reply: dict[str, Any] = response.check().json()
        return reply
    finally:
        await connection.close()


async def ceiling_post(url: str, size: int, *, fsync: bool) -> None:
    connection = Connection.to(url)
    try:
        (await connection.request("POST", f"/store?fsync={int(fsync)}", body(size))).check()
    finally:
        await connection.close()


def part_sizes(size: int) -> list[int]:
    whole, rest = divmod(size, PART_SIZE)
    return [PART_SIZE] * whole + ([rest] if rest else [])


def part_bytes(size: int) -> bytes:
    """A part's body as bytes (what botocore takes): the prepared part, or its start."""
    return _PART if size == PART_SIZE else _PART[:size]


async def _in_parallel(count: int, work: Callable[[Connection, int], Awaitable[None]],
                       url: str, jobs: int) -> None:
    """Run work(connection, index) for index in range(jobs) on `count` connections."""
    queue = list(range(jobs))

    async def worker() -> None:
        connection = Connection.to(url)
        try:
            while queue:
                await work(connection, queue.pop(0))
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(min(count, jobs))))


async def multipart_upload(url: str, size: int) -> dict[str, Any]:
    """Start, regular parts (PARTS_IN_FLIGHT at a time), complete: the complete's reply
    (In Transit: every byte durable at the POP, not yet all in the bucket)."""
    control = Connection.to(url)
    try:
        started = await control.json("POST", "/multipart/start", {
            "apikey": APIKEY, "filename": "bench.bin", "mimetype": "application/octet-stream",
            "size": size, "store": {"location": "s3"}})
        ids = {"apikey": APIKEY, "upload_id": started["upload_id"]}
        sizes = part_sizes(size)
        etags: dict[int, str] = {}

        async def send(connection: Connection, index: int) -> None:
            number, part_size = index + 1, sizes[index]
            md5 = _PART_MD5 if part_size == PART_SIZE else None
            fields: dict[str, Any] = {**ids, "part": number, "size": part_size}
            if md5:
                fields["md5"] = md5
            target = await connection.json("POST", "/multipart/upload", fields)
            path = target["url"].split("/", 3)[3]
            put = await connection.request("PUT", "/" + path, Body(_PART, part_size),
                                            target["headers"])
            etags[number] = put.check().headers["etag"]

        await _in_parallel(PARTS_IN_FLIGHT, send, url, len(sizes))
        reply: dict[str, Any] = await control.json("POST", "/multipart/complete", {
            **ids, "size": size,
            "parts": [{"part_number": n, "etag": etags[n]} for n in sorted(etags)]})
        reply["upload_id"] = started["upload_id"]
        return reply
    finally:
        await control.close()


async def wait_complete(coordinator_url: str, handle: str, limit: float) -> None:
    """Until the file is Complete (every part in the bucket, completed there). Asked of
    the coordinator's metadata, one SQLite read: asking the POP for the part status
    would cost the POP a look through its spool on every poll, while it works."""
    connection = Connection.to(coordinator_url)
    deadline = time.monotonic() + limit
    try:
        while True:
            response = await connection.request(
                "GET", f"/api/file/{handle}/metadata?upload_status=true")
            status = response.check().json()["upload_status"]
            if status == "Complete":
                return
            if status == "Failed" or time.monotonic() > deadline:
                raise RuntimeError(f"file {handle} is {status}")
            await asyncio.sleep(COMPLETE_POLL)
    finally:
        await connection.close()


async def ceiling_parts(url: str, size: int, *, fsync: bool) -> None:
    """The multipart upload's bytes in the same PUTs (size and concurrency) to the
    ceiling: what receiving them durably costs without any of cin's bookkeeping."""
    sizes = part_sizes(size)

    async def send(connection: Connection, index: int) -> None:
        (await connection.request("PUT", f"/part?fsync={int(fsync)}",
                                  Body(_PART, sizes[index]))).check()

    await _in_parallel(PARTS_IN_FLIGHT, send, url, len(sizes))
