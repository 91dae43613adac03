"""Uploads In Transit whose parts are all in the bucket, finished.

The coordinator finishes an upload (completes the bucket's multipart upload, then records
the file Complete with its fp.upload webhook) when the last of its parts is reported
stored: by an RPC, or by an event of a POP's batch (coordinator/pop_batches.py). A
coordinator that stopped between recording that part and finishing leaves the upload In
Transit with nothing left to report it; so at start, and then periodically, every such
upload is finished here. Finishing is idempotent (MultipartUploads.finish): one another
coordinator finished meanwhile is found Complete. Still, one round at a time among all the
coordinators on the state: a round at each would ask the bucket to complete the same
uploads once per coordinator.
"""

from __future__ import annotations

import logging

from common.protocol.errors import CinError
from common.protocol.file_status import FileStatus
from common.storage import StorageError
from common.web import periodic
from coordinator.multipart import MultipartUploads
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator.upload_finisher")

# One round at a time among all the coordinators on the state.
FINISH_LOCK = "sweep:upload-finisher"

# Seconds between two rounds: a finish missed only when a coordinator stopped at the
# wrong moment, or the bucket failed the complete.
INTERVAL = 60.0
BATCH = 100


class UploadFinisher:
    def __init__(self, state: StateStore, uploads: MultipartUploads,
                 interval: float = INTERVAL) -> None:
        self.state = state
        self.uploads = uploads
        self.interval = interval

    async def run(self) -> None:
        """A round at once, then one every `interval` seconds until cancelled; a round
        another coordinator is running meanwhile does this one's."""
        try:
            await self.finish_if_free()
        except Exception:
            log.exception("finishing stored uploads failed; the next round is in %.0fs",
                          self.interval)
        await periodic.every(self.interval, self.finish_if_free, log=log,
                             what="finishing stored uploads")

    async def finish_if_free(self) -> list[str] | None:
        """A round, unless one is running already, here or at another coordinator on the
        same state (None then): the handles it made Complete."""
        async with self.state.locked(FINISH_LOCK, wait=False) as held:
            return await self._finish_all() if held else None

    async def _finish_all(self) -> list[str]:
        """Finish every upload whose parts are all stored; the handles now Complete."""
        finished: list[str] = []
        while True:
            handles = await self.state.finishable_uploads(BATCH)
            done = [handle for handle in handles if await self._finish(handle)]
            finished.extend(done)
            # Stop at a round that left some (the bucket refused): the next one retries.
            if len(handles) < BATCH or len(done) < len(handles):
                return finished

    async def _finish(self, handle: str) -> bool:
        try:
            record = await self.uploads.finish(handle)
        except (CinError, StorageError) as exc:
            log.warning("upload of %s not finished: %s", handle, exc)
            return False
        if record.status is FileStatus.COMPLETE:
            log.info("upload of %s finished: its parts were all stored", handle)
        return record.status is not FileStatus.IN_TRANSIT
