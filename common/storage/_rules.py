"""Rules every driver keeps, so that what works on local disk works on S3."""

from __future__ import annotations

from common.protocol.limits import MAX_KEY_BYTES, MAX_PARTS
from common.storage._protocol import (
    ByteRange,
    CompletedPart,
    StorageError,
    StorageErrorKind,
)


def check_key(key: str) -> None:
    """Refuse keys S3 would refuse, and keys that read as a way out of the folder."""
    if not key:
        raise StorageError(StorageErrorKind.BAD_KEY, "the key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise StorageError(StorageErrorKind.BAD_KEY, f"the key is over {MAX_KEY_BYTES} bytes")
    if "\x00" in key:
        raise StorageError(StorageErrorKind.BAD_KEY, "the key contains a NUL character")
    if ".." in key.split("/"):
        raise StorageError(StorageErrorKind.BAD_KEY, "the key has a '..' segment")


def clip_range(byte_range: ByteRange | None, size: int) -> ByteRange | None:
    """The part of an object a range asks for, clipped to its end as S3 clips it."""
    if byte_range is None:
        return None
    if byte_range.first < 0 or byte_range.last < byte_range.first or byte_range.first >= size:
        raise StorageError(
            StorageErrorKind.INVALID_RANGE,
            f"bytes {byte_range.first}-{byte_range.last} of an object of {size} bytes",
        )
    return ByteRange(byte_range.first, min(byte_range.last, size - 1))


def check_part_list(parts: list[CompletedPart]) -> None:
    if not parts:
        raise StorageError(StorageErrorKind.INVALID_PART, "no parts to complete")
    previous = 0
    for part in parts:
        if not 1 <= part.part_number <= MAX_PARTS:
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part number {part.part_number} is out of range"
            )
        if part.part_number <= previous:
            raise StorageError(StorageErrorKind.INVALID_PART, "part numbers must ascend")
        previous = part.part_number
