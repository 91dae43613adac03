"""A creation-with-upload that carries the whole file is stored as the REST store stores
one (edge/tus/one_shot.py): answered 201 with its URL, its offset at its length and its
handle; Complete at once, written to the bucket without the part spool; its URL answers
HEAD with its length at this POP and at another, and DELETE as for any finished upload;
a checksum that does not match keeps nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from typing import Any

import aiohttp
import pytest
from support import APIKEY, Network, shipped

from common.protocol.records import file_url
from edge.keys import JOURNAL

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


META = ",".join([f"apikey {b64(APIKEY)}", f"filename {b64('notes.txt')}",
                 f"filetype {b64('text/plain')}", f"path {b64('inbox/')}",
                 f"upload_tags {b64(json.dumps({'case': '17'}))}"])


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def create_whole(network: Network, payload: bytes,
                       **headers: str) -> aiohttp.ClientResponse:
    return await network.pop.post("/files/", data=payload, headers={
        **V, **OFFSET, "Upload-Length": str(len(payload)), "Upload-Metadata": META,
        **headers})


def path_of(network: Network, location: str) -> str:
    return location.removeprefix(network.config.pops[0].public_url)


async def metadata_of(network: Network, handle: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = await network.coordinator.get(f"/api/file/{handle}/metadata")
        metadata: dict[str, Any] = await response.json()
        if response.status == 200 or time.monotonic() > deadline:
            return metadata
        await asyncio.sleep(0.05)


def spooled_uploads(network: Network) -> list[str]:
    uploads = network.config.pops[0].spool_dir / "uploads"
    return sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []


async def test_a_whole_creation_is_a_stored_file(network: Network) -> None:
    payload = os.urandom(10 * 1024)
    response = await create_whole(network, payload)
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Offset"] == str(len(payload))
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" not in response.headers  # it is finished
    handle = response.headers["Cin-Handle"]
    url = path_of(network, response.headers["Location"])
    # Answered from the journal: Complete before the coordinator heard of it.
    local = await network.pop.app[JOURNAL].file(handle)
    assert local is not None and local.upload is None
    assert local.record.status.value == "Complete"
    assert spooled_uploads(network) == []  # nothing went through the part spool

    head = await network.pop.head(url, headers=V)
    assert head.status == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(payload))
    assert head.headers["Cin-Handle"] == handle
    assert head.headers["Upload-Metadata"] == (f"filename {b64('notes.txt')},"
                                               f"filetype {b64('text/plain')}")

    await shipped(network)
    metadata = await metadata_of(network, handle)
    assert metadata["upload_status"] == "Complete"
    assert (metadata["filename"], metadata["mimetype"], metadata["size"]) == (
        "notes.txt", "text/plain", len(payload))
    assert metadata["key"].startswith("inbox/")
    assert metadata["upload_tags"] == {"case": "17"}
    download = await network.pop.get(file_url("", handle))
    assert download.status == 200
    assert hashlib.sha256(await download.read()).digest() == hashlib.sha256(payload).digest()


async def test_a_whole_creation_is_finished_for_patch_and_delete(network: Network) -> None:
    payload = b"all of it at once"
    response = await create_whole(network, payload)
    assert response.status == 201
    url = path_of(network, response.headers["Location"])
    # A client that lost the answer and sends nothing more hears where it ended.
    again = await network.pop.patch(url, headers={**V, **OFFSET,
                                                  "Upload-Offset": str(len(payload))})
    assert again.status == 204
    assert again.headers["Upload-Offset"] == str(len(payload))
    more = await network.pop.patch(url, data=b"x", headers={**V, **OFFSET,
                                                            "Upload-Offset": "0"})
    assert more.status == 409
    # A finished upload is a file: the File API deletes it, tus termination does not.
    deleted = await network.pop.delete(url, headers=V)
    assert deleted.status == 409
    assert set(await deleted.json()) == {"error", "code"}
    assert (await network.pop.head(url, headers=V)).status == 200


async def test_a_checksum_mismatch_at_creation_keeps_nothing(network: Network) -> None:
    payload = os.urandom(64 * 1024)
    right = base64.b64encode(hashlib.sha1(payload).digest()).decode()
    wrong = base64.b64encode(hashlib.sha1(payload[1:]).digest()).decode()
    refused = await create_whole(network, payload, **{"Upload-Checksum": f"sha1 {wrong}"})
    assert refused.status == 460
    assert "Location" not in refused.headers
    assert not any((network.config.pops[0].spool_dir / "tus" / "scratch").iterdir())
    assert await network.pop.app[JOURNAL].interrupted_stores() == []
    await shipped(network)
    assert await network.pop.app[JOURNAL].pending_count() == 0  # no fact was recorded

    taken = await create_whole(network, payload, **{"Upload-Checksum": f"sha1 {right}"})
    assert taken.status == 201, await taken.text()
    assert taken.headers["Upload-Offset"] == str(len(payload))
    assert not any((network.config.pops[0].spool_dir / "tus" / "scratch").iterdir())
    metadata = await metadata_of(network, taken.headers["Cin-Handle"])
    assert metadata["size"] == len(payload)


async def test_a_partial_body_at_creation_is_an_upload_in_parts(network: Network) -> None:
    payload = os.urandom(3000)
    response = await network.pop.post("/files/", data=payload[:1000], headers={
        **V, **OFFSET, "Upload-Length": str(len(payload)), "Upload-Metadata": META})
    assert response.status == 201
    assert response.headers["Upload-Offset"] == "1000"
    assert "Upload-Expires" in response.headers  # still going on
    url = path_of(network, response.headers["Location"])
    rest = await network.pop.patch(url, data=payload[1000:], headers={
        **V, **OFFSET, "Upload-Offset": "1000"})
    assert rest.status == 204
    assert rest.headers["Upload-Offset"] == str(len(payload))


async def test_a_whole_creation_answers_head_at_another_pop(network: Network,
                                                            west: str) -> None:
    payload = os.urandom(5000)
    response = await create_whole(network, payload)
    assert response.status == 201
    handle = response.headers["Cin-Handle"]
    moved = west + path_of(network, response.headers["Location"])
    await shipped(network)
    async with aiohttp.ClientSession() as session:
        async with session.head(moved, headers=V) as head:
            assert head.status == 200
            assert head.headers["Upload-Offset"] == str(len(payload))
            assert head.headers["Upload-Length"] == str(len(payload))
            assert head.headers["Cin-Handle"] == handle
        async with session.delete(moved, headers=V) as deleted:
            assert deleted.status == 409
        # An id made the same way from no file of this deployment names nothing.
        forged = moved[:-3] + ("AAA" if not moved.endswith("AAA") else "BBB")
        async with session.head(forged, headers=V) as head:
            assert head.status == 404


async def test_a_large_whole_creation_to_s3_is_an_upload_in_parts(network: Network) -> None:
    """Over a MiB, S3's put would hold the body in memory while a slow client sends it:
    such a creation is spooled as an upload in parts; a local-disk bucket takes it whole."""
    payload = os.urandom(2 * 1024 * 1024 + 17)
    response = await create_whole(network, payload)
    assert response.status == 201, await response.text()
    assert response.headers["Upload-Offset"] == str(len(payload))
    handle = response.headers["Cin-Handle"]
    local = await network.pop.app[JOURNAL].file(handle)
    assert local is not None
    in_parts = network.config.storage["bucket"].driver == "s3"
    assert (local.upload is not None) is in_parts
    if not in_parts:  # (an upload in parts leaves the spool once it is stored)
        assert spooled_uploads(network) == []
    head = await network.pop.head(path_of(network, response.headers["Location"]), headers=V)
    assert head.headers["Upload-Offset"] == str(len(payload))
    deadline = time.monotonic() + 30
    while True:
        metadata = await metadata_of(network, handle)
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert metadata["upload_status"] == "Complete"
    download = await network.pop.get(file_url("", handle))
    assert hashlib.sha256(await download.read()).digest() == hashlib.sha256(payload).digest()
