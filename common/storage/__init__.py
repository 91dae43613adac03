"""Where cin keeps bytes: one `Storage` protocol, and the drivers of `drivers.DRIVERS`
(local disk, S3) behind it.

Callers open a location with `open_storage(config)` and speak only the protocol; a
backend failure reaches them as a `StorageError`, never as a botocore or OS error.
Importing this package loads no driver: a driver's module (and its SDK) is imported when
a location that uses it is opened.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from common.config import StorageConfig
from common.protocol.limits import MAX_KEY_BYTES, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE
from common.storage._protocol import (
    Access,
    ByteRange,
    CompletedPart,
    ObjectInfo,
    ObjectReader,
    Storage,
    StorageError,
    StorageErrorKind,
    SweepsTemporary,
)
from common.storage.drivers import driver_of

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "Access",
    "ByteRange",
    "CompletedPart",
    "ObjectInfo",
    "ObjectReader",
    "Storage",
    "StorageError",
    "StorageErrorKind",
    "SweepsTemporary",
    "open_storage",
]

def open_storage(config: StorageConfig) -> AbstractAsyncContextManager[Storage]:
    """Open one storage location for the life of the block (an app's `cleanup_ctx`)."""
    return driver_of(config).open(config)
