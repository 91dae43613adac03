"""The Upload API's bytes at a POP: signed part URLs, part and chunk PUTs, FII commits."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import aiohttp
from support import APIKEY, Network

PART = 5 * 1024**2


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def started(network: Network, size: int, **extra: Any) -> dict[str, Any]:
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "data.bin", "size": size, "store": {"location": "s3"},
        **extra})
    reply = await response.json()
    assert response.status == 200, reply
    return {"apikey": APIKEY, "upload_id": reply["upload_id"], "uri": reply["uri"],
            "region": reply["region"], "store": {"location": "s3"}}


async def part_target(network: Network, ids: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = await network.pop.post("/multipart/upload", json={**ids, **fields})
    reply = await response.json()
    assert response.status == 200, reply
    return dict(reply)


async def put(target: dict[str, Any], data: bytes) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session, session.put(
            target["url"], data=data, headers=target["headers"]) as response:
        await response.read()  # kept: the tests read the JSON error after the session
        return response


async def error_code(response: aiohttp.ClientResponse) -> str:
    return str((await response.json())["code"])


async def test_a_regular_part_is_written_and_answered_with_its_md5(network: Network) -> None:
    payload = os.urandom(PART + 1000)
    ids = await started(network, len(payload))
    etags = []
    for number, chunk in ((1, payload[:PART]), (2, payload[PART:])):
        target = await part_target(network, ids, part=number, size=len(chunk),
                                   md5=md5_b64(chunk))
        assert target["url"].startswith(network.config.pops[0].public_url + "/multipart/part?")
        assert target["headers"] == {"Content-MD5": md5_b64(chunk)}
        response = await put(target, chunk)
        assert response.status == 200
        etags.append(response.headers["ETag"])
        assert etags[-1] == f'"{hashlib.md5(chunk).hexdigest()}"'
    spooled = network.config.pops[0].spool_dir / "uploads" / ids["upload_id"]
    assert (spooled / "part-1.data").read_bytes() == payload[:PART]
    assert (spooled / "part-2.data").read_bytes() == payload[PART:]


async def test_a_wrong_md5_or_length_is_refused_and_not_acknowledged(network: Network) -> None:
    payload = os.urandom(64 * 1024)
    ids = await started(network, len(payload))
    target = await part_target(network, ids, part=1, size=len(payload),
                               md5=md5_b64(b"other bytes"))
    response = await put(target, payload)
    assert (response.status, await error_code(response)) == (400, "bad_parameter")
    short = await part_target(network, ids, part=1, size=len(payload))
    response = await put(short, payload[:-1])
    assert (response.status, await error_code(response)) == (400, "bad_parameter")
    commit = await network.pop.post("/multipart/commit", json={**ids, "part": 1,
                                                               "size": len(payload)})
    assert commit.status == 409  # nothing of part 1 was acknowledged


async def test_a_part_url_cannot_be_altered(network: Network) -> None:
    ids = await started(network, 1024)
    target = await part_target(network, ids, part=1, size=1024)
    for old, new in (("part=1", "part=2"), ("size=1024", "size=2048"),
                     ("offset=0", "offset=1")):
        altered = {**target, "url": target["url"].replace(old, new)}
        response = await put(altered, os.urandom(1024))
        assert (response.status, await error_code(response)) == (403, "bad_signature"), old


async def test_intelligent_ingestion_chunks_and_an_idempotent_commit(network: Network) -> None:
    part = os.urandom(3 * 32 * 1024 + 100)
    ids = await started(network, len(part), fii=True)
    offsets = [0, 32 * 1024, 64 * 1024, 96 * 1024]
    # Out of order, and one chunk sent twice: neither corrupts the part.
    for offset in (offsets[2], offsets[0], offsets[3], offsets[1], offsets[0]):
        end = offsets[offsets.index(offset) + 1] if offset != offsets[-1] else len(part)
        chunk = part[offset:end]
        target = await part_target(network, ids, part=1, size=len(chunk), offset=offset,
                                   md5=md5_b64(chunk), fii=True)
        assert (await put(target, chunk)).status == 200
    for _ in range(2):
        commit = await network.pop.post("/multipart/commit",
                                        json={**ids, "part": 1, "size": len(part)})
        assert commit.status == 200
        assert commit.headers["ETag"] == f'"{hashlib.md5(part).hexdigest()}"'
        assert (await commit.json())["size"] == len(part)


async def test_a_chunk_reply_carries_the_pops_throughput_and_next_chunk_size(
        network: Network) -> None:
    chunk = os.urandom(256 * 1024)
    ids = await started(network, len(chunk), fii=True)
    target = await part_target(network, ids, part=1, size=len(chunk), offset=0,
                               md5=md5_b64(chunk), fii=True)
    response = await put(target, chunk)
    assert response.status == 200
    assert int(response.headers["Cin-Throughput"]) > 0
    suggested = int(response.headers["Cin-Next-Chunk-Size"])
    assert 32 * 1024 <= suggested <= 8 * 1024**2 and suggested % (32 * 1024) == 0


async def test_a_gap_fails_the_commit(network: Network) -> None:
    ids = await started(network, 96 * 1024, fii=True)
    chunk = os.urandom(32 * 1024)
    for offset in (0, 64 * 1024):
        target = await part_target(network, ids, part=1, size=len(chunk), offset=offset,
                                   fii=True)
        assert (await put(target, chunk)).status == 200
    commit = await network.pop.post("/multipart/commit", json={**ids, "part": 1})
    body = await commit.json()
    assert (commit.status, body["code"]) == (409, "conflict")
    assert "gap" in body["error"]


async def test_part_requests_check_the_upload(network: Network) -> None:
    ids = await started(network, 1024)
    cases = [({**ids, "apikey": "TESTAPIKEY0000000000", "part": 1, "size": 10}, 404),
             ({**ids, "upload_id": "nosuchupload00000000", "part": 1, "size": 10}, 404),
             ({**ids, "part": 1, "size": 1000, "offset": 100}, 400),  # past the end
             ({**ids, "part": 0, "size": 10}, 400)]
    for fields, status in cases:
        response = await network.pop.post("/multipart/upload", json=fields)
        body = await response.json()
        assert response.status == status, (fields, body)
