"""What the journal's tests share: records, events and a journal on a real file."""

from __future__ import annotations

import time

from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import mint_upload_id
from common.protocol.pop_events import FileStored, PartStored, UploadStarted, new_event_id
from common.protocol.records import FileRecord, UploadRecord

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
