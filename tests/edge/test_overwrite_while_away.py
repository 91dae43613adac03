"""An overwrite at a POP while the coordinator is away: decided there, so refused with a
503 to retry, except for another app's file, which is missing (404) as ever when this
POP's journal holds it. The coordinator is the loopback peer of tests/coordinator_peer.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from coordinator_peer import CoordinatorPeer
from journal_support import file_record, stored
from pytest_aiohttp import AiohttpServer
from support import APIKEY, INTERNAL_SECRET, SECURE_APIKEY, config_data, to_config

from common.protocol.file_status import FileStatus
from edge import coordinator_client
from edge.app import make_app
from edge.keys import JOURNAL, SHIPPER


async def test_an_overwrite_while_the_coordinator_is_away(
        tmp_path: Path, aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coordinator_client, "RETRY_DELAYS", (0.05,))  # away is away
    peer = CoordinatorPeer(INTERNAL_SECRET)
    server = await aiohttp_server(peer.app(), host="127.0.0.1")
    data = config_data(tmp_path)
    data["coordinator"]["internal_url"] = str(server.make_url("")).rstrip("/")
    config = to_config(data, tmp_path)
    app = make_app(config, config.pops[0])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        journal = app[JOURNAL]
        handle = await journal.take_handle()
        record = dataclasses.replace(file_record(handle), pop=config.pops[0].name,
                                     apikey=APIKEY)
        await journal.begin(record)
        complete = dataclasses.replace(record, status=FileStatus.COMPLETE, etag="e")
        await journal.record(stored(handle), complete)
        await app[SHIPPER].flush(5.0)  # acknowledged: a POP asks the coordinator at once
        found = await journal.file(handle)
        assert found is not None and found.acknowledged
        peer.mode = "away"
        for key, status, code in ((SECURE_APIKEY, 404, "file_not_found"),
                                  (APIKEY, 503, "coordinator_unavailable")):
            response = await client.post(f"/api/file/{handle}", params={"key": key},
                                         data=b"new bytes")
            body = await response.json()
            assert (response.status, body["code"]) == (status, code), body
        peer.mode = "answer"  # back before the POP leaves, which it tells the coordinator
