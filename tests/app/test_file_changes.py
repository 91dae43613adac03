"""Overwrite and delete where two files meet one key, or two overwrites meet one file."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from support import APIKEY, APP_SECRET, start_network

from common.protocol.errors import CinError, Code
from coordinator.keys import FILES

AUTH = {"Authorization": "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()}


async def test_deleting_a_file_keeps_a_newer_files_object_at_the_same_key(
        tmp_path: Path) -> None:
    async with start_network(tmp_path) as network:
        handles = []
        for body in (b"first", b"second"):
            reply = await network.pop.post("/api/store/S3", data=body,
                                           params={"key": APIKEY, "path": "shared/name.txt"})
            assert reply.status == 200
            handles.append((await reply.json())["handle"])
        # Storing to an explicit path twice: the second object replaced the first.
        gone = await network.pop.get(f"/api/file/{handles[0]}")
        assert gone.status == 410

        deleted = await network.coordinator.delete(f"/api/file/{handles[0]}", headers=AUTH)
        assert deleted.status == 200
        survivor = await network.pop.get(f"/api/file/{handles[1]}")
        assert survivor.status == 200
        assert await survivor.read() == b"second"


async def test_an_overwrite_report_for_bytes_no_longer_in_the_bucket_is_refused(
        tmp_path: Path) -> None:
    async with start_network(tmp_path) as network:
        stored = await network.pop.post("/api/store/S3", data=b"v1", params={"key": APIKEY})
        handle = (await stored.json())["handle"]
        newer = await network.pop.post(f"/api/file/{handle}", data=b"v2-newer", headers=AUTH)
        assert newer.status == 200
        # A slower overwrite reporting its put after the newer one replaced its bytes.
        files = network.coordinator.app[FILES]
        with pytest.raises(CinError) as caught:
            await files.overwritten(handle, 2, "etag-of-a-replaced-put", "text/plain")
        assert caught.value.code is Code.CONFLICT
        record = await files.get(handle)
        assert (record.version, record.size) == (2, len(b"v2-newer"))
        current = await network.coordinator.get(f"/api/file/{handle}")
        assert await current.read() == b"v2-newer"
