"""A tus creation that carries its whole file: stored as the REST store stores one.

A creation-with-upload whose body is the whole file (Content-Length is Upload-Length) and
that is neither a partial upload nor one whose length is deferred has nothing to resume:
a client that loses the answer never learnt the upload's URL, and starts over. So it is
not spooled, cut into parts and completed like an upload in parts, but put in the bucket
in one go and journaled as a stored file (edge/rest/store.py `store_file`): one bucket
write and one journal fact instead of a spool part, a multipart upload and a complete.

Its URL is what the upload id of an upload in parts of the same file would be (a MAC of
its handle, common/protocol/handle_lease.py): unguessable, and any POP reads the handle
from it, so `HEAD` finds the file and answers its length (edge/tus/tus_uploads.py
`_adopt`). A body with `Upload-Checksum` is written to a scratch file and checked whole
first: 460, and nothing is stored, when it does not match.

Only a body the REST store would send straight to the bucket goes this way
(`goes_straight`: any size to a local-disk bucket, one under a MiB to S3), so that it
holds no more memory than a REST store does.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import web

from common.protocol import tus, wire
from common.protocol.errors import CinError, Code
from common.protocol.new_files import NewStore
from common.protocol.records import FileRecord
from common.storage import Access
from common.threads import in_thread
from edge.jobs import JOBS
from edge.keys import CONFIG
from edge.rest.intake import exactly
from edge.rest.store import goes_straight, store_file
from edge.tus.byte_source import READ_BYTES, file_chunks, stage_body
from edge.tus.tus_uploads import TusUploads


def carries_whole_file(request: web.Request, length: int, *, partial: bool) -> bool:
    """Whether a creation (with its length known) carries all of it: a store answers it."""
    return (not partial and length > 0 and request.content_length == length
            and request.content_type == tus.OFFSET_CONTENT_TYPE)


async def store_whole(request: web.Request, uploads: TusUploads, start: wire.StartUpload,
                      tags: dict[str, str]) -> FileRecord | None:
    """The file stored and journaled, Complete; None when it does not go this way (the
    bucket would hold its body in memory): then it is created as an upload in parts."""
    config = request.app[CONFIG]
    if not goes_straight(config.storage[start.storage], start.size):
        return None
    checksum = tus.parse_checksum(request.headers.get("Upload-Checksum"))
    file = NewStore(
        apikey=start.apikey, storage=start.storage,
        provider=start.provider, container=start.container, path=start.path,
        filename=start.filename, mimetype=start.mimetype, size=start.size,
        pop=start.pop or "", access=start.access, region=start.region, tags=tags)
    if checksum is None:
        body = exactly(start.size, request.content.iter_chunked(READ_BYTES))
        # Shielded, as the REST store's: a cancelled handler still records how it ended.
        return await request.app[JOBS].shield(store_file(
            request.app, file, body, access=Access(start.access), api="tus"))
    path = uploads.scratch / f"whole-{secrets.token_hex(8)}"
    try:
        size = await stage_body(request.content.iter_chunked(READ_BYTES), path, start.size,
                                checksum)
        if size != start.size:
            raise CinError(Code.INCOMPLETE_BODY, f"the body ended after {size} of its "
                                                 f"{start.size} bytes")
    except BaseException:
        await in_thread(path.unlink, missing_ok=True)
        raise
    # The job owns the scratch file from here: it outlives a client that hangs up.
    return await request.app[JOBS].shield(_store_scratch(request.app, file, path))


async def _store_scratch(app: web.Application, file: NewStore, path: Path) -> FileRecord:
    try:
        return await store_file(app, file, file_chunks(path, file.size),
                                access=Access(file.access), api="tus")
    finally:
        await in_thread(path.unlink, missing_ok=True)
