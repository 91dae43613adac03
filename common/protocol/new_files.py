"""A new file's record, as whoever names it (a POP from its lease, or the coordinator)
makes it. Pure."""

from __future__ import annotations

from common.protocol.file_status import FileStatus
from common.protocol.naming import clean_filename, object_key
from common.protocol.records import FileRecord
from common.protocol.wire import StartFile, StartUpload


def new_file_record(request: StartFile | StartUpload, *, handle: str, pop: str,
                    now: float) -> FileRecord:
    """A new file, Started at `pop`, under `handle`: the client's file name made safe,
    and the key made of the request's path and that name. A file stored whole
    (StartFile) comes with its tags and source URL; an upload in parts (StartUpload) gets
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
    if isinstance(request, StartFile):
        record = record.with_changes(source_url=request.source_url, tags=dict(request.tags))
    return record
