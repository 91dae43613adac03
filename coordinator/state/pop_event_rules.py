"""What each fact a POP ships (common/protocol/pop_events.py) does to the state. Pure.

An engine applying a batch (`StateStore.apply_pop_events`) reads, for each event, in the
transaction that will write it, what `Found` holds, asks `change_for`, and writes the
`Change` it is given; a refusal is a typed `CinError` (as in coordinator/state/rules.py),
which undoes that event alone. So the engines differ in their queries, never in what an
event means.

Every event may arrive again (a POP retrying a batch whose reply it lost, after the
coordinator forgot the event's id): each is written so that, applied to the state it
left, it changes nothing and writes no webhook a second time.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.pop_events import (
    FileStored,
    PartStored,
    PopEvent,
    StoreAbandoned,
    UploadInTransit,
    UploadStarted,
    UploadStored,
)
from common.protocol.records import FileRecord, PartRecord, UploadRecord, upload_closed
from coordinator.state import rules
from coordinator.state.protocol import PendingRemoval


def origin_of(handle: str) -> str:
    """The `origin` of a file the coordinator first heard of from a POP's events: its
    handle, unique already (a POP's own requests name theirs otherwise)."""
    return f"lease:{handle}"


@dataclass(frozen=True)
class Found:
    """What an engine reads for one event: the file it names; for an event naming an
    upload (`upload_id`), that upload; for `UploadInTransit`, the upload's parts."""

    file: FileRecord | None
    upload: UploadRecord | None = None
    parts: tuple[PartRecord, ...] = ()


@dataclass(frozen=True)
class Change:
    """What to write for one event: nothing at all for an event whose effect is there
    already. `stored`: the file became Complete, write its fp.upload webhook events."""

    insert_file: FileRecord | None = None
    insert_upload: UploadRecord | None = None
    update_file: FileRecord | None = None  # status, size, etag and tags as they are here
    parts: tuple[PartRecord, ...] = ()
    removal: PendingRemoval | None = None
    stored: bool = False


NOTHING = Change()


def needs_upload(event: PopEvent) -> str | None:
    """The upload id an event names, which the engine reads as `Found.upload`."""
    return getattr(event, "upload_id", None)


def change_for(event: PopEvent, pop: str, found: Found) -> Change:
    """The change `event`, sent by POP `pop`, makes to what `found` holds."""
    match event:
        case FileStored(record=record):
            if found.file is not None:
                return NOTHING  # heard of before: from this POP, or a retry
            return Change(insert_file=record, stored=True)
        case StoreAbandoned(record=record):
            return _abandoned(found.file, record)
        case UploadStarted(record=record, upload=upload):
            if found.file is not None:
                return NOTHING
            return Change(insert_file=record, insert_upload=upload)
        case PartStored(part=number, size=size, etag=etag):
            _upload_file(event, found)
            return Change(parts=(rules.stored_part(
                PartRecord(number, pop, "stored", size, etag)),))
        case UploadInTransit(parts=held, tags=tags):
            return _in_transit(event, pop, found, held, tags)
        case UploadStored(size=size, etag=etag):
            file, _ = _upload_file(event, found)
            if file.status is FileStatus.COMPLETE and file.etag == etag:
                return NOTHING
            if size != file.size:
                raise CinError(Code.CONFLICT, f"stored {size} bytes, the file is {file.size}")
            return Change(update_file=rules.with_status(file, FileStatus.COMPLETE, size=size,
                                                        etag=etag), stored=True)
    raise CinError(Code.BAD_MESSAGE, f"no rule for a {event.KIND} event")


def _abandoned(file: FileRecord | None, record: FileRecord) -> Change:
    """A REST store its POP never acknowledged: recorded Failed, its leftovers owed
    removal (as `expire_stores` does). A file recorded already is left as it is: if
    the store did finish, its bytes are the file's."""
    if file is not None and file.status is not FileStatus.STARTED:
        return NOTHING
    failed = rules.expired(file if file is not None else record)
    removal = PendingRemoval(handle=failed.handle, storage=failed.storage,
                             container=failed.container, key=failed.key)
    if file is None:
        return Change(insert_file=failed, removal=removal)
    return Change(update_file=failed, removal=removal)


def _upload_file(event: PopEvent, found: Found) -> tuple[FileRecord, UploadRecord]:
    """The file and upload an upload's event is about; FILE_NOT_FOUND for a part or a
    complete of an upload the coordinator has no record of, or that is another file's."""
    upload, file = found.upload, found.file
    if upload is None or file is None or upload.handle != event.handle:
        raise CinError(Code.FILE_NOT_FOUND, f"no upload of {event.handle} has this upload_id")
    return file, upload


def _in_transit(event: PopEvent, pop: str, found: Found, held: list[list[int]],
                tags: dict[str, str]) -> Change:
    """The checks of a complete at the coordinator (coordinator/multipart.py), then the
    parts `pop` holds and the file In Transit."""
    file, upload = _upload_file(event, found)
    if file.status in (FileStatus.IN_TRANSIT, FileStatus.COMPLETE):
        return NOTHING  # a repeated complete
    if file.status is not FileStatus.STARTED:
        raise upload_closed(file, upload)
    sizes = {part.number: part.size for part in found.parts}
    sizes.update({number: size for number, size in held})
    rules.check_parts_make_up(file, sizes)
    spooled = [PartRecord(number, pop, "spooled", size, None)
               for number, size in sorted(held)]
    updated = rules.in_transit(file, tags)
    assert updated is not None, "a Started file moves In Transit"
    recorded = {part.number: part for part in found.parts}
    return Change(update_file=updated, parts=tuple(rules.held_parts(recorded, spooled)))


def refusal(error: CinError) -> str:
    """Why an event was refused, as the batch's reply and the log say it."""
    return f"{error.code.wire}: {error}"
