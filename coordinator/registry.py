"""The coordinator's authority over files: identity, status, and what POPs report."""

from __future__ import annotations

import logging
import time

from common.errors import CinError, Code
from common.files import FileRecord
from common.naming import clean_filename, new_handle, object_key
from common.status import FileStatus
from common.wire import StartFile
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator")


class FileRegistry:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    async def start(self, request: StartFile) -> FileRecord:
        """Give a new file its handle and key, recorded as Started."""
        filename = clean_filename(request.filename)
        record = FileRecord(
            handle=new_handle(),
            apikey=request.apikey,
            storage=request.storage,
            provider=request.provider,
            container=request.container,
            key=object_key(request.path, filename),
            filename=filename,
            mimetype=request.mimetype,
            size=request.size,
            status=FileStatus.STARTED,
            pop=request.pop,
            uploaded=time.time(),
            access=request.access,
            region=request.region,
            source_url=request.source_url,
            tags=dict(request.tags),
        )
        stored = await self.state.create_file(record, request.origin)
        if stored.handle == record.handle:
            log.info("file %s started at %s: %s/%s", record.handle, record.pop,
                     record.container, record.key)
        return stored

    async def get(self, handle: str) -> FileRecord:
        record = await self.state.get_file(handle)
        if record is None:
            raise CinError(Code.FILE_NOT_FOUND, handle[:64])
        return record

    async def stored(self, handle: str, size: int, etag: str) -> FileRecord:
        record = await self.get(handle)
        if record.status is FileStatus.COMPLETE and record.etag == etag:
            return record  # a POP repeating a report it did not hear acknowledged
        if size != record.size:
            await self.failed(handle, f"size mismatch: expected {record.size}, stored {size}")
            raise CinError(Code.CONFLICT, f"stored {size} bytes, expected {record.size}")
        updated = await self.state.set_status(handle, FileStatus.COMPLETE, size=size, etag=etag)
        log.info("file %s complete (%d bytes)", handle, size)
        return updated

    async def failed(self, handle: str, reason: str) -> FileRecord:
        updated = await self.state.set_status(handle, FileStatus.FAILED)
        log.warning("file %s failed: %s", handle, reason)
        return updated
