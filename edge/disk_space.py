"""Whether a POP can take bytes: the free space of the file systems it writes to.

A POP writes request bodies to its spool (the staging of REST stores, the Upload API's
parts) and, with a local-disk bucket, objects to that bucket. It is full when one of them
has less free space than `pops[].min_free_space`, or when a write there has just failed
for want of space (ENOSPC; EDQUOT, a quota). A full POP answers new uploads 507
`insufficient_storage` at once, and its heartbeat says it is full, so that the coordinator
hands it out no more and the SDKs choose another POP. Free space is looked at again before
every heartbeat: once each file system has more than the floor, the POP takes bytes again
by itself.

A write that runs out of space makes the POP full until the look after the one that
follows it, whatever the free space shows then (the failed write's bytes are freed at
once, and a quota does not show in free space at all): the next heartbeat says full, and
the one after, with nothing run out meanwhile, lets the POP try again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from common.config import Config, PopConfig
from common.protocol.errors import DISK_FULL_ERRNOS, CinError, Code
from common.storage import StorageError, StorageErrorKind
from common.storage.drivers import LocalSettings
from common.web.http import Handler

log = logging.getLogger("cin.edge.disk_space")


class DiskSpace:
    def __init__(self, pop: str, paths: Sequence[Path], floor: int) -> None:
        self.pop = pop
        self.paths = tuple(paths)
        self.floor = floor
        self._low: dict[Path, int] = {}  # below the floor at the last look: free bytes
        # A write that failed for want of space since the last look, and one that failed
        # before it (the last heartbeat said full for it; the POP stays so until the next).
        self._ran_out: str | None = None
        self._held: str | None = None

    @classmethod
    def of(cls, config: Config, pop: PopConfig) -> DiskSpace:
        """The file systems `pop` writes to: its spool, and each local-disk bucket."""
        roots = [location.settings.root for location in config.storage.values()
                 if isinstance(location.settings, LocalSettings)]
        return cls(pop.name, [pop.spool_dir, *roots], pop.min_free_space)

    @property
    def full(self) -> bool:
        return bool(self._low) or self._ran_out is not None or self._held is not None

    def ran_out(self, what: str) -> None:
        """A write failed for want of space: full until the look after next."""
        if not self.full:
            log.warning("POP %s is full: %s; it takes no new uploads until space returns",
                        self.pop, what)
        self._ran_out = what

    async def check(self) -> bool:
        """Look at the free space of every file system (in a thread); returns `full`."""
        try:
            free = await asyncio.to_thread(_free_bytes, self.paths)
        except OSError as exc:  # the next look may do better; the heartbeat goes out
            log.warning("POP %s: free space not known: %s", self.pop, exc)
            return self.full
        low = {path: size for path, size in free.items() if size < self.floor}
        was_full = self.full
        for path, size in low.items():
            if path not in self._low:
                log.warning("POP %s is full: %s has %d bytes free, less than "
                            "pops[].min_free_space (%d)", self.pop, path, size, self.floor)
        self._low = low
        self._held, self._ran_out = self._ran_out, None
        if was_full and not self.full:
            log.info("POP %s has space again: it takes uploads", self.pop)
        return self.full

    def refuse_if_full(self) -> None:
        """Turn a new upload away (507) while the POP is full, before it sends a byte."""
        if self.full:
            raise CinError(Code.INSUFFICIENT_STORAGE)


def _free_bytes(paths: Sequence[Path]) -> dict[Path, int]:
    free: dict[Path, int] = {}
    for path in paths:
        # A bucket's folder is made with its first object: until then, its parent's space.
        existing = next((p for p in (path, *path.parents) if p.exists()), path)
        st = os.statvfs(existing)
        free[path] = st.f_bavail * st.f_frsize
    return free


DISK_SPACE = web.AppKey("disk_space", DiskSpace)


@web.middleware
async def disk_full_middleware(request: web.Request,
                               handler: Handler) -> web.StreamResponse:
    """A write that fails for want of space (on the spool, the staging buffer or a
    local-disk bucket) is a 507 `insufficient_storage`, never a 500, and makes the POP
    full until space returns."""
    try:
        return await handler(request)
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        request.app[DISK_SPACE].ran_out(exc.strerror or str(exc))
        raise CinError(Code.INSUFFICIENT_STORAGE) from exc
    except StorageError as failure:  # a local-disk bucket's, which error_middleware answers
        _note_storage_failure(request, failure)
        raise
    except CinError as error:  # one a handler translated itself
        if isinstance(error.__cause__, StorageError):
            _note_storage_failure(request, error.__cause__)
        raise


def _note_storage_failure(request: web.Request, failure: StorageError) -> None:
    if failure.kind is StorageErrorKind.INSUFFICIENT_STORAGE:
        request.app[DISK_SPACE].ran_out(str(failure))
