"""A body that stops arriving is given up after `timeouts.body_idle`, whatever its kind and
route: the client (still connected) hears 408 body_timeout, and what the request had
begun is undone as for a client that hangs up. Over real loopback HTTP, with raw sockets
that send part of a body and then nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import APIKEY, APP_SECRET, Network, start_network
from yarl import URL

from edge.journal.sqlite_journal import JOURNAL_FILE
from edge.keys import JOURNAL

BODY_IDLE = 0.5
# The longest a stalled request may take to be answered: the idle time and a margin for
# a busy machine, well under the 60 s default it would otherwise wait.
ANSWERED_WITHIN = BODY_IDLE + 5
BASIC_AUTH = "Authorization: Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path, timeouts={"body_idle": BODY_IDLE}) as started:
        yield started


async def stalled(port: int, head: str, sent: bytes) -> tuple[int, dict[str, Any], float]:
    """Send a request's head and the first bytes of its body, then nothing: the status,
    JSON answer and seconds it took to come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    try:
        writer.write(head.encode() + b"\r\n" + sent)
        await writer.drain()
        async with asyncio.timeout(ANSWERED_WITHIN):
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            answer = json.loads(await reader.readexactly(length))
        return status, answer, time.monotonic() - began
    finally:
        writer.close()


def head(method: str, target: str, *headers: str) -> str:
    return "".join(f"{line}\r\n" for line in (f"{method} {target} HTTP/1.1", "Host: cin",
                                               *headers))


def assert_timed_out(status: int, answer: dict[str, Any], took: float) -> None:
    assert (status, answer["code"]) == (408, "body_timeout"), answer
    assert took >= BODY_IDLE * 0.9


def spooled(network: Network) -> list[Path]:
    """The files in the POP's spool, but for its journal's database (which is there for
    good: edge/journal/sqlite_journal.py)."""
    return [path for path in network.config.pops[0].spool_dir.rglob("*")
            if path.is_file() and not path.name.startswith(JOURNAL_FILE)]


async def journal_forgot_the_store(network: Network) -> None:
    """A store given up is forgotten by the POP's journal: no begun store is left in it
    (the coordinator never hears of it)."""
    assert await network.pop.app[JOURNAL].interrupted_stores() == []


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def test_a_form_that_stalls_inside_its_file_leaves_no_spool(network: Network) -> None:
    port = network.config.pops[0].listen.port
    form_start = (b'--b\r\nContent-Disposition: form-data; name="fileUpload"; '
                  b'filename="f.bin"\r\n\r\n') + os.urandom(300_000)
    status, answer, took = await stalled(
        port, head("POST", f"/api/store/S3?key={APIKEY}",
                   "Content-Type: multipart/form-data; boundary=b",
                   "Content-Length: 1000000"), form_start)
    assert_timed_out(status, answer, took)
    assert spooled(network) == []
    await journal_forgot_the_store(network)


async def test_a_chunked_body_that_stalls_leaves_no_spool(network: Network) -> None:
    port = network.config.pops[0].listen.port
    chunk = os.urandom(300_000)
    status, answer, took = await stalled(
        port, head("POST", f"/api/store/S3?key={APIKEY}", "Transfer-Encoding: chunked"),
        b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert_timed_out(status, answer, took)
    assert spooled(network) == []
    await journal_forgot_the_store(network)


async def test_a_stalled_chunk_acknowledges_nothing_and_its_retry_is_taken(
        network: Network) -> None:
    payload = os.urandom(200_000)
    start = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "data.bin", "size": len(payload),
        "store": {"location": "s3"}})
    ids = {"apikey": APIKEY, "upload_id": (await start.json())["upload_id"],
           "store": {"location": "s3"}}
    target_reply = await network.pop.post("/multipart/upload", json={
        **ids, "part": 1, "size": len(payload), "md5": md5_b64(payload)})
    target = await target_reply.json()
    url = target["url"]
    status, answer, took = await stalled(
        network.config.pops[0].listen.port,
        head("PUT", URL(url).raw_path_qs,
             f"Content-MD5: {md5_b64(payload)}", f"Content-Length: {len(payload)}"),
        payload[:100_000])
    assert_timed_out(status, answer, took)
    journal = network.config.pops[0].spool_dir / "uploads" / ids["upload_id"] / "part-1.journal"
    assert not journal.exists() or journal.read_bytes() == b""

    # The same chunk again, on a new connection: taken at once, nothing of the stalled
    # one in its way.
    async with aiohttp.ClientSession() as session, session.put(
            url, data=payload, headers=target["headers"],
            timeout=aiohttp.ClientTimeout(total=ANSWERED_WITHIN)) as retried:
        assert retried.status == 200, await retried.text()
        assert retried.headers["ETag"] == f'"{hashlib.md5(payload).hexdigest()}"'


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_an_overwrite_that_stalls_keeps_the_file_as_it_was(network: Network,
                                                                  via: str) -> None:
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY},
                                    data=b"the original bytes")
    handle = (await stored.json())["handle"]
    listen = network.config.pops[0].listen if via == "pop" else network.config.coordinator.listen
    status, answer, took = await stalled(
        listen.port, head("POST", f"/api/file/{handle}?key={APIKEY}", BASIC_AUTH,
                          "Content-Type: application/octet-stream",
                          "Content-Length: 500000"), os.urandom(100_000))
    # At the coordinator the stall is its own client's, not the POP's it relays to.
    assert_timed_out(status, answer, took)
    download = await network.pop.get(f"/api/file/{handle}")
    assert await download.read() == b"the original bytes"
    assert spooled(network) == []
