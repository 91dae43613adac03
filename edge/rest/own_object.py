"""Removing bytes a POP put in the bucket that no file record came to point at.

A store whose report the coordinator refused, or an overwrite of a file deleted while its
bytes went up, leaves an object only this POP knows about. It is removed only while it
still holds those very bytes: another store may have put its own file at the same key
(an explicit path) since, and that one is not ours to touch.
"""

from __future__ import annotations

import logging

from common.protocol.records import FileRecord
from common.storage import Storage, StorageError, StorageErrorKind

log = logging.getLogger("cin.edge.store")


async def remove_own_object(storage: Storage, record: FileRecord, etag: str) -> bool:
    """Delete the object at the record's key if its ETag is still `etag`. True when it
    was removed; False when the key holds other bytes or none, or the bucket failed
    (logged: the object is then left for an operator)."""
    try:
        if (await storage.head(record.container, record.key)).etag != etag:
            return False
        await storage.delete(record.container, record.key)
    except StorageError as exc:
        if exc.kind is not StorageErrorKind.NOT_FOUND:
            log.error("could not remove unrecorded object %s/%s of %s: %s",
                      record.container, record.key, record.handle, exc)
        return False
    return True
