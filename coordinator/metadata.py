"""The coordinator's hashes of each file version, computed once and kept in the state
store. Which fields a query asks for and their values: common/web/file_metadata.py."""

from __future__ import annotations

from common.protocol.records import FileRecord
from common.storage.storage_set import StorageSet
from common.web.file_metadata import hash_object
from coordinator.state import StateStore


class HashCache:
    """Computes a file version's hashes at most once, even under concurrent requests at
    several coordinators."""

    def __init__(self, state: StateStore, storage: StorageSet) -> None:
        self.state = state
        self.storage = storage

    async def hashes(self, record: FileRecord) -> dict[str, str]:
        if record.hashes is not None:
            return record.hashes
        async with self.state.locked(f"hashes:{record.handle}:{record.version}"):
            fresh = await self.state.get_file(record.handle)
            if fresh is not None and fresh.version == record.version and fresh.hashes:
                return fresh.hashes
            hashes = await hash_object(self.storage, record)
            await self.state.save_hashes(record.handle, record.version, hashes)
            return hashes
