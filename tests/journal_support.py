"""What the journal's tests share: records, events and a journal on a real file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

from support import config_data, to_config

from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import mint_upload_id
from common.protocol.pop_events import FileStored, PartStored, UploadStarted, new_event_id
from common.protocol.records import FileRecord, UploadRecord
from common.storage.storage_set import StorageSet
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal
from edge.journal.sqlite_journal import SqliteJournal
from edge.multipart.uploads import PopUploads

SECRET = "journal-test-secret-0123456789"
POP = "us-east-1"


def file_record(handle: str, status: FileStatus = FileStatus.STARTED,
                etag: str | None = None) -> FileRecord:
    return FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                      container="c", key=f"k/{handle}", filename="f.txt",
                      mimetype="text/plain", size=3, status=status, pop=POP,
                      uploaded=time.time(), etag=etag)


def stored(handle: str) -> FileStored:
    return FileStored(id=new_event_id(), handle=handle, at=time.time(),
                      record=file_record(handle, FileStatus.COMPLETE, etag="e"))


def upload_record(handle: str) -> UploadRecord:
    return UploadRecord(upload_id=mint_upload_id(SECRET, handle), handle=handle,
                        storage_upload_id="mpu-1", pop=POP, fii=False, created=time.time())


def upload_started(handle: str) -> UploadStarted:
    return UploadStarted(id=new_event_id(), handle=handle, at=time.time(),
                         record=file_record(handle), upload=upload_record(handle))


def part_stored(handle: str, part: int) -> PartStored:
    return PartStored(id=new_event_id(), handle=handle, at=time.time(),
                      upload_id=mint_upload_id(SECRET, handle), part=part, size=5,
                      etag=f"p{part}")


async def open_journal(root: Path) -> SqliteJournal:
    """An empty journal on a real file under `root`; close it when done."""
    journal = SqliteJournal(root, SECRET)
    await journal.open()
    return journal


def pop_uploads(root: Path, journal: PopJournal, coordinator: object,
                storage: object) -> PopUploads:
    """The uploads of the us-east-1 POP of a test network under `root`, with `journal`,
    `coordinator` (a CoordinatorClient, or a stand-in) and `storage` (a StorageSet)."""
    config = to_config(config_data(root), root)

    async def flush(timeout: float) -> None:
        return None

    return PopUploads(config, config.pops[0], journal, cast(CoordinatorClient, coordinator),
                      cast(StorageSet, storage), flush)
