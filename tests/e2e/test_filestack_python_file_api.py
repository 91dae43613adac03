"""The real filestack-python 4.0 SDK's File API calls against cin, with the SDK unchanged.

The SDK is synchronous (requests), so its calls run in a thread while the in-process
network serves on the event loop. It is pointed at cin as PROTOCOL.md §3 says: the CDN
URL is a read-only property of `filestack.CFG` (patched on the class), the API URL a
plain attribute of `filestack.config`. monkeypatch puts both back after each test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import filestack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from filestack.exceptions import FilestackHTTPError
from support import SECURE_APIKEY, SECURE_SECRET, Network, start_network

from common.protocol.security import encode_policy, sign_policy

pytestmark = pytest.mark.e2e

HOUR = 3600
ALL_WRITES = ["read", "stat", "write", "writeUrl", "remove"]


@pytest.fixture(params=["coordinator", "pop"])
async def sdk_network(request: pytest.FixtureRequest, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Network]:
    """A network whose coordinator (or POP) is the SDK's CDN and API."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with start_network(tmp_path) as network:
        base = (network.config.coordinator.public_url if request.param == "coordinator"
                else network.config.pops[0].public_url)
        monkeypatch.setattr(filestack.CFG, "CDN_URL", property(lambda self: base))
        monkeypatch.setattr(filestack.config, "API_URL", f"{base}/api")
        yield network


async def rest_store(network: Network, payload: bytes, filename: str) -> str:
    text = encode_policy({"expiry": int(time.time()) + HOUR, "call": ["store"]})
    response = await network.pop.post(
        "/api/store/S3", data=payload,
        params={"key": SECURE_APIKEY, "filename": filename, "policy": text,
                "signature": sign_policy(SECURE_SECRET, text)})
    body = await response.json()
    assert response.status == 200, body
    return str(body["handle"])


def security(handle: str, calls: list[str]) -> Any:
    return filestack.Security({"expiry": int(time.time()) + HOUR, "call": calls,
                               "handle": handle}, SECURE_SECRET)


async def test_sdk_metadata_download_and_content(sdk_network: Network,
                                                 tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    handle = await rest_store(sdk_network, payload, "report.bin")
    link = filestack.Filelink(handle, apikey=SECURE_APIKEY,
                              security=security(handle, ["read", "stat"]))

    meta = await asyncio.to_thread(link.metadata)
    assert meta["size"] == len(payload)
    assert meta["filename"] == "report.bin"
    assert meta["upload_status"] == "Complete"
    assert meta["sha256"] == hashlib.sha256(payload).hexdigest()
    assert "exif" not in meta
    chosen = await asyncio.to_thread(link.metadata, ["size", "filename", "sha256", "md5"])
    assert chosen == {"size": len(payload), "filename": "report.bin",
                      "sha256": hashlib.sha256(payload).hexdigest(),
                      "md5": hashlib.md5(payload).hexdigest()}

    target = tmp_path / "downloaded.bin"
    size = await asyncio.to_thread(link.download, str(target))
    assert size == len(payload)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(
        payload).hexdigest()
    assert await asyncio.to_thread(link.get_content) == payload

    # The SDK raises on a refusal: a link without security on a secure app...
    bare = filestack.Filelink(handle, apikey=SECURE_APIKEY)
    with pytest.raises(FilestackHTTPError, match="security_required"):
        await asyncio.to_thread(bare.get_content)
    # ...and a policy for `read` only cannot read metadata.
    read_only = filestack.Filelink(handle, security=security(handle, ["read"]))
    with pytest.raises(FilestackHTTPError, match="policy_denies"):
        await asyncio.to_thread(read_only.metadata)
    assert await asyncio.to_thread(read_only.get_content) == payload


async def test_sdk_overwrite_and_delete(sdk_network: Network, tmp_path: Path) -> None:
    handle = await rest_store(sdk_network, b"first version", "doc.txt")
    link = filestack.Filelink(handle, apikey=SECURE_APIKEY,
                              security=security(handle, ALL_WRITES))

    second = os.urandom(120_000)
    source = tmp_path / "second.bin"
    source.write_bytes(second)
    assert await asyncio.to_thread(lambda: link.overwrite(filepath=str(source))) is link
    assert await asyncio.to_thread(link.get_content) == second
    meta = await asyncio.to_thread(link.metadata, ["size", "sha256", "filename"])
    assert meta == {"size": len(second), "sha256": hashlib.sha256(second).hexdigest(),
                    "filename": "doc.txt"}

    third = b"third version, fetched from a URL\n" * 100

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=third, content_type="text/plain")

    origin = web.Application()
    origin.router.add_get("/third.txt", serve)
    async with TestServer(origin, host="127.0.0.1") as server:
        url = str(server.make_url("/third.txt"))
        # `write` alone does not let cin fetch a URL: the SDK needs `writeUrl` for this.
        write_only = filestack.Filelink(handle, security=security(handle, ["write"]))
        with pytest.raises(FilestackHTTPError, match="writeUrl"):
            await asyncio.to_thread(lambda: write_only.overwrite(url=url))
        assert await asyncio.to_thread(link.get_content) == second
        await asyncio.to_thread(lambda: link.overwrite(url=url))
    assert await asyncio.to_thread(link.get_content) == third
    meta = await asyncio.to_thread(link.metadata, ["size", "sha256"])
    assert meta == {"size": len(third), "sha256": hashlib.sha256(third).hexdigest()}

    # A policy without `remove` cannot delete.
    no_remove = filestack.Filelink(handle, apikey=SECURE_APIKEY,
                                   security=security(handle, ["read", "stat", "write"]))
    with pytest.raises(FilestackHTTPError, match="policy_denies"):
        await asyncio.to_thread(no_remove.delete)
    assert await asyncio.to_thread(link.get_content) == third

    await asyncio.to_thread(link.delete)
    with pytest.raises(FilestackHTTPError, match="file_not_found"):
        await asyncio.to_thread(link.metadata)
    with pytest.raises(FilestackHTTPError, match="file_not_found"):
        await asyncio.to_thread(link.get_content)
    with pytest.raises(FilestackHTTPError, match="file_not_found"):
        await asyncio.to_thread(link.delete)


async def test_sdk_signed_url_is_served(sdk_network: Network) -> None:
    payload = b"signed url bytes"
    handle = await rest_store(sdk_network, payload, "s.txt")
    sec = security(handle, ["read"])
    link = filestack.Filelink(handle)
    url = link.signed_url(security=sec)
    assert "/security=p:" in url
    response = await sdk_network.coordinator.session.get(url)
    assert response.status == 200
    assert await response.read() == payload
