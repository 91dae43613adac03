"""Handle leases and POP event batches at a real coordinator: a POP is leased blocks of
handles, ships what it did as events, and the coordinator applies each once, refuses what
is not the sending POP's to say, and finishes uploads whose parts are all stored.

The messages go over loopback HTTP, signed, through the POP's own CoordinatorClient."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, Network, free_port, start_network

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import MAX_BLOCK_SIZE, mint_handle, mint_upload_id
from common.protocol.limits import MIN_PART_SIZE
from common.protocol.naming import new_handle
from common.protocol.pop_events import (
    FileStored,
    PartStored,
    PopEvent,
    StoreAbandoned,
    UploadInTransit,
    UploadStarted,
    UploadStored,
    new_event_id,
)
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.storage import StorageError
from common.web.metrics import METRICS
from coordinator.keys import FILES, LEASES, MULTIPART, STATE, STORAGE
from coordinator.leases import HandleLeases
from coordinator.upload_finisher import UploadFinisher
from edge.keys import COORDINATOR

EAST, WEST = "us-east-1", "eu-west-1"
CONTAINER = "cin-test"


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    dead_receiver = f"http://127.0.0.1:{free_port()}/hook"  # webhooks stay in the outbox
    async with start_network(tmp_path, webhooks=[dead_receiver],
                             webhook_delivery={"first_retry": 600}) as started:
        yield started


async def call(network: Network, msg: wire.Message, expect: type[Any]) -> Any:
    return await network.pop.app[COORDINATOR].call(msg, expect, retry=False)


async def lease(network: Network, pop: str = EAST, count: int = 100) -> wire.HandleLease:
    granted: wire.HandleLease = await call(network, wire.LeaseHandles(pop=pop, count=count),
                                           wire.HandleLease)
    return granted


async def send(network: Network, *events: PopEvent | dict[str, Any],
               pop: str = EAST) -> wire.BatchReply:
    bodies = [event.to_wire() if isinstance(event, PopEvent) else event for event in events]
    reply: wire.BatchReply = await call(network, wire.EventBatch(pop=pop, events=bodies),
                                        wire.BatchReply)
    return reply


def handle_of(network: Network, block: wire.HandleLease, index: int) -> str:
    return mint_handle(network.config.internal_secret, block.block, index)


def file_record(handle: str, *, size: int = 5, status: FileStatus = FileStatus.COMPLETE,
                pop: str = EAST) -> FileRecord:
    record = FileRecord(handle=handle, apikey=APIKEY, storage="bucket", provider="s3",
                        container=CONTAINER, key=f"k/{handle}.txt", filename=f"{handle}.txt",
                        mimetype="text/plain", size=size, status=status, pop=pop,
                        uploaded=time.time())
    return record.with_changes(etag="etag") if status is FileStatus.COMPLETE else record


def stored(handle: str) -> FileStored:
    return FileStored(id=new_event_id(), handle=handle, at=time.time(),
                      record=file_record(handle))


async def webhooks_of(network: Network, handle: str) -> int:
    """The fp.upload deliveries in the outbox for `handle`."""
    due = await network.coordinator.app[STATE].due_deliveries(time.time() + 10**6, 10_000)
    return sum(1 for d in due if d.text["handle"] == handle and d.action == "fp.upload")


async def status_of(network: Network, handle: str) -> FileStatus | None:
    found = await network.coordinator.app[STATE].get_file(handle)
    return found.status if found is not None else None


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- leases


async def test_a_lease_is_a_block_of_the_pops_handles(network: Network) -> None:
    block = await lease(network, count=5)
    assert (block.pop, block.size, len(block.block)) == (EAST, 5, 8)
    leases = network.coordinator.app[LEASES]
    assert await leases.holder(handle_of(network, block, 0)) == EAST
    assert await leases.holder(handle_of(network, block, 4)) == EAST
    assert await leases.holder(handle_of(network, block, 5)) is None  # past its size
    forged = handle_of(network, block, 1)
    forged = forged[:-1] + ("a" if forged[-1] != "a" else "b")
    assert await leases.holder(forged) is None
    assert await leases.holder(new_handle()) is None
    # Another coordinator on the same state knows the block without having granted it.
    other = HandleLeases(network.coordinator.app[STATE], network.config)
    assert await other.holder(handle_of(network, block, 3)) == EAST


async def test_a_lease_has_at_least_one_handle_and_at_most_a_block(network: Network) -> None:
    at_start = await network.coordinator.app[STATE].leases()  # the POP's start-up block
    assert (await lease(network, count=0)).size == 1
    assert (await lease(network, pop=WEST, count=10**9)).size == MAX_BLOCK_SIZE
    blocks = await network.coordinator.app[STATE].leases()
    assert [(b.pop, b.size) for b in blocks if b not in at_start] == [
        (EAST, 1), (WEST, MAX_BLOCK_SIZE)]


async def test_only_a_configured_pop_is_leased_handles(network: Network) -> None:
    at_start = await network.coordinator.app[STATE].leases()  # the POP's start-up block
    assert [b.pop for b in at_start] == [EAST]
    with pytest.raises(CinError) as refused:
        await lease(network, pop="nowhere")
    # The POP's client reports a message the coordinator refused as its own outage.
    assert refused.value.code is Code.COORDINATOR_UNAVAILABLE
    assert await network.coordinator.app[STATE].leases() == at_start


# ---------------------------------------------------------------------------- batches


async def test_a_batch_is_applied_once_however_often_it_is_sent(network: Network) -> None:
    block = await lease(network)
    handles = [handle_of(network, block, i) for i in range(3)]
    events = [stored(handle) for handle in handles]
    first = await send(network, *events)
    assert first.refused == []
    assert first.statuses == {handle: "Complete" for handle in handles}
    for handle, event in zip(handles, events, strict=True):
        assert await network.coordinator.app[STATE].get_file(handle) == event.record
    again = await send(network, *events)  # a retry after a lost reply
    assert again == first
    assert [await webhooks_of(network, handle) for handle in handles] == [1, 1, 1]
    # The file is served at its link from the coordinator at once.
    record = await network.coordinator.app[FILES].get(handles[0])
    assert record.status is FileStatus.COMPLETE


async def test_forged_events_are_refused_and_change_nothing(network: Network) -> None:
    east, west = await lease(network), await lease(network, pop=WEST)
    good = stored(handle_of(network, east, 0))
    wrong_pop = stored(handle_of(network, west, 0))
    never_leased = stored(new_handle())
    mac = handle_of(network, east, 1)
    bad_mac = stored(mac[:-1] + ("a" if mac[-1] != "a" else "b"))
    past_block = stored(mint_handle(network.config.internal_secret, east.block, east.size))
    malformed = {"kind": "file_stored", "id": "broken", "handle": good.handle}
    unknown_kind = {"kind": "file_vanished", "id": "vanished"}
    other = handle_of(network, east, 2)
    foreign_upload = PartStored(id=new_event_id(), handle=other, at=time.time(),
                                upload_id=mint_upload_id(network.config.internal_secret,
                                                         handle_of(network, east, 3)),
                                part=1, size=5, etag="e")
    also_good = stored(handle_of(network, east, 4))
    reply = await send(network, good, wrong_pop, never_leased, bad_mac, past_block,
                       malformed, unknown_kind, foreign_upload, also_good)
    refused = dict((event_id, why) for event_id, why, _ in reply.refused)
    assert list(refused) == [wrong_pop.id, never_leased.id, bad_mac.id, past_block.id,
                             "broken", "vanished", foreign_upload.id]
    assert "eu-west-1" in refused[wrong_pop.id]
    assert "never leased" in refused[never_leased.id]
    assert refused["broken"].startswith("bad_message")
    # Each refusal names the event's position in the batch.
    assert [(event_id, int(position)) for event_id, _, position in reply.refused] == [
        (wrong_pop.id, 1), (never_leased.id, 2), (bad_mac.id, 3), (past_block.id, 4),
        ("broken", 5), ("vanished", 6), (foreign_upload.id, 7)]
    assert reply.statuses == {good.handle: "Complete", also_good.handle: "Complete"}
    for event in (wrong_pop, never_leased, bad_mac, past_block):
        assert await status_of(network, event.handle) is None
        assert await webhooks_of(network, event.handle) == 0
    assert await status_of(network, other) is None
    assert await webhooks_of(network, good.handle) == 1
    # The POP the handle does belong to may report it.
    assert (await send(network, wrong_pop, pop=WEST)).statuses == {
        wrong_pop.handle: "Complete"}


async def test_an_event_for_an_unknown_pop_refuses_the_batch(network: Network) -> None:
    block = await lease(network)
    with pytest.raises(CinError):
        await send(network, stored(handle_of(network, block, 0)), pop="nowhere")
    assert await status_of(network, handle_of(network, block, 0)) is None


async def test_an_abandoned_store_is_failed_and_its_leftovers_removed_soon(
        network: Network) -> None:
    block = await lease(network)
    handle = handle_of(network, block, 0)
    record = file_record(handle, status=FileStatus.STARTED)
    storage = network.coordinator.app[STORAGE]["bucket"]

    async def body() -> AsyncIterator[bytes]:
        yield b"half a store"

    await storage.put(CONTAINER, record.key, body(), content_type="text/plain")
    reply = await send(network, StoreAbandoned(id=new_event_id(), handle=handle,
                                               at=time.time(), record=record))
    assert reply.statuses == {handle: "Failed"}

    async def removal_done() -> bool:
        return not await network.coordinator.app[STATE].pending_removals(10)

    # Woken, not at the next sweep (ten minutes away).
    await until(removal_done, "the abandoned store's leftovers to be removed")
    with pytest.raises(StorageError):
        await storage.head(CONTAINER, record.key)


async def test_an_upload_reported_in_events_ends_complete(network: Network) -> None:
    secret = network.config.internal_secret
    block = await lease(network)
    handle = handle_of(network, block, 0)
    first, last = os.urandom(MIN_PART_SIZE), os.urandom(1000)
    record = file_record(handle, size=len(first) + len(last), status=FileStatus.STARTED)
    storage = network.coordinator.app[STORAGE]["bucket"]
    bucket_upload = await storage.create_multipart(CONTAINER, record.key,
                                                   content_type="text/plain")
    upload = UploadRecord(upload_id=mint_upload_id(secret, handle), handle=handle,
                          storage_upload_id=bucket_upload, pop=EAST, fii=False,
                          created=time.time())

    async def put_part(number: int, data: bytes) -> PartStored:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        etag = await storage.upload_part(CONTAINER, record.key, bucket_upload, number,
                                         chunks(), len(data))
        return PartStored(id=new_event_id(), handle=handle, at=time.time(),
                          upload_id=upload.upload_id, part=number, size=len(data),
                          etag=etag)

    start = UploadStarted(id=new_event_id(), handle=handle, at=time.time(), record=record,
                          upload=upload)
    complete = UploadInTransit(id=new_event_id(), handle=handle, at=time.time(),
                               upload_id=upload.upload_id, parts=[[2, len(last)]],
                               tags={"user": "7"})
    reply = await send(network, start, await put_part(1, first), complete)
    assert reply == wire.BatchReply(refused=[], statuses={handle: "In Transit"})
    parts = await network.coordinator.app[STATE].parts_of(handle)
    assert [(p.number, p.state) for p in parts] == [(1, "stored"), (2, "spooled")]
    assert await webhooks_of(network, handle) == 0

    # The last part stored: finished before the reply.
    reply = await send(network, await put_part(2, last))
    assert reply.statuses == {handle: "Complete"}
    done = await network.coordinator.app[FILES].get(handle)
    assert (done.size, done.tags) == (len(first) + len(last), {"user": "7"})
    assert await webhooks_of(network, handle) == 1
    response = await network.coordinator.get(f"/{handle}")
    assert response.status == 200 and await response.read() == first + last


async def test_an_event_with_no_readable_id_is_refused_by_its_position(
        network: Network) -> None:
    block = await lease(network)
    good = stored(handle_of(network, block, 0))
    reply = await send(network, {"kind": "file_stored"}, good, {"kind": 42}, {"id": 7})
    assert [(event_id, int(position)) for event_id, _, position in reply.refused] == [
        ("", 0), ("", 2), ("", 3)]
    assert all(why.startswith("bad_message") for _, why, _ in reply.refused)
    assert reply.statuses == {good.handle: "Complete"}


async def test_a_complete_whose_parts_do_not_make_up_the_file_is_refused(
        network: Network) -> None:
    secret = network.config.internal_secret
    block = await lease(network)
    handle = handle_of(network, block, 0)
    record = file_record(handle, size=10, status=FileStatus.STARTED)
    upload = UploadRecord(upload_id=mint_upload_id(secret, handle), handle=handle,
                          storage_upload_id="", pop=EAST, fii=False, created=time.time())
    start = UploadStarted(id=new_event_id(), handle=handle, at=time.time(), record=record,
                          upload=upload)
    gap = UploadInTransit(id=new_event_id(), handle=handle, at=time.time(),
                          upload_id=upload.upload_id, parts=[[1, 5], [3, 5]])
    reply = await send(network, start, gap)
    assert reply.refused == [[gap.id, reply.refused[0][1], "1"]]
    assert "conflict" in reply.refused[0][1]
    assert reply.statuses == {handle: "Started"}
    whole = UploadStored(id=new_event_id(), handle=handle, at=time.time(),
                         upload_id=upload.upload_id, size=10, etag="whole")
    assert (await send(network, whole)).statuses == {handle: "Complete"}
    assert await webhooks_of(network, handle) == 1


async def test_the_finisher_completes_uploads_left_in_transit(network: Network) -> None:
    """A coordinator stopped between recording the last part and finishing the upload:
    the job finds it at its next round."""
    block = await lease(network)
    handle = handle_of(network, block, 0)
    data = os.urandom(1000)
    record = file_record(handle, size=len(data), status=FileStatus.STARTED)
    storage = network.coordinator.app[STORAGE]["bucket"]
    bucket_upload = await storage.create_multipart(CONTAINER, record.key,
                                                   content_type="text/plain")

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    etag = await storage.upload_part(CONTAINER, record.key, bucket_upload, 1, chunks(),
                                     len(data))
    upload_id = mint_upload_id(network.config.internal_secret, handle)
    state = network.coordinator.app[STATE]
    # Straight into the state, as a batch applied by a coordinator that then died.
    events: list[PopEvent] = [
        UploadStarted(id="s", handle=handle, at=0, record=record,
                      upload=UploadRecord(upload_id, handle, bucket_upload, EAST, False, 0)),
        UploadInTransit(id="t", handle=handle, at=0, upload_id=upload_id, parts=[[1, 1000]]),
        PartStored(id="p", handle=handle, at=0, upload_id=upload_id, part=1, size=1000,
                   etag=etag)]
    await state.apply_pop_events(EAST, events, now=time.time(),
                                 stored=network.coordinator.app[FILES].events_for("fp.upload"))
    assert await state.parts_of(handle) == [PartRecord(1, EAST, "stored", 1000, etag)]
    assert await status_of(network, handle) is FileStatus.IN_TRANSIT
    finisher = UploadFinisher(state, network.coordinator.app[MULTIPART])
    assert await finisher.finish_if_free() == [handle]
    assert await status_of(network, handle) is FileStatus.COMPLETE
    assert await webhooks_of(network, handle) == 1
    assert await finisher.finish_if_free() == []


async def test_leases_events_and_batches_are_counted(network: Network) -> None:
    registry = network.coordinator.app[METRICS].registry

    def sample(name: str, **labels: str) -> float | None:
        value: float | None = registry.get_sample_value(name, labels)
        return value

    # The POP leased one block when it started; what follows is counted on top of it.
    leases_at_start = sample("cin_handle_leases_total", pop=EAST)
    handles_at_start = sample("cin_leased_handles_total", pop=EAST)
    assert leases_at_start == 1 and handles_at_start
    block = await lease(network, count=7)
    event = stored(handle_of(network, block, 0))
    await send(network, event, stored(new_handle()))
    await send(network, event)

    assert sample("cin_handle_leases_total", pop=EAST) == leases_at_start + 1
    assert sample("cin_leased_handles_total", pop=EAST) == handles_at_start + 7
    assert sample("cin_pop_events_total", kind="file_stored", outcome="applied") == 1
    assert sample("cin_pop_events_total", kind="file_stored", outcome="repeated") == 1
    assert sample("cin_pop_events_total", kind="file_stored", outcome="refused") == 1
    assert sample("cin_pop_batch_duration_seconds_count") == 2
