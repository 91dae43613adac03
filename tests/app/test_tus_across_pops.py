"""A tus upload's URL taken to another POP: the parts the first POP stored in the bucket
count there, the rest is sent to the second POP, and the file is whole; what the first
POP held but had not stored is sent again, as `HEAD` at the second POP says."""

from __future__ import annotations

import hashlib
import os

import aiohttp
import pytest
from support import APIKEY, Network, wait_complete
from upload_client import wait_for_stored

from common.protocol.tus import PART_SIZE

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def test_an_upload_goes_on_at_another_pop(network: Network, west: str) -> None:
    payload = os.urandom(3 * PART_SIZE + 4321)
    east = network.config.pops[0].public_url
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{east}/files/?key={APIKEY}", headers={
                **V, "Upload-Length": str(len(payload))}) as response:
            assert response.status == 201
            url = response.headers["Location"]
            handle = response.headers["Cin-Handle"]
        upload_id = url.rsplit("/", 1)[1]
        # Two whole parts and a piece of the third at the first POP.
        sent = 2 * PART_SIZE + 1000
        async with session.patch(url, data=payload[:sent], headers={
                **V, **OFFSET, "Upload-Offset": "0"}) as response:
            assert response.status == 204
        await wait_for_stored(session, network.config.coordinator.public_url, upload_id,
                              [1, 2])
        # The same upload, asked of the second POP: what the bucket holds counts.
        moved = url.replace(east, west)
        async with session.head(moved, headers=V) as response:
            assert response.status == 200
            assert response.headers["Upload-Offset"] == str(2 * PART_SIZE)
            assert response.headers["Upload-Length"] == str(len(payload))
            assert response.headers["Cin-Handle"] == handle
        async with session.patch(moved, data=payload[2 * PART_SIZE:], headers={
                **V, **OFFSET, "Upload-Offset": str(2 * PART_SIZE)}) as response:
            assert response.status == 204, await response.text()
            assert response.headers["Upload-Offset"] == str(len(payload))
        async with session.head(moved, headers=V) as response:
            assert response.headers["Upload-Offset"] == str(len(payload))
    metadata = await wait_complete(network, handle)
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_an_unknown_upload_at_another_pop_is_404(network: Network, west: str) -> None:
    async with aiohttp.ClientSession() as session, session.head(
            f"{west}/files/{'x' * 32}", headers=V) as response:
        assert response.status == 404
        assert response.headers["Tus-Resumable"] == "1.0.0"
