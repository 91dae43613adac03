"""A POP's spool sweep: which uploads lose their bytes, asked of a fake coordinator."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from journal_support import open_journal

from common.config import UploadExpiryConfig
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from edge.coordinator_client import CoordinatorClient
from edge.journal.sqlite_journal import SqliteJournal
from edge.multipart.part_spool import PartSpool
from edge.multipart.spool_sweeper import SpoolSweeper, may_remove

DAY = 86400.0
SETTINGS = UploadExpiryConfig(ttl=DAY, sweep_interval=600)
STATUSES = {"complete-upload": FileStatus.COMPLETE, "failed-upload": FileStatus.FAILED,
            "started-upload": FileStatus.STARTED, "transit-upload": FileStatus.IN_TRANSIT,
            "fresh-upload": FileStatus.STARTED, "fresh-complete": FileStatus.COMPLETE,
            "fresh-failed": FileStatus.FAILED}  # "unknown-upload": the coordinator has none
FRESH = {"fresh-upload", "fresh-complete", "fresh-failed"}


class FakeCoordinator:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.down = False

    async def call(self, msg: wire.Message, expect: type[Any]) -> wire.UploadReply:
        assert isinstance(msg, wire.LookupUpload) and expect is wire.UploadReply
        self.asked.append(msg.upload_id)
        if self.down:
            raise CinError(Code.COORDINATOR_UNAVAILABLE, "down")
        status = STATUSES.get(msg.upload_id)
        if status is None:
            raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
        record = FileRecord(handle="h" * 20, apikey="KEY", storage="bucket", provider="s3",
                            container="c", key="k", filename="f", mimetype="t/p", size=4,
                            status=status, pop="us-east-1", uploaded=1.0)
        upload = UploadRecord(upload_id=msg.upload_id, handle="h" * 20,
                              storage_upload_id="s3", pop="us-east-1", fii=False,
                              created=1.0)
        return wire.UploadReply(record=record, upload=upload)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def spool(tmp_path: Path) -> PartSpool:
    """One spooled upload per status, each with a part; all but the fresh ones idle for
    two days."""
    made = PartSpool(tmp_path / "spool")
    await made.prepare()
    for upload_id in [*STATUSES, "unknown-upload"]:
        await made.open_upload(upload_id, {})
        await made.write_chunk(upload_id, 1, 0, chunks(b"data"), 4)
        if upload_id not in FRESH:
            directory = made.uploads / upload_id
            for path in [*directory.iterdir(), directory]:
                old = path.stat().st_mtime - 2 * DAY
                os.utime(path, (old, old))
    return made


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    """The POP's journal, empty: every upload here was started elsewhere, so the sweep
    asks the coordinator about each."""
    opened = await open_journal(tmp_path / "journal")
    yield opened
    await opened.close()


def sweeper(spool: PartSpool, coordinator: FakeCoordinator,
            journal: SqliteJournal) -> SpoolSweeper:
    return SpoolSweeper(spool, cast(CoordinatorClient, coordinator), journal, SETTINGS)


def spooled(spool: PartSpool) -> set[str]:
    return {path.name for path in spool.uploads.iterdir()}


@pytest.mark.parametrize(("status", "idle", "removed"), [
    # Ended: at once, idle or not.
    (FileStatus.COMPLETE, False, True), (FileStatus.FAILED, False, True),
    (FileStatus.COMPLETE, True, True), (FileStatus.FAILED, True, True),
    # Unknown, or Started for a whole TTL of silence (the coordinator fails it).
    (None, True, True), (FileStatus.STARTED, True, True),
    (None, False, False), (FileStatus.STARTED, False, False),
    # Acknowledged bytes, on their way to the bucket.
    (FileStatus.IN_TRANSIT, True, False), (FileStatus.IN_TRANSIT, False, False),
])
def test_ended_uploads_go_at_once_and_in_transit_ones_never(
        status: FileStatus | None, idle: bool, removed: bool) -> None:
    assert may_remove(status, idle=idle) is removed


async def test_a_sweep_removes_the_uploads_nothing_needs(
        spool: PartSpool, journal: SqliteJournal) -> None:
    coordinator = FakeCoordinator()
    removed = await sweeper(spool, coordinator, journal).sweep_once()
    assert set(removed) == {"complete-upload", "failed-upload", "started-upload",
                            "unknown-upload", "fresh-complete", "fresh-failed"}
    assert spooled(spool) == {"transit-upload", "fresh-upload"}
    # The In Transit upload's bytes are whole, ready for its transfer.
    finished = await spool.finish_part("transit-upload", 1)
    assert finished.size == 4
    # A removed upload is not recreated by a late chunk.
    with pytest.raises(CinError) as caught:
        await spool.write_chunk("failed-upload", 2, 0, chunks(b"late"), 4)
    assert caught.value.code is Code.FILE_NOT_FOUND
    assert "failed-upload" not in spooled(spool)


async def test_idleness_is_measured_at_the_given_time(
        spool: PartSpool, journal: SqliteJournal) -> None:
    later = time.time() + DAY + 60  # the fresh upload has idled a whole TTL by then
    removed = await sweeper(spool, FakeCoordinator(), journal).sweep_once(now=later)
    assert "fresh-upload" in removed
    assert spooled(spool) == {"transit-upload"}


async def test_nothing_is_removed_without_the_coordinator(
        spool: PartSpool, journal: SqliteJournal) -> None:
    coordinator = FakeCoordinator()
    coordinator.down = True
    assert await sweeper(spool, coordinator, journal).sweep_once() == []
    assert len(spooled(spool)) == 8
    assert len(coordinator.asked) == 1  # it stops at the first failure, for the next sweep


async def test_a_sweep_does_its_disk_work_off_the_event_loop(
        spool: PartSpool, journal: SqliteJournal, monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    on_loop: list[str] = []
    seen: set[str] = set()
    for name in ("stat", "lstat", "scandir", "listdir", "unlink", "rmdir", "open"):
        real = getattr(os, name)

        def watched(*args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
            seen.add(_name)
            if threading.get_ident() == loop_thread:
                on_loop.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, watched)
    removed = await sweeper(spool, FakeCoordinator(), journal).sweep_once()
    monkeypatch.undo()
    assert len(removed) == 6
    assert seen >= {"stat", "unlink", "rmdir"}
    assert on_loop == []
