import asyncio
from pathlib import Path
from typing import Any

import pytest

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord
from coordinator.events import WebhookEvent
from coordinator.state.sqlite import SqliteStateStore


def record(handle: str = "h" * 20) -> FileRecord:
    return FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                      container="c", key=f"k/{handle}", filename="f.txt",
                      mimetype="text/plain", size=3, status=FileStatus.STARTED,
                      pop="us-east-1", uploaded=1.25, tags={"user": "42"})


async def test_files_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SqliteStateStore(path)
    await store.open()
    await store.create_file(record(), origin="pop:1")
    await store.set_status("h" * 20, FileStatus.COMPLETE, size=3, etag="e1")
    await store.close()

    reopened = SqliteStateStore(path)
    await reopened.open()
    found = await reopened.get_file("h" * 20)
    await reopened.close()
    assert found == record().with_changes(status=FileStatus.COMPLETE, etag="e1")


async def test_same_origin_returns_the_first_file(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    first = await store.create_file(record("a" * 20), origin="pop:1")
    again = await store.create_file(record("b" * 20), origin="pop:1")
    await store.close()
    assert again.handle == first.handle == "a" * 20


async def test_illegal_transition_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.set_status("h" * 20, FileStatus.FAILED)
    with pytest.raises(CinError) as caught:
        await store.set_status("h" * 20, FileStatus.COMPLETE)
    assert caught.value.code is Code.CONFLICT
    found = await store.get_file("h" * 20)
    await store.close()
    assert found is not None and found.status is FileStatus.FAILED


async def test_hashes_belong_to_one_version(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.save_hashes("h" * 20, 2, {"md5": "stale"})  # a version that is not current
    assert (await store.get_file("h" * 20)).hashes is None  # type: ignore[union-attr]
    await store.save_hashes("h" * 20, 1, {"md5": "abc"})
    assert (await store.get_file("h" * 20)).hashes == {"md5": "abc"}  # type: ignore[union-attr]
    await store.close()


async def test_concurrent_writers_are_serialized(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    handles = [f"{i:020d}" for i in range(200)]
    await asyncio.gather(*(store.create_file(record(h), origin=h) for h in handles))
    found = await asyncio.gather(*(store.get_file(h) for h in handles))
    await store.close()
    assert all(f is not None for f in found)


def one_event(action: str) -> Any:
    """An `events` callable: one event per change, describing the record it is given."""
    def build(changed: FileRecord) -> list[WebhookEvent]:
        return [WebhookEvent(apikey=changed.apikey, endpoint="http://hooks.test/a",
                             action=action, text={"size": changed.size}, created=10.0)]

    return build


async def test_events_are_written_with_their_change_or_not_at_all(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.set_status("h" * 20, FileStatus.FAILED)
    # A refused transition rolls back: no event for a change that did not happen.
    with pytest.raises(CinError):
        await store.set_status("h" * 20, FileStatus.COMPLETE, events=one_event("fp.upload"))
    assert await store.due_deliveries(now=1e12, limit=10) == []

    await store.create_file(record("g" * 20), origin="o2")
    await store.set_status("g" * 20, FileStatus.COMPLETE, size=3, etag="e",
                           events=one_event("fp.upload"))
    (delivery,) = await store.due_deliveries(now=10.0, limit=10)
    assert (delivery.action, delivery.text, delivery.attempts) == ("fp.upload", {"size": 3}, 0)
    assert await store.due_deliveries(now=9.0, limit=10) == []  # not due before it was made
    await store.close()


async def test_overwrite_bumps_the_version_and_forgets_the_hashes(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    with pytest.raises(CinError) as caught:  # only a stored file can be overwritten
        await store.overwrite_file("h" * 20, size=9, etag="e2", mimetype="image/png",
                                   events=one_event("fp.overwrite"))
    assert caught.value.code is Code.CONFLICT
    await store.set_status("h" * 20, FileStatus.COMPLETE, size=3, etag="e1")
    await store.save_hashes("h" * 20, 1, {"md5": "old"})
    updated = await store.overwrite_file("h" * 20, size=9, etag="e2", mimetype="image/png",
                                         events=one_event("fp.overwrite"))
    found = await store.get_file("h" * 20)
    (delivery,) = await store.due_deliveries(now=1e12, limit=10)
    await store.close()
    assert found == updated
    assert (found.version, found.size, found.etag, found.mimetype, found.hashes) == (
        2, 9, "e2", "image/png", None)
    assert found.key == record().key and found.tags == {"user": "42"}
    assert (delivery.action, delivery.text) == ("fp.overwrite", {"size": 9})


async def test_delete_removes_the_record_and_queues_its_event(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    deleted = await store.delete_file("h" * 20, events=one_event("fp.delete"))
    with pytest.raises(CinError) as caught:
        await store.delete_file("h" * 20, events=one_event("fp.delete"))
    gone = await store.get_file("h" * 20)
    deliveries = await store.due_deliveries(now=1e12, limit=10)
    await store.close()
    assert deleted.handle == "h" * 20 and gone is None
    assert caught.value.code is Code.FILE_NOT_FOUND
    assert [d.action for d in deliveries] == ["fp.delete"]


async def test_outbox_retries_and_abandons(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    await store.open()
    await store.create_file(record(), origin="o")
    await store.set_status("h" * 20, FileStatus.COMPLETE, events=one_event("fp.upload"))
    (first,) = await store.due_deliveries(now=100.0, limit=10)
    await store.delivery_failed(first.id, "HTTP 500", retry_at=200.0)
    assert await store.due_deliveries(now=150.0, limit=10) == []
    assert await store.next_delivery_time() == 200.0
    assert await store.next_delivery_time(excluding={first.id}) is None  # being sent
    (again,) = await store.due_deliveries(now=200.0, limit=10)
    assert (again.id, again.attempts) == (first.id, 1)
    await store.delivery_failed(first.id, "HTTP 500", retry_at=None)
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 1}
    assert await store.next_delivery_time() is None
    await store.delete_file("h" * 20, events=one_event("fp.delete"))
    (last,) = await store.due_deliveries(now=1e12, limit=10)
    await store.delivery_done(last.id)
    assert await store.outbox_counts() == {"pending": 0, "abandoned": 1}
    await store.close()


async def test_concurrent_writes_commit_together_and_fail_alone(tmp_path: Path) -> None:
    """Writes that arrive together share a group commit; one that fails is undone alone,
    and every other is committed (and still there after reopening)."""
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.open()
    handles = [f"{n:020d}" for n in range(40)]
    await asyncio.gather(*(store.create_file(record(h), origin=h) for h in handles))
    await store.set_status(handles[7], FileStatus.FAILED)
    outcomes = await asyncio.gather(
        *(store.set_status(h, FileStatus.COMPLETE, size=3, etag=f"e{h}") for h in handles),
        return_exceptions=True)
    await store.close()
    failed = [h for h, outcome in zip(handles, outcomes, strict=True)
              if isinstance(outcome, BaseException)]
    assert failed == [handles[7]]
    assert isinstance(outcomes[7], CinError) and outcomes[7].code is Code.CONFLICT

    reopened = SqliteStateStore(path)
    await reopened.open()
    found = {h: await reopened.get_file(h) for h in handles}
    await reopened.close()
    refused = found[handles[7]]
    assert refused is not None and refused.status is FileStatus.FAILED
    for h in handles[:7] + handles[8:]:
        stored = found[h]
        assert stored is not None and stored.status is FileStatus.COMPLETE
        assert stored.etag == f"e{h}"
