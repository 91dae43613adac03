"""A POP killed -9 in the middle of 10 raw and 10 form stores, with real processes and a
local-disk bucket: once it is restarted and the sweeps have run, nothing of the
interrupted stores is left. No temp file in the bucket, no file still Started, no object
that is not a Complete file's, nothing in the POP's spool; the stores that finished before
the kill are intact.

The bodies are sent in part and then held, so that the kill lands mid-store: each raw
store has its file begun in the POP's journal (the coordinator hears of it only if it
ends: Failed, once the restarted POP reports it abandoned) and its bytes in a temp file of
the bucket, each form store its bytes in the POP's spool. The store TTL and the sweep
interval are seconds here, so the sweep comes within the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import APIKEY, CinProcess, config_data, local_object_keys, write_config

from common.config import STATE_FILE

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
STORES = 10  # of each kind
STORE_TTL = 12  # seconds; the sweep runs every second
SENT = 3 * MiB  # of each body before it is held: past the first write to the bucket
DECLARED = 8 * MiB


def statuses(state: Path) -> list[tuple[str, str]]:
    """(status, key) of every file, from the coordinator's database."""
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT status, key FROM files"))


def started(state: Path) -> int:
    return sum(status == "Started" for status, _ in statuses(state))


def temp_files(bucket: Path) -> list[Path]:
    return list(bucket.rglob(".tmp-*"))


def object_keys(bucket: Path) -> list[str]:
    """The key of every object in the bucket, from its metadata."""
    return [key for objects in sorted(bucket.glob("*/objects"))
            for key in local_object_keys(objects)]


def staged(spool: Path) -> list[Path]:
    incoming = spool / "incoming"
    return list(incoming.iterdir()) if incoming.exists() else []


async def eventually(check: Callable[[], bool], what: str, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def held_store(host: str, port: int, *, form: bool) -> asyncio.StreamWriter:
    """A store whose client sends SENT bytes of its body and then nothing: its writer."""
    _, writer = await asyncio.open_connection(host, port)
    if form:
        boundary = "held-form-boundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"fileUpload\"; "
                f"filename=\"held.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        content_type = f"multipart/form-data; boundary={boundary}"
        declared = len(head) + DECLARED + len(f"\r\n--{boundary}--\r\n")
    else:
        head, content_type, declared = "", "application/octet-stream", DECLARED
    writer.write(f"POST /api/store/S3?key={APIKEY}&filename=held.bin HTTP/1.1\r\n"
                 f"Host: {host}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {declared}\r\n\r\n{head}".encode())
    for _ in range(SENT // (256 * 1024)):
        writer.write(os.urandom(256 * 1024))
        await writer.drain()
    return writer


async def test_a_pop_killed_mid_store_leaves_nothing_behind(tmp_path: Path) -> None:
    data = config_data(tmp_path, url_fetch_timeout=1,
                       upload_expiry={"store_ttl": STORE_TTL, "sweep_interval": 1})
    config = write_config(data, tmp_path / "cin.yaml")
    pop_config = data["pops"][0]
    host, port = pop_config["listen"].rsplit(":", 1)
    spool, bucket = Path(pop_config["spool_dir"]), Path(data["storage"]["bucket"]["root"])
    state = Path(data["coordinator"]["state_dir"]) / STATE_FILE
    pop_url, coordinator_url = pop_config["public_url"], data["coordinator"]["public_url"]

    def start_pop() -> CinProcess:
        return CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"],
                          tmp_path).wait_ready()

    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    pop = start_pop()
    writers: list[asyncio.StreamWriter] = []
    try:
        async with aiohttp.ClientSession() as session:
            # Two stores that finish: their files and objects must survive the sweep.
            kept: dict[str, bytes] = {}
            for form in (False, True):
                payload = os.urandom(2 * MiB)
                body: Any = payload
                if form:
                    body = aiohttp.FormData()
                    body.add_field("fileUpload", payload, filename="kept.bin")
                async with session.post(f"{pop_url}/api/store/S3", params={"key": APIKEY},
                                        data=body) as response:
                    reply = await response.json()
                    assert response.status == 200, reply
                kept[reply["handle"]] = payload

            writers = list(await asyncio.gather(
                *(held_store(host, int(port), form=form)
                  for form in [False] * STORES + [True] * STORES)))
            await eventually(lambda: (len(temp_files(bucket)) == STORES
                                      and len(staged(spool)) == STORES),
                             "every store to be under way", seconds=STORE_TTL * 2 / 3)
            pop.kill9()
            for writer in writers:
                writer.close()
            assert len(temp_files(bucket)) == STORES

            pop = start_pop()
            assert staged(spool) == []  # nothing the restarted POP acknowledged
            await eventually(lambda: started(state) == 0 and temp_files(bucket) == [],
                             "the sweep of the interrupted stores")

            complete = {key for status, key in statuses(state) if status == "Complete"}
            assert len(complete) == len(kept)
            assert sorted(object_keys(bucket)) == sorted(complete)  # no orphan object
            assert list(bucket.glob("*/uploads/*")) == []
            assert [status for status, _ in statuses(state)].count("Failed") == STORES
            for handle, payload in kept.items():
                async with session.get(f"{coordinator_url}/api/file/{handle}") as response:
                    assert (response.status, await response.read()) == (200, payload)
    finally:
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
        pop.stop()
        coordinator.stop()
