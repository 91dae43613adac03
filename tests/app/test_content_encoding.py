"""Compressed request bodies: the encoding is undone as the bytes arrive, and a stream that
is cut short or corrupt is refused with nothing kept, at a POP and through the coordinator.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import zlib
from typing import Any

import aiohttp
import pytest
from support import APIKEY, APP_SECRET, Network, sqlite_state

from common.protocol.security import encode_policy, sign_policy

# Compressible but not trivially so: a gzip stream of 200,000 bytes that spans many reads.
ORIGINAL = b"".join(b"line %06d of the original file\n" % i for i in range(6_452))[:200_000]
GZIPPED = gzip.compress(ORIGINAL)
# Cut where the inflater has already given out about a quarter of the file: a reader that
# never asks whether the stream ended would store that quarter as the whole file.
TRUNCATED = GZIPPED[:len(GZIPPED) // 4]
CORRUPT = GZIPPED[:len(GZIPPED) // 2] + bytes(b ^ 0x55 for b in GZIPPED[len(GZIPPED) // 2:])
BAD_CRC = GZIPPED[:-8] + bytes(b ^ 1 for b in GZIPPED[-8:-4]) + GZIPPED[-4:]
GZIP_HEADERS = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def signed(**fields: Any) -> dict[str, str]:
    text = encode_policy({"expiry": int(time.time()) + 3600, **fields})
    return {"policy": text, "signature": sign_policy(APP_SECRET, text)}


def file_count(network: Network) -> int:
    path = sqlite_state(network.config)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM files").fetchone()
        return int(count)


def nothing_spooled(network: Network) -> bool:
    return not any((network.config.pops[0].spool_dir / "incoming").iterdir())


async def refused(response: aiohttp.ClientResponse, status: int, code: str,
                  *naming: str) -> None:
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body
    for word in naming:
        assert word in body["error"], body


async def store_raw(network: Network, body: bytes,
                    headers: dict[str, str]) -> aiohttp.ClientResponse:
    return await network.pop.post("/api/store/S3", data=body, headers=headers,
                                  params={"key": APIKEY, "filename": "original.txt"})


async def test_a_gzip_body_is_stored_inflated(network: Network) -> None:
    response = await store_raw(network, GZIPPED, GZIP_HEADERS)
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["size"] == len(ORIGINAL)
    download = await network.pop.get(f"/{reply['handle']}")
    assert await download.read() == ORIGINAL


@pytest.mark.parametrize(("body", "naming"), [
    (TRUNCATED, "ended before"),
    (CORRUPT, "gzip"),
    (BAD_CRC, "gzip"),
    (GZIPPED + b"trailing garbage", "gzip"),
])
async def test_a_broken_gzip_store_is_refused_and_nothing_kept(network: Network, body: bytes,
                                                               naming: str) -> None:
    response = await store_raw(network, body, GZIP_HEADERS)
    await refused(response, 400, "bad_content_encoding", naming)
    assert file_count(network) == 0
    assert nothing_spooled(network)
    # The connection is still good for the next request, which is stored whole.
    response = await store_raw(network, GZIPPED, GZIP_HEADERS)
    assert (await response.json())["size"] == len(ORIGINAL)


async def test_a_truncated_gzip_body_after_a_url_encoded_guess_is_refused(
        network: Network) -> None:
    # `curl --data-binary @file.gz -H 'Content-Encoding: gzip'` sends no Content-Type of
    # its own: the body is read as a `url=` form first, then taken as the file.
    headers = {"Content-Encoding": "gzip",
               "Content-Type": "application/x-www-form-urlencoded"}
    await refused(await store_raw(network, TRUNCATED, headers), 400, "bad_content_encoding")
    assert file_count(network) == 0 and nothing_spooled(network)
    response = await store_raw(network, gzip.compress(b"url=not-a-form" + ORIGINAL), headers)
    assert (await response.json())["size"] == len(ORIGINAL) + 14


async def test_deflate_and_concatenated_gzip_members(network: Network) -> None:
    for body, coding in ((zlib.compress(ORIGINAL), "deflate"),
                         (zlib.compress(ORIGINAL)[2:-4], "deflate"),  # raw, as some send it
                         (gzip.compress(ORIGINAL[:1000]) + gzip.compress(ORIGINAL[1000:]),
                          "gzip"),
                         (GZIPPED, "x-gzip")):
        response = await store_raw(network, body, {"Content-Encoding": coding})
        reply = await response.json()
        assert response.status == 200, (coding, reply)
        assert reply["size"] == len(ORIGINAL), coding


async def test_an_encoding_cin_does_not_decode_is_refused(network: Network) -> None:
    for coding in ("br", "gzip, gzip", "compress"):
        response = await store_raw(network, b"\x00\x01\x02", {"Content-Encoding": coding})
        await refused(response, 415, "unsupported_content_encoding", "gzip")
    form = aiohttp.FormData()
    form.add_field("fileUpload", ORIGINAL, filename="original.txt")
    response = await network.pop.post("/api/store/S3", data=form, params={"key": APIKEY},
                                      headers={"Content-Encoding": "gzip"})
    await refused(response, 415, "unsupported_content_encoding", "form")
    assert file_count(network) == 0 and nothing_spooled(network)


@pytest.mark.parametrize("via", ["pop", "coordinator"])
@pytest.mark.parametrize("body", [TRUNCATED, CORRUPT], ids=["truncated", "corrupt"])
async def test_a_broken_gzip_overwrite_leaves_the_file_as_it_was(network: Network, via: str,
                                                                 body: bytes) -> None:
    response = await store_raw(network, b"the first version", {})
    handle = (await response.json())["handle"]
    client = network.pop if via == "pop" else network.coordinator
    # Through the coordinator too: the POP's answer is relayed as it is.
    response = await client.post(f"/api/file/{handle}", data=body, headers=GZIP_HEADERS,
                                 params=signed(call=["write"]))
    await refused(response, 400, "bad_content_encoding")
    assert await (await network.pop.get(f"/{handle}")).read() == b"the first version"
    assert nothing_spooled(network)
    # A whole one goes through both ways.
    response = await client.post(f"/api/file/{handle}", data=GZIPPED, headers=GZIP_HEADERS,
                                 params=signed(call=["write"]))
    assert (await response.json())["size"] == len(ORIGINAL)


async def test_a_gzip_json_body_is_read(network: Network) -> None:
    body = gzip.compress(json.dumps({"apikey": APIKEY, "filename": "a.txt", "size": 5,
                                     "mimetype": "text/plain"}).encode())
    response = await network.coordinator.post("/multipart/start", data=body,
                                              headers={"Content-Encoding": "gzip",
                                                       "Content-Type": "application/json"})
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["upload_id"]
    response = await network.coordinator.post("/multipart/start", data=body[:20],
                                              headers={"Content-Encoding": "gzip",
                                                       "Content-Type": "application/json"})
    await refused(response, 400, "bad_content_encoding")
