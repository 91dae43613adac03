"""Expiry of interrupted REST stores at the coordinator: what of a failed store leaves the
bucket, and a sweep that may stop anywhere. Which files fail is the state's, tested on
every engine in tests/state/test_state_conformance.py.

The state is the real SQLite store; the bucket is a fake that keeps objects and pending
multipart uploads by key, so a crash between two steps of a sweep can be staged exactly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from support import config_data, to_config

from common.config import StorageConfig, UploadExpiryConfig
from common.protocol.file_status import FileStatus, IllegalTransition
from common.protocol.records import FileRecord, UploadRecord
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from coordinator.state.sqlite import SqliteStateStore
from coordinator.store_expiry import StoreExpiry, deleted_handle_retention

HOUR = 3600.0
NOW = 1_700_000_000.0
FORGET_DELETED_AFTER = 24 * HOUR
SETTINGS = UploadExpiryConfig(store_ttl=HOUR, sweep_interval=600)


class FakeBucket:
    """Objects and pending multipart uploads by key, as a bucket keeps them."""

    def __init__(self) -> None:
        self.objects = {"k/old", "k/new", "k/done", "k/upload", "k/shared"}
        self.pending = {("k/old", "s3-put-old"), ("k/upload", "s3-upload")}
        self.down = False
        self.swept: list[float] = []

    async def delete(self, container: str, key: str) -> None:
        if self.down:
            raise StorageError(StorageErrorKind.UNAVAILABLE, "the bucket is down")
        self.objects.discard(key)

    async def list_multipart_uploads(self, container: str) -> list[tuple[str, str]]:
        return sorted(self.pending)

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        if (key, upload_id) not in self.pending:
            raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, upload_id)
        self.pending.discard((key, upload_id))


class LocalBucket(FakeBucket):
    """A bucket with temp files of its own (the `SweepsTemporary` capability)."""

    async def sweep_temporary(self, older_than: float) -> int:
        self.swept.append(older_than)
        return 2


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


def handle_of(name: str) -> str:
    return name.ljust(20, "x")


def record(name: str, started: float, key: str | None = None) -> FileRecord:
    return FileRecord(handle=handle_of(name), apikey="KEY", storage="bucket", provider="s3",
                      container="c", key=key or f"k/{name}", filename="f.bin",
                      mimetype="application/octet-stream", size=10,
                      status=FileStatus.STARTED, pop="us-east-1", uploaded=started)


async def add_store(state: SqliteStateStore, name: str, started: float,
                    status: FileStatus = FileStatus.STARTED, key: str | None = None) -> None:
    await state.create_file(record(name, started, key), origin=f"origin-{name}")
    if status is not FileStatus.STARTED:
        await state.set_status(handle_of(name), status,
                               etag="e" if status is FileStatus.COMPLETE else None)


async def status_of(state: SqliteStateStore, name: str) -> FileStatus:
    found = await state.get_file(handle_of(name))
    assert found is not None
    return found.status


@pytest.fixture
async def stores(state: SqliteStateStore) -> SqliteStateStore:
    """REST stores begun two hours ago (Started, Complete) and a minute ago, and an Upload
    API upload begun two hours ago, still Started (upload expiry's, with its own TTL)."""
    await add_store(state, "old", NOW - 2 * HOUR)
    await add_store(state, "new", NOW - 60)
    await add_store(state, "done", NOW - 2 * HOUR, FileStatus.COMPLETE)
    await state.create_upload(record("upload", NOW - 2 * HOUR), UploadRecord(
        upload_id="up-upload", handle=handle_of("upload"), storage_upload_id="s3-upload",
        pop="us-east-1", fii=False, created=NOW - 2 * HOUR), origin="origin-upload")
    return state


def expiry(state: SqliteStateStore, bucket: FakeBucket) -> StoreExpiry:
    # The driver table says which locations keep temp files: a local-disk one does.
    driver = "local" if isinstance(bucket, LocalBucket) else "s3"
    location = StorageConfig(name="bucket", provider="S3", driver=driver, container="c")
    return StoreExpiry(state, cast(StorageSet, FakeStorage(bucket)), [location], SETTINGS,
                       forget_deleted_after=FORGET_DELETED_AFTER, clock=lambda: NOW)


async def test_a_sweep_fails_the_store_and_removes_what_it_left_and_nothing_else(
        stores: SqliteStateStore) -> None:
    bucket = FakeBucket()
    result = await expiry(stores, bucket).sweep_once()
    assert result.expired == result.removed == (handle_of("old"),)
    assert (result.owed, result.temporary) == (0, 0)
    assert bucket.objects == {"k/new", "k/done", "k/upload", "k/shared"}
    assert bucket.pending == {("k/upload", "s3-upload")}  # the upload's is expiry's to end
    assert await stores.pending_removals(10) == []
    again = await expiry(stores, bucket).sweep_once()
    assert (again.expired, again.removed, again.owed) == ((), (), 0)


async def test_an_object_at_a_key_another_file_has_is_kept(state: SqliteStateStore) -> None:
    # Two stores named the same key with `path`: the second died mid-store, and the
    # object there is the first one's.
    await add_store(state, "first", NOW - 3 * HOUR, FileStatus.COMPLETE, key="k/shared")
    await add_store(state, "second", NOW - 2 * HOUR, key="k/shared")
    bucket = FakeBucket()
    result = await expiry(state, bucket).sweep_once()
    assert result.expired == result.removed == (handle_of("second"),)
    assert "k/shared" in bucket.objects
    assert await status_of(state, "first") is FileStatus.COMPLETE


async def test_a_key_only_failed_files_had_is_cleared(state: SqliteStateStore) -> None:
    await add_store(state, "earlier", NOW - 3 * HOUR, FileStatus.FAILED, key="k/shared")
    await add_store(state, "later", NOW - 2 * HOUR, key="k/shared")
    bucket = FakeBucket()
    await expiry(state, bucket).sweep_once()
    assert "k/shared" not in bucket.objects


async def test_a_sweep_stopped_after_failing_is_finished_by_the_next(
        stores: SqliteStateStore) -> None:
    await stores.expire_stores(NOW - HOUR, NOW, 100)  # then the coordinator stopped
    bucket = FakeBucket()
    result = await expiry(stores, bucket).sweep_once()
    assert (result.expired, result.removed) == ((), (handle_of("old"),))
    assert "k/old" not in bucket.objects and ("k/old", "s3-put-old") not in bucket.pending


async def test_a_removal_the_bucket_refuses_is_owed_until_it_succeeds(
        stores: SqliteStateStore) -> None:
    bucket = FakeBucket()
    bucket.down = True
    refused = await expiry(stores, bucket).sweep_once()
    assert (refused.expired, refused.removed, refused.owed) == ((handle_of("old"),), (), 1)
    assert await status_of(stores, "old") is FileStatus.FAILED
    bucket.down = False
    later = await expiry(stores, bucket).sweep_once()
    assert (later.expired, later.removed, later.owed) == ((), (handle_of("old"),), 0)
    assert "k/old" not in bucket.objects


async def test_a_late_report_of_an_expired_store_is_refused(stores: SqliteStateStore) -> None:
    await expiry(stores, FakeBucket()).sweep_once()
    with pytest.raises(IllegalTransition):
        await stores.set_status(handle_of("old"), FileStatus.COMPLETE, size=10, etag="late")


async def test_temp_files_are_swept_where_the_driver_keeps_them(
        state: SqliteStateStore) -> None:
    plain, local = FakeBucket(), LocalBucket()
    assert (await expiry(state, plain).sweep_once()).temporary == 0
    result = await expiry(state, local).sweep_once()
    assert result.temporary == 2
    assert local.swept == [HOUR]  # untouched for the store TTL


async def test_a_sweep_forgets_the_handles_of_files_deleted_long_ago(
        stores: SqliteStateStore) -> None:
    # A delete stamps the handle with the wall clock, not the sweep's NOW.
    await stores.delete_file(handle_of("done"), events=lambda record: [])
    sweeps = expiry(stores, FakeBucket())
    deleted_at = time.time()
    kept = await sweeps.sweep_once(now=deleted_at + FORGET_DELETED_AFTER - 60)
    assert kept.forgotten == 0 and await stores.was_deleted(handle_of("done"))
    later = await sweeps.sweep_once(now=deleted_at + FORGET_DELETED_AFTER + 60)
    assert later.forgotten == 1 and not await stores.was_deleted(handle_of("done"))


def test_a_deleted_handle_is_remembered_as_long_as_a_pop_keeps_the_file(
        tmp_path: Path) -> None:
    config = to_config(config_data(tmp_path), tmp_path)
    config = replace(config, event_shipping=replace(config.event_shipping, retention=HOUR),
                     upload_expiry=replace(config.upload_expiry, ttl=48 * HOUR))
    assert deleted_handle_retention(config) == 48 * HOUR  # a view of an upload under way
    longer = replace(config, event_shipping=replace(config.event_shipping,
                                                    retention=72 * HOUR))
    assert deleted_handle_retention(longer) == 72 * HOUR
