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
from common.errors import CinError
from common.files import FileRecord, UploadRecord
from common.locations import StorageSet
from common.status import FileStatus
from common.storage import StorageError
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
