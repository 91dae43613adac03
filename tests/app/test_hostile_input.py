"""Inputs found by review to break naive handlers: split bodies, odd bytes, odd headers."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

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


# --------------------------------------------- inputs that were 500s (each now a JSON 4xx)


async def json_error(response: aiohttp.ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json", await response.text()
    return response.status, str((await response.json())["code"])


POP_ROUTES = ("/multipart/start", "/multipart/upload", "/multipart/commit",
              "/multipart/complete", "/multipart/status")
COORDINATOR_ROUTES = ("/multipart/start", "/multipart/status")


def upload_bodies(upload_id: str) -> list[tuple[str, bytes, tuple[str, ...]]]:
    """(what, body, the routes it reaches): Upload API bodies that were 500s."""
    start = {"apikey": APIKEY, "filename": "a.txt", "size": 5}
    part = {"apikey": APIKEY, "upload_id": upload_id, "part": 1, "size": 5}
    everywhere = POP_ROUTES
    return [
        ("nested past the stack", b"[" * 100_000 + b"]" * 100_000, everywhere),
        ("an object nested past the stack", b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
         everywhere),
        ("parts as a deep string",
         json.dumps({**part, "parts": "[" * 100_000}).encode(), ("/multipart/complete",)),
        ("size ²", json.dumps({**start, "size": "\u00b2"}).encode(), ("/multipart/start",)),
        ("size of 5000 digits", json.dumps({**start, "size": "9" * 5000}).encode(),
         ("/multipart/start",)),
        ("part size ²", json.dumps({**part, "size": "\u00b2"}).encode(),
         ("/multipart/upload",)),
        ("part ²", json.dumps({**part, "part": "\u00b2"}).encode(),
         ("/multipart/upload", "/multipart/commit")),
        ("a lone surrogate in the filename",
         json.dumps({**start, "filename": "\ud800.txt"}).encode(), ("/multipart/start",)),
        ("a lone surrogate in store.path",
         json.dumps({**start, "store": {"path": "in/\ud800/"}}).encode(),
         ("/multipart/start",)),
        ("a lone surrogate in the upload id",
         json.dumps({**part, "upload_id": "\ud800"}).encode(),
         ("/multipart/upload", "/multipart/commit", "/multipart/complete",
          "/multipart/status")),
    ]


async def test_upload_api_bodies_that_were_500s_are_400s(network: Network) -> None:
    started = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "a.txt", "size": 5})
    upload_id = (await started.json())["upload_id"]
    for what, body, routes in upload_bodies(upload_id):
        for client, route in [(network.pop, r) for r in routes] + [
                (network.coordinator, r) for r in routes if r in COORDINATOR_ROUTES]:
            response = await client.post(route, data=body,
                                         headers={"Content-Type": "application/json"})
            assert await json_error(response) == (400, "bad_parameter"), (what, route)
    # The upload itself is untouched.
    response = await network.pop.post("/multipart/status",
                                      json={"apikey": APIKEY, "upload_id": upload_id})
    assert response.status == 200


async def test_a_policy_with_a_lone_surrogate_is_a_403(network: Network) -> None:
    body = {"apikey": APIKEY, "filename": "a.txt", "size": 5, "policy": "\ud800",
            "signature": "0" * 64}
    for client in (network.pop, network.coordinator):
        response = await client.post("/multipart/start", data=json.dumps(body),
                                     headers={"Content-Type": "application/json"})
        assert await json_error(response) == (403, "bad_policy")


async def test_non_ascii_basic_auth_is_a_403_on_every_route(network: Network) -> None:
    store = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"hello")
    handle = (await store.json())["handle"]
    start = {"apikey": APIKEY, "filename": "a.txt", "size": 5}
    Request = tuple[str, str, dict[str, str], bytes | None]
    requests: list[Request] = [
        ("GET", f"/api/file/{handle}", {}, None),
        ("GET", f"/{handle}", {}, None),
        ("GET", f"/{handle}/metadata", {}, None),
        ("DELETE", f"/api/file/{handle}", {}, None),
        ("POST", f"/api/file/{handle}", {}, b"new bytes"),
        ("POST", "/multipart/start", {"Content-Type": "application/json"},
         json.dumps(start).encode()),
    ]
    for client in (network.pop, network.coordinator):
        pop_only: list[Request] = [("POST", f"/api/store/S3?key={APIKEY}", {}, b"x")]
        for method, route, headers, body in requests + (
                pop_only if client is network.pop else []):
            for token in ("é", "\u00e9\u00e9\u00e9\u00e9"):
                response = await client.request(method, route, data=body, headers={
                    **headers, "Authorization": f"Basic {token}"})
                assert await json_error(response) == (403, "bad_credentials"), route
    # An undecodable byte, which aiohttp keeps as a lone surrogate.
    for port in (network.config.pops[0].listen.port, network.config.coordinator.listen.port):
        head = (b"GET /" + handle.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Authorization: Basic \xff\xfe\r\n\r\n")
        status, reply = await raw_request(port, head, [])
        assert (status, json.loads(reply)["code"]) == (403, "bad_credentials")
    assert (await network.pop.get(f"/{handle}")).status == 200  # nothing was deleted


async def test_an_unsigned_rpc_with_a_non_ascii_signature_is_refused(network: Network) -> None:
    """Without authentication: anyone can send this."""
    body = wire.encode(wire.LookupFile(handle="A" * 20))
    now = int(time.time())
    for signature in (f"t={now},v1=é", f"t={now},v1={'0' * 63}é", f"t={now},v1=\u00b2"):
        response = await network.coordinator.post(
            "/internal/v1/rpc", data=body, headers={wire.SIGNATURE_HEADER: signature})
        assert response.status == 403
        reply = wire.decode(await response.read())
        assert isinstance(reply, wire.ErrorReply) and reply.code == "bad_internal_signature"


async def test_a_store_from_a_url_whose_host_label_is_too_long_is_bad_url(
        network: Network) -> None:
    for host in ("a" * 64 + ".example", "a." * 127 + "example"):
        response = await network.pop.post("/api/store/S3", params={"key": APIKEY},
                                          data={"url": f"http://{host}/x"})
        assert await json_error(response) == (400, "bad_url")


async def test_a_part_put_with_text_cin_never_writes_is_a_403(network: Network) -> None:
    query = {"upload_id": "u" * 32, "part": "\u0663", "offset": "0", "size": "1",
             "expires": str(int(time.time()) + 60), "sig": "é"}
    for changed in ({}, {"part": "9" * 5000}, {"sig": "0" * 64, "part": "1"}):
        response = await network.pop.put("/multipart/part", params={**query, **changed},
                                         data=b"x")
        assert await json_error(response) == (403, "bad_signature")
