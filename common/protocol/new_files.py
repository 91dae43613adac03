"""A new file's record, as whoever names it (a POP from its lease, or the coordinator for
the Upload API it serves itself) makes it. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.protocol.file_status import FileStatus
from common.protocol.naming import clean_filename, object_key
from common.protocol.records import FileRecord
from common.protocol.wire import StartUpload


@dataclass(frozen=True)
class NewStore:
    """A REST store as its POP checked it, before the file is named: what its record is
    made of. Not a message: the POP names the file from its own lease."""

    apikey: str
    storage: str
    provider: str
    container: str
    path: str | None
    filename: str
    mimetype: str
    size: int
    pop: str
    access: str = "private"
    region: str | None = None
    source_url: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def new_file_record(request: NewStore | StartUpload, *, handle: str, pop: str,
                    now: float) -> FileRecord:
    """A new file, Started at `pop`, under `handle`: the client's file name made safe,
    and the key made of the request's path and that name. A file stored whole
    (NewStore) comes with its tags and source URL; an upload in parts (StartUpload) gets
    its tags when it completes."""
    filename = clean_filename(request.filename)
    record = FileRecord(
        handle=handle,
        apikey=request.apikey,
        storage=request.storage,
        provider=request.provider,
        container=request.container,
        key=object_key(request.path, filename),
        filename=filename,
        mimetype=request.mimetype,
        size=request.size,
        status=FileStatus.STARTED,
        pop=pop,
        uploaded=now,
        access=request.access,
        region=request.region,
    )
    if isinstance(request, NewStore):
        record = record.with_changes(source_url=request.source_url, tags=dict(request.tags))
    return record
