"""A real coordinator process on PostgreSQL, on uvloop as it runs in production: it takes
stores from a real POP, is killed with -9, and its successor has every acknowledged file.
The database URL, password and all, never appears in what the coordinator prints."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import APIKEY, CinProcess, config_data, write_config

pytestmark = pytest.mark.e2e

PASSWORD = "hunter22-not-shown"  # the test server trusts loopback: any password will do


@pytest.fixture
def deployment(tmp_path: Path, postgres_database: str) -> Iterator[dict[str, Any]]:
    state = postgres_database.replace("://cin@", f"://cin:{PASSWORD}@")
    data = config_data(tmp_path, event_loop="uvloop", state=state)
    config = write_config(data, tmp_path / "cin.yaml")
    processes: dict[str, Any] = {"data": data, "config": config, "root": tmp_path}
    processes["coordinator"] = CinProcess(["coordinator", "-c", str(config)],
                                          tmp_path).wait_ready()
    processes["pop"] = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"],
                                  tmp_path).wait_ready()
    yield processes
    for name in ("pop", "coordinator"):
        processes[name].stop()


async def store(session: aiohttp.ClientSession, pop: str, payload: bytes) -> str:
    async with session.post(f"{pop}/api/store/S3", data=payload,
                            params={"key": APIKEY}) as response:
        reply = await response.json()
        assert response.status == 200, reply
    return str(reply["handle"])


async def metadata(session: aiohttp.ClientSession, coordinator: str,
                   handle: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{coordinator}/api/file/{handle}/metadata") as response:
            found: dict[str, Any] = await response.json()
        if found.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_a_coordinator_on_postgresql_keeps_its_files_through_a_kill(
        deployment: dict[str, Any]) -> None:
    coordinator = str(deployment["data"]["coordinator"]["public_url"])
    pop = str(deployment["data"]["pops"][0]["public_url"])
    first, second = os.urandom(50_000), os.urandom(60_000)
    async with aiohttp.ClientSession() as session:
        kept = await store(session, pop, first)
        assert (await metadata(session, coordinator, kept))["upload_status"] == "Complete"

        killed = deployment["coordinator"]
        killed.kill9()
        deployment["coordinator"] = CinProcess(["coordinator", "-c",
                                                str(deployment["config"])],
                                               deployment["root"]).wait_ready()
        found = await metadata(session, coordinator, kept)
        assert (found["upload_status"], found["sha256"]) == (
            "Complete", hashlib.sha256(first).hexdigest())

        later = await store(session, pop, second)
        found = await metadata(session, coordinator, later)
        assert (found["upload_status"], found["sha256"]) == (
            "Complete", hashlib.sha256(second).hexdigest())
    for process in (killed, deployment["coordinator"]):
        assert PASSWORD not in process.output
