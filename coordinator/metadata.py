"""The File API's metadata: which fields a query asks for, and the hashes behind them.

Hashes are computed once per file version — by streaming the object from the bucket
through every algorithm at once, off the event loop — and kept in the state store.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.flags import is_flag_value, query_flag
from common.protocol.records import HASH_ALGORITHMS, FileRecord
from common.storage.storage_set import StorageSet
from coordinator.state import StateStore

PLAIN_FIELDS = ("size", "mimetype", "filename", "uploaded", "writeable", "cloud",
                "source_url", "upload_status", "upload_tags")
STORAGE_FIELDS = ("location", "path", "container", "key")
# Only when asked for by name, and the File API has checked the policy allows `exif`.
SECURED_FIELDS = ("exif",)
ALL_FIELDS = PLAIN_FIELDS + HASH_ALGORITHMS + STORAGE_FIELDS + SECURED_FIELDS


def requested_fields(query: Mapping[str, str]) -> list[str]:
    """The fields a metadata query asks for: those set true, or every open field."""
    chosen: list[str] = []
    named = False
    for name in ALL_FIELDS:
        if name == "key" and not is_flag_value(query.get(name, "")):
            continue  # `key=APIKEY` names the app, not the storage key field
        wanted = query_flag(query, name)
        if wanted is None:
            continue
        named = True
        if wanted:
            chosen.append(name)
    if not named:
        return [f for f in ALL_FIELDS if f not in SECURED_FIELDS]
    return chosen


class HashCache:
    """Computes a file version's hashes at most once, even under concurrent requests at
    several coordinators."""

    CHUNK_HASH_IN_THREAD = 64 * 1024  # below this, the thread hop costs more than hashing

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
            hashes = await self._compute(record)
            await self.state.save_hashes(record.handle, record.version, hashes)
            return hashes

    async def _compute(self, record: FileRecord) -> dict[str, str]:
        hashers = [hashlib.new(name) for name in HASH_ALGORITHMS]

        def update(chunk: bytes) -> None:
            for hasher in hashers:
                hasher.update(chunk)

        reader = await self.storage[record.storage].get(record.container, record.key)
        try:
            if record.etag is not None and reader.info.etag != record.etag:
                raise CinError(Code.FILE_GONE, "another upload replaced the object")
            async for chunk in reader.chunks():
                if len(chunk) >= self.CHUNK_HASH_IN_THREAD:
                    await asyncio.to_thread(update, chunk)  # hashlib frees the GIL
                else:
                    update(chunk)
        finally:
            await reader.close()
        return {name: h.hexdigest() for name, h in zip(HASH_ALGORITHMS, hashers, strict=True)}


def location_name(provider: str) -> str:
    return "S3" if provider == "s3" else provider


async def build_metadata(
    record: FileRecord, fields: list[str], hash_cache: HashCache
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "size": record.size,
        "mimetype": record.mimetype,
        "filename": record.filename,
        "uploaded": round(record.uploaded * 1000, 3),  # Filestack gives milliseconds
        "writeable": True,
        "cloud": False,
        "source_url": record.source_url,
        "upload_status": record.status.value,
        "upload_tags": dict(record.tags),
        # cin does not read EXIF from images: a client that asks gets an explicit null.
        "exif": None,
        "location": location_name(record.provider),
        "path": record.key,
        "container": record.container,
        "key": record.key,
    }
    if any(name in HASH_ALGORITHMS for name in fields):
        if record.status is FileStatus.COMPLETE:
            values.update(await hash_cache.hashes(record))
        else:  # the bytes are not in the bucket yet: there is nothing to hash
            values.update(dict.fromkeys(HASH_ALGORITHMS))
    return {name: values[name] for name in fields if name in values}
