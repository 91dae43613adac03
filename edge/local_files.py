"""The File API's view of files at a POP: this POP's journal first, then the coordinator.

A file this POP took is in its journal from the moment it is acknowledged, and reaches
the coordinator when the journal's events do (within milliseconds, on a healthy link).
The coordinator is the authority on files (an overwrite or a delete happens there, and
it keeps each version's hashes), so a read of a file it has not acknowledged yet first
gives the journal a moment (`READ_FLUSH_SECONDS`) to reach it; only when that fails (the
coordinator is away) is the read answered from the journal: the link works at once
whatever happens to the coordinator.
An overwrite or a delete is decided at the coordinator: it is asked first (once this POP's
journal has reached it), and while it is away they answer 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.records import FileRecord
from common.storage.storage_set import StorageSet
from common.web.file_metadata import UncachedHashes, build_metadata, requested_fields
from edge.coordinator_client import RemoteFiles
from edge.journal.protocol import LocalFile, PopJournal
from edge.multipart.uploads import FLUSH_SECONDS, Flush

READ_FLUSH_SECONDS = 2.0

# What the coordinator may answer while it cannot speak for a file of this POP's journal.
# Not FILE_NOT_FOUND: for a file it has heard of, that means the file was deleted.
CANNOT_SAY = frozenset({Code.COORDINATOR_UNAVAILABLE, Code.FILE_AT_POP})


class JournalFirstFiles:
    def __init__(self, journal: PopJournal, remote: RemoteFiles, storage: StorageSet,
                 flush: Flush) -> None:
        self.journal = journal
        self.remote = remote
        self.flush = flush
        self.hashes = UncachedHashes(storage)

    async def lookup(self, handle: str) -> FileRecord:
        local = await self._shipped_first(handle)
        if local is not None:
            return local.record
        try:
            return await self.remote.lookup(handle)
        except CinError as exc:
            return await self._instead(handle, exc)

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]:
        local = await self._shipped_first(handle)
        if local is None:
            try:
                return await self.remote.metadata(handle, query)
            except CinError as exc:
                record = await self._instead(handle, exc)
        else:
            record = local.record
        return await build_metadata(record, requested_fields(query), self.hashes)

    async def delete(self, handle: str, *, skip_storage: bool) -> FileRecord:
        await self.at_coordinator(handle)
        return await self.remote.delete(handle, skip_storage=skip_storage)

    async def at_coordinator(self, handle: str) -> FileRecord:
        """The file as the coordinator records it, once this POP's facts about it have
        reached it: what a change decided there starts from. COORDINATOR_UNAVAILABLE
        while it cannot be reached."""
        if await self._unacknowledged(handle) is not None:
            await self.flush(FLUSH_SECONDS)
        try:
            return await self.remote.lookup(handle)
        except CinError as exc:
            if exc.code is Code.FILE_AT_POP and await self._ours_and_gone(handle, exc):
                raise CinError(Code.FILE_NOT_FOUND, handle) from exc
            raise

    async def _ours_and_gone(self, handle: str, error: CinError) -> bool:
        """The coordinator has no record of a handle leased to this POP, and this POP has
        nothing of it left to ship: it was deleted (or never used). Not a file at a POP."""
        at_pop = FileAtPop.from_error(error)
        return (at_pop is not None and at_pop.pop == self.remote.pop
                and await self._unacknowledged(handle) is None)

    async def _shipped_first(self, handle: str) -> LocalFile | None:
        """The journal's view of a file the coordinator has not acknowledged and cannot
        be brought to in a moment; None when the coordinator can answer for it."""
        local = await self._unacknowledged(handle)
        if local is None:
            return None
        try:
            await self.flush(READ_FLUSH_SECONDS)
        except CinError as exc:
            if exc.code is not Code.COORDINATOR_UNAVAILABLE:
                raise
            return local
        return None

    async def _unacknowledged(self, handle: str) -> LocalFile | None:
        local = await self.journal.file(handle)
        return local if local is not None and not local.acknowledged else None

    async def _instead(self, handle: str, error: CinError) -> FileRecord:
        """The journal's record when the coordinator could not answer for a file this
        POP holds; the coordinator's error otherwise."""
        if error.code is Code.FILE_AT_POP and await self._ours_and_gone(handle, error):
            raise CinError(Code.FILE_NOT_FOUND, handle) from error
        if error.code in CANNOT_SAY:
            local = await self.journal.file(handle)
            if local is not None:
                return local.record
        raise error
