"""Two coordinators on one PostgreSQL database, as two apps in this process: any of them
answers `/pops` and hands out POPs from heartbeats the other heard; a start repeated to
both at once makes one upload; expiry sweeping at both at once aborts each bucket upload
once; a removal woken at one waits for a sweep running at the other; one finishes stored
uploads while the other skips its round.
(tests/e2e/test_several_coordinators.py does it with real processes.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, Network, free_port, start_network

from common.config import PostgresStateConfig, UploadExpiryConfig
from common.protocol.file_status import FileStatus
from common.protocol.limits import MIN_PART_SIZE
from common.protocol.pop_events import PartStored, UploadInTransit, UploadStarted
from common.protocol.records import FileRecord, UploadRecord
from common.protocol.wire import StartUpload
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from coordinator.app import make_app as make_coordinator_app
from coordinator.expiry import UploadExpiry
from coordinator.keys import MULTIPART, STORAGE
from coordinator.multipart import MultipartUploads
from coordinator.state.postgres import PostgresStateStore
from coordinator.store_expiry import SWEEP_LOCK, StoreExpiry
from coordinator.upload_finisher import UploadFinisher

FAST = {"interval": 0.05, "timeout": 1.0}
EAST = "us-east-1"


@pytest.fixture
async def two_coordinators(tmp_path: Path, postgres_database: str
                           ) -> AsyncIterator[tuple[Network, TestClient]]:  # type: ignore[type-arg]
    """A network on PostgreSQL (its POP beats to the first coordinator) and a second
    coordinator on the same database, which no POP calls."""
    async with start_network(tmp_path, heartbeat=FAST, state=postgres_database) as network:
        server = TestServer(make_coordinator_app(network.config), host="127.0.0.1",
                            port=free_port())
        async with TestClient(server) as second:
            yield network, second


@pytest.fixture
async def states(postgres_database: str) -> AsyncIterator[list[PostgresStateStore]]:
    """Two coordinators' state stores on one PostgreSQL database, opened."""
    config = PostgresStateConfig(postgres_database)
    opened = [PostgresStateStore(config), PostgresStateStore(config)]
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        await asyncio.gather(*(store.close() for store in opened))


async def pops_at(client: TestClient) -> dict[str, Any]:  # type: ignore[type-arg]
    response = await client.get("/pops")
    assert response.status == 200
    return {pop["name"]: pop for pop in (await response.json())["pops"]}


async def test_a_coordinator_no_pop_calls_knows_the_pops_from_the_other(
        two_coordinators: tuple[Network, TestClient]) -> None:  # type: ignore[type-arg]
    network, second = two_coordinators
    give_up = time.monotonic() + 20
    while not (await pops_at(second))[EAST]["healthy"]:
        assert time.monotonic() < give_up, await pops_at(second)
        await asyncio.sleep(0.02)
    assert (await pops_at(network.coordinator))[EAST]["healthy"]
    # Its choice is made from that news: the POP that beats, not the silent eu-west-1
    # (down once a timeout has passed since this coordinator started).
    await asyncio.sleep(FAST["timeout"])
    assert (await pops_at(second))["eu-west-1"]["state"] == "down"
    response = await second.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "a.bin", "mimetype": "application/octet-stream",
        "size": 1024, "store": {"location": "s3"}})
    reply = await response.json()
    assert response.status == 200, reply
    assert reply["location_url"] == network.config.pops[0].public_url.split("//")[1]


async def test_a_start_repeated_at_both_coordinators_at_once_makes_one_upload(
        two_coordinators: tuple[Network, TestClient]) -> None:  # type: ignore[type-arg]
    network, second = two_coordinators
    start = StartUpload(origin=f"{EAST}:repeated", apikey=APIKEY, storage="bucket",
                        provider="s3", container="cin-test", path=None, filename="big.bin",
                        mimetype="application/octet-stream", size=2 * MIN_PART_SIZE,
                        access="private", region=None, fii=False, pop=EAST)
    apps = [network.coordinator.app, second.app]
    (first_file, first), (other_file, other) = await asyncio.gather(
        *(app[MULTIPART].start(start) for app in apps))
    assert first == other and first_file == other_file
    # The bucket upload the losing coordinator opened was aborted: one is left pending.
    bucket = network.coordinator.app[STORAGE]["bucket"]
    pending = await bucket.list_multipart_uploads("cin-test")
    assert pending == [(first_file.key, first.storage_upload_id)]


class SlowBucket:
    """Aborts that take a while, as a distant bucket's do: sweeps at two coordinators
    overlap. A second abort of one upload is NO_SUCH_UPLOAD, as in S3."""

    def __init__(self, pending: set[str]) -> None:
        self.pending = pending
        self.aborts: list[str] = []

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        self.aborts.append(upload_id)
        await asyncio.sleep(0.05)
        if upload_id not in self.pending:
            raise StorageError(StorageErrorKind.NO_SUCH_UPLOAD, upload_id)
        self.pending.discard(upload_id)

    def __getitem__(self, name: str) -> SlowBucket:
        return self


async def test_expiry_sweeping_at_both_coordinators_aborts_each_upload_once(
        states: list[PostgresStateStore]) -> None:
    names = [f"u{n}" for n in range(6)]
    for name in names:
        handle = name.ljust(20, "x")
        record = FileRecord(handle=handle, apikey=APIKEY, storage="bucket",
                            provider="s3", container="c", key=f"k/{name}",
                            filename="f", mimetype="t/p", size=1,
                            status=FileStatus.STARTED, pop=EAST, uploaded=100.0)
        await states[0].create_upload(record, UploadRecord(
            upload_id=name, handle=handle, storage_upload_id=f"s3-{name}", pop=EAST,
            fii=False, created=100.0), origin=name)
    bucket = SlowBucket({f"s3-{name}" for name in names})
    settings = UploadExpiryConfig(ttl=10.0, sweep_interval=60.0)
    sweeps = [UploadExpiry(store, cast(StorageSet, bucket), settings, clock=lambda: 1000.0)
              for store in states]
    # The timer's sweeps: one runs, the other finds it running and leaves it the work.
    results = await asyncio.gather(*(sweep.sweep_if_free() for sweep in sweeps))
    ran = [result for result in results if result is not None]
    assert len(ran) == 1 and sorted(ran[0].aborted) == names
    assert sorted(bucket.aborts) == sorted(f"s3-{name}" for name in names)
    # Sweeps asked for take turns; the second finds nothing owed.
    again = await asyncio.gather(*(sweep.sweep_once() for sweep in sweeps))
    assert [(r.expired, r.aborted) for r in again] == [((), ()), ((), ())]
    assert len(bucket.aborts) == len(names) and not bucket.pending


class RecordingBucket:
    """A bucket whose deletes are recorded, with no pending multipart uploads."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, container: str, key: str) -> None:
        self.deleted.append(key)

    async def list_multipart_uploads(self, container: str) -> list[tuple[str, str]]:
        return []

    def __getitem__(self, name: str) -> RecordingBucket:
        return self


async def test_a_woken_removal_waits_for_a_sweep_at_the_other_coordinator(
        states: list[PostgresStateStore]) -> None:
    record = FileRecord(handle="abandoned".ljust(20, "x"), apikey=APIKEY,
                        storage="bucket", provider="s3", container="c", key="k/gone",
                        filename="f", mimetype="t/p", size=1,
                        status=FileStatus.STARTED, pop=EAST, uploaded=100.0)
    await states[0].create_file(record, origin="abandoned")
    assert [r.handle for r in await states[0].expire_stores(200.0, 300.0, 10)] == [
        record.handle]
    bucket = RecordingBucket()
    expiry = StoreExpiry(states[1], cast(StorageSet, bucket), [],
                         UploadExpiryConfig(sweep_interval=3600.0),
                         forget_deleted_after=3600.0)
    runs = asyncio.create_task(expiry.run())
    try:
        async with states[0].locked(SWEEP_LOCK):  # the other coordinator sweeps
            expiry.wake()
            await asyncio.sleep(0.3)
            assert bucket.deleted == []
            assert await states[0].pending_removals(10)
        give_up = time.monotonic() + 10
        while await states[0].pending_removals(10):
            assert time.monotonic() < give_up, "the woken removal never ran"
            await asyncio.sleep(0.02)
        assert bucket.deleted == ["k/gone"]
    finally:
        runs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runs


class SlowFinish:
    """Uploads whose finish takes a while, as a distant bucket's complete does; counts the
    finishes asked of it."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def finish(self, handle: str) -> FileRecord:
        self.asked.append(handle)
        self.entered.set()
        await self.release.wait()
        return FINISHABLE.with_changes(status=FileStatus.COMPLETE)


FINISHABLE = FileRecord(handle="finishable".ljust(20, "x"), apikey=APIKEY, storage="bucket",
                        provider="s3", container="c", key="k/finishable", filename="f",
                        mimetype="t/p", size=10, status=FileStatus.STARTED, pop=EAST,
                        uploaded=100.0)


async def test_one_coordinator_at_a_time_finishes_stored_uploads(
        states: list[PostgresStateStore]) -> None:
    handle, upload_id = FINISHABLE.handle, "up-finishable"
    # An upload In Transit with its one part stored: all that is left is to finish it.
    await states[0].apply_pop_events(EAST, [
        UploadStarted(id="s", handle=handle, at=0, record=FINISHABLE,
                      upload=UploadRecord(upload_id, handle, "s3-up", EAST, False, 0)),
        UploadInTransit(id="t", handle=handle, at=0, upload_id=upload_id,
                        parts=[[1, 10]]),
        PartStored(id="p", handle=handle, at=0, upload_id=upload_id, part=1, size=10,
                   etag="e1")], now=time.time(), stored=lambda record: [])
    assert await states[0].finishable_uploads(10) == [handle]
    uploads = [SlowFinish(), SlowFinish()]
    finishers = [UploadFinisher(store, cast(MultipartUploads, finishing))
                 for store, finishing in zip(states, uploads, strict=True)]
    first = asyncio.create_task(finishers[0].finish_if_free())
    try:
        await asyncio.wait_for(uploads[0].entered.wait(), 10)
        # The second coordinator's round, while the first is finishing: skipped.
        assert await finishers[1].finish_if_free() is None
        assert uploads[1].asked == []
        uploads[0].release.set()
        assert await asyncio.wait_for(first, 10) == [handle]
    finally:
        uploads[0].release.set()
        await asyncio.gather(first, return_exceptions=True)
    assert uploads[0].asked == [handle]
