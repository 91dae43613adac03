"""A POP killed -9 after acknowledging an upload finishes the transfer once restarted.

The bucket is a moto server of this test's own, stopped while the POP is taking the
upload, so the parts are acknowledged (durable in the spool, file In Transit) but cannot
reach the bucket; the POP is then killed, the bucket comes back, and the restarted POP
finds its spool and sends the parts. The final object's sha256 is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from pathlib import Path

import aiobotocore.session
import aiohttp
import pytest
from moto.server import ThreadedMotoServer
from support import CinProcess, config_data, free_port, write_config
from upload_client import PART, send_and_complete, start_upload

pytestmark = pytest.mark.e2e



async def status_of(session: aiohttp.ClientSession, coordinator: str, handle: str) -> str:
    async with session.get(f"{coordinator}/api/file/{handle}/metadata",
                           params={"upload_status": "true"}) as response:
        return str((await response.json())["upload_status"])


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
            assert await status_of(session, coordinator_url, handle) == "In Transit"
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
