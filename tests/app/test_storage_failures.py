"""A storage failure reaches the client as the error table maps it, whatever the route:
404 when the object is gone from the bucket, 503 when the bucket cannot serve; never a
500. Routes do not translate storage errors themselves: the error middleware and the
coordinator's RPC do, once, so these cover the download, metadata and delete routes of
both services, the POP's going through the RPC."""

from __future__ import annotations

import base64
import os
from typing import Any

import aiohttp
import moto.settings
import pytest
from support import APIKEY, APP_SECRET, Network

from common.storage import open_storage
from common.storage._local_meta import XATTR
from common.storage.drivers import LocalSettings

BASIC = {"Authorization": "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def store(network: Network, payload: bytes) -> dict[str, Any]:
    response = await network.pop.post("/api/store/S3", data=payload, params={"key": APIKEY})
    body = await response.json()
    assert response.status == 200, body
    return dict(body)


async def answer(response: aiohttp.ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json", await response.text()
    return response.status, (await response.json())["code"]


async def reads(network: Network, handle: str) -> list[tuple[int, str]]:
    """What a download and a metadata read with hashes answer, at the POP and the
    coordinator."""
    answers = []
    for client in (network.pop, network.coordinator):
        answers.append(await answer(await client.get(f"/{handle}")))
        answers.append(await answer(await client.get(f"/api/file/{handle}/metadata",
                                                     params={"md5": "true"})))
    return answers


def break_the_bucket(network: Network, container: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave the location unable to serve: a local object's metadata corrupt; an S3
    service that checks credentials (moto's own IAM check) and so refuses cin's."""
    settings = network.config.storage["bucket"].settings
    if isinstance(settings, LocalSettings):
        (path,) = (settings.root / container / "objects").glob("*")
        os.setxattr(path, XATTR, b"{ not json")
    else:
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)


async def test_an_object_gone_from_the_bucket_is_404(network: Network) -> None:
    stored = await store(network, b"soon gone")
    async with open_storage(network.config.storage["bucket"]) as storage:
        await storage.delete(stored["container"], stored["key"])

    assert await reads(network, stored["handle"]) == [(404, "file_not_found")] * 4


async def test_a_bucket_that_cannot_serve_is_503(network: Network,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stored = await store(network, b"in a bucket about to break")
    break_the_bucket(network, stored["container"], monkeypatch)

    assert await reads(network, stored["handle"]) == [(503, "storage_unavailable")] * 4
    for client in (network.pop, network.coordinator):
        response = await client.delete(f"/api/file/{stored['handle']}", headers=BASIC)
        assert await answer(response) == (503, "storage_unavailable")
