"""A POP's app with its journal: opened before it serves, a lease asked for before the
first request, events shipped before the POP says it leaves, figures at /metrics, and
all of it found again when the POP starts over. The coordinator is the loopback peer of
tests/coordinator_peer.py, which answers heartbeats, leases and event batches."""

from __future__ import annotations

import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from coordinator_peer import CoordinatorPeer
from journal_support import file_record, stored
from pytest_aiohttp import AiohttpServer
from support import INTERNAL_SECRET, config_data, to_config

from common.protocol import wire
from common.protocol.file_status import FileStatus
from edge.app import make_app
from edge.journal.sqlite_journal import JOURNAL_FILE
from edge.keys import JOURNAL

BEARER = {"Authorization": f"Bearer {INTERNAL_SECRET}"}


async def test_the_journal_lives_and_ships_with_the_pop(
        tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    peer = CoordinatorPeer(INTERNAL_SECRET)
    server = await aiohttp_server(peer.app(), host="127.0.0.1")
    data = config_data(tmp_path)
    data["coordinator"]["internal_url"] = str(server.make_url("")).rstrip("/")
    data["handle_leases"] = {"block_size": 500, "low_water": 10}
    config = to_config(data, tmp_path)
    pop = config.pops[0]

    app = make_app(config, pop)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        journal = app[JOURNAL]
        assert journal.handles_left() == 500  # leased before the first request
        assert (pop.spool_dir / JOURNAL_FILE).exists()
        peer.mode = "away"
        handle = await journal.take_handle()
        await journal.begin(file_record(handle))
        event = stored(handle)
        await journal.record(event, file_record(handle, FileStatus.COMPLETE, "e"))
        figures = await (await client.get("/metrics", headers=BEARER)).text()
        assert "cin_journal_handles_left 499.0" in figures
        assert "cin_journal_events_pending 1.0" in figures
        assert 'cin_lease_requests_total{outcome="granted"} 1.0' in figures
        peer.mode = "answer"  # back just as the POP stops: its events go before it leaves
        stopping = time.monotonic()

    assert time.monotonic() - stopping < 8.0
    assert peer.arrivals == {event.id: 1}
    batch = max(i for i, m in enumerate(peer.messages) if isinstance(m, wire.EventBatch))
    leave = peer.messages[-1]
    assert isinstance(leave, wire.PopHeartbeat) and leave.draining
    assert batch < len(peer.messages) - 1

    # Started again: the same journal, nothing sent twice, no lease asked (it holds some),
    # and none of the handles it may have given out before comes again.
    app = make_app(config, pop)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        journal = app[JOURNAL]
        assert 0 < journal.handles_left() < 499
        assert len([m for m in peer.messages if isinstance(m, wire.LeaseHandles)]) == 1
        found = await journal.file(handle)
        assert found is not None and found.acknowledged
        assert await journal.take_handle() != handle
    assert peer.arrivals == {event.id: 1}
