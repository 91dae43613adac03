"""What an operator sees: a request id on every answer, one access log line per request,
every 5xx at ERROR with its cause, and a client that hangs up at INFO, without a
traceback and without an ERROR."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from support import APIKEY, Network, shipped
from yarl import URL

import edge.coordinator_client
from common.config import PopConfig
from common.web.connections import ConnectionCap, GuardedSite
from edge.app import make_app as make_edge_app


@asynccontextmanager
async def served_pop(network: Network, *, access_log: bool = True) -> AsyncIterator[PopConfig]:
    """The network's other POP, served in this process as `cin edge` serves a POP (aiohttp
    test servers cancel a handler whose client hangs up; cin lets it finish)."""
    config = replace(network.config, access_log=access_log)
    pop = config.pops[1]
    runner = web.AppRunner(make_edge_app(config, pop))
    await runner.setup()
    try:
        await GuardedSite(runner, pop.listen, config, ConnectionCap(10)).start()
        yield pop
    finally:
        await runner.cleanup()


async def eventually(check: object, what: str, seconds: float = 10.0) -> None:
    assert callable(check)
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


async def hang_up_midway(port: int, head: str, sent: bytes) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + b"\r\n" + sent)
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body by now
    writer.close()
    await writer.wait_closed()


def hung_up(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.name == "cin.http" and "hung up" in record.getMessage()]


async def test_a_client_that_hangs_up_mid_store_is_an_info_line(
        network: Network, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with served_pop(network) as pop:
        await hang_up_midway(pop.listen.port,
                             f"POST /api/store/S3?key={APIKEY} HTTP/1.1\r\nHost: cin\r\n"
                             "Content-Length: 10000000\r\n", os.urandom(3 * 1024 * 1024))
        await eventually(lambda: hung_up(caplog), "the hang-up to be logged")
    [record] = hung_up(caplog)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "POST /api/store/{provider}" in record.getMessage()
    assert errors(caplog) == []


async def test_a_client_that_hangs_up_mid_chunk_is_an_info_line(
        network: Network, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    payload = os.urandom(1024 * 1024)
    md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
    async with served_pop(network) as pop, aiohttp.ClientSession(pop.public_url) as session:
        start = await session.post("/multipart/start", json={
            "apikey": APIKEY, "filename": "data.bin", "size": len(payload),
            "store": {"location": "s3"}})
        upload_id = (await start.json())["upload_id"]
        target = await session.post("/multipart/upload", json={
            "apikey": APIKEY, "upload_id": upload_id, "store": {"location": "s3"}, "part": 1,
            "size": len(payload), "md5": md5})
        url = URL((await target.json())["url"])
        await hang_up_midway(pop.listen.port,
                             f"PUT {url.raw_path_qs} HTTP/1.1\r\nHost: cin\r\n"
                             f"Content-MD5: {md5}\r\nContent-Length: {len(payload)}\r\n",
                             payload[:300_000])
        await eventually(lambda: hung_up(caplog), "the hang-up to be logged")
    [record] = hung_up(caplog)
    assert record.exc_info is None and "PUT /multipart/part" in record.getMessage()
    assert errors(caplog) == []


async def test_a_5xx_is_logged_at_error_with_its_cause(
        network: Network, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge.coordinator_client, "RETRY_DELAYS", ())
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"bytes")
    handle = (await stored.json())["handle"]
    await shipped(network)
    await network.coordinator.close()  # the POP cannot reach it any more
    # A store goes on without the coordinator; an overwrite is decided there.
    response = await network.pop.post(f"/api/file/{handle}", params={"key": APIKEY},
                                      data=b"other bytes")
    body = await response.json()
    assert (response.status, body["code"]) == (503, "coordinator_unavailable"), body
    [record] = errors(caplog)
    message = record.getMessage()
    assert record.name == "cin.http"
    assert "POST /api/file/{handle} answered 503 coordinator_unavailable" in message
    assert "from ClientConnectorError" in message  # the cause
    assert response.headers["X-Request-Id"] in message


async def test_every_answer_carries_the_request_id(network: Network) -> None:
    mine = await network.pop.get("/health", headers={"X-Request-Id": "trace-42.a:b"})
    assert mine.headers["X-Request-Id"] == "trace-42.a:b"
    for unfit in ("has spaces", "x" * 129, "semi;colon"):
        made = await network.pop.get("/health", headers={"X-Request-Id": unfit})
        assert re.fullmatch(r"[0-9a-f]{16}", made.headers["X-Request-Id"])
    missing = await network.coordinator.get("/api/file/AAAAAAAAAAAAAAAAAAAA")
    assert missing.status == 404 and re.fullmatch(r"[0-9a-f]{16}",
                                                  missing.headers["X-Request-Id"])
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"hello")
    handle = (await stored.json())["handle"]
    # A download is sent as it is read: its headers leave before any middleware sees them.
    download = await network.pop.get(f"/api/file/{handle}", headers={"X-Request-Id": "dl-1"})
    assert await download.read() == b"hello"
    assert download.headers["X-Request-Id"] == "dl-1"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "cin.access"]


async def test_the_access_log_has_a_line_per_request(
        network: Network, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cin.access")
    async with served_pop(network) as pop, aiohttp.ClientSession(pop.public_url) as session:
        stored = await session.post("/api/store/S3", params={"key": APIKEY},
                                    data=b"x" * 1000, headers={"X-Request-Id": "store-1"})
        handle = (await stored.json())["handle"]
        for path, ident in ((f"/api/file/{handle}", "get-1"), ("/no/such/route", "nope-1")):
            async with session.get(path, headers={"X-Request-Id": ident}) as response:
                await response.read()
        await eventually(lambda: len(access_lines(caplog)) >= 3, "three access lines")
    store_line, get_line, nope_line = access_lines(caplog)
    assert re.fullmatch(r"POST /api/store/\{provider\} 200 in=1000 out=\d+ \d+\.\d{3}s "
                        r"id=store-1 from=127\.0\.0\.1", store_line), store_line
    # The route, not the path: no handle in the line.
    assert re.fullmatch(r"GET /api/file/\{handle\} 200 in=0 out=1\d{3} \S+ id=get-1 \S+",
                        get_line), get_line  # the 1000 bytes and the headers
    assert handle not in get_line
    assert nope_line.startswith("GET - 404 "), nope_line


async def test_the_access_log_can_be_turned_off(
        network: Network, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cin.access")
    async with served_pop(network, access_log=False) as pop, aiohttp.ClientSession(
            pop.public_url) as session, session.get("/health") as response:
        assert response.status == 200
    assert access_lines(caplog) == []
