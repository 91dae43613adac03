"""Overwrite, delete and upload tags through a POP and the coordinator, on both drivers.

Each change is checked where it lands: the download, the metadata the coordinator keeps,
and the object in the bucket itself (a file under the local root, or S3 `head_object`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import quote

import aiobotocore.session
import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError
from support import APIKEY, APP_SECRET, Network, local_object_keys, shipped

from common.protocol.security import encode_policy, sign_policy
from common.storage.drivers import LocalSettings, S3Settings

Client = TestClient[web.Request, web.Application]
HOUR = 3600
BASIC = "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def signed(secret: str = APP_SECRET, **fields: Any) -> dict[str, str]:
    fields.setdefault("expiry", int(time.time()) + HOUR)
    text = encode_policy(fields)
    return {"policy": text, "signature": sign_policy(secret, text)}


def client_of(network: Network, via: str) -> Client:
    return network.pop if via == "pop" else network.coordinator


async def deciding(network: Network, via: str) -> Client:
    """The client a delete goes to. The POP brings its journal to the coordinator
    itself before a delete; asked straight, the coordinator first has to have heard of
    the store the POP just took (until then the file is at the POP: 503 file_at_pop)."""
    if via == "coordinator":
        await shipped(network)
    return client_of(network, via)


async def refused(response: aiohttp.ClientResponse, status: int, code: str,
                  *naming: str) -> None:
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body
    for word in naming:
        assert word in body["error"], body


async def store(network: Network, payload: bytes, **params: str) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("fileUpload", payload, filename=params.pop("filename", "original.txt"),
                   content_type="text/plain")
    response = await network.pop.post("/api/store/S3", data=form,
                                      params={"key": APIKEY, **params})
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def object_bytes(network: Network, container: str, key: str) -> bytes | None:
    """The object's bytes read straight from the bucket, None if there is no object."""
    settings = network.config.storage["bucket"].settings
    if isinstance(settings, LocalSettings):
        path = settings.root / container / "objects" / quote(key, safe="")
        if not path.exists():
            return None
        assert local_object_keys(path.parent) == [key]  # its metadata on the file
        return path.read_bytes()
    assert isinstance(settings, S3Settings)
    async with aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=settings.endpoint_url, region_name="us-east-1") as s3:
        try:
            await s3.head_object(Bucket=container, Key=key)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] in ("404", "NoSuchKey"), exc.response
            return None
        reply = await s3.get_object(Bucket=container, Key=key)
        async with reply["Body"] as body:
            data: bytes = await body.read()
        return data


async def metadata(client: Client, handle: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/api/file/{handle}/metadata", params=params)
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def content(client: Client, handle: str) -> bytes:
    response = await client.get(f"/{handle}")
    assert response.status == 200, await response.text()
    return await response.read()


# ---------------------------------------------------------------------------- overwrite


async def check_overwritten(network: Network, stored: dict[str, Any], reply: dict[str, Any],
                            new: bytes, mimetype: str) -> None:
    handle = stored["handle"]
    assert reply == {
        "url": f"{network.config.coordinator.public_url}/api/file/{handle}",
        "handle": handle,
        "mimetype": mimetype,
        "isWriteable": True,
        "size": len(new),
        "filename": "original.txt",  # the file keeps its name
    }
    assert await object_bytes(network, stored["container"], stored["key"]) == new
    for client in (network.pop, network.coordinator):
        assert await content(client, handle) == new
        meta = await metadata(client, handle)
        assert (meta["size"], meta["mimetype"]) == (len(new), mimetype)
        assert meta["key"] == meta["path"] == stored["key"]
        assert meta["filename"] == "original.txt"
        assert meta["sha256"] == hashlib.sha256(new).hexdigest()
        assert meta["md5"] == hashlib.md5(new).hexdigest()
        assert meta["upload_status"] == "Complete"


async def overwrite(client: Client, handle: str, data: Any, params: dict[str, str], *,
                    status: int = 200,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await client.post(f"/api/file/{handle}", data=data, params=params,
                                 headers=headers)
    body = await response.json()
    assert response.status == status, body
    return dict(body)


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_with_a_raw_body(network: Network, via: str) -> None:
    old, new = b"old bytes", os.urandom(70_000)
    stored = await store(network, old)
    # Hashes of the old version are computed (and kept) before the overwrite.
    assert (await metadata(network.pop, stored["handle"]))["sha256"] == hashlib.sha256(
        old).hexdigest()
    creds = signed(call=["write"], handle=stored["handle"])
    reply = await overwrite(client_of(network, via), stored["handle"], new,
                            creds, headers={"Content-Type": "application/x-new"})
    await check_overwritten(network, stored, reply, new, "application/x-new")


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_with_a_multipart_file(network: Network, via: str) -> None:
    stored = await store(network, b"old text")
    new = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + os.urandom(3000)
    form = aiohttp.FormData()
    form.add_field("fileUpload", new, filename="renamed.png",
                   content_type="application/octet-stream")
    auth = BASIC
    reply = await overwrite(client_of(network, via), stored["handle"], form, {},
                            headers={"Authorization": auth})
    await check_overwritten(network, stored, reply, new, "image/png")


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_from_a_url(network: Network, via: str) -> None:
    stored = await store(network, b"old text")
    new = os.urandom(40_000)
    hits: list[str] = []

    async def source(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=new, content_type="application/x-fetched")

    origin = web.Application()
    origin.router.add_get("/new.bin", source)
    async with TestServer(origin, host="127.0.0.1") as server:
        url = str(server.make_url("/new.bin"))
        # The policy's `url` regex binds where cin may fetch from, checked before fetching.
        elsewhere = signed(call=["writeUrl"], url=r"https://example\.com/.*")
        response = await client_of(network, via).post(f"/api/file/{stored['handle']}",
                                                       data={"url": url}, params=elsewhere)
        await refused(response, 403, "policy_denies", "url", "/new.bin")
        assert hits == []
        creds = signed(call=["writeUrl"], handle=stored["handle"],
                       url=r"http://127\.0\.0\.1:\d+/new\.bin")
        reply = await overwrite(client_of(network, via), stored["handle"], {"url": url},
                                creds)
    assert hits == ["/new.bin"]
    await check_overwritten(network, stored, reply, new, "application/x-fetched")


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_with_base64decode(network: Network, via: str) -> None:
    stored = await store(network, b"old text")
    new = os.urandom(30_001)
    creds = signed(call=["write"])
    reply = await overwrite(client_of(network, via), stored["handle"], base64.b64encode(new),
                            {"base64decode": "true", "mimetype": "application/x-decoded",
                             **creds},
                            headers={"Content-Type": "application/octet-stream"})
    await check_overwritten(network, stored, reply, new, "application/x-decoded")
    # Bad base64 is refused and leaves the file as it was.
    response = await client_of(network, via).post(
        f"/api/file/{stored['handle']}", data=b"!!!not base64!!!",
        params={"base64decode": "true", **creds})
    await refused(response, 400, "bad_base64")
    assert await content(network.pop, stored["handle"]) == new


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_and_delete_need_security(network: Network, via: str) -> None:
    stored = await store(network, b"keep me")
    handle = stored["handle"]
    client = client_of(network, via)
    # The optional app: open for store and read, never for write or remove.
    await refused(await client.post(f"/api/file/{handle}", data=b"replaced"), 403,
                  "security_required", "'write'")
    await refused(await client.delete(f"/api/file/{handle}", params={"key": APIKEY}), 403,
                  "security_required", "'remove'")

    hits: list[str] = []

    async def source(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"from the url")

    origin = web.Application()
    origin.router.add_get("/x", source)
    async with TestServer(origin, host="127.0.0.1") as server:
        url = str(server.make_url("/x"))
        # `write` lets a client send bytes; making cin fetch a URL takes `writeUrl`.
        response = await client.post(f"/api/file/{handle}", data={"url": url},
                                     params=signed(call=["write"]))
        await refused(response, 403, "policy_denies", "call", "writeUrl")
        await refused(await client.post(f"/api/file/{handle}", data={"url": url}), 403,
                      "security_required")
    assert hits == []  # nothing was fetched for a refused overwrite
    response = await client.post(f"/api/file/{handle}", data=b"bytes",
                                 params=signed(call=["writeUrl"]))
    await refused(response, 403, "policy_denies", "call", "write")

    everything_but_remove = signed(call=["read", "stat", "write", "writeUrl", "store"])
    response = await client.delete(f"/api/file/{handle}",
                                   params={"key": APIKEY, **everything_but_remove})
    await refused(response, 403, "policy_denies", "call", "remove")
    # A policy for another handle removes nothing either.
    response = await client.delete(f"/api/file/{handle}",
                                   params={"key": APIKEY,
                                           **signed(call=["remove"], handle="X" * 20)})
    await refused(response, 403, "policy_denies", "handle")
    # The secret of another app is a forged signature.
    response = await client.delete(f"/api/file/{handle}",
                                   params=signed("another-secret", call=["remove"]))
    await refused(response, 403, "bad_signature")

    assert await content(network.pop, handle) == b"keep me"
    assert await object_bytes(network, stored["container"], stored["key"]) == b"keep me"
    assert (await metadata(network.pop, handle))["size"] == 7


# ------------------------------------------------------------------------------ delete


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_delete_removes_the_record_and_the_object(network: Network, via: str) -> None:
    stored = await store(network, b"delete me")
    handle = stored["handle"]
    assert await object_bytes(network, stored["container"], stored["key"]) == b"delete me"
    client = await deciding(network, via)
    creds = signed(call=["remove"], handle=handle)
    response = await client.delete(f"/api/file/{handle}", params={"key": APIKEY, **creds})
    assert response.status == 200, await response.text()
    assert await response.json() == {"handle": handle, "deleted": True, "skip_storage": False}

    assert await object_bytes(network, stored["container"], stored["key"]) is None
    for other in (network.pop, network.coordinator):
        await refused(await other.get(f"/api/file/{handle}/metadata"), 404, "file_not_found")
        await refused(await other.get(f"/{handle}"), 404, "file_not_found")
        await refused(await other.post(f"/api/file/{handle}", data=b"x", params=signed()),
                      404, "file_not_found")
    # Deleting twice: the file is gone.
    response = await client.delete(f"/api/file/{handle}", params={"key": APIKEY, **creds})
    await refused(response, 404, "file_not_found")


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_delete_with_skip_storage_keeps_the_object(network: Network, via: str) -> None:
    stored = await store(network, b"keep my bytes")
    handle = stored["handle"]
    client = await deciding(network, via)
    auth = BASIC
    response = await client.delete(f"/api/file/{handle}", params={"skip_storage": "true"},
                                   headers={"Authorization": auth})
    assert response.status == 200, await response.text()
    assert await response.json() == {"handle": handle, "deleted": True, "skip_storage": True}
    for other in (network.pop, network.coordinator):
        await refused(await other.get(f"/api/file/{handle}/metadata"), 404, "file_not_found")
    assert await object_bytes(network, stored["container"], stored["key"]) == b"keep my bytes"
    response = await client.delete(f"/api/file/{handle}", params={"skip_storage": "true"},
                                   headers={"Authorization": auth})
    await refused(response, 404, "file_not_found")


async def test_delete_with_skip_storage_false_removes_the_object(network: Network) -> None:
    stored = await store(network, b"gone")
    await shipped(network)
    response = await network.coordinator.delete(
        f"/api/file/{stored['handle']}",
        params={"skip_storage": "false", **signed(call=["remove"])})
    assert (await response.json())["skip_storage"] is False
    assert await object_bytes(network, stored["container"], stored["key"]) is None


async def test_an_overwritten_file_is_deleted_with_its_new_bytes(network: Network) -> None:
    stored = await store(network, b"version one")
    await overwrite(network.pop, stored["handle"], b"version two", signed(call=["write"]))
    assert await object_bytes(network, stored["container"], stored["key"]) == b"version two"
    response = await network.pop.delete(f"/api/file/{stored['handle']}",
                                        params=signed(call=["remove"]))
    assert response.status == 200, await response.text()
    assert await object_bytes(network, stored["container"], stored["key"]) is None


# --------------------------------------------------------------------------- upload tags


async def test_upload_tags_are_echoed_and_kept(network: Network) -> None:
    stored = await store(network, b"tagged", upload_tags=json.dumps({"user": "42"}))
    assert stored["upload_tags"] == {"user": "42"}
    for client in (network.pop, network.coordinator):
        assert (await metadata(client, stored["handle"]))["upload_tags"] == {"user": "42"}
        assert await metadata(client, stored["handle"], upload_tags="true") == {
            "upload_tags": {"user": "42"}}
    untagged = await store(network, b"plain")
    assert untagged["upload_tags"] == {}
    # The limits themselves are allowed: 10 tags, 128-character keys, 256-character values
    # (counted in characters, not UTF-8 bytes).
    edge = {"k" * 128: "v" * 256, "ключ": "é" * 256,
            **{f"tag{i}": "w" * 256 for i in range(8)}}
    at_limits = await store(network, b"full", upload_tags=json.dumps(edge))
    assert at_limits["upload_tags"] == edge
    assert (await metadata(network.pop, at_limits["handle"]))["upload_tags"] == edge


@pytest.mark.parametrize(("tags", "naming"), [
    (json.dumps({f"t{i}": "v" for i in range(11)}), "at most 10"),
    (json.dumps({"k" * 129: "v"}), "over 128"),
    (json.dumps({"key": "v" * 257}), "over 256"),
    (json.dumps({"user": 42}), "must be a string"),
    ('{"user": "1", "user": "2"}', "appears twice"),
    (json.dumps(["user", "42"]), "JSON object"),
    (json.dumps("user=42"), "JSON object"),
    ("{user: 42}", "not valid JSON"),
    (json.dumps({"": "empty key"}), "must not be empty"),
])
async def test_upload_tag_rules(network: Network, tags: str, naming: str) -> None:
    form = aiohttp.FormData()
    form.add_field("fileUpload", b"x", filename="x.txt")
    response = await network.pop.post("/api/store/S3", data=form,
                                      params={"key": APIKEY, "upload_tags": tags})
    await refused(response, 400, "bad_tags", naming)


# ----------------------------------------------------------------- what the proxy relays


def js_policy(**fields: Any) -> dict[str, str]:
    """A filestack-js style policy (standard alphabet) whose text has `+`, `/` and `=`."""
    for shift in range(9):
        body = {"expiry": int(time.time()) + HOUR, **fields,
                "note": "x" * (shift % 3) + "?" + "y" * (shift // 3) + ">"}
        text = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
        if "+" in text and "/" in text and "=" in text:
            return {"policy": text, "signature": sign_policy(APP_SECRET, text)}
    raise AssertionError("no policy with '+', '/' and '='")


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_standard_alphabet_policy_reaches_the_pop_intact(network: Network,
                                                               via: str) -> None:
    stored = await store(network, b"old")
    handle = stored["handle"]
    client = client_of(network, via)
    creds = js_policy(call=["write", "remove"], handle=handle)
    # Percent-encoded by the client (yarl writes `+` as %2B)...
    reply = await overwrite(client, handle, b"new one", creds)
    assert reply["size"] == 7
    # ...and with a bare `+`, which the query decodes to a space.
    raw = f"/api/file/{handle}?policy={creds['policy']}&signature={creds['signature']}"
    assert "+" in raw
    response = await client.post(raw, data=b"newer bytes")
    assert response.status == 200, await response.text()
    assert await content(network.pop, handle) == b"newer bytes"
    response = await client.delete(raw)
    assert response.status == 200, await response.text()
    assert await object_bytes(network, stored["container"], stored["key"]) is None


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_overwrite_limits(network: Network, via: str) -> None:
    stored = await store(network, b"unchanged")
    handle = stored["handle"]
    client = client_of(network, via)
    small = signed(call=["write"], maxSize=10)
    response = await client.post(f"/api/file/{handle}", data=b"x" * 11, params=small)
    await refused(response, 403, "policy_denies", "maxSize")
    # Refused while the body still streams in (through the proxy, as it arrives).
    response = await client.post(f"/api/file/{handle}", data=b"x" * (4 * 1024 * 1024),
                                 params=small)
    await refused(response, 403, "policy_denies", "maxSize")
    assert (await overwrite(client, handle, b"y" * 10, small))["size"] == 10
    big = signed(call=["write"], minSize=5)
    response = await client.post(f"/api/file/{handle}", data=b"z" * 4, params=big)
    await refused(response, 403, "policy_denies", "minSize")
    response = await client.post(f"/api/file/{handle}", data=b"", params=signed(call=["write"]))
    await refused(response, 400, "empty_file")
    assert await content(network.pop, handle) == b"y" * 10
    staging = network.config.pops[0].spool_dir / "incoming"
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize("via", ["pop", "coordinator"])
async def test_gzip_encoded_overwrite_stores_the_decoded_bytes(network: Network,
                                                               via: str) -> None:
    stored = await store(network, b"old")
    new = b"compressible " * 1000
    response = await client_of(network, via).post(
        f"/api/file/{stored['handle']}", data=gzip.compress(new),
        params=signed(call=["write"]),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["size"] == len(new)
    assert await object_bytes(network, stored["container"], stored["key"]) == new
