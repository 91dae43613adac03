"""The shipper, from a journal on a real SQLite file to a coordinator peer on loopback
(tests/coordinator_peer.py) over real signed HTTP: order, batching, one batch at a time,
retries while the coordinator is away or stalls, refusals, flush and the last attempt at
shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from coordinator_peer import CoordinatorPeer
from journal_support import POP, SECRET, file_record, part_stored, stored, upload_started
from pytest_aiohttp import AiohttpServer

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.pop_events import UploadInTransit, new_event_id
from edge.coordinator_client import CoordinatorClient
from edge.journal.shipper import Shipper
from edge.journal.sqlite_journal import SqliteJournal
from edge.metrics import EdgeMetrics


@dataclass
class Rig:
    journal: SqliteJournal
    peer: CoordinatorPeer
    client: CoordinatorClient

    def shipper(self, **settings: Any) -> Shipper:
        shipper = Shipper(self.journal, self.client, POP, **settings)
        self.journal.on_event = shipper.wake
        return shipper

    def shipped_in_order(self) -> list[str]:
        return [event_id for batch in self.peer.batches for event_id in batch]


@pytest.fixture
async def rig(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Rig]:
    peer = CoordinatorPeer(SECRET)
    server = await aiohttp_server(peer.app(), host="127.0.0.1")
    journal = SqliteJournal(tmp_path, SECRET)
    await journal.open()
    async with aiohttp.ClientSession() as session:
        yield Rig(journal, peer, CoordinatorClient(str(server.make_url("")), SECRET, session))
    await journal.close()


async def record_stores(journal: SqliteJournal, count: int, prefix: str = "A") -> list[str]:
    """`count` REST stores at once; the ids of their events, in the journal's order."""
    async def one(n: int) -> None:
        handle = f"{prefix}{n:019d}"
        await journal.begin(file_record(handle))
        await journal.record(stored(handle), file_record(handle, FileStatus.COMPLETE, "e"))

    await asyncio.gather(*(one(n) for n in range(count)))
    return [u.event.id for u in await journal.unshipped(100_000)
            if u.event.handle.startswith(prefix)]


async def test_events_go_oldest_first_in_batches_one_batch_at_a_time(rig: Rig) -> None:
    rig.peer.apply_seconds = 0.02  # slow enough that a second batch could overtake
    started = upload_started("U" * 20)
    await rig.journal.begin(started.record, started.upload, started)
    recorded = [started.id] + await record_stores(rig.journal, 120)
    for part in (1, 2, 3):
        event = part_stored("U" * 20, part)
        await rig.journal.record(event)
        recorded.append(event.id)
    rig.peer.statuses = {"U" * 20: "In Transit"}
    metrics = EdgeMetrics()
    shipper = rig.shipper(batch_size=50, metrics=metrics)
    told: list[dict[str, str]] = []

    async def listener(statuses: dict[str, str]) -> None:
        told.append(statuses)

    async def broken(statuses: dict[str, str]) -> None:
        raise RuntimeError("a listener's own failure")

    shipper.on_statuses(broken)
    shipper.on_statuses(listener)
    shipper.start()
    await shipper.flush(10.0)
    await shipper.stop()

    assert rig.shipped_in_order() == recorded
    assert all(len(batch) <= 50 for batch in rig.peer.batches)
    assert len(rig.peer.batches) == 3
    assert rig.peer.most_in_flight == 1
    assert await rig.journal.pending_count() == 0
    store = await rig.journal.file("A" + "0" * 19)
    upload = await rig.journal.file("U" * 20)
    assert store is not None and store.acknowledged
    assert upload is not None and upload.acknowledged
    assert upload.record.status is FileStatus.IN_TRANSIT  # as the coordinator answered
    # Listeners hear the statuses of the batches that named the upload (the first and
    # the last), one failing listener keeping none of it from the others.
    assert told == [{"U" * 20: "In Transit"}, {"U" * 20: "In Transit"}]
    assert metrics._batches.labels("shipped")._value.get() == 3


async def test_stores_of_one_moment_share_a_batch(rig: Rig) -> None:
    shipper = rig.shipper(linger=0.05)
    shipper.start()
    await record_stores(rig.journal, 40)  # 40 wake-ups
    await shipper.flush(10.0)
    await shipper.stop()
    assert sum(len(batch) for batch in rig.peer.batches) == 40
    assert len(rig.peer.batches) <= 4, [len(batch) for batch in rig.peer.batches]


async def test_a_coordinator_away_gets_every_event_once_it_returns(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.peer.mode = "away"
    metrics = EdgeMetrics()
    shipper = rig.shipper(max_backoff=0.2, metrics=metrics)
    shipper.start()
    recorded = await record_stores(rig.journal, 30)
    began = time.monotonic()
    with pytest.raises(CinError) as raised:
        await shipper.flush(5.0)
    assert raised.value.code is Code.COORDINATOR_UNAVAILABLE
    # Failed attempts in a row say the coordinator is away: a flush does not wait it out.
    assert time.monotonic() - began < 1.0
    assert await rig.journal.pending_count() == 30
    await asyncio.sleep(0.5)
    assert metrics._batches.labels("failed")._value.get() >= 2  # it keeps trying

    rig.peer.mode = "answer"
    await shipper.flush(5.0)
    await shipper.stop()
    assert rig.shipped_in_order() == recorded
    assert set(rig.peer.arrivals.values()) == {1}  # none sent again once taken
    # One warning for the outage, not one per attempt.
    warnings = [r for r in caplog.records if r.name == "cin.edge.shipper"
                and r.levelno == logging.WARNING]
    assert len(warnings) == 1


async def test_a_batch_whose_reply_is_lost_is_sent_again(rig: Rig) -> None:
    rig.peer.mode = "stall"  # takes the first batch, then never answers it
    shipper = rig.shipper(batch_timeout=0.3, max_backoff=0.1)
    recorded = await record_stores(rig.journal, 10)
    shipper.start()
    await shipper.flush(5.0)
    await shipper.stop()
    assert rig.peer.batches == [recorded, recorded]  # the same events, in the same order
    assert await rig.journal.pending_count() == 0


async def test_a_refused_event_is_logged_and_never_sent_again(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    recorded = await record_stores(rig.journal, 5)
    rig.peer.refuse = {recorded[2]}
    shipper = rig.shipper()
    shipper.start()
    await shipper.flush(5.0)
    more = await record_stores(rig.journal, 3, prefix="B")
    await shipper.flush(5.0)
    await shipper.stop()
    assert rig.shipped_in_order() == recorded + more
    assert await rig.journal.pending_count() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(recorded[2] in message for message in errors)


async def test_a_refused_event_with_no_readable_id_is_named_by_its_position(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    recorded = await record_stores(rig.journal, 4)
    rig.peer.unreadable = {recorded[1]}
    shipper = rig.shipper()
    shipper.start()
    await shipper.flush(5.0)
    await shipper.stop()
    assert rig.shipped_in_order() == recorded
    assert await rig.journal.pending_count() == 0  # dropped with the rest of the batch
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and recorded[1] in errors[0], errors
    assert "file_stored" in errors[0] and "not leased to this POP" in errors[0]


async def test_events_no_one_woke_it_for_go_at_the_next_poll(rig: Rig) -> None:
    recorded = await record_stores(rig.journal, 3)
    shipper = Shipper(rig.journal, rig.client, POP, poll_interval=0.1)  # never woken
    shipper.start()
    await asyncio.sleep(0.05)  # the start's own look has gone by
    rig.peer.received.clear()
    more = await record_stores(rig.journal, 2, prefix="B")
    async with asyncio.timeout(5):
        await rig.peer.received.wait()
    await shipper.stop()
    # (stopped as the reply came in, the last attempt may send the batch once more)
    assert list(dict.fromkeys(rig.shipped_in_order())) == recorded + more
    assert await rig.journal.pending_count() == 0


async def test_flush_waits_only_for_what_was_recorded_before_it(rig: Rig) -> None:
    shipper = rig.shipper()
    shipper.start()
    await shipper.flush(1.0)  # nothing recorded: at once
    await record_stores(rig.journal, 3)
    await shipper.flush(5.0)
    assert await rig.journal.pending_count() == 0
    await shipper.stop()


async def test_an_event_too_large_for_a_message_is_dropped_not_held(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    started = upload_started("U" * 20)
    await rig.journal.begin(started.record, started.upload, started)
    huge = UploadInTransit(id=new_event_id(), handle="U" * 20, at=time.time(),
                           upload_id=started.upload.upload_id, parts=[[1, 5]],
                           tags={"big": "x" * (1024 * 1024 + 1)})
    await rig.journal.record(huge)
    after = await record_stores(rig.journal, 2)
    shipper = rig.shipper()
    shipper.start()
    await shipper.flush(5.0)
    await shipper.stop()
    assert rig.shipped_in_order() == [started.id, *after]
    assert any(huge.id in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_shutdown_makes_one_bounded_last_attempt(rig: Rig) -> None:
    recorded = await record_stores(rig.journal, 4)
    shipper = rig.shipper()  # never started: the last attempt alone ships them
    await shipper.stop(last_attempt=5.0)
    assert rig.shipped_in_order() == recorded
    assert await rig.journal.pending_count() == 0

    await record_stores(rig.journal, 2, prefix="B")
    rig.peer.mode = "stall"
    rig.peer.stall_seconds = 30.0
    began = time.monotonic()
    await rig.shipper().stop(last_attempt=0.3)
    assert time.monotonic() - began < 2.0
    assert await rig.journal.pending_count() == 2  # kept for the next start
