"""The File API's view of files at a POP: this POP's journal first, then the coordinator.

A file this POP took is in its journal from the moment it is acknowledged, and reaches
the coordinator when the journal's events do. Until the coordinator has applied them,
the journal is the only record: lookups and metadata are answered from it (the link
works at once). From then on the coordinator is the authority (an overwrite or a delete
happens there); the journal answers again only while the coordinator cannot be reached.
An overwrite or a delete is decided at the coordinator: it is asked first (once this POP's
journal has reached it), and while it is away they answer 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.records import FileRecord
from common.storage.storage_set import StorageSet
from common.web.file_metadata import UncachedHashes, build_metadata, requested_fields
from edge.coordinator_client import RemoteFiles
from edge.journal.protocol import LocalFile, PopJournal
from edge.multipart.uploads import FLUSH_SECONDS, Flush

# What the coordinator may answer while it cannot speak for a file of this POP's journal.
# Not FILE_NOT_FOUND: for a file it has heard of, that means the file was deleted.
_CANNOT_SAY = frozenset({Code.COORDINATOR_UNAVAILABLE, Code.FILE_AT_POP})


class JournalFirstFiles:
    def __init__(self, journal: PopJournal, remote: RemoteFiles, storage: StorageSet,
                 flush: Flush) -> None:
        self.journal = journal
        self.remote = remote
        self.flush = flush
        self.hashes = UncachedHashes(storage)

    async def lookup(self, handle: str) -> FileRecord:
        local = await self._unacknowledged(handle)
        if local is not None:
            return local.record
        try:
            return await self.remote.lookup(handle)
        except CinError as exc:
            return await self._instead(handle, exc)

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]:
        local = await self._unacknowledged(handle)
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
        return await self.remote.lookup(handle)

    async def _unacknowledged(self, handle: str) -> LocalFile | None:
        local = await self.journal.file(handle)
        return local if local is not None and not local.acknowledged else None

    async def _instead(self, handle: str, error: CinError) -> FileRecord:
        """The journal's record when the coordinator could not answer for a file this
        POP holds; the coordinator's error otherwise."""
        if error.code in _CANNOT_SAY:
            local = await self.journal.file(handle)
            if local is not None:
                return local.record
        raise error
