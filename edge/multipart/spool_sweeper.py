"""A POP's sweep of its part spool: the bytes nothing needs any more are deleted.

Every upload in the spool is asked about at the coordinator, which alone knows what became
of it, unless this POP's journal already says: an upload started here that ended, or that
the coordinator has not heard of yet. Its bytes go at once when the file is Complete (it
is in the bucket, perhaps sent there by another POP) or Failed (it expired, or was
refused): a spool kept for them would only fill the disk. They go too when the upload is
unknown to the coordinator, or still Started, once it has been idle for the expiry TTL
(the coordinator fails it: its start is older still). An In Transit upload is kept however
long it idles: every byte of it was acknowledged to the client, and this POP is what will
bring them to the bucket.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from common.config import UploadExpiryConfig
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.web import periodic
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal
from edge.multipart.part_spool import PartSpool

log = logging.getLogger("cin.edge.spool_sweeper")


def may_remove(status: FileStatus | None, *, idle: bool) -> bool:
    """Whether the spool of an upload may go, given its status at the coordinator (None:
    the coordinator does not know it) and whether it has been idle past the TTL."""
    if status in (FileStatus.COMPLETE, FileStatus.FAILED):
        return True
    return idle and status is not FileStatus.IN_TRANSIT


class SpoolSweeper:
    def __init__(self, spool: PartSpool, coordinator: CoordinatorClient, journal: PopJournal,
                 settings: UploadExpiryConfig, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.coordinator = coordinator
        self.journal = journal
        self.settings = settings
        self.clock = clock
        self._sweeping = asyncio.Lock()

    async def run(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled."""
        await periodic.every(self.settings.sweep_interval, self.sweep_once, log=log,
                             what="spool sweep")

    async def sweep_once(self, now: float | None = None) -> list[str]:
        """Remove the spool of every upload nothing needs, as of `now` (default: the
        clock); returns their upload ids. Disk work runs in threads."""
        async with self._sweeping:
            now = self.clock() if now is None else now
            idle = set(await self.spool.uploads_older_than(self.settings.ttl, now=now))
            # Idle for no time at all before the end of time: every spooled upload.
            spooled = await self.spool.uploads_older_than(0.0, now=math.inf)
            removed: list[str] = []
            for upload_id in spooled:
                try:
                    status = await self._status(upload_id)
                except CinError as exc:
                    # Without the coordinator's word nothing is removed; the next sweep asks.
                    log.warning("spool sweep stopped: %s", exc)
                    break
                if not may_remove(status, idle=upload_id in idle):
                    continue
                try:
                    await self.spool.remove_upload(upload_id)
                except OSError as exc:  # a chunk written while it was being removed
                    log.warning("spool of upload %s not removed yet: %s", upload_id, exc)
                    continue
                log.info("spool of upload %s removed: %s%s", upload_id,
                         status.value if status else "unknown to the coordinator",
                         f", idle for over {self.settings.ttl:.0f}s"
                         if upload_id in idle else "")
                removed.append(upload_id)
            return removed

    async def _status(self, upload_id: str) -> FileStatus | None:
        local = await self.journal.upload(upload_id)
        if local is not None and (not local.acknowledged
                                  or local.record.status in (FileStatus.COMPLETE,
                                                             FileStatus.FAILED)):
            return local.record.status
        try:
            reply = await self.coordinator.call(wire.LookupUpload(upload_id=upload_id),
                                                wire.UploadReply)
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:
                return None
            raise
        return reply.record.status
