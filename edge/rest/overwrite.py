"""`POST /api/file/{handle}`: the File API's overwrite, at a POP.

New bytes (a raw body, a `fileUpload` form field, or `url=`, optionally base64) replace a
Complete file's object at the same key; the handle stays, size, type and hashes are
refreshed, and `fp.overwrite` is sent. Overwrite always needs security: `write` for
bytes, `writeUrl` to have the POP fetch a URL.
"""

from __future__ import annotations

import logging

from aiohttp import web

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.flags import query_flag
from common.protocol.records import FileRecord, file_url
from common.protocol.security import Action, authorize
from common.protocol.sniff import choose_mimetype, is_mimetype
from common.storage import Access, StorageError
from common.web.file_routes import check_apikey, request_handle
from common.web.request_auth import app_of, request_credentials
from edge.jobs import JOBS
from edge.keys import CONFIG, COORDINATOR, FETCHER, FILES, STAGING, STORAGE
from edge.local_files import CANNOT_SAY
from edge.rest.intake import open_incoming, receive, stage_within
from edge.rest.own_object import remove_own_object
from edge.rest.staging import StagedBody

log = logging.getLogger("cin.edge.overwrite")


async def overwrite(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    record = await _file_to_overwrite(request)
    app = app_of(config, record)
    creds = request_credentials(request)
    if not creds.present:
        authorize(app, creds, Action.overwrite(record.handle))  # refused before any read
    if record.status is not FileStatus.COMPLETE:
        raise CinError(Code.CONFLICT, f"{record.handle} is {record.status.value}; "
                                      "only a stored file can be overwritten")
    base64 = query_flag(request.query, "base64decode") is True
    mimetype = request.query.get("mimetype")
    if mimetype is not None and not is_mimetype(mimetype.strip()):
        raise CinError(Code.BAD_PARAMETER, f"mimetype {mimetype[:100]!r} is not type/subtype")
    limit = app.max_upload_size

    incoming = await receive(request, base64=base64, limit=limit)
    grant = authorize(app, creds, Action.overwrite(record.handle, url=incoming.source_url))
    if incoming.source_url is not None:
        limit = min(limit, config.url_fetch.max_size)
    async with open_incoming(incoming, request.app[FETCHER], base64=base64) as opened:
        staged = await stage_within(request.app[STAGING], opened, limit=limit, grant=grant)
    try:
        if staged.size == 0:
            raise CinError(Code.EMPTY_FILE)
        # The file keeps its name; its type is what the new bytes are.
        new_type = choose_mimetype(mimetype or opened.content_type, staged.head,
                                   record.filename)
    except BaseException:
        await staged.remove()
        raise
    updated = await request.app[JOBS].shield(_put(request.app, record, staged, new_type))
    return web.json_response({
        "url": file_url(config.coordinator.public_url, updated.handle),
        "handle": updated.handle,
        "mimetype": updated.mimetype,
        "isWriteable": True,
        "size": updated.size,
        "filename": updated.filename,
    })


async def _file_to_overwrite(request: web.Request) -> FileRecord:
    """The file as the coordinator records it, if the apikey given is its own. Decided
    there: asked before anything is read or put, so that while it is away the file's
    bytes stay as recorded (503, retry). Another app's file is 404 even then, when this
    POP's journal holds it."""
    files, handle = request.app[FILES], request_handle(request)
    try:
        record = await files.at_coordinator(handle)
    except CinError as exc:
        if exc.code in CANNOT_SAY:
            local = await files.journal.file(handle)
            if local is not None:
                check_apikey(request, local.record)
        raise
    check_apikey(request, record)
    return record


async def _put(app: web.Application, record: FileRecord, staged: StagedBody,
               mimetype: str) -> FileRecord:
    try:
        storage = app[STORAGE][record.storage]
        try:
            info = await storage.put(record.container, record.key, staged.chunks(),
                                     content_type=mimetype, access=Access(record.access))
        except StorageError as exc:
            log.warning("overwriting %s failed: %s", record.handle, exc)
            raise
        try:
            return await app[COORDINATOR].file(wire.FileOverwritten(
                handle=record.handle, size=info.size, etag=info.etag, mimetype=mimetype))
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:
                # Deleted while the bytes went up: the delete kept what it found at the
                # key if it was not the file's recorded version, so these bytes would
                # stay in the bucket with no file to remove them through.
                if await remove_own_object(storage, record, info.etag):
                    log.info("overwrite of %s arrived after its delete: its bytes are "
                             "removed", record.handle)
                raise
            # The bucket has the new bytes but the record does not say so: downloads
            # answer 410 until an overwrite is recorded. The client is told to retry.
            log.error("overwrite of %s stored but not recorded: %s", record.handle, exc)
            raise
    finally:
        await staged.remove()
