"""The facts a POP records and ships to the coordinator: one dataclass per kind. Pure.

A POP acknowledges a store or an upload step once its bytes are durable and its event
is durable in the POP's journal (edge/journal); the journal ships events to the
coordinator in batches (`wire.EventBatch`), in the order they were recorded, until they
are acknowledged. The coordinator applies a batch in one transaction, each event at most
once (by `id`), and refuses an event for a handle not leased to the POP that sends it.

Every event names its file's handle; the handle came from the sending POP's lease.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, ClassVar

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord


def new_event_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class PopEvent:
    KIND: ClassVar[str] = ""
    id: str
    handle: str
    at: float  # unix seconds, when the POP recorded it

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.KIND}
        for name, value in self.__dict__.items():
            if isinstance(value, FileRecord | UploadRecord):
                value = value.to_wire()
            body[name] = value
        return body


@dataclass(frozen=True)
class FileStored(PopEvent):
    """A REST store is done: `record` is the file, Complete, with its size and ETag."""

    KIND: ClassVar[str] = "file_stored"
    record: FileRecord


@dataclass(frozen=True)
class StoreAbandoned(PopEvent):
    """A REST store the POP began and never acknowledged (it stopped mid-store, and found
    the store in its journal when it started again): `record` is the file as it began,
    Started. The coordinator records it Failed and removes what it may have left at its
    key, as for a store that outlived the store TTL."""

    KIND: ClassVar[str] = "store_abandoned"
    record: FileRecord


@dataclass(frozen=True)
class UploadStarted(PopEvent):
    """An Upload API start at the POP: the file, Started, and its upload (upload id
    from `handle_lease.mint_upload_id`, the bucket's multipart upload already open)."""

    KIND: ClassVar[str] = "upload_started"
    record: FileRecord
    upload: UploadRecord


@dataclass(frozen=True)
class PartStored(PopEvent):
    """The POP has put one part of an upload in the bucket."""

    KIND: ClassVar[str] = "part_stored"
    upload_id: str
    part: int
    size: int
    etag: str


@dataclass(frozen=True)
class UploadInTransit(PopEvent):
    """The client completed the upload at this POP and every part is durable here or
    stored by it: the file is In Transit, with these parts held (`[number, size]`)."""

    KIND: ClassVar[str] = "upload_in_transit"
    upload_id: str
    parts: list[list[int]]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadStored(PopEvent):
    """An upload too small for a multipart upload was put whole: the file is Complete."""

    KIND: ClassVar[str] = "upload_stored"
    upload_id: str
    size: int
    etag: str


KINDS: dict[str, type[PopEvent]] = {
    cls.KIND: cls for cls in (FileStored, StoreAbandoned, UploadStarted, PartStored,
                              UploadInTransit, UploadStored)}


def event_from_wire(body: Any) -> PopEvent:
    """An event as `to_wire` wrote it; BAD_MESSAGE for anything else."""
    if not isinstance(body, dict):
        raise CinError(Code.BAD_MESSAGE, "an event is a map")
    kind = body.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise CinError(Code.BAD_MESSAGE, f"unknown event kind {kind!r}")
    values: dict[str, Any] = {}
    try:
        for name in cls.__dataclass_fields__:
            if name not in body:
                continue
            value = body[name]
            if name == "record":
                value = FileRecord.from_wire(value)
            elif name == "upload":
                value = UploadRecord.from_wire(value)
            values[name] = value
        event = cls(**values)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CinError(Code.BAD_MESSAGE, f"bad {kind} event: {exc}") from exc
    _check_types(event)
    return event


def _check_types(event: PopEvent) -> None:
    """Field types, as far as msgpack can get them wrong: a POP is trusted, but a bug or
    a version skew must be a refused message, not a 500 deep in a transaction."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CinError(Code.BAD_MESSAGE, f"{event.KIND}: {what}")

    need(isinstance(event.id, str) and 0 < len(event.id) <= 64, "id")
    need(isinstance(event.handle, str), "handle")
    need(isinstance(event.at, int | float), "at")
    record = getattr(event, "record", None)
    if record is not None:
        need(record.handle == event.handle, "the record is another file's")
    if isinstance(event, FileStored):
        need(event.record.status is FileStatus.COMPLETE and event.record.etag is not None,
             "a stored file is Complete, with an ETag")
    if isinstance(event, StoreAbandoned | UploadStarted):
        need(event.record.status is FileStatus.STARTED, "the file is Started")
    if isinstance(event, UploadStarted):
        need(event.upload.handle == event.handle, "the upload is another file's")
    if isinstance(event, PartStored):
        need(isinstance(event.part, int) and isinstance(event.size, int)
             and isinstance(event.etag, str), "part, size, etag")
    if isinstance(event, UploadInTransit):
        need(isinstance(event.parts, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(n, int) for n in p)
            for p in event.parts), "parts are [number, size] pairs")
        need(isinstance(event.tags, dict), "tags")
    if isinstance(event, UploadStored):
        need(isinstance(event.size, int) and isinstance(event.etag, str), "size, etag")
