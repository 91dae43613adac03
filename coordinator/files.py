"""The coordinator's authority over files: identity, status, and what POPs report.

Every change that a webhook reports is written together with its events (see
`coordinator.events`); the outbox worker is woken after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from common.config import Config
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, file_url
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from coordinator import events
from coordinator.events import WebhookEvent
from coordinator.state import StateStore, rules

log = logging.getLogger("cin.coordinator")


class FileAuthority:
    def __init__(self, state: StateStore, config: Config, storage: StorageSet,
                 on_events: Callable[[], None] = lambda: None) -> None:
        self.state = state
        self.config = config
        self.storage = storage
        self.on_events = on_events

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
        updated = await self.state.set_status(handle, FileStatus.COMPLETE, size=size, etag=etag,
                                              events=self.events_for(events.UPLOAD))
        log.info("file %s complete (%d bytes)", handle, size)
        self._notify(updated, events.UPLOAD)
        return updated

    async def failed(self, handle: str, reason: str) -> FileRecord:
        updated = await self.state.set_status(handle, FileStatus.FAILED)
        log.warning("file %s failed: %s", handle, reason)
        return updated

    async def overwritten(self, handle: str, size: int, etag: str, mimetype: str) -> FileRecord:
        """A POP has put new bytes at a Complete file's key."""
        async with self._changing(handle):
            record = await self.get(handle)
            if record.etag == etag and record.size == size:
                return record  # a repeated report
            if record.status is not FileStatus.COMPLETE:
                raise CinError(Code.CONFLICT, f"{handle} is {record.status.value}")
            # Two overwrites racing: the bytes in the bucket are the last put's, so only
            # that put's report may be recorded; the other is told it lost.
            current = await self._head(record)
            if current is None or current != etag:
                raise CinError(Code.CONFLICT, "another overwrite replaced these bytes")
            updated = await self.state.overwrite_file(
                handle, size=size, etag=etag, mimetype=mimetype,
                events=self.events_for(events.OVERWRITE))
        log.info("file %s overwritten (version %d, %d bytes)", handle, updated.version, size)
        self._notify(updated, events.OVERWRITE)
        return updated

    async def delete(self, handle: str, *, skip_storage: bool) -> FileRecord:
        """Remove a file: its object (unless `skip_storage`), then its record."""
        async with self._changing(handle):
            record = await self.get(handle)
            rules.check_delete(record)  # before the object goes; the store checks again
            if not skip_storage and record.etag is not None:
                await self._delete_object(record)
            deleted = await self.state.delete_file(handle, events=self.events_for(events.DELETE))
        log.info("file %s deleted%s", handle, " (object kept)" if skip_storage else "")
        self._notify(deleted, events.DELETE)
        return deleted

    def _changing(self, handle: str) -> AbstractAsyncContextManager[bool]:
        """One change at a time per handle, at every coordinator: an overwrite's bucket
        check and its record update must not interleave with another overwrite or a
        delete of that file."""
        return self.state.locked(f"file:{handle}")

    async def _delete_object(self, record: FileRecord) -> None:
        # Only the file's own bytes: a later store may have reused the key (an explicit
        # path), and its object belongs to that other file.
        if await self._head(record) != record.etag:
            return
        try:
            await self.storage[record.storage].delete(record.container, record.key)
        except StorageError as exc:
            if exc.kind is not StorageErrorKind.NOT_FOUND:
                raise

    async def _head(self, record: FileRecord) -> str | None:
        """The ETag of the object at the file's key now, or None if there is none."""
        try:
            info = await self.storage[record.storage].head(record.container, record.key)
        except StorageError as exc:
            if exc.kind is StorageErrorKind.NOT_FOUND:
                return None
            raise
        return info.etag

    def events_for(self, action: str) -> Callable[[FileRecord], Sequence[WebhookEvent]]:
        def build(record: FileRecord) -> Sequence[WebhookEvent]:
            app = self.config.apps.get(record.apikey)
            url = file_url(self.config.coordinator.public_url, record.handle)
            return events.file_events(app, action, record, url, time.time())

        return build

    def _notify(self, record: FileRecord, action: str) -> None:
        """Wake the outbox worker, if the change wrote an event for it to send."""
        app = self.config.apps.get(record.apikey)
        if app is not None and any(action in hook.actions for hook in app.webhooks):
            self.on_events()

