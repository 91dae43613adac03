"""Expiry of interrupted REST stores at the coordinator, and of the temp files they leave.

A REST store is one request: its POP names the file (Started), puts the bytes in the
bucket and reports them stored before it answers, and gives up on a store that takes
longer than `upload_expiry.store_ttl` (recording it Failed). A store still Started after
that lost its POP mid-store (a kill -9, a crash, a power cut), and downloads and deletes
of it would answer 409 for good. The sweep fails it and removes what the store may have
left in the bucket: an object put but never reported, or the pending multipart upload of
the S3 driver's put. Not when another file has the key now (a store may name its key with
`path`): whatever is there is that file's.

The order is expiry's (coordinator/expiry.py): the file becomes Failed and the removal is
written down as owed in one transaction, so a late report of the store can no longer make
it Complete; then the leftovers go, and only then is the removal recorded as done. A sweep
may stop anywhere: the next one finishes it.

Then every location whose driver keeps temp files of its own (a local-disk bucket: its
`sweeps_temporary` capability in common/storage/drivers.py) drops those untouched for
the store TTL whose writer died.

Last, the handles of files deleted longer ago than `forget_deleted_after` are forgotten
(`StateStore.forget_deleted_files`): the coordinator remembers them so that a deleted
file's handle, leased to a POP, is not taken for one that POP has not reported yet, which
matters while the POP may still hold a view of the file in its journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.config import Config, StorageConfig, UploadExpiryConfig
from common.protocol.upload_expiry import describe_duration
from common.storage import Storage, StorageError, StorageErrorKind, SweepsTemporary
from common.storage.drivers import driver_of
from common.storage.storage_set import StorageSet
from common.web import periodic
from coordinator.expiry import BATCH
from coordinator.state import PendingRemoval, StateStore

# One sweep at a time among all the coordinators on the state: two would abort or
# remove the same leftovers twice.
SWEEP_LOCK = "sweep:store-expiry"

log = logging.getLogger("cin.coordinator.store_expiry")


def deleted_handle_retention(config: Config) -> float:
    """How long the handle of a deleted file is remembered: as long as a POP may keep its
    view of the file in its journal. A file's facts all reached the coordinator before it
    could be deleted (a delete waits for them), and a POP keeps the view of a file the
    coordinator acknowledged for `event_shipping.retention` (Complete or Failed in its
    view) or `upload_expiry.ttl` (still under way in its view). Past both, a read of the
    handle at the coordinator goes to the POP it was leased to, which holds nothing of
    it and answers 404 itself."""
    return max(config.event_shipping.retention, config.upload_expiry.ttl)


@dataclass(frozen=True)
class StoreSweepResult:
    expired: tuple[str, ...]  # handles of the stores failed by this sweep
    removed: tuple[str, ...]  # handles whose leftovers are now known to be gone
    owed: int  # removals left for a later sweep (the bucket refused or was unreachable)
    temporary: int  # temp files of dead writers removed
    forgotten: int = 0  # handles of deleted files forgotten


class StoreExpiry:
    def __init__(self, state: StateStore, storage: StorageSet,
                 locations: Sequence[StorageConfig], settings: UploadExpiryConfig, *,
                 forget_deleted_after: float, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.storage = storage
        # The configured locations whose driver keeps temp files of its own.
        self.temporary = tuple(location.name for location in locations
                               if driver_of(location).capabilities.sweeps_temporary)
        self.settings = settings
        self.forget_deleted_after = forget_deleted_after
        self.clock = clock
        self._woken = asyncio.Event()

    async def run(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled, unless another coordinator
        is sweeping; remove what is owed as soon as `wake` says a removal was written."""
        await asyncio.gather(
            periodic.every(self.settings.sweep_interval, self.sweep_if_free, log=log,
                           what="store expiry sweep"),
            self._remove_when_woken())

    def wake(self) -> None:
        """A removal is owed (a POP reported a store it abandoned): do it soon, not at the
        next sweep."""
        self._woken.set()

    async def _remove_when_woken(self) -> None:
        while True:
            await self._woken.wait()
            self._woken.clear()
            try:
                # Waits for a sweep running here or at another coordinator: that sweep may
                # have read what is owed before this removal was written.
                async with self.state.locked(SWEEP_LOCK):
                    await self._remove_owed()
            except Exception:
                log.exception("removal of abandoned stores' leftovers failed; the next "
                              "sweep retries")

    async def sweep_if_free(self) -> StoreSweepResult | None:
        """A sweep, unless one is running already, here or at another coordinator on the
        same state (None then): it does this one's work."""
        async with self.state.locked(SWEEP_LOCK, wait=False) as held:
            return await self._sweep(self.clock()) if held else None

    async def sweep_once(self, now: float | None = None) -> StoreSweepResult:
        """Fail the stores interrupted as of `now` (default: the clock), remove every
        leftover still owed, then the temp files of writers that died, and forget the
        handles of files deleted long enough before `now`."""
        async with self.state.locked(SWEEP_LOCK):
            return await self._sweep(self.clock() if now is None else now)

    async def _sweep(self, now: float) -> StoreSweepResult:
        expired = await self._expire(now)
        removed, owed = await self._remove_owed()
        temporary = await self._sweep_temporary()
        forgotten = await self.state.forget_deleted_files(now - self.forget_deleted_after)
        if forgotten:
            log.info("forgot the handles of %d files deleted more than %s ago", forgotten,
                     describe_duration(self.forget_deleted_after))
        return StoreSweepResult(tuple(expired), tuple(removed), owed, temporary, forgotten)

    async def _expire(self, now: float) -> list[str]:
        expired: list[str] = []
        while True:
            batch = await self.state.expire_stores(now - self.settings.store_ttl, now, BATCH)
            for ended in batch:
                log.warning("store of %s failed: still Started after %s, its POP stopped "
                            "mid-store", ended.handle,
                            describe_duration(self.settings.store_ttl))
            expired.extend(ended.handle for ended in batch)
            if len(batch) < BATCH:
                return expired

    async def _remove_owed(self) -> tuple[list[str], int]:
        removed: list[str] = []
        while True:
            owed = await self.state.pending_removals(BATCH)
            done = [removal for removal in owed if await self._remove(removal)]
            for removal in done:
                await self.state.removal_done(removal.handle)
            removed.extend(removal.handle for removal in done)
            if len(owed) < BATCH or len(done) < len(owed):
                return removed, len(owed) - len(done)

    async def _remove(self, removal: PendingRemoval) -> bool:
        """Remove one failed store's leftovers; True when nothing of it is left."""
        try:
            storage = self.storage[removal.storage]
        except KeyError:
            log.error("store of %s: storage %r is no longer configured; what it left at %s "
                      "cannot be removed", removal.handle, removal.storage, removal.key)
            return False
        if await self.state.key_in_use(removal.storage, removal.container, removal.key,
                                       besides=removal.handle):
            log.info("store of %s: %s/%s is another file's now; left as it is",
                     removal.handle, removal.container, removal.key)
            return True
        try:
            await storage.delete(removal.container, removal.key)
            await _abort_uploads_at(storage, removal.container, removal.key)
        except StorageError as exc:
            log.warning("store of %s: its leftovers were not removed (%s); retried at the "
                        "next sweep", removal.handle, exc)
            return False
        log.info("store of %s: what it left at %s/%s is removed", removal.handle,
                 removal.container, removal.key)
        return True

    async def _sweep_temporary(self) -> int:
        removed = 0
        for name in self.temporary:
            storage = self.storage[name]
            if not isinstance(storage, SweepsTemporary):  # the driver table says it is
                raise TypeError(f"storage {name!r} does not sweep its temp files")
            try:
                count = await storage.sweep_temporary(self.settings.store_ttl)
            except StorageError as exc:
                log.warning("temp files of storage %r not swept: %s", name, exc)
                continue
            if count:
                log.info("storage %r: %d temp files of interrupted writes removed", name,
                         count)
            removed += count
        return removed


async def _abort_uploads_at(storage: Storage, container: str, key: str) -> None:
    """Abort the pending multipart uploads at `key`: what the S3 driver's put of a large
    body leaves when its process dies between two parts."""
    for pending_key, upload_id in await storage.list_multipart_uploads(container):
        if pending_key != key:
            continue
        try:
            await storage.abort_multipart(container, key, upload_id)
        except StorageError as exc:
            if exc.kind is not StorageErrorKind.NO_SUCH_UPLOAD:  # else gone meanwhile
                raise
