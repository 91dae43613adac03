"""A POP's background transfer of finished parts to the bucket.

Each part of a completed upload is sent as one UploadPart, a few at a time, retried with
backoff while the bucket is unavailable, and reported to the coordinator once stored.
When the coordinator answers that the whole file is Complete, the POP frees its spool.
Transfers still running at shutdown are cancelled; the spool keeps their bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random

from common import wire
from common.errors import CinError, Code
from common.files import FileRecord, UploadRecord
from common.locations import StorageSet
from common.status import FileStatus
from common.storage import StorageError, StorageErrorKind
from edge.coordinator_client import CoordinatorClient
from edge.part_spool import FinishedPart, PartSpool

log = logging.getLogger("cin.edge.transfer")

CONCURRENCY = 4  # parts in flight to the bucket per POP
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class PartTransfer:
    def __init__(self, spool: PartSpool, storage: StorageSet, coordinator: CoordinatorClient,
                 pop: str) -> None:
        self.spool = spool
        self.storage = storage
        self.coordinator = coordinator
        self.pop = pop
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}

    def send(self, record: FileRecord, upload: UploadRecord, part: FinishedPart) -> None:
        """Start sending `part` unless it is already on its way."""
        key = (upload.upload_id, part.part)
        if key in self._running:
            return
        task = asyncio.create_task(self._send(record, upload, part),
                                   name=f"part-{upload.upload_id}-{part.part}")
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))

    async def resume(self) -> None:
        """After a restart: send on the parts of every In Transit upload in the spool,
        and drop spooled uploads the coordinator has finished with or never knew."""
        for spooled in await self.spool.recover():
            try:
                reply = await self.coordinator.call(
                    wire.LookupUpload(upload_id=spooled.upload_id), wire.UploadReply)
            except CinError as exc:
                if exc.code is Code.FILE_NOT_FOUND:
                    await self.spool.remove_upload(spooled.upload_id)
                    continue
                raise
            record, upload = reply.record, reply.upload
            if record.status in (FileStatus.COMPLETE, FileStatus.FAILED):
                await self.spool.remove_upload(upload.upload_id)
            elif record.status is FileStatus.IN_TRANSIT:
                log.info("resuming the transfer of %s (%d parts)", record.handle,
                         len(spooled.parts))
                for state in spooled.parts:
                    try:
                        finished = await self.spool.finish_part(upload.upload_id, state.part)
                    except CinError as exc:  # cannot be, for a part the complete accepted
                        log.error("part %d of %s cannot be sent: %s", state.part,
                                  record.handle, exc)
                        continue
                    self.send(record, upload, finished)
            # Started: the client is still sending; its complete will start the transfer.

    async def resume_until_done(self) -> None:
        """`resume`, retried while the coordinator cannot be reached."""
        delay = 1.0
        while True:
            try:
                await self.resume()
                return
            except CinError as exc:
                log.warning("cannot resume transfers yet (%s); retry in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _send(self, record: FileRecord, upload: UploadRecord, part: FinishedPart) -> None:
        storage = self.storage[record.storage]
        async with self._slots:
            for delay in (*RETRY_DELAYS, None):
                try:
                    etag = await storage.upload_part(
                        record.container, record.key, upload.storage_upload_id, part.part,
                        self.spool.read_part(part), part.size)
                    break
                except StorageError as exc:
                    if exc.kind is StorageErrorKind.NO_SUCH_UPLOAD:
                        # The bucket's upload is gone (it expired and was aborted, or was
                        # completed): no retry can store the part.
                        log.warning("part %d of %s not stored: %s", part.part,
                                    record.handle, exc)
                        return
                    if delay is None:
                        log.error("part %d of %s not stored, giving up: %s", part.part,
                                  record.handle, exc)
                        return
                    log.warning("part %d of %s not stored (%s); retry in %.1fs", part.part,
                                record.handle, exc, delay)
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
        try:
            updated = await self.coordinator.file(wire.PartStored(
                upload_id=upload.upload_id, part=part.part, size=part.size, etag=etag,
                pop=self.pop))
        except CinError as exc:
            log.error("part %d of %s stored but not recorded: %s", part.part,
                      record.handle, exc)
            return
        if updated.status is FileStatus.COMPLETE:
            await self.spool.remove_upload(upload.upload_id)
            log.info("%s complete; spool freed", record.handle)
