"""The coordinator's side of the POP protocol: one signed msgpack RPC route.

A POP sends the `X-Request-Id` of the client request it calls for; the request-id
middleware (common/web/request_log.py) takes it as this request's id, so the lines the
coordinator writes for the call name the client's request."""

from __future__ import annotations

from aiohttp import web

from common.protocol import wire
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.handle_lease import handle_of_upload_id
from common.storage import StorageError
from common.web.file_metadata import build_metadata, requested_fields
from common.web.http import read_bounded
from coordinator.keys import (
    CONFIG,
    COORDINATOR_METRICS,
    FILES,
    HASHES,
    HEARTBEATS,
    LEASES,
    MULTIPART,
    POP_BATCHES,
    STATE,
)

RPC_PATH = "/internal/v1/rpc"


async def handle_rpc(request: web.Request) -> web.Response:
    msg_type = "-"  # not read, not signed, or not a message
    try:
        body = await read_bounded(request, wire.MAX_MESSAGE_BYTES)
        wire.verify(request.app[CONFIG].internal_secret, body,
                    request.headers.get(wire.SIGNATURE_HEADER))
        msg = wire.decode(body)
        msg_type = msg.TYPE  # a registered type: decode takes no other
        reply = await dispatch(request.app, msg)
        status, outcome = 200, "ok"
    except CinError as error:
        reply, status, outcome = wire.ErrorReply.of(error), error.status, error.code.wire
    except StorageError as exc:  # as the HTTP error middleware maps it
        mapped = exc.to_cin_error()
        reply, status, outcome = wire.ErrorReply.of(mapped), mapped.status, mapped.code.wire
    request.app[COORDINATOR_METRICS].message(msg_type, outcome)
    return web.Response(body=wire.encode(reply), status=status,
                        content_type=wire.CONTENT_TYPE)


async def dispatch(app: web.Application, msg: wire.Message) -> wire.Message:
    try:
        return await _dispatch(app, msg)
    except CinError as error:
        if error.code is Code.FILE_NOT_FOUND:
            at_pop = await _at_pop(app, msg)
            if at_pop is not None:
                raise at_pop from error
        raise


async def _at_pop(app: web.Application, msg: wire.Message) -> FileAtPop | None:
    """For a message about a file the coordinator has no record of, whose handle (or
    upload id, made by `mint_upload_id`) a POP was leased and has not reported yet: the
    FILE_AT_POP that says which POP, rather than a 404 for a file that exists."""
    handle = getattr(msg, "handle", None)
    upload_id = getattr(msg, "upload_id", None)
    if handle is None and isinstance(upload_id, str):
        handle = handle_of_upload_id(app[CONFIG].internal_secret, upload_id)
    if not isinstance(handle, str):
        return None
    holder = await app[LEASES].holder(handle)
    if (holder is None or await app[STATE].get_file(handle) is not None
            or await app[STATE].was_deleted(handle)):
        return None
    return FileAtPop(handle, holder)


async def _dispatch(app: web.Application, msg: wire.Message) -> wire.Message:
    files = app[FILES]
    match msg:
        case wire.FileStored(handle=handle, size=size, etag=etag):
            return wire.FileReply(await files.stored(handle, size, etag))
        case wire.FileFailed(handle=handle, reason=reason):
            return wire.FileReply(await files.failed(handle, reason))
        case wire.FileOverwritten(handle=handle, size=size, etag=etag, mimetype=mimetype):
            return wire.FileReply(await files.overwritten(handle, size, etag, mimetype))
        case wire.DeleteFile(handle=handle, skip_storage=skip_storage):
            return wire.FileReply(await files.delete(handle, skip_storage=skip_storage))
        case wire.CompleteUpload(upload_id=upload_id, parts=parts, tags=tags, pop=pop):
            held = {int(number): int(size) for number, size in parts}
            return wire.FileReply(await app[MULTIPART].complete(upload_id, held, tags, pop))
        case wire.PartStored(upload_id=upload_id, part=part, size=size, etag=etag, pop=pop):
            return wire.FileReply(await app[MULTIPART].part_stored(upload_id, part, size,
                                                                   etag, pop))
        case wire.LookupUpload(upload_id=upload_id):
            upload = await app[MULTIPART].get(upload_id)
            return wire.UploadReply(record=await files.get(upload.handle), upload=upload)
        case wire.LookupUploadParts(upload_id=upload_id):
            upload, recorded = await app[MULTIPART].parts(upload_id)
            return wire.UploadPartsReply(record=await files.get(upload.handle),
                                         upload=upload, parts=recorded)
        case wire.LookupUploadOfFile(handle=handle):
            record = await files.get(handle)
            upload, recorded = await app[MULTIPART].of_file(handle)
            return wire.UploadPartsReply(record=record, upload=upload, parts=recorded)
        case wire.LookupFile(handle=handle):
            return wire.FileReply(await files.get(handle))
        case wire.PopHeartbeat():
            await app[HEARTBEATS].heard(msg)
            app[COORDINATOR_METRICS].heartbeat(msg.pop)  # a configured POP: heard() checks
            return wire.Ack()
        case wire.LeaseHandles(pop=pop, count=count):
            block = await app[LEASES].grant(pop, count)
            return wire.HandleLease(block=block.block, size=block.size, pop=block.pop)
        case wire.EventBatch():
            return await app[POP_BATCHES].apply(msg)
        case wire.GetMetadata(handle=handle, query=query):
            record = await files.get(handle)
            fields = requested_fields(query)
            return wire.MetadataReply(await build_metadata(record, fields, app[HASHES]))
    raise CinError(Code.BAD_MESSAGE, f"the coordinator does not take {msg.TYPE!r}")


def add_routes(app: web.Application) -> None:
    app.router.add_post(RPC_PATH, handle_rpc)
