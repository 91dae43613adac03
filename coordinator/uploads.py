"""Multipart uploads at the coordinator: each one's identity, its POP, its bucket upload."""

from __future__ import annotations

import logging
import secrets
import time

from common.config import Config
from common.errors import CinError, Code
from common.files import FileRecord, UploadRecord
from common.locations import StorageSet
from common.naming import new_handle, object_key
from common.status import FileStatus
from common.storage import Access, StorageError
from common.wire import StartUpload
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator.uploads")


def new_upload_id() -> str:
    """Unguessable: the upload id is what every later step of the upload is keyed by."""
    return secrets.token_urlsafe(24)


class UploadRegistry:
    def __init__(self, state: StateStore, config: Config, storage: StorageSet) -> None:
        self.state = state
        self.config = config
        self.storage = storage

    def choose_pop(self, asked: str | None) -> str:
        """The POP the client called; else the first configured one."""
        names = [pop.name for pop in self.config.pops]
        if asked is not None:
            if asked not in names:
                raise CinError(Code.BAD_MESSAGE, f"no POP named {asked!r}")
            return asked
        return names[0]

    async def start(self, request: StartUpload) -> tuple[FileRecord, UploadRecord]:
        """Give the file its handle and key, and open the bucket's multipart upload."""
        earlier = await self.state.get_upload(origin=request.origin)
        if earlier is not None:  # a POP repeating a start it did not hear answered
            record = await self.state.get_file(earlier.handle)
            if record is not None:
                return record, earlier
        pop = self.choose_pop(request.pop)
        now = time.time()
        record = FileRecord(
            handle=new_handle(), apikey=request.apikey, storage=request.storage,
            provider=request.provider, container=request.container,
            key=object_key(request.path, request.filename), filename=request.filename,
            mimetype=request.mimetype, size=request.size, status=FileStatus.STARTED,
            pop=pop, uploaded=now, access=request.access, region=request.region)
        try:
            storage_upload_id = await self.storage[record.storage].create_multipart(
                record.container, record.key, content_type=record.mimetype,
                access=Access(record.access))
        except StorageError as exc:
            raise exc.to_cin_error() from exc
        upload = UploadRecord(upload_id=new_upload_id(), handle=record.handle,
                              storage_upload_id=storage_upload_id, pop=pop,
                              fii=request.fii, created=now)
        await self.state.create_upload(record, upload, request.origin)
        log.info("upload %s of %s started at %s: %s/%s (%d bytes)", upload.upload_id,
                 record.handle, pop, record.container, record.key, record.size)
        return record, upload

    async def get(self, upload_id: str) -> UploadRecord:
        upload = await self.state.get_upload(upload_id)
        if upload is None:
            raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
        return upload
