"""A POP's sweep of its part spool: the bytes of abandoned uploads are deleted.

An upload idle in the spool for longer than the expiry TTL is asked about at the
coordinator, which alone knows what became of it. Its bytes go when nothing can need them
any more: the file is Complete (it is in the bucket), Failed (it expired, or was refused),
unknown to the coordinator, or still Started after a whole TTL of silence (the
coordinator fails it: its start is older still). An In Transit upload is kept however long
it idles: every byte of it was acknowledged to the client, and this POP is what will
bring them to the bucket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from common.config import UploadExpiryConfig
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.web import periodic
from edge.coordinator_client import CoordinatorClient
from edge.multipart.part_spool import PartSpool

log = logging.getLogger("cin.edge.spool_sweeper")


def may_remove(status: FileStatus | None) -> bool:
    """Whether the spool of an upload idle past the TTL may go, given its status at the
    coordinator (None: the coordinator does not know it)."""
    return status is not FileStatus.IN_TRANSIT


class SpoolSweeper:
    def __init__(self, spool: PartSpool, coordinator: CoordinatorClient,
                 settings: UploadExpiryConfig, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.coordinator = coordinator
        self.settings = settings
        self.clock = clock
        self._sweeping = asyncio.Lock()

    async def run(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled."""
        await periodic.every(self.settings.sweep_interval, self.sweep_once, log=log,
                             what="spool sweep")

    async def sweep_once(self, now: float | None = None) -> list[str]:
        """Remove the spool of every upload idle past the TTL at `now` (default: the clock)
        that nothing needs; returns their upload ids. Disk work runs in threads."""
        async with self._sweeping:
            now = self.clock() if now is None else now
            removed: list[str] = []
            for upload_id in await self.spool.uploads_older_than(self.settings.ttl, now=now):
                try:
                    status = await self._status(upload_id)
                except CinError as exc:
                    # Without the coordinator's word nothing is removed; the next sweep asks.
                    log.warning("spool sweep stopped: %s", exc)
                    break
                if not may_remove(status):
                    continue
                try:
                    await self.spool.remove_upload(upload_id)
                except OSError as exc:  # a chunk written while it was being removed
                    log.warning("spool of upload %s not removed yet: %s", upload_id, exc)
                    continue
                log.info("spool of upload %s removed: %s, idle for over %.0fs", upload_id,
                         status.value if status else "unknown to the coordinator",
                         self.settings.ttl)
                removed.append(upload_id)
            return removed

    async def _status(self, upload_id: str) -> FileStatus | None:
        try:
            reply = await self.coordinator.call(wire.LookupUpload(upload_id=upload_id),
                                                wire.UploadReply)
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:
                return None
            raise
        return reply.record.status
