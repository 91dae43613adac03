"""Webhooks from real cin processes: a receiver that was down, a coordinator killed -9.

Events are written with the changes they report, so neither a receiver that is not
listening nor a coordinator that dies loses one: after a restart every event still
arrives, signed as Filestack signs them, and a retried event is the same event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from filestack.helpers import verify_webhook_signature
from support import (
    APIKEY,
    APP_SECRET,
    WEBHOOK_SECRET,
    CinProcess,
    config_data,
    free_port,
    write_config,
)

from common.protocol.security import encode_policy, sign_policy

pytestmark = pytest.mark.e2e

BASIC = "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()


@dataclass(frozen=True)
class Hit:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class FlakyReceiver:
    """Answers 500 to the first `failures` posts of each event id, then 200."""

    def __init__(self, port: int, failures: int) -> None:
        self.failures = failures
        self.hits: list[Hit] = []
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)

    def of(self, event_id: int) -> list[Hit]:
        return [hit for hit in self.hits if hit.document["id"] == event_id]

    def delivered(self) -> dict[int, Hit]:
        return {hit.document["id"]: hit for hit in self.hits if hit.status == 200}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = json.loads(body)["id"]
        status = 500 if len(self.of(event_id)) < self.failures else 200
        self.hits.append(Hit(dict(request.headers), body, status))
        return web.Response(status=status)


@dataclass
class Deployment:
    root: Path
    data: dict[str, Any]
    config: Path
    coordinator: CinProcess | None = None
    pop: CinProcess | None = None

    @property
    def coordinator_url(self) -> str:
        return str(self.data["coordinator"]["public_url"])

    @property
    def pop_url(self) -> str:
        return str(self.data["pops"][0]["public_url"])

    def start_coordinator(self) -> None:
        self.coordinator = CinProcess(["coordinator", "-c", str(self.config)], self.root)
        self.coordinator.wait_ready()


@pytest.fixture
def receiver_port() -> int:
    return free_port()


@pytest.fixture
def deployment(tmp_path: Path, receiver_port: int) -> Iterator[Deployment]:
    data = config_data(tmp_path, webhooks=[f"http://127.0.0.1:{receiver_port}/hook"],
                       webhook_delivery={"first_retry": 0.1, "max_interval": 0.5,
                                         "timeout": 2})
    deployed = Deployment(tmp_path, data, write_config(data, tmp_path / "cin.yaml"))
    deployed.start_coordinator()
    pop_name = str(data["pops"][0]["name"])
    deployed.pop = CinProcess(["edge", "-c", str(deployed.config), "--pop", pop_name],
                              tmp_path).wait_ready()
    yield deployed
    for process in (deployed.pop, deployed.coordinator):
        if process is not None:
            process.stop()


async def health(session: aiohttp.ClientSession, deployment: Deployment) -> dict[str, int]:
    async with session.get(f"{deployment.coordinator_url}/health") as response:
        assert response.status == 200
        webhooks: dict[str, int] = (await response.json())["webhooks"]
        return webhooks


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_every_event_survives_a_dead_receiver_and_a_killed_coordinator(
        deployment: Deployment, receiver_port: int) -> None:
    pop = deployment.pop_url
    async with aiohttp.ClientSession() as session:
        sizes: dict[str, int] = {}
        for index in range(5):
            payload = os.urandom(1000 + index)
            async with session.post(f"{pop}/api/store/S3", data=payload,
                                    params={"key": APIKEY}) as response:
                reply = await response.json()
                assert response.status == 200, reply
            sizes[reply["handle"]] = len(payload)
        handles = list(sizes)
        overwritten, deleted = handles[0], handles[1]

        new = b"the second version"
        policy = encode_policy({"expiry": int(time.time()) + 3600, "call": ["write"],
                                "handle": overwritten})
        async with session.post(f"{pop}/api/file/{overwritten}", data=new,
                                params={"policy": policy,
                                        "signature": sign_policy(APP_SECRET, policy)},
                                headers={"Content-Type": "application/x-second"}) as response:
            assert response.status == 200, await response.text()
        async with session.delete(f"{pop}/api/file/{deleted}", params={"key": APIKEY},
                                  headers={"Authorization": BASIC}) as response:
            assert response.status == 200, await response.text()

        # Nothing listens on the receiver's port: every event waits in the outbox.
        assert await health(session, deployment) == {"pending": 7, "abandoned": 0}
        assert deployment.coordinator is not None
        deployment.coordinator.kill9()
        deployment.start_coordinator()
        assert await health(session, deployment) == {"pending": 7, "abandoned": 0}

        receiver = FlakyReceiver(receiver_port, failures=2)
        await receiver.server.start_server()
        try:
            async def all_delivered() -> bool:
                return len(receiver.delivered()) == 7

            await until(all_delivered, "all seven events to be answered 200")

            async def outbox_empty() -> bool:
                return await health(session, deployment) == {"pending": 0, "abandoned": 0}

            await until(outbox_empty, "the coordinator to record every delivery")
        finally:
            await receiver.server.close()

    for hit in receiver.hits:
        assert verify_webhook_signature(WEBHOOK_SECRET, hit.body, hit.headers) == (True, {})
    events = receiver.delivered()
    for event_id, hit in events.items():
        attempts = receiver.of(event_id)
        # Each event was refused twice, then accepted: three posts of the same bytes.
        assert [attempt.status for attempt in attempts] == [500, 500, 200]
        assert {attempt.body for attempt in attempts} == {hit.body}
    documents = [hit.document for hit in events.values()]
    assert sorted((d["action"], d["text"]["handle"]) for d in documents) == sorted(
        [("fp.upload", handle) for handle in handles]
        + [("fp.overwrite", overwritten), ("fp.delete", deleted)])
    for document in documents:
        text = document["text"]
        assert text["url"] == f"{deployment.coordinator_url}/api/file/{text['handle']}"
        if document["action"] == "fp.upload":
            assert (text["size"], text["status"]) == (sizes[text["handle"]], "Stored")
        elif document["action"] == "fp.overwrite":
            assert (text["size"], text["type"], text["status"]) == (
                len(new), "application/x-second", "Stored")
        else:
            assert (text["size"], text["status"]) == (sizes[deleted], "Deleted")
