"""Every bad request gets a 4xx and a JSON body naming what was wrong; nothing makes a 500."""

from __future__ import annotations

import os
import random
from typing import Any

import aiohttp
import pytest
from support import APIKEY, Network, free_port, start_network

MISSING = "A" * 20  # looks like a handle, names no file


def form(field: str = "fileUpload", payload: bytes = b"data") -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field(field, payload, filename="f.txt")
    return data


# (method, path, request kwargs, expected status, expected code)
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/api/store/S3", {"data": b"x"}, 400, "missing_apikey"),
    ("POST", "/api/store/S3", {"params": {"key": "NOSUCHKEY00"}, "data": b"x"}, 403,
     "unknown_apikey"),
    ("POST", "/api/store/azure", {"params": {"key": APIKEY}, "data": b"x"}, 400,
     "unknown_provider"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "path": "../../etc/passwd"},
                               "data": b"x"}, 400, "bad_path"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "path": "a/./b"}, "data": b"x"},
     400, "bad_path"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "container": "someone-elses"},
                               "data": b"x"}, 403, "container_not_allowed"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "access": "world"}, "data": b"x"},
     400, "bad_parameter"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "mimetype": "not a type"},
                               "data": b"x"}, 400, "bad_parameter"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "region": "../x"}, "data": b"x"},
     400, "bad_parameter"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "base64decode": "maybe"},
                               "data": b"x"}, 400, "bad_parameter"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY, "base64decode": "true"},
                               "data": b"not base64 at all!"}, 400, "bad_base64"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": b""}, 400, "empty_file"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": form("other")}, 400,
     "missing_file"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": b"--xx\r\ngarbage",
                               "headers": {"Content-Type": "multipart/form-data; boundary=zz"}},
     400, "malformed_multipart"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": b"whatever",
                               "headers": {"Content-Type": "multipart/form-data"}},
     400, "malformed_multipart"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": {"url": "ftp://x/y"}},
     400, "bad_url"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY}, "data": {"url": "not a url"}},
     400, "bad_url"),
    ("POST", "/api/store/S3", {"params": {"key": APIKEY},
                               "data": {"url": f"http://127.0.0.1:{free_port()}/x"}},
     400, "url_unreachable"),
    ("GET", f"/api/file/{MISSING}", {}, 404, "file_not_found"),
    ("GET", "/api/file/short", {}, 404, "file_not_found"),
    ("GET", f"/api/file/{MISSING}/metadata", {}, 404, "file_not_found"),
    ("GET", f"/{MISSING}", {}, 404, "file_not_found"),
    ("GET", f"/{MISSING}/metadata", {}, 404, "file_not_found"),
    ("GET", "/no/such/route", {}, 404, "not_found"),
    ("PUT", "/api/store/S3", {"data": b"x"}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), CASES,
                         ids=[f"{c[0]} {c[1][:30]} {c[4]}" for c in CASES])
async def test_bad_requests_at_the_pop(network: Network, method: str, path: str,
                                       kwargs: dict[str, Any], status: int, code: str) -> None:
    response = await network.pop.request(method, path, **kwargs)
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body
    assert body["error"]  # a sentence for a person
    assert "Traceback" not in body["error"]


async def test_forbidden_url_destination_is_refused(tmp_path: Any) -> None:
    async with start_network(tmp_path, allow_private=False) as network:
        for url in ("http://127.0.0.1:1/x", "http://169.254.169.254/latest/meta-data",
                    "http://[::1]/", "http://10.1.2.3/"):
            response = await network.pop.post("/api/store/S3", params={"key": APIKEY},
                                              data={"url": url})
            body = await response.json()
            assert (response.status, body["code"]) == (403, "url_forbidden"), body


async def test_metadata_errors(network: Network) -> None:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"hi")
    handle = (await response.json())["handle"]
    for client in (network.pop, network.coordinator):
        response = await client.get(f"/{handle}/metadata", params={"size": "sure"})
        assert (response.status, (await response.json())["code"]) == (400, "bad_parameter")
        response = await client.get(f"/{handle}/metadata", params={"exif": "true"})
        assert (response.status, (await response.json())["code"]) == (403, "security_required")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [(f"/api/file/{MISSING}", 404, "file_not_found"), (f"/{MISSING}/metadata", 404,
      "file_not_found"), ("/nope", 404, "not_found"),
     ("/internal/v1/rpc", 405, "method_not_allowed")])
async def test_bad_requests_at_the_coordinator(network: Network, path: str, status: int,
                                               code: str) -> None:
    response = await network.coordinator.get(path)
    assert (response.status, (await response.json())["code"]) == (status, code)


async def test_internal_api_refuses_unsigned_and_garbage(network: Network) -> None:
    for headers, data in [({}, b"\x81\xa1t\xa4ack"),
                          ({"Cin-Signature": "t=1,v1=00"}, b"junk"),
                          ({"Cin-Signature": "garbage"}, os.urandom(64))]:
        response = await network.coordinator.post("/internal/v1/rpc", data=data,
                                                  headers=headers)
        assert response.status == 403


async def test_random_garbage_never_makes_a_500(network: Network) -> None:
    rng = random.Random(7)
    content_types = ["multipart/form-data; boundary=b", "application/x-www-form-urlencoded",
                     "text/plain", "application/json", "multipart/mixed; boundary=\"\""]
    for _ in range(60):
        params = {"key": APIKEY}
        for name in rng.sample(["filename", "mimetype", "path", "container", "access",
                                "base64decode", "region"], k=rng.randint(0, 3)):
            length = rng.randint(0, 12)
            params[name] = "".join(rng.choice("ab/.%\\-_=é\x01 ") for _ in range(length))
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        if rng.random() < 0.3:
            body = b"--b\r\nContent-Disposition: form-data; name=\"fileUpload\"\r\n\r\n" + body
        response = await network.pop.post("/api/store/S3", params=params, data=body,
                                          headers={"Content-Type": rng.choice(content_types)})
        payload = await response.json()
        assert response.status < 500, payload
        if response.status >= 400:
            assert set(payload) == {"error", "code"}
