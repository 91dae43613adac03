"""CORS over real loopback HTTP, at a POP and at the coordinator: preflights, and every
kind of answer a browser page must be able to read (JSON, errors, part PUTs, streamed
downloads, redirects)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import upload_client
from aiohttp import web
from aiohttp.test_utils import TestClient
from support import APIKEY, Network, shipped, start_network

from common.web.drain import DRAIN
from edge.keys import STORAGE

ORIGIN = "https://app.example.com"
OTHER = "https://elsewhere.example.net"
EXPOSED = {"ETag", "Location", "Upload-Offset", "Upload-Length", "Tus-Resumable",
           "Upload-Expires", "Content-Range", "Content-Length", "Content-Disposition",
           "Cin-Throughput", "Cin-Next-Chunk-Size"}
CLIENT_HEADERS = {"Content-Type", "Content-MD5", "Authorization", "Tus-Resumable",
                  "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Concat",
                  "Upload-Defer-Length", "Upload-Checksum", "X-HTTP-Method-Override",
                  "X-Requested-With", "Filestack-Source", "Filestack-Trace-Id",
                  "Filestack-Trace-Span"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def browser_network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path, cors={"origins": [ORIGIN, "http://localhost:3000"],
                                             "max_age": 300}) as started:
        yield started


def names(value: str) -> set[str]:
    return {name.strip() for name in value.split(",")}


def assert_readable(response: aiohttp.ClientResponse, origin: str = ORIGIN) -> None:
    """What a browser needs to hand the answer, its JSON and its headers to the page."""
    headers = response.headers
    assert headers.get("Access-Control-Allow-Origin") == origin, dict(headers)
    assert "Origin" in names(headers["Vary"])
    assert names(headers["Access-Control-Expose-Headers"]) >= EXPOSED
    assert "Access-Control-Allow-Credentials" not in headers


def preflight_headers(method: str, origin: str = ORIGIN,
                      headers: str = "content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers}


async def check_preflight(client: Client, path: str, method: str, headers: str) -> None:
    response = await client.options(path, headers=preflight_headers(method, headers=headers))
    assert response.status == 204, await response.text()
    assert await response.read() == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert names(response.headers["Access-Control-Allow-Methods"]) == METHODS
    assert names(response.headers["Access-Control-Allow-Headers"]) >= CLIENT_HEADERS
    assert response.headers["Access-Control-Max-Age"] == "300"
    assert "Origin" in names(response.headers["Vary"])
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_preflights_of_upload_api_calls_are_answered(browser_network: Network) -> None:
    pop, coordinator = browser_network.pop, browser_network.coordinator
    await check_preflight(pop, "/multipart/part?upload_id=x&part=1", "PUT", "content-md5")
    for path in ("/multipart/start", "/multipart/upload", "/multipart/commit",
                 "/multipart/complete"):
        await check_preflight(pop, path, "POST", "content-type,filestack-trace-id")
    await check_preflight(coordinator, "/multipart/start", "POST", "content-type")
    await check_preflight(coordinator, "/api/file/AAAAAAAAAAAAAAAAAAAA", "DELETE",
                          "authorization")


async def test_a_preflight_from_another_origin_is_refused(browser_network: Network) -> None:
    for client in (browser_network.pop, browser_network.coordinator):
        response = await client.options("/multipart/start",
                                        headers=preflight_headers("POST", origin=OTHER))
        body = await response.json()
        # Not the router's 405: the route's handler is never reached.
        assert (response.status, body["code"]) == (403, "origin_not_allowed")
        assert OTHER in body["error"]
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Origin" in names(response.headers["Vary"])


async def test_an_options_request_that_is_no_preflight_goes_to_the_router(
        browser_network: Network) -> None:
    # tus discovers a server's capabilities with a plain OPTIONS: it is the routes' to
    # answer (here, none has an OPTIONS handler), readable by the page like any answer.
    response = await browser_network.pop.options("/multipart/start",
                                                 headers={"Origin": ORIGIN})
    assert (response.status, (await response.json())["code"]) == (405, "method_not_allowed")
    assert_readable(response)
    without_origin = await browser_network.pop.options(
        "/multipart/start", headers={"Access-Control-Request-Method": "POST"})
    assert without_origin.status == 405
    assert "Access-Control-Allow-Origin" not in without_origin.headers


async def test_a_part_put_answers_with_a_readable_etag(browser_network: Network) -> None:
    pop = browser_network.pop
    chunk = os.urandom(64 * 1024)
    origin = {"Origin": ORIGIN}
    start = await pop.post("/multipart/start", headers=origin, json={
        "apikey": APIKEY, "filename": "page.bin", "size": len(chunk),
        "store": {"location": "s3"}})
    assert start.status == 200, await start.text()
    assert_readable(start)
    ids = {"apikey": APIKEY, "upload_id": (await start.json())["upload_id"]}
    target = await pop.post("/multipart/upload", headers=origin,
                            json={**ids, "part": 1, "size": len(chunk)})
    assert_readable(target)
    url = (await target.json())["url"]
    async with aiohttp.ClientSession() as session, session.put(
            url, data=chunk, headers=origin) as put:
        assert put.status == 200, await put.text()
        assert put.headers["ETag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
        assert_readable(put)


async def test_error_answers_are_readable(browser_network: Network) -> None:
    pop, coordinator = browser_network.pop, browser_network.coordinator
    origin = {"Origin": ORIGIN}
    cases: list[tuple[Client, str, str, dict[str, Any], int, str]] = [
        (pop, "POST", "/multipart/start", {"json": {
            "apikey": "NOSUCHAPIKEY0000", "filename": "a", "size": 1,
            "store": {"location": "s3"}}}, 403, "unknown_apikey"),
        (coordinator, "POST", "/multipart/start", {"data": b"{not json"}, 400,
         "bad_parameter"),
        (pop, "GET", "/api/file/AAAAAAAAAAAAAAAAAAAA", {}, 404, "file_not_found"),
        (coordinator, "GET", "/no/such/route/here", {}, 404, "not_found"),
        (pop, "PATCH", "/multipart/start", {}, 405, "method_not_allowed"),
        (pop, "PUT", "/multipart/part?upload_id=x", {"data": b"x"}, 403, "bad_signature"),
    ]
    for client, method, path, kwargs, status, code in cases:
        response = await client.request(method, path, headers=origin, **kwargs)
        body = await response.json()
        assert (response.status, body["code"]) == (status, code), (path, body)
        assert_readable(response)
    # A draining POP's 503 is made before any route is reached; a page must still read it
    # to know it should go to another POP.
    drain = pop.app[DRAIN]
    drain.draining = True
    try:
        response = await pop.post("/multipart/start", headers=origin, json={})
        assert (response.status, (await response.json())["code"]) == (503, "shutting_down")
        assert_readable(response)
    finally:
        drain.draining = False


async def store(network: Network, payload: bytes) -> str:
    response = await network.pop.post("/api/store/S3", params={
        "key": APIKEY, "filename": "page.txt"}, data=payload,
        headers={"Content-Type": "text/plain"})
    assert response.status == 200, await response.text()
    return str((await response.json())["handle"])


async def test_a_streamed_download_is_readable(browser_network: Network) -> None:
    payload = os.urandom(300 * 1024)
    handle = await store(browser_network, payload)
    origin = {"Origin": ORIGIN}
    for client in (browser_network.coordinator, browser_network.pop):
        response = await client.get(f"/api/file/{handle}", headers=origin)
        assert response.status == 200
        assert await response.read() == payload
        assert_readable(response)
        ranged = await client.get(f"/{handle}", headers={**origin, "Range": "bytes=10-19"})
        assert (ranged.status, await ranged.read()) == (206, payload[10:20])
        assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
        assert_readable(ranged)
        head = await client.head(f"/{handle}", headers=origin)
        assert head.status == 200
        assert_readable(head)
        unchanged = await client.get(f"/{handle}", headers={
            **origin, "If-None-Match": response.headers["ETag"]})
        assert unchanged.status == 304
        assert_readable(unchanged)


async def test_an_in_transit_file_is_readable_from_the_spool_and_by_redirect(
        browser_network: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing reaches the bucket during this test (neither a part nor a small file's one
    # put): the file stays In Transit.
    driver = browser_network.pop.app[STORAGE]["bucket"]

    async def held(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(driver, "upload_part", held)
    monkeypatch.setattr(driver, "put", held)
    payload = os.urandom(100 * 1024)
    reply = await upload_client.upload(browser_network.config.pops[0].public_url, payload)
    assert reply["status"] == "InTransit"
    await shipped(browser_network)  # the coordinator has heard it is In Transit
    origin = {"Origin": ORIGIN}
    # The redirect itself must be readable, or a browser will not follow it.
    redirect = await browser_network.coordinator.get(
        f"/api/file/{reply['handle']}", headers=origin, allow_redirects=False)
    assert redirect.status == 302
    assert redirect.headers["Location"].startswith(browser_network.config.pops[0].public_url)
    assert_readable(redirect)
    spooled = await browser_network.pop.get(f"/api/file/{reply['handle']}", headers=origin)
    assert (spooled.status, await spooled.read()) == (200, payload)
    assert_readable(spooled)
    metadata = await browser_network.coordinator.get(f"/api/file/{reply['handle']}/metadata")
    assert (await metadata.json())["upload_status"] == "In Transit"


async def test_another_origin_is_served_but_not_made_readable(
        browser_network: Network) -> None:
    # CORS is the browser's to enforce: a request that needs no preflight is answered as
    # always, only without the headers that would let the page read it.
    for origin in (OTHER, "null", "http://localhost:3001"):
        response = await browser_network.coordinator.get("/health", headers={"Origin": origin})
        assert response.status == 200
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Expose-Headers" not in response.headers
        assert "Origin" in names(response.headers["Vary"])
    second = await browser_network.coordinator.get(
        "/health", headers={"Origin": "http://localhost:3000"})
    assert_readable(second, origin="http://localhost:3000")


async def test_star_allows_every_origin(tmp_path: Path) -> None:
    async with start_network(tmp_path, cors={"origins": "*"}) as network:
        for client in (network.pop, network.coordinator):
            response = await client.options("/multipart/start",
                                            headers=preflight_headers("POST", origin=OTHER))
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            answer = await client.get("/health", headers={"Origin": OTHER})
            assert_readable(answer, origin="*")


async def test_without_a_cors_section_nothing_is_added(network: Network) -> None:
    for client in (network.pop, network.coordinator):
        preflight = await client.options("/multipart/start",
                                         headers=preflight_headers("POST"))
        assert preflight.status == 405  # the router's answer: no preflight handling at all
        answer = await client.get("/health", headers={"Origin": ORIGIN})
        for response in (preflight, answer):
            assert not [name for name in response.headers
                        if name.lower().startswith("access-control-")], dict(response.headers)
            assert "Vary" not in response.headers
