"""The REST store and File API through a POP and the coordinator, over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, Network, start_network

from common.storage import Access, open_storage


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + os.urandom(2000)


async def store(network: Network, data: Any, **params: str) -> dict[str, Any]:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY, **params},
                                      data=data)
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


def form(payload: bytes, filename: str = "hello.txt",
         content_type: str = "text/plain") -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("fileUpload", payload, filename=filename, content_type=content_type)
    return data


async def test_multipart_store_then_download_and_metadata(network: Network) -> None:
    payload = os.urandom(300_000)
    reply = await store(network, form(payload, "photo.bin", "application/x-demo"))
    handle = reply["handle"]
    assert reply["url"] == f"{network.config.coordinator.public_url}/api/file/{handle}"
    assert reply["size"] == len(payload)
    assert reply["type"] == "application/x-demo"
    assert reply["filename"] == "photo.bin"
    assert reply["key"].endswith("_photo.bin")
    assert reply["container"] == network.config.storage["bucket"].container

    for client in (network.pop, network.coordinator):
        for route in (f"/api/file/{handle}", f"/{handle}"):
            response = await client.get(route)
            assert response.status == 200
            assert await response.read() == payload
            assert response.headers["Content-Type"] == "application/x-demo"
            assert response.headers["Content-Length"] == str(len(payload))
            assert response.headers["ETag"].startswith('"')

    for client in (network.pop, network.coordinator):
        for route in (f"/api/file/{handle}/metadata", f"/{handle}/metadata"):
            response = await client.get(route)
            meta = await response.json()
            assert response.status == 200
            assert meta["size"] == len(payload)
            assert meta["mimetype"] == "application/x-demo"
            assert meta["filename"] == "photo.bin"
            assert meta["upload_status"] == "Complete"
            assert meta["writeable"] is True and meta["cloud"] is False
            assert meta["source_url"] is None
            assert meta["location"] == "S3"
            assert meta["path"] == meta["key"] == reply["key"]
            assert meta["container"] == reply["container"]
            assert meta["uploaded"] > 1e12  # milliseconds
            for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
                assert meta[name] == hashlib.new(name, payload).hexdigest()


async def test_metadata_fields_are_switchable(network: Network) -> None:
    handle = (await store(network, form(b"hello world")))["handle"]
    response = await network.pop.get(f"/api/file/{handle}/metadata",
                                     params={"size": "true", "sha256": "true", "md5": "false"})
    assert await response.json() == {"size": 11,
                                      "sha256": hashlib.sha256(b"hello world").hexdigest()}


async def test_metadata_key_is_the_apikey_or_the_key_field(network: Network) -> None:
    """`key` is both the apikey and the storage key's flag: its value says which."""
    reply = await store(network, form(b"hello world"))
    handle = reply["handle"]
    for client in (network.pop, network.coordinator):
        response = await client.get(f"/api/file/{handle}/metadata",
                                    params={"key": APIKEY, "size": "true"})
        assert (response.status, await response.json()) == (200, {"size": 11})
        response = await client.get(f"/{handle}/metadata", params={"key": "true"})
        assert (response.status, await response.json()) == (200, {"key": reply["key"]})
        # Another app's apikey still finds nothing.
        response = await client.get(f"/{handle}/metadata", params={"key": "OTHERAPIKEY0"})
        assert response.status == 404


async def test_hashes_are_computed_once_per_file(network: Network) -> None:
    reply = await store(network, form(b"hash me once"))
    handle = reply["handle"]
    first = await (await network.pop.get(f"/{handle}/metadata?sha1=true")).json()
    # With the object gone from the bucket, a second computation would fail: the answer
    # must come from what the coordinator kept.
    async with open_storage(network.config.storage["bucket"]) as storage:
        await storage.delete(reply["container"], reply["key"])
    second = await (await network.pop.get(f"/{handle}/metadata?sha1=true")).json()
    assert first == second == {"sha1": hashlib.sha1(b"hash me once").hexdigest()}


async def test_raw_body_keeps_its_content_type(network: Network) -> None:
    response = await network.pop.post(
        "/api/store/s3", params={"key": APIKEY}, data=b"<p>hi</p>",
        headers={"Content-Type": "text/html"})
    assert (await response.json())["type"] == "text/html"


async def test_type_is_sniffed_from_content_then_name_then_text_plain(network: Network) -> None:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=PNG,
                                      headers={"Content-Type": "application/octet-stream"})
    assert (await response.json())["type"] == "image/png"
    # No magic number in these bytes: only the name can say what they are.
    assert (await store(network, b"just words", filename="doc.pdf"))["type"] == "application/pdf"
    assert (await store(network, b"plain words"))["type"] == "text/plain"
    assert (await store(network, b"x", mimetype="image/gif"))["type"] == "image/gif"


async def test_path_folder_and_key_semantics(network: Network) -> None:
    folder = await store(network, form(b"a", "a.txt"), path="/myfiles/")
    assert folder["key"].startswith("myfiles/") and folder["key"].endswith("_a.txt")
    exact = await store(network, form(b"b", "b.txt"), path="/myfiles/1234.png")
    assert exact["key"] == "myfiles/1234.png"
    assert (await network.pop.get(f"/{exact['handle']}")).status == 200


async def test_container_and_access(network: Network) -> None:
    container = f"{network.config.storage['bucket'].container}-other"
    other = await store(network, form(b"in other"), container=container,
                        access="public")
    assert other["container"] == f"{network.config.storage['bucket'].container}-other"
    assert await (await network.pop.get(f"/{other['handle']}")).read() == b"in other"
    private = await store(network, form(b"default"))
    async with open_storage(network.config.storage["bucket"]) as storage:
        assert (await storage.head(other["container"], other["key"])).access is Access.PUBLIC
        assert (await storage.head(private["container"], private["key"])).access is Access.PRIVATE


async def test_base64decode(network: Network) -> None:
    payload = os.urandom(10_000)
    reply = await store(network, base64.b64encode(payload), base64decode="true",
                        filename="x.bin")
    assert reply["size"] == len(payload)
    assert await (await network.pop.get(f"/{reply['handle']}")).read() == payload
    multipart = await store(network, form(base64.b64encode(payload)), base64decode="true")
    assert multipart["size"] == len(payload)


async def test_store_from_url(network: Network) -> None:
    payload = os.urandom(50_000)

    async def source(request: web.Request) -> web.Response:
        return web.Response(body=payload, content_type="image/x-demo")

    origin = web.Application()
    origin.router.add_get("/pictures/cat.demo", source)
    async with TestServer(origin, host="127.0.0.1") as server:
        url = str(server.make_url("/pictures/cat.demo"))
        reply = await store(network, {"url": url})
        assert reply["filename"] == "cat.demo"
        assert reply["type"] == "image/x-demo"
        assert reply["size"] == len(payload)
        fields = aiohttp.FormData()
        fields.add_field("url", url)
        again = await store(network, fields, filename="renamed.demo", mimetype="image/png")
        assert again["filename"] == "renamed.demo" and again["type"] == "image/png"
    meta = await (await network.pop.get(f"/{reply['handle']}/metadata")).json()
    assert meta["source_url"] == url
    assert await (await network.pop.get(f"/{reply['handle']}")).read() == payload


async def test_ranges_attachment_and_revalidation(network: Network) -> None:
    payload = bytes(range(256)) * 40
    handle = (await store(network, form(payload, "bytes.bin")))["handle"]
    client: TestClient = network.pop  # type: ignore[type-arg]

    response = await client.get(f"/{handle}", headers={"Range": "bytes=10-19"})
    assert response.status == 206
    assert await response.read() == payload[10:20]
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"

    response = await client.get(f"/{handle}", headers={"Range": "bytes=-5"})
    assert await response.read() == payload[-5:]

    response = await client.get(f"/{handle}", headers={"Range": f"bytes={len(payload)}-"})
    assert response.status == 416
    assert (await response.json())["code"] == "range_not_satisfiable"
    assert response.headers["Content-Range"] == f"bytes */{len(payload)}"

    response = await client.get(f"/api/file/{handle}", params={"dl": "true"})
    assert response.headers["Content-Disposition"].startswith('attachment; filename="bytes.bin"')
    etag = response.headers["ETag"]
    response = await client.get(f"/{handle}", headers={"If-None-Match": etag})
    assert response.status == 304

    response = await client.head(f"/{handle}")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(payload))


async def test_size_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    async with start_network(tmp_path, max_upload_size="1MiB") as network:

        async def chunked_body() -> AsyncIterator[bytes]:
            for _ in range(8):  # 2 MiB with no Content-Length: only counting can stop it
                yield b"\0" * (256 * 1024)

        for data in (chunked_body(), form(b"\0" * (2 * 1024 * 1024))):
            response = await network.pop.post("/api/store/S3", params={"key": APIKEY},
                                              data=data)
            assert response.status == 413
            assert (await response.json())["code"] == "too_large"
        assert (await store(network, form(b"\0" * (1024 * 1024))))["size"] == 1024 * 1024
        staging = network.config.pops[0].spool_dir / "incoming"
        assert list(staging.iterdir()) == []  # refused bodies leave nothing behind
