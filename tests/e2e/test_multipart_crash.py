"""Uploads survive crashes, with real processes and a sha256 check of the final object.

* A POP killed -9 after acknowledging an upload finishes the transfer once restarted.
  The bucket is a moto server of the test's own, stopped while the POP is taking the
  upload, so the parts are acknowledged (durable in the spool, file In Transit) but
  cannot reach the bucket; the POP is then killed, the bucket comes back, and the
  restarted POP finds its spool and sends the parts.
* A POP gone for good (killed, its spool deleted): the client asks another POP which
  parts are stored, sends it the rest, and completes there.
* The coordinator killed -9 twice, while parts arrive and right after complete: the
  upload finishes, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import aiohttp
import pytest
from moto.server import ThreadedMotoServer
from support import CinProcess, config_data, free_port, write_config
from upload_client import (
    PART,
    complete,
    part_status,
    send_and_complete,
    send_parts,
    start_upload,
    wait_for_stored,
)

pytestmark = pytest.mark.e2e

PAYLOAD_SIZE = 2 * PART + 777  # three parts, the last a short one


async def status_of(session: aiohttp.ClientSession, coordinator: str, handle: str) -> str:
    async with session.get(f"{coordinator}/api/file/{handle}/metadata",
                           params={"upload_status": "true"}) as response:
        return str((await response.json())["upload_status"])


async def reaches(session: aiohttp.ClientSession, coordinator: str, handle: str,
                  status: str, seconds: float = 10) -> str:
    """The file's status at the coordinator once it is `status`, or when `seconds` ran
    out: a POP's facts reach the coordinator a moment after the POP answered."""
    deadline = time.monotonic() + seconds
    while (found := await status_of(session, coordinator, handle)) != status \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


async def test_a_killed_pop_finishes_its_transfer_after_a_restart(
        tmp_path: Path, aws_environment: None) -> None:
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{moto_port}"
    bucket = f"cin-{uuid.uuid4().hex[:12]}"
    async with aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=bucket)
    data = config_data(tmp_path, s3_endpoint=moto_url, bucket=bucket)
    config = write_config(data, tmp_path / "cin.yaml")
    coordinator_url, pop_url = data["coordinator"]["public_url"], data["pops"][0]["public_url"]
    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    pop = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"], tmp_path).wait_ready()
    payload = os.urandom(2 * PART + 777)
    try:
        async with aiohttp.ClientSession() as session:
            # Start opens the bucket's multipart upload; from then on the bucket is away.
            start = await start_upload(session, pop_url, len(payload))
            moto.stop()
            reply = await send_and_complete(session, pop_url, start["upload_id"], payload)
            handle = reply["handle"]
            assert reply["status"] == "InTransit"
            assert await reaches(session, coordinator_url, handle, "In Transit") == "In Transit"
            pop.kill9()

            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
            moto.start()
            pop = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"],
                             tmp_path).wait_ready()
            deadline = time.monotonic() + 60
            while (await status_of(session, coordinator_url, handle) != "Complete"
                   and time.monotonic() < deadline):
                await asyncio.sleep(0.1)
            assert await status_of(session, coordinator_url, handle) == "Complete"
        async with aiobotocore.session.get_session().create_client(
                "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
            key = reply["key"]
            stored = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(payload).hexdigest()
    finally:
        pop.stop()
        coordinator.stop()
        moto.stop()


@pytest.fixture
async def bucket(moto_url: str) -> AsyncIterator[str]:
    name = f"cin-{uuid.uuid4().hex[:12]}"
    async with aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=name)
    yield name


async def stored_sha256(moto_url: str, bucket: str, key: str) -> str:
    async with aiobotocore.session.get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
        stored = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()
        pending = await s3.list_multipart_uploads(Bucket=bucket)
    assert not pending.get("Uploads"), "a multipart upload was left pending"
    return hashlib.sha256(stored).hexdigest()


async def wait_complete(session: aiohttp.ClientSession, coordinator: str,
                        handle: str) -> None:
    deadline = time.monotonic() + 60
    while (await status_of(session, coordinator, handle) != "Complete"
           and time.monotonic() < deadline):
        await asyncio.sleep(0.1)
    assert await status_of(session, coordinator, handle) == "Complete"


def network_config(tmp_path: Path, moto_url: str, bucket: str) -> tuple[Path, dict[str, Any]]:
    data = config_data(tmp_path, s3_endpoint=moto_url, bucket=bucket)
    return write_config(data, tmp_path / "cin.yaml"), data


async def test_a_pop_gone_for_good_is_replaced_by_another(
        tmp_path: Path, moto_url: str, bucket: str) -> None:
    config, data = network_config(tmp_path, moto_url, bucket)
    coordinator_url = data["coordinator"]["public_url"]
    east_url, west_url = (pop["public_url"] for pop in data["pops"])
    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    east = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"], tmp_path).wait_ready()
    west = CinProcess(["edge", "-c", str(config), "--pop", "eu-west-1"], tmp_path).wait_ready()
    payload = os.urandom(PAYLOAD_SIZE)
    try:
        async with aiohttp.ClientSession() as session:
            start = await start_upload(session, east_url, len(payload))
            upload_id = start["upload_id"]
            sent = await send_parts(session, east_url, upload_id, payload, numbers={1, 2})
            await wait_for_stored(session, coordinator_url, upload_id, {1, 2})
            east.kill9()
            shutil.rmtree(data["pops"][0]["spool_dir"])

            status = await part_status(session, west_url, upload_id)
            stored = {p["part_number"] for p in status["parts"] if p["state"] == "stored"}
            assert stored == {1, 2}, status
            sent += await send_parts(session, west_url, upload_id, payload,
                                     numbers={1, 2, 3} - stored)
            reply = await complete(session, west_url, upload_id, len(payload), sent)
            await wait_complete(session, coordinator_url, reply["handle"])
        assert await stored_sha256(moto_url, bucket, reply["key"]) == hashlib.sha256(
            payload).hexdigest()
    finally:
        west.stop()
        east.stop()
        coordinator.stop()


async def test_a_killed_coordinator_loses_nothing(
        tmp_path: Path, moto_url: str, bucket: str) -> None:
    config, data = network_config(tmp_path, moto_url, bucket)
    coordinator_url, east_url = data["coordinator"]["public_url"], data["pops"][0]["public_url"]

    def start_coordinator() -> CinProcess:
        return CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()

    coordinator = start_coordinator()
    east = CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"], tmp_path).wait_ready()
    payload = os.urandom(PAYLOAD_SIZE)
    try:
        async with aiohttp.ClientSession() as session:
            start = await start_upload(session, east_url, len(payload))
            upload_id = start["upload_id"]
            # Killed while the POP stores part 1 and reports it.
            sent = await send_parts(session, east_url, upload_id, payload, numbers={1})
            coordinator.kill9()
            coordinator = start_coordinator()
            sent += await send_parts(session, east_url, upload_id, payload, numbers={2, 3})
            reply = await complete(session, east_url, upload_id, len(payload), sent)
            # Killed again while the file is In Transit and its parts are reported.
            coordinator.kill9()
            coordinator = start_coordinator()
            await wait_complete(session, coordinator_url, reply["handle"])
            status = await part_status(session, coordinator_url, upload_id)
            assert [(p["part_number"], p["state"]) for p in status["parts"]] == [
                (1, "stored"), (2, "stored"), (3, "stored")]
        assert await stored_sha256(moto_url, bucket, reply["key"]) == hashlib.sha256(
            payload).hexdigest()
    finally:
        east.stop()
        coordinator.stop()
