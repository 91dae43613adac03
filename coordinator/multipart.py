"""Multipart uploads at the coordinator: each one's identity, its POP, its bucket upload."""

from __future__ import annotations

import logging
import secrets
import time

from common.config import Config
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.limits import MIN_PART_SIZE
from common.protocol.naming import new_handle
from common.protocol.new_files import new_file_record
from common.protocol.records import FileRecord, PartRecord, UploadRecord, upload_closed
from common.protocol.wire import StartUpload
from common.storage import (
    Access,
    CompletedPart,
    StorageError,
    StorageErrorKind,
)
from common.storage.storage_set import StorageSet
from coordinator.files import FileAuthority
from coordinator.pop_registry import PopRegistry
from coordinator.state import StateStore, rules

log = logging.getLogger("cin.coordinator.uploads")


def new_upload_id() -> str:
    """Unguessable: the upload id is what every later step of the upload is keyed by."""
    return secrets.token_urlsafe(24)


class MultipartUploads:
    def __init__(self, state: StateStore, config: Config, storage: StorageSet,
                 files: FileAuthority, pops: PopRegistry) -> None:
        self.state = state
        self.config = config
        self.storage = storage
        self.files = files
        self.pops = pops

    async def start(self, request: StartUpload, client: str | None = None
                    ) -> tuple[FileRecord, UploadRecord]:
        """Give the file its handle and key, and open the bucket's multipart upload.
        `client` is the address of a client that called the coordinator itself, whose
        network may map it to a POP."""
        earlier = await self.state.get_upload(origin=request.origin)
        if earlier is not None:  # a POP repeating a start it did not hear answered
            record = await self.state.get_file(earlier.handle)
            if record is not None:
                return record, earlier
        # Before anything is created: with no POP to take the bytes, the start is refused.
        pop = self.pops.choose(asked=request.pop, client=client)
        now = time.time()
        record = new_file_record(request, handle=new_handle(), pop=pop, now=now)
        storage_upload_id = ""
        if record.size >= MIN_PART_SIZE:
            # Smaller files go in one PutObject (UploadRecord.in_one_put): two round
            # trips to the bucket fewer, and nothing left pending if the client gives up.
            storage_upload_id = await self.storage[record.storage].create_multipart(
                record.container, record.key, content_type=record.mimetype,
                access=Access(record.access))
        upload = UploadRecord(upload_id=new_upload_id(), handle=record.handle,
                              storage_upload_id=storage_upload_id, pop=pop,
                              fii=request.fii, created=now)
        recorded = await self.state.create_upload(record, upload, request.origin)
        if recorded.upload_id != upload.upload_id:
            # The same start reached another coordinator too, which recorded it first:
            # its upload is the one, and the bucket upload opened here is nobody's.
            await self._abandon(record, storage_upload_id)
            return await self.files.get(recorded.handle), recorded
        log.info("upload %s of %s started at %s: %s/%s (%d bytes)", upload.upload_id,
                 record.handle, pop, record.container, record.key, record.size)
        return record, upload

    async def _abandon(self, record: FileRecord, storage_upload_id: str) -> None:
        if not storage_upload_id:
            return
        try:
            await self.storage[record.storage].abort_multipart(record.container, record.key,
                                                               storage_upload_id)
        except StorageError as exc:
            # Left pending in the bucket; its lifecycle rule, if any, removes it.
            log.warning("the bucket upload of a repeated start was not aborted: %s", exc)

    async def get(self, upload_id: str) -> UploadRecord:
        upload = await self.state.get_upload(upload_id)
        if upload is None:
            raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
        return upload

    async def parts(self, upload_id: str) -> tuple[UploadRecord, list[PartRecord]]:
        """An upload and its parts as recorded: stored ones (from any POP) and, once it is
        In Transit, the ones a POP holds."""
        upload = await self.get(upload_id)
        return upload, await self.state.parts_of(upload.handle)

    async def of_file(self, handle: str) -> tuple[UploadRecord, list[PartRecord]]:
        """The multipart upload bringing a file's bytes, and its parts as recorded."""
        upload = await self.state.get_upload(handle=handle)
        if upload is None:
            raise CinError(Code.FILE_NOT_FOUND, f"{handle} was not uploaded in parts")
        return upload, await self.state.parts_of(handle)

    async def complete(self, upload_id: str, parts: dict[int, int], tags: dict[str, str],
                       pop: str) -> FileRecord:
        """Every byte is durable: the parts `pop` holds (number → size), with any already
        stored by other POPs, must make up the file. It is In Transit from here, and
        Complete as soon as every part is in the bucket."""
        upload = await self.get(upload_id)
        record = await self.files.get(upload.handle)
        if record.status in (FileStatus.IN_TRANSIT, FileStatus.COMPLETE):
            return record  # a repeated complete
        if record.status is not FileStatus.STARTED:
            raise upload_closed(record, upload)
        sizes = {part.number: part.size for part in await self.state.parts_of(record.handle)}
        sizes.update(parts)
        rules.check_parts_make_up(record, sizes)
        spooled = [PartRecord(number, pop, "spooled", size, None)
                   for number, size in sorted(parts.items())]
        record = await self.state.upload_in_transit(record.handle, spooled, tags)
        log.info("upload %s of %s in transit (%d parts)", upload_id, record.handle, len(sizes))
        return await self._finish_if_stored(upload, record)

    async def part_stored(self, upload_id: str, number: int, size: int, etag: str,
                          pop: str) -> FileRecord:
        upload = await self.get(upload_id)
        await self.state.part_stored(upload.handle, PartRecord(number, pop, "stored", size,
                                                               etag))
        return await self._finish_if_stored(upload, await self.files.get(upload.handle))

    async def finish(self, handle: str) -> FileRecord:
        """Complete the bucket's multipart upload of an In Transit file whose parts are
        all stored, and the file with it; the file as it is otherwise. For uploads whose
        parts a POP reported in its events (coordinator/pop_batches.py), and those a
        coordinator stopped before finishing (coordinator/upload_finisher.py)."""
        upload = await self.state.get_upload(handle=handle)
        record = await self.files.get(handle)
        if upload is None:
            return record
        return await self._finish_if_stored(upload, record)

    async def _finish_if_stored(self, upload: UploadRecord, record: FileRecord) -> FileRecord:
        if record.status is not FileStatus.IN_TRANSIT:
            # Not completed yet (most part reports) or finished already: no lock to take,
            # a round trip to the database on PostgreSQL.
            return record
        # Finishing the bucket's multipart upload happens once, however many reports of
        # the last part arrive together, at whichever coordinators.
        async with self.state.locked(f"upload:{upload.upload_id}"):
            record = await self.files.get(record.handle)
            if record.status is not FileStatus.IN_TRANSIT:
                return record
            parts = await self.state.parts_of(record.handle)
            if any(part.state != "stored" for part in parts):
                return record
            storage = self.storage[record.storage]
            completed = [CompletedPart(part.number, part.etag or "") for part in parts]
            try:
                info = await storage.complete_multipart(record.container, record.key,
                                                        upload.storage_upload_id, completed)
            except StorageError as exc:
                if exc.kind is not StorageErrorKind.NO_SUCH_UPLOAD:
                    raise
                # Completed before, and the coordinator died before recording it.
                info = await storage.head(record.container, record.key)
            return await self.files.stored(record.handle, info.size, info.etag)
