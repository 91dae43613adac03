"""Inputs found by review to break naive handlers: split bodies, odd bytes, odd headers."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
from support import APIKEY, Network

from common.protocol import wire


async def raw_request(port: int, head: bytes, body_parts: list[bytes]) -> tuple[int, bytes]:
    """Send a request in several TCP writes, with pauses, as a slow network would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for part in body_parts:
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(part)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


async def test_signed_message_split_across_segments_is_read_whole(network: Network) -> None:
    store = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"hello")
    handle = (await store.json())["handle"]
    body = wire.encode(wire.LookupFile(handle=handle))
    head = (f"POST /internal/v1/rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: {wire.CONTENT_TYPE}\r\n"
            f"{wire.SIGNATURE_HEADER}: {wire.sign(network.config.internal_secret, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, reply = await raw_request(network.config.coordinator.listen.port, head,
                                      [body[:10], body[10:]])
    assert status == 200
    decoded = wire.decode(reply)
    assert isinstance(decoded, wire.FileReply) and decoded.record.handle == handle


async def test_url_form_split_across_segments_is_still_a_url(network: Network) -> None:
    form = b"url=http%3A%2F%2F127.0.0.1%3A1%2F" + b"a" * 1500
    head = (f"POST /api/store/S3?key={APIKEY} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n").encode()
    status, reply = await raw_request(network.config.pops[0].listen.port, head,
                                      [form[:700], form[700:]])
    assert (status, json.loads(reply)["code"]) == (400, "url_unreachable")


async def test_non_utf8_filename_is_stored_not_a_500(network: Network) -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"fileUpload\"; "
            b"filename=\"\xff\xfe.txt\"\r\n\r\nhello\r\n--b--\r\n")
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=body,
                                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["filename"].endswith(".txt") and reply["size"] == 5


async def test_multipart_cut_before_its_closing_boundary_is_refused(network: Network) -> None:
    body = b"--b\r\nContent-Disposition: form-data; name=\"fileUpload\"; filename=\"f\"\r\n\r\nhel"
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=body,
                                      headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert (response.status, (await response.json())["code"]) == (400, "malformed_multipart")


async def test_hostile_headers_get_4xx(network: Network) -> None:
    store = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"hello")
    handle = (await store.json())["handle"]
    response = await network.pop.get(f"/{handle}", headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert response.status == 200  # an absurd range is ignored, as RFC 9110 allows
    for signature in ("t=\u00b2,v1=00", "t=" + "9" * 5000 + ",v1=00"):
        response = await network.coordinator.post("/internal/v1/rpc", data=b"x",
                                                  headers={wire.SIGNATURE_HEADER: signature})
        assert response.status == 403
    response = await network.pop.post(
        "/api/store/S3", params={"key": APIKEY}, data=gzip.compress(b"gzipped body"),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    assert (await response.json())["size"] == len(b"gzipped body")
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY, "mimetype": "т/п"},
                                      data=b"x")
    assert (response.status, (await response.json())["code"]) == (400, "bad_parameter")
    response = await network.pop.post(
        "/api/store/S3", params={"key": APIKEY}, data=b"this is not gzip",
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    assert (response.status, (await response.json())["code"]) == (400, "bad_content_encoding")


async def test_a_key_taken_over_by_another_upload_is_gone_not_wrong(network: Network) -> None:
    async def store(payload: bytes) -> str:
        data = aiohttp.FormData()
        data.add_field("fileUpload", payload, filename="same.txt")
        response = await network.pop.post("/api/store/S3", data=data,
                                          params={"key": APIKEY, "path": "x/same.txt"})
        return str((await response.json())["handle"])

    first = await store(b"first")
    second = await store(b"second!!")
    response = await network.pop.get(f"/{first}")
    assert (response.status, (await response.json())["code"]) == (410, "file_gone")
    assert await (await network.pop.get(f"/{second}")).read() == b"second!!"
    response = await network.pop.get(f"/{second}")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
