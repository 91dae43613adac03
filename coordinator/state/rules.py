"""What each change of the coordinator's state may do to the records it finds.

Pure: an engine reads the file record (and its parts) in the transaction that will write
the change, asks here, and writes what it is told; a refusal is a typed `CinError` the
engine lets through, which undoes the transaction. The engines differ in their queries,
never in these decisions, so a new engine cannot get them subtly wrong by writing them
again. The status table itself is common/protocol/file_status.py, shared with the POPs.

Which uploads and REST stores a sweep expires, and whether another file has a key, are
the decisions that stay queries (an engine answers them through an index);
coordinator/state/protocol.py says what they answer, and the conformance suite
(tests/state) holds every engine to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus, check_transition
from common.protocol.records import FileRecord, PartRecord


def with_status(record: FileRecord, status: FileStatus, *, size: int | None = None,
                etag: str | None = None) -> FileRecord:
    """The file moved to `status`, with its size and etag if given. Raises
    IllegalTransition when the status table forbids the move; the same status again is a
    repeated report, and allowed."""
    check_transition(record.status, status)
    changes: dict[str, Any] = {"status": status}
    if size is not None:
        changes["size"] = size
    if etag is not None:
        changes["etag"] = etag
    return record.with_changes(**changes)


def in_transit(record: FileRecord, tags: Mapping[str, str]) -> FileRecord | None:
    """The file once every byte of it is durable at POPs, with the tags the upload
    finished with; None if it is In Transit already (a repeated complete, which changes
    nothing: neither its tags nor its parts)."""
    if record.status is FileStatus.IN_TRANSIT:
        return None
    check_transition(record.status, FileStatus.IN_TRANSIT)
    return record.with_changes(status=FileStatus.IN_TRANSIT, tags=dict(tags))


def held_parts(recorded: Mapping[int, PartRecord],
               held: Iterable[PartRecord]) -> list[PartRecord]:
    """What to record of the parts a POP holds when the upload completes, given what is
    recorded of the upload's parts (by number): each as spooled at that POP, which then
    sends it, except a part this POP already stored at this size, which stays stored (its
    bytes are in the bucket). A part stored from another POP, or of another size, gives
    way: the held copies are what make up the file the client completed."""
    return [PartRecord(part.number, part.pop, "spooled", part.size, None) for part in held
            if not _stored_already(recorded.get(part.number), part)]


def _stored_already(recorded: PartRecord | None, held: PartRecord) -> bool:
    return recorded is not None and recorded.pop == held.pop and recorded.size == held.size


def stored_part(part: PartRecord) -> PartRecord:
    """What a report that a part is in the bucket records: the part as stored, whatever
    was recorded of it before and whatever the file's status. The last report counts,
    and one that comes late (after the file completed, or expired) harms nothing."""
    return PartRecord(part.number, part.pop, "stored", part.size, part.etag)


def overwritten(record: FileRecord, *, size: int, etag: str, mimetype: str,
                now: float) -> FileRecord:
    """The file with new bytes under its handle: a new version, whose hashes are not
    known yet. Only a Complete file can be overwritten (CONFLICT otherwise)."""
    if record.status is not FileStatus.COMPLETE:
        raise CinError(Code.CONFLICT, f"{record.handle} is {record.status.value}")
    return record.with_changes(size=size, etag=etag, mimetype=mimetype,
                               version=record.version + 1, hashes=None, uploaded=now)


def check_delete(record: FileRecord) -> None:
    """A file still uploading (Started, In Transit) cannot be deleted (CONFLICT): its
    bytes are on their way, and a POP would report them stored for a record gone."""
    if record.status in (FileStatus.STARTED, FileStatus.IN_TRANSIT):
        raise CinError(Code.CONFLICT,
                       f"{record.handle} is still uploading ({record.status.value})")


def hashes_apply(record: FileRecord, version: int) -> bool:
    """Whether hashes computed from `version` of a file's bytes belong on its record:
    not once an overwrite has replaced that version."""
    return record.version == version


def expired(record: FileRecord) -> FileRecord:
    """An abandoned upload's file, or an interrupted REST store's, Failed. Only a Started
    file expires: an In Transit one's bytes were acknowledged to the client (CONFLICT if
    an engine chose another)."""
    if record.status is not FileStatus.STARTED:
        raise CinError(Code.CONFLICT, f"{record.handle} is {record.status.value}: only an "
                                      "upload still Started expires")
    return record.with_changes(status=FileStatus.FAILED)



def latest_started(files: Iterable[FileRecord], limit: int) -> list[FileRecord]:
    """The first `limit` of `files`, the latest started first: an engine reads the latest
    of each status through that status's index and merges them here."""
    return sorted(files, key=lambda f: f.uploaded, reverse=True)[:limit]


def check_parts_make_up(record: FileRecord, sizes: Mapping[int, int]) -> None:
    """The parts of a completed upload (number → size: those recorded, with those a POP
    holds) must be numbered 1..n without a gap and hold the file's size (CONFLICT)."""
    if any(number < 1 or size < 0 for number, size in sizes.items()):
        raise CinError(Code.CONFLICT, "part numbers start at 1, and sizes at 0")
    missing = sorted(set(range(1, max(sizes, default=0) + 1)) - set(sizes))
    if not sizes or missing:
        raise CinError(Code.CONFLICT, f"parts {missing or [1]} were never uploaded")
    if sum(sizes.values()) != record.size:
        raise CinError(Code.CONFLICT, f"the parts hold {sum(sizes.values())} bytes, the "
                                      f"file is {record.size}")
