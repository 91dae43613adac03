"""Where cin keeps bytes: one `Storage` protocol, a local-disk and an S3 driver.

Callers open a location with `open_storage(config)` and speak only the protocol; a
backend failure reaches them as a `StorageError`, never as a botocore or OS error.
Importing this package loads no driver: a driver's module (and its SDK) is imported when
a location that uses it is opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

# Signing needs some region before the bucket's own is known; this is S3's default one.
_FALLBACK_REGION = "us-east-1"


@asynccontextmanager
async def open_storage(config: StorageConfig) -> AsyncIterator[Storage]:
    """Open one storage location for the life of the block (an app's `cleanup_ctx`)."""
    if config.driver == "local":
        from common.storage._local import LocalDiskStorage

        if config.root is None:
            raise ValueError(f"storage {config.name!r}: the local driver needs a root")
        yield LocalDiskStorage(config.root, config.container)
        return
    from common.storage._s3 import S3Storage, s3_client

    region = config.region or await _bucket_region(config)
    async with s3_client(config, region) as client:
        yield S3Storage(client, config.container)


async def _bucket_region(config: StorageConfig) -> str:
    """The region to sign for when the config names none.

    Only AWS is asked: an S3-compatible service at `endpoint_url` is reached at that URL
    whatever region is signed, and most accept the default one.
    """
    from common.storage._s3 import detect_bucket_region, s3_client

    if config.endpoint_url is not None:
        return _FALLBACK_REGION
    async with s3_client(config, _FALLBACK_REGION) as client:
        return await detect_bucket_region(client, config.container)
