"""Expiry of abandoned Upload API uploads, at the coordinator.

An upload still Started `ttl` seconds after its start is abandoned: its file becomes
Failed and the bucket's multipart upload is aborted, so the bucket keeps no parts that
nobody will complete (S3 keeps, and bills, a pending upload's parts until an abort).
An In Transit upload is never expired here: every byte of it was acknowledged to the
client, and its parts may be waiting for their POP to come back.

The order makes a sweep safe to stop anywhere and to repeat. First, in one transaction,
the file becomes Failed and the abort is written down as owed: from then on no complete
can make the upload In Transit, so the abort cannot destroy acknowledged bytes. Then the
bucket upload is aborted, and only then is the abort recorded as done. A coordinator that
stops in between finds the owed abort at its next sweep and aborts again; the bucket
answering that there is no such upload (the first abort got through) counts as done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.config import UploadExpiryConfig
from common.protocol.upload_expiry import expired_reason
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from common.web import periodic
from coordinator.state import PendingAbort, StateStore

# One sweep at a time among all the coordinators on the state: two would abort or
# remove the same leftovers twice.
SWEEP_LOCK = "sweep:upload-expiry"

log = logging.getLogger("cin.coordinator.expiry")

BATCH = 100  # uploads per transaction: a long backlog never holds the writer for long


@dataclass(frozen=True)
class SweepResult:
    expired: tuple[str, ...]  # upload ids failed by this sweep
    aborted: tuple[str, ...]  # upload ids whose bucket upload is now known to be gone
    owed: int  # aborts left for a later sweep (the bucket refused or was unreachable)


class UploadExpiry:
    def __init__(self, state: StateStore, storage: StorageSet, settings: UploadExpiryConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.reason = expired_reason(settings.ttl)

    async def run(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled."""
        await periodic.every(self.settings.sweep_interval, self.sweep_if_free, log=log,
                             what="upload expiry sweep")

    async def sweep_if_free(self) -> SweepResult | None:
        """A sweep, unless one is running already, here or at another coordinator on the
        same state (None then): it does this one's work."""
        async with self.state.locked(SWEEP_LOCK, wait=False) as held:
            return await self._sweep(self.clock()) if held else None

    async def sweep_once(self, now: float | None = None) -> SweepResult:
        """Fail the uploads abandoned at `now` (default: the clock), then abort every
        bucket upload still owed, including those of sweeps that were interrupted."""
        async with self.state.locked(SWEEP_LOCK):
            return await self._sweep(self.clock() if now is None else now)

    async def _sweep(self, now: float) -> SweepResult:
        expired = await self._expire(now)
        aborted, owed = await self._abort_owed(now)
        return SweepResult(tuple(expired), tuple(aborted), owed)

    async def _expire(self, now: float) -> list[str]:
        expired: list[str] = []
        while True:
            batch = await self.state.expire_uploads(now - self.settings.ttl, self.reason, now,
                                                    BATCH)
            for ended in batch:
                log.warning("upload %s of %s %s", ended.upload_id, ended.handle, self.reason)
            expired.extend(ended.upload_id for ended in batch)
            if len(batch) < BATCH:
                return expired

    async def _abort_owed(self, now: float) -> tuple[list[str], int]:
        aborted: list[str] = []
        while True:
            owed = await self.state.pending_aborts(BATCH)
            done = [abort for abort in owed if await self._abort(abort)]
            for abort in done:
                await self.state.abort_done(abort.upload_id, now)
            aborted.extend(abort.upload_id for abort in done)
            if len(owed) < BATCH or len(done) < len(owed):
                # Done, or the bucket is refusing: what is left waits for the next sweep.
                return aborted, len(owed) - len(done)

    async def _abort(self, abort: PendingAbort) -> bool:
        """Abort one bucket upload; True when it is gone (now or before)."""
        if not abort.storage_upload_id:
            return True  # no bucket multipart upload was opened for it: nothing to abort
        try:
            storage = self.storage[abort.storage]
        except KeyError:
            log.error("upload %s: storage %r is no longer configured; its bucket upload "
                      "%s cannot be aborted", abort.upload_id, abort.storage,
                      abort.storage_upload_id)
            return False
        try:
            await storage.abort_multipart(abort.container, abort.key, abort.storage_upload_id)
        except StorageError as exc:
            if exc.kind is StorageErrorKind.NO_SUCH_UPLOAD:
                # Aborted by a sweep that stopped before recording it.
                log.info("upload %s of %s: bucket upload already aborted", abort.upload_id,
                         abort.handle)
                return True
            log.warning("upload %s: the bucket upload was not aborted (%s); retried at the "
                        "next sweep", abort.upload_id, exc)
            return False
        log.info("upload %s of %s: bucket upload aborted", abort.upload_id, abort.handle)
        return True
