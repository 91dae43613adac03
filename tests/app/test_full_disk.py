"""A POP whose disk runs full, for real: its spool and its local-disk bucket are small
tmpfs mounts (tests/small_disk.py), over loopback HTTP.

A write that runs out of space (the staging of a form, an Upload API part, a raw body going
straight to the bucket) is answered 507 `insufficient_storage` JSON, never a 500. The POP
says it is full in its heartbeat, so `/pops` shows it, the coordinator hands it out no
more and the SDK uploads elsewhere; once space returns it takes bytes again by itself.
The heartbeats are sent by the test (their interval is an hour), so that each look at the
free space happens when the test says.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from small_disk import small_disk
from support import APIKEY, Network, config_data, shipped, sqlite_state, to_config
from upload_client import PART, start_upload

from common.storage.drivers import LocalSettings, settings_of
from coordinator.app import make_app as make_coordinator_app
from edge.app import make_app as make_edge_app
from edge.disk_space import DISK_SPACE
from edge.heartbeat import HEARTBEAT
from edge.keys import JOURNAL
from sdk import AsyncClient

MiB = 1024 * 1024
DISK = "4m"  # each small disk
FLOOR = MiB  # east's min_free_space


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    """A coordinator and the us-east-1 POP, whose spool and bucket are 4 MiB disks."""
    with (small_disk(tmp_path / "spool-disk", DISK) as spool,
          small_disk(tmp_path / "bucket-disk", DISK) as bucket):
        data = config_data(tmp_path, heartbeat={"interval": 3600, "timeout": 7200})
        data["pops"][0].update(spool_dir=str(spool), min_free_space=FLOOR)
        data["pops"][1].update(min_free_space=0)  # it shares the small bucket
        data["storage"]["bucket"]["root"] = str(bucket)
        config = to_config(data, tmp_path)
        async with (
            TestClient(TestServer(make_coordinator_app(config), host="127.0.0.1",
                                  port=config.coordinator.listen.port)) as coordinator,
            TestClient(TestServer(make_edge_app(config, config.pops[0]), host="127.0.0.1",
                                  port=config.pops[0].listen.port)) as pop,
        ):
            yield Network(config, pop, coordinator, tmp_path)


@pytest.fixture
async def west(network: Network) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The network's second POP, eu-west-1, with room to spare."""
    pop = network.config.pops[1]
    async with TestClient(TestServer(make_edge_app(network.config, pop), host="127.0.0.1",
                                     port=pop.listen.port)) as client:
        yield client


async def beat(pop: TestClient) -> None:  # type: ignore[type-arg]
    assert await pop.app[HEARTBEAT].beat(draining=False)


async def pop_state(network: Network, name: str = "us-east-1") -> tuple[str, bool]:
    listed = await (await network.coordinator.get("/pops")).json()
    [shown] = [entry for entry in listed["pops"] if entry["name"] == name]
    return shown["state"], shown["healthy"]


async def store(network: Network, payload: bytes, *, form: bool = False,
                **params: str) -> tuple[int, dict[str, Any]]:
    data: Any = payload
    if form:
        data = aiohttp.FormData()
        data.add_field("fileUpload", payload, filename="f.bin")
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY, **params},
                                      data=data)
    return response.status, await response.json()


def files_by_status(network: Network) -> list[str]:
    path = sqlite_state(network.config)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT status FROM files")]


async def test_a_form_that_fills_the_spool_is_507_and_the_pop_recovers_by_itself(
        network: Network) -> None:
    status, answer = await store(network, os.urandom(6 * MiB), form=True)
    assert (status, answer["code"]) == (507, "insufficient_storage"), answer
    assert network.pop.app[DISK_SPACE].full
    spool = network.config.pops[0].spool_dir
    assert list((spool / "incoming").iterdir()) == []  # the failed body went at once

    await beat(network.pop)  # says full: a write ran out of space since the last look
    assert await pop_state(network) == ("full", False)
    status, answer = await store(network, b"small")
    assert (status, answer["code"]) == (507, "insufficient_storage")  # refused at once

    await beat(network.pop)  # nothing ran out since, and there is room: up again
    assert await pop_state(network) == ("up", True)
    status, answer = await store(network, b"small")
    assert status == 200, answer


async def test_a_spool_below_its_floor_is_full_until_space_returns(network: Network) -> None:
    spool = network.config.pops[0].spool_dir
    filler = spool / "filler"
    filler.write_bytes(b"\0" * (3 * MiB + MiB // 2))  # less than FLOOR left
    await beat(network.pop)
    assert await pop_state(network) == ("full", False)
    status, answer = await store(network, b"small")
    assert (status, answer["code"]) == (507, "insufficient_storage"), answer
    async with aiohttp.ClientSession() as session, session.post(
            f"{network.config.pops[0].public_url}/multipart/start",
            json={"apikey": APIKEY, "filename": "f.bin", "size": 10,
                  "store": {"location": "s3"}}) as response:
        assert (response.status, (await response.json())["code"]) == (
            507, "insufficient_storage")

    filler.unlink()
    await beat(network.pop)
    assert await pop_state(network) == ("up", True)
    status, answer = await store(network, b"small")
    assert status == 200, answer


async def test_a_part_that_fills_the_spool_is_507(network: Network) -> None:
    pop = network.config.pops[0].public_url
    async with aiohttp.ClientSession() as session:
        upload_id = (await start_upload(session, pop, PART))["upload_id"]
        async with session.post(f"{pop}/multipart/upload", json={
                "apikey": APIKEY, "upload_id": upload_id, "part": 1,
                "size": PART}) as response:
            target = await response.json()
        async with session.put(target["url"], data=os.urandom(PART),
                               headers=target["headers"]) as put:
            answer = await put.json()
            assert (put.status, answer["code"]) == (507, "insufficient_storage"), answer
    assert network.pop.app[DISK_SPACE].full
    await beat(network.pop)
    assert await pop_state(network) == ("full", False)


async def test_a_raw_body_that_fills_a_local_bucket_is_507(network: Network) -> None:
    status, answer = await store(network, os.urandom(6 * MiB))  # goes straight to the bucket
    assert (status, answer["code"]) == (507, "insufficient_storage"), answer
    # The POP forgot the failed store: nothing waits to be reported when it starts again,
    # and the coordinator, which never heard of it, records nothing.
    assert await network.pop.app[JOURNAL].interrupted_stores() == []
    await shipped(network)
    assert files_by_status(network) == []
    bucket = settings_of(network.config.storage["bucket"], LocalSettings).root
    assert bucket is not None
    assert list(bucket.rglob(".tmp-*")) == []
    assert network.pop.app[DISK_SPACE].full
    await beat(network.pop)
    assert await pop_state(network) == ("full", False)


async def test_the_sdk_uploads_elsewhere_while_a_pop_is_full(
        network: Network, west: TestClient, tmp_path: Path) -> None:  # type: ignore[type-arg]
    (network.config.pops[0].spool_dir / "filler").write_bytes(b"\0" * (3 * MiB + MiB // 2))
    await beat(network.pop)
    await beat(west)
    assert await pop_state(network) == ("full", False)
    original = tmp_path / "upload.bin"
    original.write_bytes(os.urandom(100_000))
    # Through the coordinator's list (the full POP is not even measured), and when told
    # to use the full POP (it refuses the start, and the SDK moves on).
    for preferred in ("auto", "us-east-1"):
        async with AsyncClient(network.config.coordinator.public_url, APIKEY,
                               state_dir=tmp_path / f"state-{preferred}",
                               pop=preferred) as cin:
            result = await cin.upload(original)
        assert result.pops == ("eu-west-1",), preferred
