"""The coordinator's state behind one protocol, so that the embedded SQLite engine and a
server database (for several coordinators) are interchangeable."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.config import AppConfig
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from coordinator.events import Delivery, WebhookEvent

# Given the record as a change leaves it, the webhook events to write with the change.
EventsFor = Callable[[FileRecord], Sequence[WebhookEvent]]


@dataclass(frozen=True)
class PendingAbort:
    """A bucket multipart upload of an upload the coordinator ended (it expired), still to
    be aborted. It carries all the abort needs, so it outlives a delete of the file."""

    upload_id: str
    handle: str
    storage: str
    container: str
    key: str
    storage_upload_id: str
    reason: str


class StateStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        """Record the apps of the config (never their secrets)."""
        ...

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        """Insert a new file. If `origin` was seen before, return that file instead:
        a POP retrying a request it did not hear the answer to gets the same handle."""
        ...

    async def get_file(self, handle: str) -> FileRecord | None: ...

    async def create_upload(self, record: FileRecord, upload: UploadRecord,
                            origin: str) -> None:
        """Insert a Started file and the multipart upload that will bring its bytes."""
        ...

    async def upload_in_transit(self, handle: str, parts: Sequence[PartRecord],
                                tags: dict[str, str]) -> FileRecord:
        """Every byte is durable at POPs: record their parts and tags, status In Transit."""
        ...

    async def part_stored(self, handle: str, part: PartRecord) -> None:
        """A part is in the bucket (from whichever POP sent it)."""
        ...

    async def parts_of(self, handle: str) -> list[PartRecord]: ...

    async def get_upload(self, upload_id: str | None = None, *, origin: str | None = None,
                         handle: str | None = None) -> UploadRecord | None:
        """An upload by its id, by the origin of the start that made it, or by the handle
        of the file it brings."""
        ...

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
        events: EventsFor | None = None,
    ) -> FileRecord:
        """Move a file to `status` (checked against the status table) and return it,
        writing the change's webhook events in the same transaction."""
        ...

    async def overwrite_file(self, handle: str, *, size: int, etag: str, mimetype: str,
                             events: EventsFor) -> FileRecord:
        """Record new bytes under a Complete file's handle: a new version, hashes reset."""
        ...

    async def delete_file(self, handle: str, *, events: EventsFor) -> FileRecord:
        """Remove a file's record (its parts go with it); returns what it was."""
        ...

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        """Keep the hashes of one version; ignored if the file has moved on since."""
        ...

    # Expiry of abandoned uploads.

    async def expire_uploads(self, started_before: float, reason: str, now: float,
                             limit: int) -> list[PendingAbort]:
        """Fail up to `limit` uploads still Started that began before `started_before`,
        and note their bucket uploads as to be aborted, in one transaction. In Transit
        uploads are never chosen: their bytes are acknowledged."""
        ...

    async def pending_aborts(self, limit: int) -> list[PendingAbort]:
        """Ended uploads whose bucket upload is not known to be aborted, oldest first."""
        ...

    async def abort_done(self, upload_id: str, now: float) -> None: ...

    # The webhook outbox.

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]: ...

    async def next_delivery_time(self, excluding: Collection[int] = ()) -> float | None:
        """When the earliest pending delivery not in `excluding` (those being sent) is due."""
        ...

    async def delivery_done(self, delivery_id: int) -> None: ...

    async def delivery_failed(self, delivery_id: int, error: str, *,
                              retry_at: float | None) -> None: ...

    async def outbox_counts(self) -> dict[str, int]: ...
