"""The StateStore conformance suite: what every engine behind coordinator.state.StateStore
does, tested through the protocol alone. conftest.py runs each test on every engine.

Nothing here knows an engine's schema or connection: an engine that passes keeps the
contract the coordinator relies on (coordinator/state/protocol.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
from state_engines import Engine

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus, IllegalTransition
from common.protocol.pop_load import PopLoad
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.wire import PopHeartbeat
from coordinator.events import WebhookEvent
from coordinator.state import StateStore

HANDLE = "h" * 20
DAY = 86400.0
NOW = 1_700_000_000.0

STARTED, IN_TRANSIT, COMPLETE, FAILED = (FileStatus.STARTED, FileStatus.IN_TRANSIT,
                                         FileStatus.COMPLETE, FileStatus.FAILED)


def record(handle: str = HANDLE, **changes: object) -> FileRecord:
    started = FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                         container="c", key=f"k/{handle}", filename="f.txt",
                         mimetype="text/plain", size=3, status=STARTED, pop="us-east-1",
                         uploaded=1.25, tags={"user": "42"})
    return started.with_changes(**changes)


def upload_of(file: FileRecord, name: str, created: float = NOW) -> UploadRecord:
    return UploadRecord(upload_id=f"up-{name}", handle=file.handle,
                        storage_upload_id=f"s3-{name}", pop="us-east-1", fii=False,
                        created=created)


async def add_upload(store: StateStore, name: str, started: float = NOW,
                     status: FileStatus = STARTED) -> FileRecord:
    """An Upload API upload `name`, started at `started`, moved on to `status`."""
    file = record(name.ljust(20, "x"), key=f"k/{name}", size=10, uploaded=started)
    await store.create_upload(file, upload_of(file, name, started), origin=f"origin-{name}")
    if status is not STARTED:
        await store.set_status(file.handle, status)
    return file


def one_event(action: str) -> Callable[[FileRecord], Sequence[WebhookEvent]]:
    """An `events` callable: one event per change, describing the record it is given."""
    def build(changed: FileRecord) -> list[WebhookEvent]:
        return [WebhookEvent(apikey=changed.apikey, endpoint="http://hooks.test/a",
                             action=action, text={"size": changed.size}, created=10.0)]

    return build


async def status_of(store: StateStore, handle: str) -> FileStatus:
    found = await store.get_file(handle)
    assert found is not None, handle
    return found.status


# ---------------------------------------------------------------------------- files


async def test_a_created_file_reads_back_as_it_was_written(store: StateStore) -> None:
    created = await store.create_file(record(), origin="pop:1")
    assert created == record()
    assert await store.get_file(HANDLE) == record()
    assert await store.get_file("n" * 20) is None


async def test_files_survive_reopening(engine: Engine) -> None:
    async with engine.open() as store:
        await store.create_file(record(), origin="pop:1")
        await store.set_status(HANDLE, COMPLETE, size=3, etag="e1")
    async with engine.open() as reopened:
        found = await reopened.get_file(HANDLE)
    assert found == record(status=COMPLETE, etag="e1")


async def test_a_repeated_origin_returns_the_first_file(store: StateStore) -> None:
    first = await store.create_file(record("a" * 20), origin="pop:1")
    again = await store.create_file(record("b" * 20), origin="pop:1")
    assert again == first == record("a" * 20)
    assert await store.get_file("b" * 20) is None


async def test_concurrent_creates_are_all_recorded(store: StateStore) -> None:
    handles = [f"{i:020d}" for i in range(200)]
    await asyncio.gather(*(store.create_file(record(h), origin=h) for h in handles))
    found = await asyncio.gather(*(store.get_file(h) for h in handles))
    assert [f.handle if f is not None else None for f in found] == handles


async def test_hashes_belong_to_one_version(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    await store.save_hashes(HANDLE, 2, {"md5": "stale"})  # a version that is not current
    assert (await store.get_file(HANDLE)) == record()
    await store.save_hashes(HANDLE, 1, {"md5": "abc"})
    assert (await store.get_file(HANDLE)) == record(hashes={"md5": "abc"})


# ---------------------------------------------------------------------------- status

# Every change of status a file may make: the table of common/protocol/file_status.py,
# spelled out here so that neither can drift without the other noticing. The same status
# again is a repeated report, harmless.
LEGAL = {
    (STARTED, STARTED), (STARTED, IN_TRANSIT), (STARTED, COMPLETE), (STARTED, FAILED),
    (IN_TRANSIT, IN_TRANSIT), (IN_TRANSIT, COMPLETE), (IN_TRANSIT, FAILED),
    (COMPLETE, IN_TRANSIT), (COMPLETE, COMPLETE),
    (FAILED, FAILED),
}


@pytest.mark.parametrize("wanted", list(FileStatus), ids=lambda s: s.name)
@pytest.mark.parametrize("current", list(FileStatus), ids=lambda s: s.name)
async def test_set_status_makes_legal_changes_and_refuses_the_others(
        store: StateStore, current: FileStatus, wanted: FileStatus) -> None:
    await store.create_file(record(), origin="o")
    if current is not STARTED:
        await store.set_status(HANDLE, current)
    if (current, wanted) in LEGAL:
        changed = await store.set_status(HANDLE, wanted)
        assert changed == record(status=wanted)
        assert await store.get_file(HANDLE) == changed
    else:
        with pytest.raises(IllegalTransition) as caught:
            await store.set_status(HANDLE, wanted)
        assert (caught.value.code, caught.value.status) == (Code.CONFLICT, 409)
        assert (caught.value.current, caught.value.wanted) == (current, wanted)
        assert await store.get_file(HANDLE) == record(status=current)


async def test_set_status_changes_size_and_etag_only_when_given(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    await store.set_status(HANDLE, IN_TRANSIT, size=7)
    assert await store.get_file(HANDLE) == record(status=IN_TRANSIT, size=7)
    await store.set_status(HANDLE, COMPLETE, etag="e")
    assert await store.get_file(HANDLE) == record(status=COMPLETE, size=7, etag="e")


async def test_changing_a_file_that_is_not_there_is_file_not_found(store: StateStore) -> None:
    changes = [
        store.set_status(HANDLE, COMPLETE),
        store.upload_in_transit(HANDLE, [], {}),
        store.overwrite_file(HANDLE, size=1, etag="e", mimetype="t/p",
                             events=one_event("fp.overwrite")),
        store.delete_file(HANDLE, events=one_event("fp.delete")),
        store.part_stored(HANDLE, PartRecord(1, "us-east-1", "stored", 3, "e1")),
    ]
    for change in changes:
        with pytest.raises(CinError) as caught:
            await change
        assert caught.value.code is Code.FILE_NOT_FOUND
    assert await store.due_deliveries(now=1e12, limit=10) == []
    assert await store.parts_of(HANDLE) == []
    await store.save_hashes(HANDLE, 1, {"md5": "abc"})  # computed for a file since deleted
    assert await store.get_file(HANDLE) is None


async def test_events_are_written_with_their_change_or_not_at_all(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    await store.set_status(HANDLE, FAILED)
    # A refused change is undone: no event for a change that did not happen.
    with pytest.raises(CinError):
        await store.set_status(HANDLE, COMPLETE, events=one_event("fp.upload"))
    assert await store.due_deliveries(now=1e12, limit=10) == []

    await store.create_file(record("g" * 20), origin="o2")
    await store.set_status("g" * 20, COMPLETE, size=3, etag="e", events=one_event("fp.upload"))
    (delivery,) = await store.due_deliveries(now=10.0, limit=10)
    assert (delivery.apikey, delivery.endpoint, delivery.action, delivery.text,
            delivery.created, delivery.attempts) == (
        "KEY", "http://hooks.test/a", "fp.upload", {"size": 3}, 10.0, 0)
    assert await store.due_deliveries(now=9.0, limit=10) == []  # not due before it was made


# ---------------------------------------------------------------------------- overwrite, delete


async def test_only_a_complete_file_can_be_overwritten(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    for status in (STARTED, IN_TRANSIT, FAILED):
        if status is not STARTED:
            await store.set_status(HANDLE, status)
        with pytest.raises(CinError) as caught:
            await store.overwrite_file(HANDLE, size=9, etag="e2", mimetype="image/png",
                                       events=one_event("fp.overwrite"))
        assert caught.value.code is Code.CONFLICT
        assert await store.get_file(HANDLE) == record(status=status)
    assert await store.due_deliveries(now=1e12, limit=10) == []


async def test_overwrite_bumps_the_version_and_forgets_the_hashes(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    await store.set_status(HANDLE, COMPLETE, size=3, etag="e1")
    await store.save_hashes(HANDLE, 1, {"md5": "old"})
    updated = await store.overwrite_file(HANDLE, size=9, etag="e2", mimetype="image/png",
                                         events=one_event("fp.overwrite"))
    found = await store.get_file(HANDLE)
    assert found == updated
    assert updated.uploaded > record().uploaded  # when these bytes came
    assert updated == record(status=COMPLETE, version=2, size=9, etag="e2",
                             mimetype="image/png", uploaded=updated.uploaded)
    (delivery,) = await store.due_deliveries(now=1e12, limit=10)
    assert (delivery.action, delivery.text) == ("fp.overwrite", {"size": 9})
    await store.save_hashes(HANDLE, 1, {"md5": "old"})  # the first version's, too late
    assert await store.get_file(HANDLE) == updated


async def test_a_file_still_uploading_cannot_be_deleted(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    for status in (STARTED, IN_TRANSIT):
        if status is not STARTED:
            await store.set_status(HANDLE, status)
        with pytest.raises(CinError) as caught:
            await store.delete_file(HANDLE, events=one_event("fp.delete"))
        assert caught.value.code is Code.CONFLICT
        assert await store.get_file(HANDLE) == record(status=status)
    assert await store.due_deliveries(now=1e12, limit=10) == []


async def test_delete_removes_the_file_its_upload_and_parts(store: StateStore) -> None:
    file = await add_upload(store, "gone")
    await store.part_stored(file.handle, PartRecord(1, "us-east-1", "stored", 10, "e1"))
    await store.set_status(file.handle, FAILED)
    assert not await store.was_deleted(file.handle)
    deleted = await store.delete_file(file.handle, events=one_event("fp.delete"))
    assert deleted == file.with_changes(status=FAILED)
    assert await store.get_file(file.handle) is None
    assert await store.was_deleted(file.handle)  # not taken for one a POP has not reported
    assert await store.get_upload("up-gone") is None
    assert await store.get_upload(handle=file.handle) is None
    assert await store.parts_of(file.handle) == []
    with pytest.raises(CinError) as caught:
        await store.delete_file(file.handle, events=one_event("fp.delete"))
    assert caught.value.code is Code.FILE_NOT_FOUND
    deliveries = await store.due_deliveries(now=1e12, limit=10)
    assert [(d.action, d.text) for d in deliveries] == [("fp.delete", {"size": 10})]


async def test_the_handles_of_files_deleted_long_ago_are_forgotten(store: StateStore) -> None:
    early = await add_upload(store, "early", status=FAILED)
    late = await add_upload(store, "late", status=FAILED)
    # A delete is stamped with the engine's wall clock: a moment apart on either side.
    await store.delete_file(early.handle, events=one_event("fp.delete"))
    await asyncio.sleep(0.01)
    between = time.time()
    await asyncio.sleep(0.01)
    await store.delete_file(late.handle, events=one_event("fp.delete"))

    assert await store.forget_deleted_files(between - DAY) == 0
    assert await store.was_deleted(early.handle) and await store.was_deleted(late.handle)
    assert await store.forget_deleted_files(between) == 1
    assert not await store.was_deleted(early.handle)
    assert await store.was_deleted(late.handle)
    assert await store.forget_deleted_files(time.time() + 1) == 1
    assert not await store.was_deleted(late.handle)


# ---------------------------------------------------------------------------- uploads, parts


async def test_an_upload_is_found_by_its_id_its_origin_and_its_file(store: StateStore) -> None:
    file = await add_upload(store, "one")
    upload = upload_of(file, "one")
    assert await store.get_upload("up-one") == upload
    assert await store.get_upload(origin="origin-one") == upload
    assert await store.get_upload(handle=file.handle) == upload
    assert await store.get_file(file.handle) == file
    assert await store.parts_of(file.handle) == []
    assert await store.get_upload("up-other") is None
    assert await store.get_upload(origin="origin-other") is None
    assert await store.get_upload(handle="n" * 20) is None
    assert await store.get_upload(handle=(await add_rest_file(store)).handle) is None


async def test_a_repeated_start_returns_the_first_upload_and_adds_nothing(
        store: StateStore) -> None:
    first = await add_upload(store, "one")
    other = record("o" * 20, key="k/other", size=10)
    again = await store.create_upload(other, upload_of(other, "other"), origin="origin-one")
    assert again == upload_of(first, "one")
    assert await store.get_file(other.handle) is None
    assert await store.get_upload("up-other") is None


async def test_an_origin_that_started_a_file_cannot_start_an_upload(
        store: StateStore) -> None:
    await store.create_file(record(), origin="pop:1")
    other = record("o" * 20, key="k/other", size=10)
    with pytest.raises(CinError) as caught:
        await store.create_upload(other, upload_of(other, "other"), origin="pop:1")
    assert caught.value.code is Code.CONFLICT
    assert await store.get_file(other.handle) is None


async def test_starts_racing_with_one_origin_make_one_upload(store: StateStore) -> None:
    files = [record(str(n) * 20, key=f"k/{n}", size=10) for n in range(4)]
    recorded = await asyncio.gather(*(
        store.create_upload(file, upload_of(file, str(n)), origin="origin-same")
        for n, file in enumerate(files)))
    assert len({upload.upload_id for upload in recorded}) == 1
    assert recorded[0] == await store.get_upload(origin="origin-same")
    assert [await store.get_file(file.handle) is not None for file in files].count(True) == 1


async def add_rest_file(store: StateStore) -> FileRecord:
    """A file stored whole (the REST store): no upload brings it."""
    return await store.create_file(record("r" * 20), origin="rest")


async def test_complete_records_the_held_parts_and_moves_the_file_in_transit(
        store: StateStore) -> None:
    file = await add_upload(store, "u")
    await store.part_stored(file.handle, PartRecord(1, "us-east-1", "stored", 5, "e1"))
    held = [PartRecord(1, "us-east-1", "spooled", 5, None),
            PartRecord(2, "us-east-1", "spooled", 5, None)]
    moved = await store.upload_in_transit(file.handle, held, {"batch": "7"})
    assert moved == file.with_changes(status=IN_TRANSIT, tags={"batch": "7"})
    assert await store.get_file(file.handle) == moved
    # Part 1 this POP already stored stays stored; part 2 it holds.
    assert await store.parts_of(file.handle) == [
        PartRecord(1, "us-east-1", "stored", 5, "e1"),
        PartRecord(2, "us-east-1", "spooled", 5, None)]


async def test_a_held_part_replaces_one_stored_from_elsewhere_or_of_another_size(
        store: StateStore) -> None:
    file = await add_upload(store, "u")
    await store.part_stored(file.handle, PartRecord(1, "eu-west-1", "stored", 5, "e1"))
    await store.part_stored(file.handle, PartRecord(2, "us-east-1", "stored", 4, "e2"))
    held = [PartRecord(1, "us-east-1", "spooled", 5, None),
            PartRecord(2, "us-east-1", "spooled", 5, None)]
    await store.upload_in_transit(file.handle, held, {})
    assert await store.parts_of(file.handle) == held  # the holding POP will send them


async def test_a_repeated_complete_changes_nothing(store: StateStore) -> None:
    file = await add_upload(store, "u")
    held = [PartRecord(1, "us-east-1", "spooled", 10, None)]
    first = await store.upload_in_transit(file.handle, held, {"batch": "7"})
    again = await store.upload_in_transit(
        file.handle, [PartRecord(1, "eu-west-1", "spooled", 9, None)], {"batch": "8"})
    assert again == first == await store.get_file(file.handle)
    assert await store.parts_of(file.handle) == held


async def test_a_failed_upload_cannot_go_in_transit(store: StateStore) -> None:
    file = await add_upload(store, "u", status=FAILED)
    with pytest.raises(IllegalTransition):
        await store.upload_in_transit(file.handle,
                                      [PartRecord(1, "us-east-1", "spooled", 10, None)], {})
    assert await status_of(store, file.handle) is FAILED
    assert await store.parts_of(file.handle) == []


async def test_a_stored_part_replaces_what_was_recorded_of_it(store: StateStore) -> None:
    file = await add_upload(store, "u")
    await store.upload_in_transit(file.handle, [
        PartRecord(1, "us-east-1", "spooled", 5, None),
        PartRecord(2, "us-east-1", "spooled", 5, None)], {})
    await store.part_stored(file.handle, PartRecord(2, "eu-west-1", "stored", 5, "e2"))
    await store.part_stored(file.handle, PartRecord(3, "us-east-1", "stored", 1, "e3"))
    # Stored again (a POP repeating its report, or another POP's copy): the last one counts.
    await store.part_stored(file.handle, PartRecord(3, "eu-west-1", "stored", 1, "e3b"))
    assert await store.parts_of(file.handle) == [  # in part order
        PartRecord(1, "us-east-1", "spooled", 5, None),
        PartRecord(2, "eu-west-1", "stored", 5, "e2"),
        PartRecord(3, "eu-west-1", "stored", 1, "e3b")]
    assert await status_of(store, file.handle) is IN_TRANSIT  # the store does not finish it


# ---------------------------------------------------------------------------- expiry


async def test_only_started_uploads_older_than_the_ttl_expire(store: StateStore) -> None:
    await add_upload(store, "old", NOW - 2 * DAY)
    new = await add_upload(store, "new", NOW - 3600)
    await add_upload(store, "transit", NOW - 2 * DAY, IN_TRANSIT)
    await add_upload(store, "done", NOW - 2 * DAY, COMPLETE)
    # A REST store's file: Started, old, but not an Upload API upload.
    await store.create_file(record("s" * 20, uploaded=NOW - 2 * DAY), origin="rest")

    ended = await store.expire_uploads(NOW - DAY, "expired: test", NOW, 100)
    assert [(e.upload_id, e.handle, e.storage, e.container, e.key, e.storage_upload_id,
             e.reason) for e in ended] == [
        ("up-old", "old".ljust(20, "x"), "bucket", "c", "k/old", "s3-old", "expired: test")]
    assert await status_of(store, "old".ljust(20, "x")) is FAILED
    for name, status in (("new", STARTED), ("transit", IN_TRANSIT), ("done", COMPLETE)):
        assert await status_of(store, name.ljust(20, "x")) is status
    assert await status_of(store, "s" * 20) is STARTED
    # The reason stays with the upload, for the errors of late requests.
    expired = await store.get_upload("up-old")
    assert expired is not None and expired.failure == "expired: test"
    assert await store.get_upload("up-new") == upload_of(new, "new", NOW - 3600)
    assert [a.upload_id for a in await store.pending_aborts(10)] == ["up-old"]
    # Once expired it is not chosen again.
    assert await store.expire_uploads(NOW - DAY, "expired: test", NOW, 100) == []


async def test_the_start_must_be_strictly_older_than_the_ttl(store: StateStore) -> None:
    await add_upload(store, "edge", NOW - DAY)
    assert await store.expire_uploads(NOW - DAY, "r", NOW, 10) == []
    assert len(await store.expire_uploads(NOW - DAY + 0.001, "r", NOW, 10)) == 1


async def test_expiry_works_in_batches_oldest_first(store: StateStore) -> None:
    for index in (3, 0, 4, 1, 2):
        await add_upload(store, f"u{index}", NOW - 2 * DAY + index)
    first = await store.expire_uploads(NOW - DAY, "r", NOW, 3)
    second = await store.expire_uploads(NOW - DAY, "r", NOW, 3)
    assert [e.upload_id for e in first] == ["up-u0", "up-u1", "up-u2"]
    assert [e.upload_id for e in second] == ["up-u3", "up-u4"]


async def test_an_expired_upload_cannot_go_in_transit(store: StateStore) -> None:
    file = await add_upload(store, "old", NOW - 2 * DAY)
    await store.expire_uploads(NOW - DAY, "r", NOW, 10)
    with pytest.raises(IllegalTransition):
        await store.upload_in_transit(file.handle, [], {})


async def test_an_abort_is_owed_until_done_even_once_the_file_is_deleted(
        engine: Engine) -> None:
    async with engine.open() as store:
        for name, started in (("a", NOW - 3 * DAY), ("b", NOW - 2 * DAY)):
            await add_upload(store, name, started)
        await store.expire_uploads(NOW - DAY, "r", NOW, 10)
        await store.delete_file("a".ljust(20, "x"), events=one_event("fp.delete"))
    async with engine.open() as store:  # and after a restart
        owed = await store.pending_aborts(10)
        assert [(a.upload_id, a.storage_upload_id) for a in owed] == [
            ("up-a", "s3-a"), ("up-b", "s3-b")]
        assert [a.upload_id for a in await store.pending_aborts(1)] == ["up-a"]
        await store.abort_done("up-a", NOW + 1)
        await store.abort_done("up-a", NOW + 2)  # a repeated report changes nothing
        assert [a.upload_id for a in await store.pending_aborts(10)] == ["up-b"]
        await store.abort_done("up-b", NOW + 1)
        assert await store.pending_aborts(10) == []


# ---------------------------------------------------------------------------- store expiry


async def add_store(store: StateStore, name: str, started: float,
                    status: FileStatus = STARTED, key: str | None = None) -> FileRecord:
    """A REST store's file `name` (no Upload API upload), begun at `started`."""
    file = record(name.ljust(20, "x"), key=key or f"k/{name}", uploaded=started)
    await store.create_file(file, origin=f"pop:{name}")
    if status is not STARTED:
        await store.set_status(file.handle, status)
    return file


async def test_only_rest_stores_started_before_the_store_ttl_expire(store: StateStore) -> None:
    old = await add_store(store, "old", NOW - 2 * 3600)
    await add_store(store, "new", NOW - 60)
    await add_store(store, "done", NOW - 2 * 3600, COMPLETE)
    await add_store(store, "failed", NOW - 2 * 3600, FAILED)
    await add_upload(store, "upload", NOW - 2 * 3600)  # upload expiry's, with its own TTL

    ended = await store.expire_stores(NOW - 3600, NOW, 100)
    assert [(e.handle, e.storage, e.container, e.key) for e in ended] == [
        (old.handle, "bucket", "c", "k/old")]
    assert await status_of(store, old.handle) is FAILED
    for name, status in (("new", STARTED), ("done", COMPLETE), ("failed", FAILED),
                         ("upload", STARTED)):
        assert await status_of(store, name.ljust(20, "x")) is status
    assert await store.pending_removals(10) == ended
    assert await store.expire_stores(NOW - 3600, NOW, 100) == []  # not chosen again


async def test_a_store_must_have_begun_strictly_before_the_cutoff(store: StateStore) -> None:
    await add_store(store, "edge", NOW - 3600)
    assert await store.expire_stores(NOW - 3600, NOW, 10) == []
    assert len(await store.expire_stores(NOW - 3600 + 0.001, NOW, 10)) == 1


async def test_store_expiry_works_in_batches_oldest_first(store: StateStore) -> None:
    for index in (3, 0, 4, 1, 2):
        await add_store(store, f"s{index}", NOW - 2 * 3600 + index)
    first = await store.expire_stores(NOW - 3600, NOW, 3)
    second = await store.expire_stores(NOW - 3600, NOW, 3)
    assert [e.key for e in first] == ["k/s0", "k/s1", "k/s2"]
    assert [e.key for e in second] == ["k/s3", "k/s4"]


async def test_an_expired_store_cannot_be_reported_stored(store: StateStore) -> None:
    old = await add_store(store, "old", NOW - 2 * 3600)
    await store.expire_stores(NOW - 3600, NOW, 10)
    with pytest.raises(IllegalTransition):
        await store.set_status(old.handle, COMPLETE, size=3, etag="late")


async def test_a_removal_is_owed_until_done_even_after_a_restart(engine: Engine) -> None:
    async with engine.open() as store:
        for name, started in (("a", NOW - 3 * 3600), ("b", NOW - 2 * 3600)):
            await add_store(store, name, started)
        await store.expire_stores(NOW - 3600, NOW, 10)
    async with engine.open() as store:
        a, b = "a".ljust(20, "x"), "b".ljust(20, "x")
        assert [r.handle for r in await store.pending_removals(10)] == [a, b]
        assert [r.handle for r in await store.pending_removals(1)] == [a]
        await store.removal_done(a)
        await store.removal_done(a)  # a repeated report changes nothing
        assert [r.handle for r in await store.pending_removals(10)] == [b]
        await store.removal_done(b)
        assert await store.pending_removals(10) == []


async def test_a_key_is_in_use_while_another_file_not_failed_has_it(
        store: StateStore) -> None:
    mine = await add_store(store, "mine", NOW, key="k/shared")
    assert not await store.key_in_use("bucket", "c", "k/shared", besides=mine.handle)
    other = await add_store(store, "other", NOW, FAILED, key="k/shared")
    assert not await store.key_in_use("bucket", "c", "k/shared", besides=mine.handle)
    live = await add_store(store, "live", NOW, COMPLETE, key="k/shared")
    assert await store.key_in_use("bucket", "c", "k/shared", besides=mine.handle)
    assert await store.key_in_use("bucket", "c", "k/shared", besides=other.handle)
    assert await store.key_in_use("bucket", "c", "k/shared", besides=live.handle)  # mine
    # The same key in another container or another location is another object.
    assert not await store.key_in_use("bucket", "d", "k/shared", besides=mine.handle)
    assert not await store.key_in_use("other", "c", "k/shared", besides=mine.handle)


# ---------------------------------------------------------------------------- webhook outbox


async def test_due_deliveries_come_oldest_first_and_as_many_as_asked(
        store: StateStore) -> None:
    for index in range(3):
        handle = f"{index:020d}"
        await store.create_file(record(handle), origin=handle)
        await store.set_status(handle, COMPLETE, size=index, events=one_event("fp.upload"))
    every = await store.due_deliveries(now=1e12, limit=10)
    assert [d.text for d in every] == [{"size": 0}, {"size": 1}, {"size": 2}]
    assert len({d.id for d in every}) == 3  # an id per event, as receivers see it
    assert await store.due_deliveries(now=1e12, limit=2) == every[:2]
    await store.delivery_failed(every[0].id, "HTTP 503", retry_at=50.0)
    assert [d.id for d in await store.due_deliveries(now=1e12, limit=10)] == [
        every[1].id, every[2].id, every[0].id]
    assert await store.outbox_counts() == {"pending": 3, "abandoned": 0}
    await store.delivery_done(every[1].id)
    assert [d.id for d in await store.due_deliveries(now=1e12, limit=10)] == [
        every[2].id, every[0].id]
    assert await store.outbox_counts() == {"pending": 2, "abandoned": 0}


async def test_outbox_retries_and_abandons(store: StateStore) -> None:
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 0}
    assert await store.next_delivery_time() is None
    await store.create_file(record(), origin="o")
    await store.set_status(HANDLE, COMPLETE, events=one_event("fp.upload"))
    (first,) = await store.due_deliveries(now=100.0, limit=10)
    await store.delivery_failed(first.id, "HTTP 500", retry_at=200.0)
    assert await store.due_deliveries(now=150.0, limit=10) == []
    assert await store.next_delivery_time() == 200.0
    assert await store.next_delivery_time(excluding={first.id}) is None  # being sent
    (again,) = await store.due_deliveries(now=200.0, limit=10)
    assert (again.id, again.attempts, again.text) == (first.id, 1, first.text)
    await store.delivery_failed(first.id, "HTTP 500", retry_at=None)
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 1}
    assert await store.next_delivery_time() is None
    assert await store.due_deliveries(now=1e12, limit=10) == []
    await store.delete_file(HANDLE, events=one_event("fp.delete"))
    (last,) = await store.due_deliveries(now=1e12, limit=10)
    assert last.action == "fp.delete"
    await store.delivery_done(last.id)
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 1}


async def test_a_claimed_delivery_is_taken_once_and_not_due_until_its_claim_ends(
        store: StateStore) -> None:
    for index in range(6):
        handle = f"{index:020d}"
        await store.create_file(record(handle), origin=handle)
        await store.set_status(handle, COMPLETE, size=index, events=one_event("fp.upload"))
    every = await store.due_deliveries(now=100.0, limit=10)
    # Two coordinators claiming at once take different deliveries, the oldest first.
    first, second = await asyncio.gather(store.claim_deliveries(100.0, 4, until=200.0),
                                         store.claim_deliveries(100.0, 4, until=200.0))
    assert len(first) + len(second) == 6
    assert sorted(d.id for d in first + second) == sorted(d.id for d in every)
    assert await store.claim_deliveries(150.0, 10, until=250.0) == []
    assert await store.due_deliveries(now=150.0, limit=10) == []
    assert await store.next_delivery_time() == 200.0
    # A claim that ran out (its coordinator died sending) is taken again.
    await store.delivery_done(every[0].id)
    await store.delivery_failed(every[1].id, "HTTP 503", retry_at=300.0)
    again = await store.claim_deliveries(200.0, 10, until=400.0)
    assert [d.id for d in again] == [d.id for d in every[2:]]
    (retried,) = await store.claim_deliveries(300.0, 10, until=500.0)
    assert (retried.id, retried.attempts) == (every[1].id, 1)
    assert await store.outbox_counts() == {"pending": 5, "abandoned": 0}


async def test_released_deliveries_are_due_again_at_once(store: StateStore) -> None:
    await store.create_file(record(), origin="o")
    await store.set_status(HANDLE, COMPLETE, events=one_event("fp.upload"))
    (claimed,) = await store.claim_deliveries(100.0, 10, until=1000.0)
    await store.release_deliveries([claimed.id], now=120.0)  # its coordinator is stopping
    assert await store.next_delivery_time() == 120.0
    (again,) = await store.claim_deliveries(120.0, 10, until=1000.0)
    assert (again.id, again.attempts) == (claimed.id, 0)
    await store.delivery_failed(again.id, "gone", retry_at=None)
    await store.release_deliveries([again.id], now=130.0)  # abandoned stays abandoned
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 1}


# ---------------------------------------------------------------------------- shared


def heartbeat(pop: str, *, instance: str = "i1", requests: int = 0,
              draining: bool = False) -> PopHeartbeat:
    return PopHeartbeat(pop=pop, instance=instance, requests=requests, transfers=2,
                        backlog_bytes=3, draining=draining, disk_full=False)


async def test_a_pops_latest_heartbeat_is_read_back_with_its_age(store: StateStore) -> None:
    assert await store.pops_heard() == []
    await store.pop_heard(heartbeat("east", requests=9))
    await store.pop_heard(heartbeat("west"))
    await store.pop_heard(heartbeat("east", instance="i2", requests=1, draining=True))
    heard = {pop.pop: pop for pop in await store.pops_heard()}
    assert set(heard) == {"east", "west"}
    east = heard["east"]
    assert (east.instance, east.load, east.draining, east.disk_full) == (
        "i2", PopLoad(1, 2, 3), True, False)
    assert all(0 <= pop.age < 5 for pop in heard.values())


async def test_a_locked_key_has_one_holder_at_a_time(store: StateStore) -> None:
    inside: list[str] = []
    overlapped = False

    async def hold(name: str) -> None:
        nonlocal overlapped
        async with store.locked("upload:one") as held:
            assert held
            overlapped = overlapped or bool(inside)
            inside.append(name)
            await asyncio.sleep(0.01)
            inside.remove(name)

    await asyncio.wait_for(asyncio.gather(*(hold(str(n)) for n in range(5))), 10)
    assert not overlapped


async def test_a_lock_not_waited_for_is_refused_while_held_and_others_are_free(
        store: StateStore) -> None:
    async with store.locked("sweep") as held:
        assert held
        async with store.locked("sweep", wait=False) as second:
            assert not second
        async with asyncio.timeout(10), store.locked("another", wait=False) as other:
            assert other  # another key never waits on this one
    async with store.locked("sweep", wait=False) as again:
        assert again  # let go when the block ended
