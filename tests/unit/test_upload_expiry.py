"""Expiry at the coordinator: a sweep that may stop anywhere. Which uploads expire is the
state store's to choose (tests/state/test_state_conformance.py).

The state is the real SQLite store; the bucket is a fake that records aborts, so a crash
between two steps of a sweep can be staged exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from common.config import UploadExpiryConfig
from common.protocol.file_status import FileStatus, IllegalTransition
from common.protocol.records import FileRecord, UploadRecord
from common.protocol.upload_expiry import describe_duration
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from coordinator.expiry import UploadExpiry
from coordinator.state.sqlite import SqliteStateStore

DAY = 86400.0
NOW = 1_700_000_000.0
SETTINGS = UploadExpiryConfig(ttl=DAY, sweep_interval=600)


class FakeBucket:
    """Aborts as a bucket takes them: a second abort of one upload is NO_SUCH_UPLOAD."""

    def __init__(self) -> None:
        self.pending = {"s3-old", "s3-new", "s3-transit", "s3-done"}
        self.aborts: list[str] = []
        self.down = False

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        self.aborts.append(upload_id)
        if self.down:
            raise StorageError(StorageErrorKind.UNAVAILABLE, "the bucket is down")
        if upload_id not in self.pending:
            raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, upload_id)
        self.pending.discard(upload_id)


class FakeStorage:
    def __init__(self, bucket: FakeBucket) -> None:
        self.bucket = bucket

    def __getitem__(self, name: str) -> FakeBucket:
        assert name == "bucket"
        return self.bucket


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    await store.open()
    yield store
    await store.close()


async def add_upload(state: SqliteStateStore, name: str, started: float,
                     status: FileStatus = FileStatus.STARTED) -> None:
    handle = name.ljust(20, "x")
    record = FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                        container="c", key=f"k/{name}", filename="f.bin",
                        mimetype="application/octet-stream", size=10,
                        status=FileStatus.STARTED, pop="us-east-1", uploaded=started)
    upload = UploadRecord(upload_id=f"up-{name}", handle=handle,
                          storage_upload_id=f"s3-{name}", pop="us-east-1", fii=False,
                          created=started)
    await state.create_upload(record, upload, origin=f"origin-{name}")
    if status is not FileStatus.STARTED:
        await state.set_status(handle, status, etag="e" if status is FileStatus.COMPLETE
                               else None)


async def status_of(state: SqliteStateStore, name: str) -> FileStatus:
    record = await state.get_file(name.ljust(20, "x"))
    assert record is not None
    return record.status


@pytest.fixture
async def uploads(state: SqliteStateStore) -> SqliteStateStore:
    """Four uploads: started two days ago (Started, In Transit, Complete) and an hour ago."""
    await add_upload(state, "old", NOW - 2 * DAY)
    await add_upload(state, "new", NOW - 3600)
    await add_upload(state, "transit", NOW - 2 * DAY, FileStatus.IN_TRANSIT)
    await add_upload(state, "done", NOW - 2 * DAY, FileStatus.COMPLETE)
    # A REST store's file: Started, old, but not an Upload API upload.
    await state.create_file(FileRecord(
        handle="s" * 20, apikey="KEY", storage="bucket", provider="s3", container="c",
        key="k/s", filename="s.bin", mimetype="text/plain", size=1,
        status=FileStatus.STARTED, pop="us-east-1", uploaded=NOW - 2 * DAY), origin="rest")
    return state


def expiry(state: SqliteStateStore, bucket: FakeBucket) -> UploadExpiry:
    return UploadExpiry(state, cast(StorageSet, FakeStorage(bucket)), SETTINGS,
                        clock=lambda: NOW)


async def test_a_sweep_fails_and_aborts_the_abandoned_and_nothing_else(
        uploads: SqliteStateStore) -> None:
    bucket = FakeBucket()
    result = await expiry(uploads, bucket).sweep_once()
    assert result.expired == ("up-old",) and result.aborted == ("up-old",)
    assert result.owed == 0
    assert bucket.aborts == ["s3-old"]
    assert bucket.pending == {"s3-new", "s3-transit", "s3-done"}
    assert await status_of(uploads, "old") is FileStatus.FAILED
    upload = await uploads.get_upload("up-old")
    assert upload is not None and upload.failure == "expired: not completed within 24 h"
    # Idempotent: a second sweep finds nothing to do.
    again = await expiry(uploads, bucket).sweep_once()
    assert (again.expired, again.aborted, again.owed) == ((), (), 0)
    assert bucket.aborts == ["s3-old"]


async def test_a_sweep_stopped_before_the_abort_is_finished_by_the_next(
        uploads: SqliteStateStore) -> None:
    await uploads.expire_uploads(NOW - DAY, "expired: earlier", NOW, 100)  # then it stopped
    bucket = FakeBucket()
    result = await expiry(uploads, bucket).sweep_once()
    assert (result.expired, result.aborted) == ((), ("up-old",))
    assert bucket.pending == {"s3-new", "s3-transit", "s3-done"}
    assert await uploads.pending_aborts(10) == []


async def test_a_sweep_stopped_after_the_abort_is_finished_by_the_next(
        uploads: SqliteStateStore) -> None:
    await uploads.expire_uploads(NOW - DAY, "expired: earlier", NOW, 100)
    bucket = FakeBucket()
    bucket.pending.discard("s3-old")  # aborted, then it stopped before recording it
    result = await expiry(uploads, bucket).sweep_once()
    assert result.aborted == ("up-old",) and result.owed == 0
    assert bucket.aborts == ["s3-old"]  # answered NO_SUCH_UPLOAD: counted as done
    assert await uploads.pending_aborts(10) == []


async def test_an_abort_the_bucket_refuses_is_owed_until_it_succeeds(
        uploads: SqliteStateStore) -> None:
    bucket = FakeBucket()
    bucket.down = True
    refused = await expiry(uploads, bucket).sweep_once()
    assert (refused.expired, refused.aborted, refused.owed) == (("up-old",), (), 1)
    assert await status_of(uploads, "old") is FileStatus.FAILED
    bucket.down = False
    later = await expiry(uploads, bucket).sweep_once()
    assert (later.expired, later.aborted, later.owed) == ((), ("up-old",), 0)
    assert "s3-old" not in bucket.pending


async def test_an_upload_without_a_bucket_upload_has_nothing_to_abort(
        state: SqliteStateStore) -> None:
    handle = "p".ljust(20, "x")
    record = FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                        container="c", key="k/p", filename="f.bin", mimetype="t/p", size=1,
                        status=FileStatus.STARTED, pop="us-east-1", uploaded=NOW - 2 * DAY)
    await state.create_upload(record, UploadRecord(
        upload_id="up-p", handle=handle, storage_upload_id="", pop="us-east-1", fii=False,
        created=NOW - 2 * DAY), origin="origin-p")
    bucket = FakeBucket()
    result = await expiry(state, bucket).sweep_once()
    assert (result.expired, result.aborted, result.owed) == (("up-p",), ("up-p",), 0)
    assert bucket.aborts == []


async def test_an_expired_upload_cannot_be_completed(uploads: SqliteStateStore) -> None:
    await expiry(uploads, FakeBucket()).sweep_once()
    with pytest.raises(IllegalTransition):
        await uploads.upload_in_transit("old".ljust(20, "x"), [], {})


@pytest.mark.parametrize(("seconds", "text"), [
    (86400, "24 h"), (3600, "1 h"), (5400, "90 min"), (60, "1 min"), (90, "90 s"),
    (0.5, "0.5 s"),
])
def test_describe_duration(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text
