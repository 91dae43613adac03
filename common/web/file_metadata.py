"""The File API's metadata: which fields a query asks for, and the values, hashes
included. Served by the coordinator (coordinator/metadata.py keeps each version's hashes)
and by a POP for the files its journal holds that the coordinator has not yet heard of."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.flags import is_flag_value, query_flag
from common.protocol.records import HASH_ALGORITHMS, FileRecord
from common.storage.storage_set import StorageSet

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


class Hashes(Protocol):
    async def hashes(self, record: FileRecord) -> dict[str, str]: ...


CHUNK_HASH_IN_THREAD = 64 * 1024  # below this, the thread hop costs more than hashing


async def hash_object(storage: StorageSet, record: FileRecord) -> dict[str, str]:
    """Every hash of a Complete file's object, streamed once through them all, off the
    event loop for large chunks."""
    hashers = [hashlib.new(name) for name in HASH_ALGORITHMS]

    def update(chunk: bytes) -> None:
        for hasher in hashers:
            hasher.update(chunk)

    reader = await storage[record.storage].get(record.container, record.key)
    try:
        if record.etag is not None and reader.info.etag != record.etag:
            raise CinError(Code.FILE_GONE, "another upload replaced the object")
        async for chunk in reader.chunks():
            if len(chunk) >= CHUNK_HASH_IN_THREAD:
                await asyncio.to_thread(update, chunk)  # hashlib frees the GIL
            else:
                update(chunk)
    finally:
        await reader.close()
    return {name: h.hexdigest() for name, h in zip(HASH_ALGORITHMS, hashers, strict=True)}


class UncachedHashes:
    """Hashes computed for each request: for the few files a POP answers for itself."""

    def __init__(self, storage: StorageSet) -> None:
        self.storage = storage

    async def hashes(self, record: FileRecord) -> dict[str, str]:
        return record.hashes or await hash_object(self.storage, record)


def location_name(provider: str) -> str:
    return "S3" if provider == "s3" else provider


async def build_metadata(
    record: FileRecord, fields: list[str], hash_cache: Hashes
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
