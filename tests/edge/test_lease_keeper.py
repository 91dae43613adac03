"""The lease keeper, with a journal on a real SQLite file and a coordinator peer on
loopback (tests/coordinator_peer.py): a first block before the POP serves, a POP that
starts without the coordinator, the target that follows the store rate, and a lease
that is not this POP's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from coordinator_peer import CoordinatorPeer
from journal_support import POP, SECRET
from pytest_aiohttp import AiohttpServer

from common.protocol.errors import CinError, Code
from common.protocol.handle_lease import leased_handle
from edge.coordinator_client import CoordinatorClient
from edge.journal.leases import LeaseKeeper
from edge.journal.sqlite_journal import SqliteJournal


@dataclass
class Rig:
    journal: SqliteJournal
    peer: CoordinatorPeer
    client: CoordinatorClient

    def keeper(self, **settings: Any) -> LeaseKeeper:
        defaults: dict[str, Any] = {"block_size": 1000, "low_water": 100, "outage": 60.0}
        return LeaseKeeper(self.journal, self.client, POP, **(defaults | settings))


@pytest.fixture
async def rig(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Rig]:
    peer = CoordinatorPeer(SECRET)
    server = await aiohttp_server(peer.app(), host="127.0.0.1")
    journal = SqliteJournal(tmp_path, SECRET)
    await journal.open()
    async with aiohttp.ClientSession() as session:
        yield Rig(journal, peer, CoordinatorClient(str(server.make_url("")), SECRET, session))
    await journal.close()


async def until(condition: Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_pop_without_handles_gets_a_block_before_it_serves(rig: Rig) -> None:
    keeper = rig.keeper()
    await keeper.start()
    try:
        assert rig.journal.handles_left() == 1000
        assert len(rig.peer.leases) == 1
        handle = await rig.journal.take_handle()
        found = leased_handle(SECRET, handle)
        assert found is not None and found.block == rig.peer.leases[0].block
    finally:
        await keeper.stop()


async def test_a_pop_starts_without_the_coordinator_and_leases_once_it_returns(
        rig: Rig) -> None:
    rig.peer.mode = "away"
    keeper = rig.keeper(max_backoff=0.1)
    began = time.monotonic()
    await keeper.start(startup_wait=2.0)
    try:
        assert time.monotonic() - began < 2.5
        with pytest.raises(CinError) as raised:
            await rig.journal.take_handle()
        assert raised.value.code is Code.NO_HANDLES
        rig.peer.mode = "answer"
        await until(lambda: rig.journal.handles_left() > 0, 5.0)
        assert await rig.journal.take_handle()
    finally:
        await keeper.stop()


async def test_start_up_waits_only_so_long_for_a_stalled_coordinator(rig: Rig) -> None:
    rig.peer.mode = "stall"
    keeper = rig.keeper()
    began = time.monotonic()
    await keeper.start(startup_wait=0.3)
    await keeper.stop()
    assert time.monotonic() - began < 1.5
    assert rig.journal.handles_left() == 0


async def test_the_lease_follows_the_store_rate(rig: Rig) -> None:
    """At 10 stores a second, ten minutes of outage take 6,000 handles: the keeper
    leases blocks until it holds that many, not just the low-water mark."""
    rig.peer.lease_size = 10_000
    now = [1000.0]
    keeper = rig.keeper(block_size=2500, low_water=100, outage=600.0,
                        clock=lambda: now[0])
    await keeper.top_up()
    assert rig.journal.handles_left() == 2500  # one block covers the low-water mark
    keeper.sample()
    for _ in range(10):  # ten seconds of 10 stores a second
        for _ in range(10):
            await rig.journal.take_handle()
        now[0] += 1.0
        keeper.sample()
    assert keeper.rate() == pytest.approx(10.0)
    assert keeper.target() == 6000
    await keeper.top_up()
    assert rig.journal.handles_left() >= 6000
    assert len(rig.peer.leases) == 3

    # Idle for longer than the window: the rate falls back, and no more is asked.
    now[0] += 120.0
    keeper.sample()
    now[0] += 1.0
    keeper.sample()
    assert keeper.rate() == 0.0
    assert keeper.target() == 100


async def test_a_lease_granted_to_another_pop_is_not_used(rig: Rig) -> None:
    rig.peer.lease_pop = "eu-west-1"
    keeper = rig.keeper()
    await keeper.start(startup_wait=1.0)
    await keeper.stop()
    assert rig.journal.handles_left() == 0
