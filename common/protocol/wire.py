"""Messages between POPs and the coordinator: frozen dataclasses, one msgpack codec.

Every message carries its type tag `t` and the protocol version `v`. A receiver ignores
fields it does not know (so a newer sender can add fields) and refuses a message whose
version it does not speak. Messages are signed with the deployment's internal secret:
`Cin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgpack

from common.protocol.errors import CinError, Code
from common.protocol.records import FileRecord, PartRecord, UploadRecord

PROTOCOL_VERSION = 1
CONTENT_TYPE = "application/vnd.cin.v1+msgpack"
SIGNATURE_HEADER = "Cin-Signature"
MAX_CLOCK_SKEW = 300.0  # seconds a signed message stays valid
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Message:
    TYPE: ClassVar[str] = ""


_REGISTRY: dict[str, type[Message]] = {}
M = TypeVar("M", bound=type[Message])


def message(cls: M) -> M:
    """Register a message class under its TYPE tag."""
    assert cls.TYPE and cls.TYPE not in _REGISTRY, cls
    _REGISTRY[cls.TYPE] = cls
    return cls


# ----------------------------------------------------------------------- the messages


@message
@dataclass(frozen=True)
class StartUpload(Message):
    """A client began a multipart upload (the Upload API's start), checked by a POP."""

    TYPE: ClassVar[str] = "start_upload"
    origin: str  # "<node>:<request id>": a retried start returns the same upload
    apikey: str
    storage: str
    provider: str
    container: str
    path: str | None
    filename: str
    mimetype: str
    size: int
    access: str
    region: str | None
    fii: bool
    pop: str | None  # the POP the client called, which then takes the bytes


@message
@dataclass(frozen=True)
class CompleteUpload(Message):
    """Every byte of an upload is durable at `pop`, which holds `parts`."""

    TYPE: ClassVar[str] = "complete_upload"
    upload_id: str
    parts: list[list[int]]  # [number, size] pairs: msgpack maps take string keys only
    tags: dict[str, str]
    pop: str


@message
@dataclass(frozen=True)
class PartStored(Message):
    """A POP has uploaded one part to the bucket."""

    TYPE: ClassVar[str] = "part_stored"
    upload_id: str
    part: int
    size: int
    etag: str
    pop: str


@message
@dataclass(frozen=True)
class FileStored(Message):
    """The POP has put the file's bytes in the bucket."""

    TYPE: ClassVar[str] = "file_stored"
    handle: str
    size: int
    etag: str


@message
@dataclass(frozen=True)
class FileFailed(Message):
    TYPE: ClassVar[str] = "file_failed"
    handle: str
    reason: str


@message
@dataclass(frozen=True)
class FileOverwritten(Message):
    """The POP has put new bytes at a Complete file's key (the File API's overwrite)."""

    TYPE: ClassVar[str] = "file_overwritten"
    handle: str
    size: int
    etag: str
    mimetype: str


@message
@dataclass(frozen=True)
class DeleteFile(Message):
    """A client with a `remove` policy deleted the file at a POP."""

    TYPE: ClassVar[str] = "delete_file"
    handle: str
    skip_storage: bool = False


@message
@dataclass(frozen=True)
class PopHeartbeat(Message):
    """A POP is alive and this busy (the counts of `common.protocol.pop_load.PopLoad`); the first
    one a coordinator hears registers the POP. `draining`: the POP is shutting down and
    must not be handed out; sent as soon as its drain starts. `disk_full`: the POP cannot
    take bytes (its spool is short of space) and must not be handed out until it says
    otherwise."""

    TYPE: ClassVar[str] = "pop_heartbeat"
    pop: str
    instance: str  # new each time the POP starts, so a restart shows in the coordinator
    requests: int
    transfers: int
    backlog_bytes: int
    draining: bool = False
    disk_full: bool = False


@message
@dataclass(frozen=True)
class LeaseHandles(Message):
    """A POP asks for a block of `count` handles to give out on its own
    (common/protocol/handle_lease.py); the coordinator may grant fewer."""

    TYPE: ClassVar[str] = "lease_handles"
    pop: str
    count: int


@message
@dataclass(frozen=True)
class HandleLease(Message):
    """A block of handles, recorded at the coordinator as `pop`'s."""

    TYPE: ClassVar[str] = "handle_lease"
    block: str
    size: int
    pop: str


@message
@dataclass(frozen=True)
class EventBatch(Message):
    """Facts a POP recorded (common/protocol/pop_events.py, each `to_wire`), oldest
    first: applied in one transaction, each at most once."""

    TYPE: ClassVar[str] = "event_batch"
    pop: str
    events: list[dict[str, Any]]


@message
@dataclass(frozen=True)
class BatchReply(Message):
    """Every event of the batch is applied (now or before) except those `refused`
    (`[event id, reason, position]`: never to be sent again; the position is the event's
    index in the batch, in decimal, and the id is "" for an event with none readable).
    `statuses`: each file the batch named, and its status after it (absent if the
    coordinator has no such file)."""

    TYPE: ClassVar[str] = "batch_reply"
    refused: list[list[str]] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)


@message
@dataclass(frozen=True)
class LookupFile(Message):
    TYPE: ClassVar[str] = "lookup_file"
    handle: str


@message
@dataclass(frozen=True)
class LookupUpload(Message):
    TYPE: ClassVar[str] = "lookup_upload"
    upload_id: str


@message
@dataclass(frozen=True)
class LookupUploadOfFile(Message):
    """The multipart upload that brings a file's bytes, with the coordinator's parts: what
    a POP needs to serve an In Transit file from its spool."""

    TYPE: ClassVar[str] = "lookup_upload_of_file"
    handle: str


@message
@dataclass(frozen=True)
class LookupUploadParts(Message):
    """An upload with the coordinator's parts: which are stored, and where the others are
    (the Upload API's part status, and a restarted POP's resume)."""

    TYPE: ClassVar[str] = "lookup_upload_parts"
    upload_id: str


@message
@dataclass(frozen=True)
class GetMetadata(Message):
    TYPE: ClassVar[str] = "get_metadata"
    handle: str
    query: dict[str, str]  # the client's query string, as the File API received it


@message
@dataclass(frozen=True)
class FileReply(Message):
    TYPE: ClassVar[str] = "file"
    record: FileRecord


@message
@dataclass(frozen=True)
class UploadReply(Message):
    TYPE: ClassVar[str] = "upload"
    record: FileRecord
    upload: UploadRecord


@message
@dataclass(frozen=True)
class UploadPartsReply(Message):
    TYPE: ClassVar[str] = "upload_parts"
    record: FileRecord
    upload: UploadRecord
    parts: list[PartRecord]  # by part number: which POP holds each, spooled or stored


@message
@dataclass(frozen=True)
class MetadataReply(Message):
    TYPE: ClassVar[str] = "metadata"
    fields: dict[str, Any]


@message
@dataclass(frozen=True)
class Ack(Message):
    TYPE: ClassVar[str] = "ack"


@message
@dataclass(frozen=True)
class ErrorReply(Message):
    TYPE: ClassVar[str] = "error"
    code: str
    detail: str | None = None

    @classmethod
    def of(cls, error: CinError) -> ErrorReply:
        return cls(code=error.code.wire, detail=error.detail)

    def to_error(self) -> CinError:
        return CinError(Code.from_wire(self.code), self.detail)


# ----------------------------------------------------------------------- the codec


def encode(msg: Message) -> bytes:
    body: dict[str, Any] = {"t": msg.TYPE, "v": PROTOCOL_VERSION}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, FileRecord | UploadRecord):
            value = value.to_wire()
        elif isinstance(value, list) and value and isinstance(value[0], PartRecord):
            value = [part.to_wire() for part in value]
        body[f.name] = value
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError) as exc:
        raise CinError(Code.BAD_MESSAGE, f"{msg.TYPE} cannot be encoded: {exc}") from exc


def decode(data: bytes) -> Message:
    if len(data) > MAX_MESSAGE_BYTES:
        raise CinError(Code.BAD_MESSAGE, "message too large")
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CinError(Code.BAD_MESSAGE, f"not msgpack: {exc}") from exc
    if not isinstance(body, dict):
        raise CinError(Code.BAD_MESSAGE, "a message is a map")
    if body.get("v") != PROTOCOL_VERSION:
        raise CinError(Code.BAD_MESSAGE, f"protocol version {body.get('v')!r} is not spoken here")
    tag = body.get("t")
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None  # a list is unhashable
    if cls is None:
        raise CinError(Code.BAD_MESSAGE, f"unknown message type {body.get('t')!r}")
    values: dict[str, Any] = {}
    for name, hint in _field_hints(cls):
        if name not in body:
            continue  # the dataclass default applies, or the constructor names it missing
        values[name] = _from_wire(name, hint, body[name])
    try:
        return cls(**values)
    except TypeError as exc:
        raise CinError(Code.BAD_MESSAGE, f"{cls.TYPE}: {exc}") from exc


_HINTS: dict[type[Message], tuple[tuple[str, Any], ...]] = {}


def _field_hints(cls: type[Message]) -> tuple[tuple[str, Any], ...]:
    """Each field's name and resolved type. Resolving the annotations (strings, under
    `from __future__ import annotations`) is most of the work of decoding a message, so
    it is done once per message type rather than for every message."""
    found = _HINTS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _HINTS[cls] = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
    return found


def _from_wire(name: str, hint: Any, value: Any) -> Any:
    """A field's value as its type says: records are rebuilt from their maps."""
    try:
        if hint is FileRecord or hint is UploadRecord:
            return hint.from_wire(value)
        if hint == list[PartRecord]:
            if not isinstance(value, list):
                raise TypeError("a list of parts is a list")
            return [PartRecord.from_wire(part) for part in value]
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CinError(Code.BAD_MESSAGE, f"bad {name}: {exc}") from exc
    return value


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    stamp = str(int(now if now is not None else time.time()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return f"t={stamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str | None, now: float | None = None) -> None:
    """Raise BAD_INTERNAL_SIGNATURE unless `header` signs `body` recently with `secret`."""
    if not header:
        raise CinError(Code.BAD_INTERNAL_SIGNATURE, f"no {SIGNATURE_HEADER} header")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise CinError(Code.BAD_INTERNAL_SIGNATURE, "no timestamp")
    current = now if now is not None else time.time()
    if abs(current - int(stamp)) > MAX_CLOCK_SKEW:
        raise CinError(Code.BAD_INTERNAL_SIGNATURE, "timestamp outside the allowed window")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    # As bytes: compare_digest refuses a str with a non-ASCII character (TypeError), and
    # this runs before anything about the sender is known.
    if not hmac.compare_digest(expected.hexdigest().encode(), given.encode("utf-8", "replace")):
        raise CinError(Code.BAD_INTERNAL_SIGNATURE, "signature does not match")
