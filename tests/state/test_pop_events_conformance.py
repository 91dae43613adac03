"""The StateStore's handle leases and its application of POP event batches, on every
engine (conftest.py): coordinator/state/protocol.py and pop_event_rules.py as tests."""

from __future__ import annotations

import asyncio

import pytest
from state_engines import Engine

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import HandleBlock
from common.protocol.pop_events import (
    FileStored,
    PartStored,
    PopEvent,
    StoreAbandoned,
    UploadInTransit,
    UploadStarted,
    UploadStored,
)
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from coordinator.events import WebhookEvent
from coordinator.state import AppliedBatch, StateStore
from coordinator.state.protocol import PendingRemoval

POP = "us-east-1"
NOW = 1_700_000_000.0
STARTED, IN_TRANSIT, COMPLETE, FAILED = (FileStatus.STARTED, FileStatus.IN_TRANSIT,
                                         FileStatus.COMPLETE, FileStatus.FAILED)


def record(handle: str, **changes: object) -> FileRecord:
    started = FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                         container="c", key=f"k/{handle}", filename="f.txt",
                         mimetype="text/plain", size=3, status=STARTED, pop=POP,
                         uploaded=1.25, tags={"user": "42"})
    return started.with_changes(**changes)


def upload_webhook(changed: FileRecord) -> list[WebhookEvent]:
    return [WebhookEvent(apikey=changed.apikey, endpoint="http://hooks.test/a",
                         action="fp.upload", text={"size": changed.size}, created=10.0)]


def handle(name: str) -> str:
    return name.ljust(20, "x")


def stored_event(name: str, event_id: str | None = None) -> FileStored:
    file = record(handle(name), key=f"k/{name}", status=COMPLETE, etag=f"e-{name}")
    return FileStored(id=event_id or f"ev-{name}", handle=file.handle, at=NOW, record=file)


def upload_started(name: str, size: int = 10) -> UploadStarted:
    file = record(handle(name), key=f"k/{name}", size=size)
    upload = UploadRecord(upload_id=f"up-{name}", handle=file.handle,
                          storage_upload_id=f"s3-{name}", pop=POP, fii=False, created=NOW)
    return UploadStarted(id=f"start-{name}", handle=file.handle, at=NOW, record=file,
                         upload=upload)


def part_stored(name: str, part: int, size: int) -> PartStored:
    return PartStored(id=f"part-{name}-{part}", handle=handle(name), at=NOW,
                      upload_id=f"up-{name}", part=part, size=size, etag=f"etag-{part}")


def in_transit(name: str, parts: list[list[int]], event_id: str = "") -> UploadInTransit:
    return UploadInTransit(id=event_id or f"transit-{name}", handle=handle(name), at=NOW,
                           upload_id=f"up-{name}", parts=parts, tags={"t": "1"})


async def apply(store: StateStore, *events: PopEvent, pop: str = POP) -> AppliedBatch:
    return await store.apply_pop_events(pop, events, now=NOW, stored=upload_webhook)


def outcomes(batch: AppliedBatch) -> list[str]:
    return [outcome.outcome for outcome in batch.outcomes]


async def webhooks(store: StateStore) -> list[int]:
    """The sizes the pending fp.upload events report, oldest first."""
    return [d.text["size"] for d in await store.due_deliveries(NOW * 2, 1000)]


async def file(store: StateStore, name: str) -> FileRecord:
    found = await store.get_file(handle(name))
    assert found is not None, name
    return found


# ---------------------------------------------------------------------------- leases


async def test_a_granted_lease_is_found_by_its_block_and_listed(engine: Engine) -> None:
    first = HandleBlock("AAAAaaaa", 1000, POP, granted=NOW)
    second = HandleBlock("BBBBbbbb", 5, "eu-west-1", granted=NOW + 1)
    async with engine.open() as store:
        await store.grant_lease(first)
        await store.grant_lease(second)
        assert await store.lease("AAAAaaaa") == first
        assert await store.lease("CCCCcccc") is None
    async with engine.open() as reopened:
        assert await reopened.leases() == [first, second]


async def test_a_block_id_is_leased_once(store: StateStore) -> None:
    await store.grant_lease(HandleBlock("AAAAaaaa", 10, POP, granted=NOW))
    with pytest.raises(CinError) as refused:
        await store.grant_lease(HandleBlock("AAAAaaaa", 20, "eu-west-1", granted=NOW))
    assert refused.value.code is Code.CONFLICT
    assert await store.leases() == [HandleBlock("AAAAaaaa", 10, POP, granted=NOW)]


# ---------------------------------------------------------------------------- batches


async def test_a_stored_file_is_recorded_complete_with_its_webhook(store: StateStore) -> None:
    batch = await apply(store, stored_event("a"))
    assert outcomes(batch) == ["applied"]
    assert await file(store, "a") == stored_event("a").record
    assert batch.statuses == {handle("a"): COMPLETE}
    assert await webhooks(store) == [3]


async def test_a_batch_applied_again_changes_nothing(store: StateStore) -> None:
    events = [stored_event("a"), upload_started("b"), part_stored("b", 1, 10)]
    await apply(store, *events)
    before = [await file(store, "a"), await file(store, "b"),
              await store.parts_of(handle("b")), await webhooks(store)]
    again = await apply(store, *events)
    assert outcomes(again) == ["repeated"] * 3
    assert again.statuses == {handle("a"): COMPLETE, handle("b"): STARTED}
    assert [await file(store, "a"), await file(store, "b"),
            await store.parts_of(handle("b")), await webhooks(store)] == before


async def test_one_batch_applied_twice_at_once_applies_each_event_once(
        store: StateStore) -> None:
    events = [stored_event(f"f{i}") for i in range(20)]
    first, second = await asyncio.gather(apply(store, *events), apply(store, *events))
    assert sorted(outcomes(first) + outcomes(second)) == ["applied"] * 20 + ["repeated"] * 20
    assert await webhooks(store) == [3] * 20


async def test_a_file_known_already_is_left_as_it_is(store: StateStore) -> None:
    await apply(store, stored_event("a"))
    # Another event of the same file (a new id): its effect is there already.
    batch = await apply(store, stored_event("a", event_id="other"))
    assert outcomes(batch) == ["applied"]
    assert await webhooks(store) == [3]


async def test_forgotten_ids_leave_the_rules_to_keep_a_replay_harmless(
        store: StateStore) -> None:
    await apply(store, stored_event("a"), upload_started("b"))
    assert await store.forget_applied_events(NOW + 1) == 2
    assert await store.forget_applied_events(NOW + 1) == 0
    again = await apply(store, stored_event("a"), upload_started("b"))
    assert outcomes(again) == ["applied", "applied"]
    assert await webhooks(store) == [3]
    assert (await file(store, "b")).status is STARTED


async def test_an_abandoned_store_is_failed_and_its_leftovers_owed(store: StateStore) -> None:
    started = record(handle("a"), key="k/a")
    await apply(store, StoreAbandoned(id="x", handle=started.handle, at=NOW, record=started))
    assert await file(store, "a") == started.with_changes(status=FAILED)
    assert await store.pending_removals(10) == [
        PendingRemoval(handle("a"), "bucket", "c", "k/a")]
    assert await webhooks(store) == []


async def test_an_abandoned_store_of_a_stored_file_changes_nothing(store: StateStore) -> None:
    await apply(store, stored_event("a"))
    started = record(handle("a"), key="k/a")
    await apply(store, StoreAbandoned(id="x", handle=started.handle, at=NOW, record=started))
    assert (await file(store, "a")).status is COMPLETE
    assert await store.pending_removals(10) == []


async def test_an_upload_goes_from_started_to_in_transit_to_finishable(
        store: StateStore) -> None:
    start = upload_started("u", size=10)
    await apply(store, start, part_stored("u", 1, 6))
    assert await file(store, "u") == start.record
    assert await store.get_upload(f"up-{'u'}") == start.upload
    assert await store.finishable_uploads(10) == []
    batch = await apply(store, in_transit("u", [[2, 4]]))
    assert batch.statuses == {handle("u"): IN_TRANSIT}
    assert (await file(store, "u")).tags == {"t": "1"}
    assert await store.parts_of(handle("u")) == [
        PartRecord(1, POP, "stored", 6, "etag-1"), PartRecord(2, POP, "spooled", 4, None)]
    assert await store.finishable_uploads(10) == []
    await apply(store, part_stored("u", 2, 4))
    assert await store.finishable_uploads(10) == [handle("u")]
    assert await webhooks(store) == []


async def test_a_complete_with_a_gap_or_the_wrong_size_is_refused(store: StateStore) -> None:
    await apply(store, upload_started("u", size=10))
    gap = await apply(store, in_transit("u", [[1, 5], [3, 5]], "gap"))
    short = await apply(store, in_transit("u", [[1, 9]], "short"))
    assert [o.reason.split(":")[0] for o in gap.outcomes + short.outcomes] == [
        "conflict", "conflict"]
    assert (await file(store, "u")).status is STARTED
    assert await store.parts_of(handle("u")) == []


async def test_an_upload_stored_whole_is_complete_with_its_webhook(store: StateStore) -> None:
    await apply(store, upload_started("u", size=10))
    stored = UploadStored(id="s", handle=handle("u"), at=NOW, upload_id="up-u", size=10,
                          etag="whole")
    batch = await apply(store, stored)
    assert batch.statuses == {handle("u"): COMPLETE}
    assert (await file(store, "u")).etag == "whole"
    assert await webhooks(store) == [10]
    assert outcomes(await apply(store, stored.__class__(**{**stored.__dict__, "id": "s2"}))) \
        == ["applied"]
    assert await webhooks(store) == [10]


async def test_refused_events_are_undone_alone_and_the_batch_goes_on(
        store: StateStore) -> None:
    unknown = part_stored("nobody", 1, 5)
    closed = UploadStored(id="late", handle=handle("u"), at=NOW, upload_id="up-u", size=10,
                          etag="e")
    other_file = PartStored(id="mixed", handle=handle("a"), at=NOW, upload_id="up-u",
                            part=1, size=1, etag="e")
    await apply(store, upload_started("u", size=10))
    await store.set_status(handle("u"), FAILED)
    batch = await apply(store, unknown, stored_event("a"), closed, other_file,
                        stored_event("b"))
    assert outcomes(batch) == ["refused", "applied", "refused", "refused", "applied"]
    assert batch.outcomes[0].reason.startswith("file_not_found")
    assert batch.outcomes[2].reason.startswith("conflict")
    assert batch.statuses == {handle("a"): COMPLETE, handle("u"): FAILED,
                              handle("b"): COMPLETE}
    assert await store.get_file(handle("nobody")) is None
    assert await store.parts_of(handle("u")) == []
    assert await webhooks(store) == [3, 3]
    # A refused event's id is not kept: sent again, it is judged again.
    assert outcomes(await apply(store, unknown)) == ["refused"]
