"""The Upload API's bytes at a POP: part URLs, part and chunk PUTs, and FII commits.

`/multipart/upload` answers a URL on this POP signed for one upload, part, offset and
size (common/part_urls.py); the PUT to it writes the bytes at that offset in the part
spool, fsync'd and journaled before the 200 and its `ETag` (the chunk's MD5, which for a
regular part is the part's). `/multipart/commit` (Intelligent Ingestion) checks that a
part's chunks leave no gap, and may be repeated.
"""

from __future__ import annotations

from aiohttp import web

from common import wire
from common.errors import CinError, Code
from common.files import FileRecord, UploadRecord
from common.part_urls import new_target, verify_target
from common.status import FileStatus
from common.upload_api import CommitRequest, PartRequest, UploadIds, read_json
from edge.keys import CONFIG, COORDINATOR, PART_SPOOL, POP

READ_BYTES = 256 * 1024


async def _upload_of(request: web.Request, ids: UploadIds) -> tuple[FileRecord, UploadRecord]:
    """The upload a request names, if the apikey is its app's and it is still open."""
    reply = await request.app[COORDINATOR].call(wire.LookupUpload(upload_id=ids.upload_id),
                                                wire.UploadReply)
    if reply.record.apikey != ids.apikey:
        raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
    if reply.record.status is not FileStatus.STARTED:
        raise CinError(Code.CONFLICT, f"the upload is {reply.record.status.value}")
    return reply.record, reply.upload


async def part_url(request: web.Request) -> web.Response:
    part = PartRequest.parse(await read_json(request))
    record, upload = await _upload_of(request, part.ids)
    if part.offset + part.size > record.size:
        raise CinError(Code.BAD_PARAMETER, "the chunk ends past the end of the file")
    await request.app[PART_SPOOL].open_upload(upload.upload_id, {
        "record": record.to_wire(), "upload": upload.to_wire()})
    target = new_target(upload.upload_id, part.part, part.offset, part.size, part.md5)
    url = target.url(request.app[POP].public_url, request.app[CONFIG].internal_secret)
    headers = {"Content-MD5": part.md5} if part.md5 else {}
    return web.json_response({"url": url, "headers": headers, "location_url": url})


async def put_part(request: web.Request) -> web.Response:
    target = verify_target(request.query, request.app[CONFIG].internal_secret)
    receipt = await request.app[PART_SPOOL].write_chunk(
        target.upload_id, target.part, target.offset,
        request.content.iter_chunked(READ_BYTES), target.size, target.md5)
    return web.json_response({"part": receipt.part, "offset": receipt.offset,
                              "size": receipt.size},
                             headers={"ETag": f'"{receipt.md5_hex}"'})


async def commit(request: web.Request) -> web.Response:
    committed = CommitRequest.parse(await read_json(request))
    _, upload = await _upload_of(request, committed.ids)
    finished = await request.app[PART_SPOOL].finish_part(upload.upload_id, committed.part)
    return web.json_response({"part": finished.part, "size": finished.size},
                             headers={"ETag": f'"{finished.md5_hex}"'})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/multipart/upload", part_url)
    app.router.add_put("/multipart/part", put_part)
    app.router.add_post("/multipart/commit", commit)
