"""The Upload API's bytes at a POP: part URLs, part and chunk PUTs, and FII commits.

`/multipart/upload` answers a URL on this POP signed for one upload, part, offset and
size (edge/multipart/part_urls.py); the PUT to it writes the bytes at that offset in the part
spool, fsync'd and journaled before the 200 and its `ETag` (the chunk's MD5, which for a
regular part is the part's). The 200 also says how fast the body came and what chunk
size would take the target time at that rate (`Cin-Throughput`, `Cin-Next-Chunk-Size`:
common/protocol/chunk_sizer.py), for the SDKs' chunk sizing. `/multipart/commit` (Intelligent
Ingestion) checks that a part's chunks leave no gap, and may be repeated. A part sent
whole, or committed, goes to the bucket at once (edge/multipart/part_transfer.py).
Complete and status need the start's credentials; part URLs and commits check those sent
(common/protocol/upload_access.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from common.config import AppConfig
from common.protocol.chunk_sizer import NEXT_CHUNK_HEADER, THROUGHPUT_HEADER, suggest_chunk_size
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.part_status import status_reply
from common.protocol.records import FileRecord, file_url, upload_closed
from common.protocol.security import Credentials
from common.protocol.upload_access import authorize_upload, check_sent
from common.protocol.upload_api import CommitRequest, CompleteRequest, PartRequest, UploadIds
from common.web.http import read_json
from common.web.request_auth import app_of, request_credentials
from edge.keys import CONFIG, EDGE_METRICS, PART_SPOOL, POP, TRANSFER, UPLOADS
from edge.multipart.part_urls import new_target, verify_target
from edge.multipart.uploads import KnownUpload

READ_BYTES = 256 * 1024


async def _upload_of(request: web.Request, ids: UploadIds, *,
                     finished_ok: bool = False) -> KnownUpload:
    """The upload a request names, if the apikey is its app's and it is still open (or,
    for a repeated complete, finished)."""
    known = await request.app[UPLOADS].find(ids.upload_id)
    if known.record.apikey != ids.apikey:
        raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
    status = known.record.status
    if status is FileStatus.FAILED:
        # Expired or refused: whatever this POP still holds of it is of no use.
        await request.app[PART_SPOOL].remove_upload(ids.upload_id)
    if status is not FileStatus.STARTED and not (
            finished_ok and status in (FileStatus.IN_TRANSIT, FileStatus.COMPLETE)):
        raise upload_closed(known.record, known.upload)
    return known


def _credentials(request: web.Request, fields: Mapping[str, Any],
                 record: FileRecord) -> tuple[AppConfig, Credentials]:
    return app_of(request.app[CONFIG], record), request_credentials(request, fields)


async def part_url(request: web.Request) -> web.Response:
    fields = await read_json(request)
    part = PartRequest.parse(fields)
    known = await _upload_of(request, part.ids)
    record, upload = known.record, known.upload
    check_sent(*_credentials(request, fields, record), record)
    if part.offset + part.size > record.size:
        raise CinError(Code.BAD_PARAMETER, "the chunk ends past the end of the file")
    await request.app[PART_SPOOL].open_upload(upload.upload_id, {
        "record": record.to_wire(), "upload": upload.to_wire(), "local": known.local})
    # A regular part comes whole in one PUT; it can go to the bucket once written.
    whole = not part.fii and part.offset == 0
    target = new_target(upload.upload_id, part.part, part.offset, part.size, part.md5,
                        whole=whole)
    url = target.url(request.app[POP].public_url, request.app[CONFIG].internal_secret)
    headers = {"Content-MD5": part.md5} if part.md5 else {}
    return web.json_response({"url": url, "headers": headers, "location_url": url})


class _BodyClock:
    """From the request's headers to its body's last byte: the time the client took to
    send the body, without the fsync and journal write that follow it."""

    def __init__(self) -> None:
        self.started = time.monotonic()  # the headers are in: the body starts now
        self.ended = self.started

    async def timed(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for piece in body:
            self.ended = time.monotonic()
            yield piece

    def hints(self, size: int) -> dict[str, str]:
        """`Cin-Throughput` and `Cin-Next-Chunk-Size`, for an SDK's chunk sizer."""
        throughput = size / max(self.ended - self.started, 1e-6)
        return {THROUGHPUT_HEADER: str(int(throughput)),
                NEXT_CHUNK_HEADER: str(suggest_chunk_size(throughput))}


async def put_part(request: web.Request) -> web.Response:
    target = verify_target(request.query, request.app[CONFIG].internal_secret)
    spool = request.app[PART_SPOOL]
    clock = _BodyClock()
    try:
        receipt = await spool.write_chunk(
            target.upload_id, target.part, target.offset,
            clock.timed(request.content.iter_chunked(READ_BYTES)), target.size, target.md5)
    except CinError as error:
        if error.code is not Code.FILE_NOT_FOUND:
            raise
        raise await _not_spooled(request, target.upload_id, error) from error
    if target.whole:
        finished = await spool.finish_part(target.upload_id, target.part)
        await request.app[TRANSFER].part_arrived(target.upload_id, finished)
    return web.json_response({"part": receipt.part, "offset": receipt.offset,
                              "size": receipt.size},
                             headers={"ETag": f'"{receipt.md5_hex}"',
                                      **clock.hints(receipt.size)})


async def _not_spooled(request: web.Request, upload_id: str, error: CinError) -> CinError:
    """The answer to a PUT for an upload the spool does not hold (the spool never
    recreates one): why it is gone when it ended (it expired), rather than only that it
    is not here."""
    try:
        known = await request.app[UPLOADS].find(upload_id)
    except CinError:
        return error
    if known.record.status is FileStatus.STARTED:
        return error
    return upload_closed(known.record, known.upload)


async def commit(request: web.Request) -> web.Response:
    fields = await read_json(request)
    committed = CommitRequest.parse(fields)
    known = await _upload_of(request, committed.ids)
    record, upload = known.record, known.upload
    check_sent(*_credentials(request, fields, record), record)
    spool = request.app[PART_SPOOL]
    finished = await spool.finish_part(upload.upload_id, committed.part)
    md5 = await spool.part_md5(finished)
    await request.app[TRANSFER].part_arrived(upload.upload_id, finished)
    return web.json_response({"part": finished.part, "size": finished.size},
                             headers={"ETag": f'"{md5}"'})


async def complete(request: web.Request) -> web.Response:
    """Every part is sent: answered 200 as soon as the bytes are durable (In Transit),
    before they reach the bucket, and, for an upload started here, without asking the
    coordinator. Never 202: filestack-python fails on it."""
    fields = await read_json(request)
    done = CompleteRequest.parse(fields)
    known = await _upload_of(request, done.ids, finished_ok=True)
    record, upload = known.record, known.upload
    authorize_upload(*_credentials(request, fields, record), record)
    if record.status is FileStatus.STARTED:
        spool = request.app[PART_SPOOL]
        # The parts held here. Parts the client sent to another POP must be stored by
        # now; the coordinator checks that together they make the whole file.
        numbers = await spool.part_numbers(upload.upload_id)
        finished = [await spool.finish_part(upload.upload_id, n) for n in numbers]
        for part in finished:
            # Only parts the client lists carry an ETag; those came whole, in one PUT,
            # so their MD5 is the PUT's receipt and nothing is read again here.
            given = done.parts.get(part.part)
            if given and given != await spool.part_md5(part):
                raise CinError(Code.CONFLICT, f"part {part.part}'s ETag is not {given}")
        record = await request.app[UPLOADS].complete(
            known, {part.part: part.size for part in finished}, done.tags)
        transfer = request.app[TRANSFER]
        if record.status is FileStatus.IN_TRANSIT:
            transfer.dispatch(KnownUpload(record, upload, known.local), finished)
        elif record.status is FileStatus.COMPLETE:
            # Every part went to the bucket before the client completed: no report is
            # left to answer Complete, so the spool is freed here.
            await transfer.complete(record, upload)
        request.app[EDGE_METRICS].upload("upload_api", record.status)
    config = request.app[CONFIG]
    return web.json_response({
        "handle": record.handle,
        "url": file_url(config.coordinator.public_url, record.handle),
        "filename": record.filename,
        "size": record.size,
        "mimetype": record.mimetype,
        "status": "Stored" if record.status is FileStatus.COMPLETE else "InTransit",
        "key": record.key,
        "container": record.container,
        "upload_tags": dict(record.tags),
    })


async def status(request: web.Request) -> web.Response:
    """Which parts are stored (from any POP) and which this POP holds: see
    common/protocol/part_status.py. An upload started here is described by this POP
    alone: every part it took stays in its spool until the file is done."""
    fields = await read_json(request)
    ids = UploadIds.parse(fields)
    uploads = request.app[UPLOADS]
    known = await uploads.find(ids.upload_id)
    if known.record.apikey != ids.apikey:
        raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
    authorize_upload(*_credentials(request, fields, known.record), known.record)
    spool = request.app[PART_SPOOL]
    held: dict[int, int] = {}
    if await spool.upload_meta(ids.upload_id) is not None:
        for number in await spool.part_numbers(ids.upload_id):
            held[number] = (await spool.part_state(ids.upload_id, number)).contiguous
    if known.local:
        recorded = request.app[TRANSFER].stored_parts(known.upload.upload_id)
    else:
        recorded = await uploads.recorded_parts(known)
    return web.json_response(status_reply(known.record, known.upload, recorded, held,
                                          request.app[POP].name))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/multipart/upload", part_url)
    app.router.add_put("/multipart/part", put_part)
    app.router.add_post("/multipart/commit", commit)
    app.router.add_post("/multipart/complete", complete)
    app.router.add_post("/multipart/status", status)
