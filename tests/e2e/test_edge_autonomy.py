"""The edge stands on its own: real processes, the coordinator away, POPs killed -9.

* The coordinator stopped for 60 s while four clients store (REST) and upload (Upload
  API) through two POPs: every store and upload is answered 200, and soon after the
  coordinator is back every file is recorded with the right status, size and sha256,
  and its `fp.upload` webhook is delivered.
* A POP killed -9 right after acknowledging stores whose facts it could not ship yet
  (the coordinator was down): after its restart every acknowledged file reaches the
  coordinator.
* The coordinator killed -9 while it applies a long backlog of batches: after its
  restart no fact was applied twice (each file has one `fp.upload` event id).
* Forged facts sent to the coordinator process, signed with the internal secret as a POP
  signs them (a handle leased to the other POP, a handle never leased, a replayed batch),
  are refused or applied once, and change nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import (
    APIKEY,
    APP_SECRET,
    INTERNAL_SECRET,
    CinProcess,
    config_data,
    free_port,
    write_config,
)
from upload_client import PART, send_and_complete, start_upload

from common.protocol import wire
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import mint_handle
from common.protocol.naming import new_handle
from common.protocol.pop_events import FileStored, new_event_id
from common.protocol.records import FileRecord
from common.protocol.security import encode_policy, sign_policy
from edge.coordinator_client import CoordinatorClient

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 60.0
RECOVERY_SECONDS = 10.0  # the bound, from the coordinator's return
CLIENTS = 4


def remove_policy() -> dict[str, str]:
    """Deleting needs `remove`, even for the dev app (its security is optional): a policy
    signed with the app secret, in the query, so that it follows a redirect to the POP
    holding the file (an Authorization header is dropped on the way)."""
    text = encode_policy({"expiry": int(time.time()) + 3600, "call": ["remove"]})
    return {"policy": text, "signature": sign_policy(APP_SECRET, text)}


class HookReceiver:
    """Records every webhook: the event ids delivered for each handle and action."""

    def __init__(self, port: int) -> None:
        self.events: dict[tuple[str, str], set[int]] = defaultdict(set)
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)

    async def handle(self, request: web.Request) -> web.Response:
        document = json.loads(await request.read())
        handle = document["text"]["handle"]
        self.events[(handle, document["action"])].add(document["id"])
        return web.Response(status=200)


@dataclass
class Network:
    root: Path
    config: Path
    data: dict[str, Any]
    hooks: HookReceiver
    coordinator: CinProcess
    pops: dict[str, CinProcess] = field(default_factory=dict)

    @property
    def coordinator_url(self) -> str:
        return str(self.data["coordinator"]["public_url"])

    def pop_url(self, name: str) -> str:
        return next(str(p["public_url"]) for p in self.data["pops"] if p["name"] == name)

    def start_coordinator(self) -> None:
        self.coordinator = CinProcess(["coordinator", "-c", str(self.config)],
                                      self.root).wait_ready()

    def start_pop(self, name: str) -> None:
        self.pops[name] = CinProcess(["edge", "-c", str(self.config), "--pop", name],
                                     self.root).wait_ready()


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    hook_port = free_port()
    hooks = HookReceiver(hook_port)
    await hooks.server.start_server()
    data = config_data(tmp_path, webhooks=[f"http://127.0.0.1:{hook_port}/hook"],
                       webhook_delivery={"first_retry": 0.2, "max_interval": 1.0},
                       heartbeat={"interval": 0.5, "timeout": 2.0})
    config = write_config(data, tmp_path / "cin.yaml")
    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    net = Network(tmp_path, config, data, hooks, coordinator)
    try:
        for pop in data["pops"]:
            net.start_pop(pop["name"])
        yield net
    finally:
        for process in net.pops.values():
            process.stop()
        net.coordinator.stop()
        await hooks.server.close()


@dataclass(frozen=True)
class Acknowledged:
    handle: str
    size: int
    sha256: str


async def store(session: aiohttp.ClientSession, pop: str, payload: bytes) -> Acknowledged:
    async with session.post(f"{pop}/api/store/S3", params={"key": APIKEY},
                            data=payload) as response:
        reply = await response.json()
        assert response.status == 200, reply
    return Acknowledged(reply["handle"], len(payload), hashlib.sha256(payload).hexdigest())


async def upload(session: aiohttp.ClientSession, pop: str, payload: bytes) -> Acknowledged:
    start = await start_upload(session, pop, len(payload))
    reply = await send_and_complete(session, pop, start["upload_id"], payload)
    return Acknowledged(reply["handle"], len(payload), hashlib.sha256(payload).hexdigest())


async def recorded(session: aiohttp.ClientSession, coordinator: str,
                   handle: str) -> dict[str, Any] | None:
    """The coordinator's own metadata of a file (no redirect to a POP), or None."""
    async with session.get(f"{coordinator}/api/file/{handle}/metadata",
                           params={"upload_status": "true", "size": "true", "sha256": "true"},
                           allow_redirects=False) as response:
        if response.status != 200:
            return None
        document: dict[str, Any] = await response.json()
        return document


async def all_recorded(session: aiohttp.ClientSession, coordinator: str,
                       files: list[Acknowledged], within: float) -> dict[str, Any]:
    """Wait until the coordinator records every file Complete; its metadata by handle."""
    deadline = time.monotonic() + within
    found: dict[str, Any] = {}
    while True:
        for file in files:
            if file.handle in found:
                continue
            metadata = await recorded(session, coordinator, file.handle)
            if metadata is not None and metadata["upload_status"] == "Complete":
                found[file.handle] = metadata
        if len(found) == len(files) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def check_files(files: list[Acknowledged], found: dict[str, Any]) -> None:
    missing = [file.handle for file in files if file.handle not in found]
    assert not missing, f"{len(missing)} of {len(files)} acknowledged files not recorded"
    for file in files:
        assert found[file.handle]["size"] == file.size, file
        assert found[file.handle]["sha256"] == file.sha256, file


async def test_uploads_go_on_while_the_coordinator_is_stopped(network: Network) -> None:
    pops = [network.pop_url(pop["name"]) for pop in network.data["pops"]]
    acknowledged: list[Acknowledged] = []
    refusals: list[str] = []
    stop_at = time.monotonic() + 2 + OUTAGE_SECONDS + 2
    rng = random.Random(14)

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        step = 0
        while time.monotonic() < stop_at:
            pop = pops[(number + step) % len(pops)]
            if step % 8 == 7:  # a multipart upload now and then: two parts to the bucket
                acknowledged.append(await upload(session, pop, os.urandom(PART + 4096)))
            elif step % 8 == 3:  # and a small one, put whole
                acknowledged.append(await upload(session, pop, os.urandom(64 * 1024)))
            else:
                acknowledged.append(await store(session, pop, os.urandom(
                    rng.randrange(1, 64 * 1024))))
            if step % 16 == 5 and acknowledged:
                # Deleting asks the coordinator: refused while it is away, never a 500.
                async with session.delete(
                        f"{pop}/api/file/{acknowledged[0].handle}",
                        params={"key": APIKEY, **remove_policy()}) as response:
                    if response.status == 503:
                        refusals.append((await response.json())["code"])
                    else:
                        assert response.status in (200, 404), await response.text()
            step += 1
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        clients = [asyncio.create_task(client(n, session)) for n in range(CLIENTS)]
        await asyncio.sleep(2)
        network.coordinator.stop()
        during = len(acknowledged)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert len(acknowledged) > during + 50, "the POPs stopped taking uploads"
        network.start_coordinator()
        returned = time.monotonic()
        await asyncio.gather(*clients)
        deleted = {acknowledged[0].handle}
        files = [file for file in acknowledged if file.handle not in deleted]
        found = await all_recorded(session, network.coordinator_url, files,
                                   within=RECOVERY_SECONDS - (time.monotonic() - returned)
                                   + 4)  # the clients' last 2 s and some slack to poll
        check_files(files, found)
        assert set(refusals) <= {"coordinator_unavailable", "file_at_pop"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                not network.hooks.events[(file.handle, "fp.upload")] for file in files):
            await asyncio.sleep(0.2)
        undelivered = [f.handle for f in files if not network.hooks.events[(f.handle,
                                                                            "fp.upload")]]
        assert not undelivered, f"{len(undelivered)} fp.upload webhooks never arrived"


async def test_a_pop_killed_before_shipping_reaches_the_coordinator_after_restart(
        network: Network) -> None:
    east = network.pop_url("us-east-1")
    async with aiohttp.ClientSession() as session:
        await store(session, east, b"warm up: the POP holds a lease")
        network.coordinator.stop()
        files = [await store(session, east, os.urandom(1000 + n)) for n in range(40)]
        files.append(await upload(session, east, os.urandom(PART + 1)))
        network.pops["us-east-1"].kill9()
        network.start_coordinator()
        network.start_pop("us-east-1")
        check_files(files, await all_recorded(session, network.coordinator_url, files,
                                              within=30))


async def test_a_coordinator_killed_mid_batch_applies_no_fact_twice(network: Network) -> None:
    east = network.pop_url("us-east-1")
    async with aiohttp.ClientSession() as session:
        await store(session, east, b"warm up: the POP holds a lease")
        network.coordinator.stop()
        files = list(await asyncio.gather(*(store(session, east, os.urandom(200 + n))
                                             for n in range(1500))))
        network.start_coordinator()
        # The backlog is a few batches long: kill the coordinator while it applies them.
        deadline = time.monotonic() + 30
        while await recorded(session, network.coordinator_url, files[0].handle) is None:
            assert time.monotonic() < deadline, "the backlog never started to arrive"
            await asyncio.sleep(0.01)
        network.coordinator.kill9()
        network.start_coordinator()
        check_files(files, await all_recorded(session, network.coordinator_url, files,
                                              within=60))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
                not network.hooks.events[(file.handle, "fp.upload")] for file in files):
            await asyncio.sleep(0.2)
    twice = [file.handle for file in files
             if len(network.hooks.events[(file.handle, "fp.upload")]) != 1]
    assert not twice, f"{len(twice)} files have no fp.upload event, or more than one"


def forged_store(handle: str, pop: str) -> FileStored:
    record = FileRecord(handle=handle, apikey=APIKEY, storage="bucket", provider="s3",
                        container="cin-test", key=f"forged/{handle}", filename="forged.txt",
                        mimetype="text/plain", size=6, status=FileStatus.COMPLETE, pop=pop,
                        uploaded=time.time(), etag="etag")
    return FileStored(id=new_event_id(), handle=handle, at=time.time(), record=record)


async def test_forged_facts_are_refused_by_the_coordinator_process(network: Network) -> None:
    east, west = "us-east-1", "eu-west-1"
    async with aiohttp.ClientSession() as session:
        client = CoordinatorClient(network.coordinator_url, INTERNAL_SECRET, session)

        async def lease(pop: str) -> str:
            block = await client.call(wire.LeaseHandles(pop=pop, count=2), wire.HandleLease,
                                      retry=False)
            return mint_handle(INTERNAL_SECRET, block.block, 0)

        async def send(pop: str, *events: FileStored) -> wire.BatchReply:
            return await client.call(wire.EventBatch(pop=pop, events=[
                event.to_wire() for event in events]), wire.BatchReply, retry=False)

        good = forged_store(await lease(east), east)
        wrong_pop = forged_store(await lease(west), east)  # west's handle, told by east
        never_leased = forged_store(new_handle(), east)
        reply = await send(east, good, wrong_pop, never_leased)
        assert [event_id for event_id, *_ in reply.refused] == [wrong_pop.id, never_leased.id]
        assert reply.statuses == {good.handle: "Complete"}
        replayed = await send(east, good, wrong_pop, never_leased)  # a retry, or a replay
        assert replayed == reply
        for forged in (wrong_pop, never_leased):
            assert await recorded(session, network.coordinator_url, forged.handle) is None
        async with session.get(f"{network.coordinator_url}/api/file/{good.handle}/metadata",
                               params={"size": "true"}) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["size"] == 6
        # A webhook the replay had queued would be due before this later file's.
        later = forged_store(await lease(east), east)
        assert (await send(east, later)).statuses == {later.handle: "Complete"}
        deadline = time.monotonic() + 10
        while not network.hooks.events[(later.handle, "fp.upload")]:
            assert time.monotonic() < deadline, "the later file's webhook never arrived"
            await asyncio.sleep(0.05)
    assert len(network.hooks.events[(good.handle, "fp.upload")]) == 1
    assert not network.hooks.events[(wrong_pop.handle, "fp.upload")]
    assert not network.hooks.events[(never_leased.handle, "fp.upload")]
