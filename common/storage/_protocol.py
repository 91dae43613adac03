"""The storage protocol every driver implements, and the types it speaks.

Drivers translate their backend's errors into `StorageError` at this boundary: nothing
above `common.storage` ever sees a botocore exception or an `OSError` of the bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from common.protocol.errors import CinError, Code


class Access(Enum):
    PRIVATE = "private"
    PUBLIC = "public"


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` tells about a stored object."""

    container: str
    key: str
    size: int
    content_type: str
    etag: str  # without quotes
    access: Access


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range, as HTTP `Range` and S3 `Range` both define it."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str


class ObjectReader(Protocol):
    """An open download: what is being read, and its bytes. Close it when done."""

    @property
    def info(self) -> ObjectInfo: ...

    @property
    def byte_range(self) -> ByteRange | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class StorageErrorKind(Enum):
    NOT_FOUND = "not_found"
    NO_SUCH_UPLOAD = "no_such_upload"
    INVALID_PART = "invalid_part"
    INVALID_RANGE = "invalid_range"
    ACCESS_DENIED = "access_denied"
    NO_SUCH_CONTAINER = "no_such_container"
    BAD_KEY = "bad_key"
    INSUFFICIENT_STORAGE = "insufficient_storage"  # the disk (or a quota on it) is full
    UNAVAILABLE = "unavailable"


class StorageError(Exception):
    """A backend failure, translated once at the driver boundary."""

    def __init__(self, kind: StorageErrorKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail

    def to_cin_error(self) -> CinError:
        """How a storage failure reaches an HTTP client."""
        if self.kind is StorageErrorKind.NOT_FOUND:
            return CinError(Code.FILE_NOT_FOUND, "the stored object is missing")
        if self.kind is StorageErrorKind.INVALID_RANGE:
            return CinError(Code.RANGE_NOT_SATISFIABLE)
        if self.kind is StorageErrorKind.BAD_KEY:
            return CinError(Code.BAD_PATH, self.detail)
        if self.kind is StorageErrorKind.INSUFFICIENT_STORAGE:
            return CinError(Code.INSUFFICIENT_STORAGE)  # the detail names server paths
        return CinError(Code.STORAGE_UNAVAILABLE, self.kind.value)


class Storage(Protocol):
    """One storage location: a bucket service (S3) or a directory (local disk).

    `container` is the bucket (S3) or a folder under the root (local disk). Keys are
    S3 object keys; drivers refuse keys that could escape their root.
    """

    @property
    def default_container(self) -> str: ...

    async def put(
        self,
        container: str,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> ObjectInfo:
        """Store a whole object from a stream, holding at most one part in memory."""
        ...

    async def head(self, container: str, key: str) -> ObjectInfo: ...

    async def get(
        self, container: str, key: str, byte_range: ByteRange | None = None
    ) -> ObjectReader:
        """Open the object (or one range of it) for streaming."""
        ...

    async def delete(self, container: str, key: str) -> None:
        """Delete an object; deleting a missing object is not an error (as in S3)."""
        ...

    async def create_multipart(
        self,
        container: str,
        key: str,
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> str:
        """Begin a multipart upload; returns its upload id."""
        ...

    async def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        size: int,
    ) -> str:
        """Store one part (1-based number) of exactly `size` bytes; returns its ETag."""
        ...

    async def complete_multipart(
        self, container: str, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> ObjectInfo: ...

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None: ...

    async def list_multipart_uploads(self, container: str) -> list[tuple[str, str]]:
        """Pending multipart uploads as (key, upload id): what expiry must leave empty."""
        ...


@runtime_checkable
class SweepsTemporary(Protocol):
    """An optional capability: a driver that writes temporary files of its own (the local
    disk) removes those a writer left behind when it died. S3 has none: an interrupted
    put leaves a pending multipart upload, which expiry aborts."""

    async def sweep_temporary(self, older_than: float) -> int:
        """Remove the temporary files untouched for `older_than` seconds that no live
        writer holds; returns how many went."""
        ...
