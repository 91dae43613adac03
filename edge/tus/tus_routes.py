"""tus 1.0 at a POP: `/files/` (creation) and `/files/{id}` (HEAD, PATCH, DELETE), with
OPTIONS for capability discovery. Headers are parsed in common/protocol/tus.py; what
happens to the bytes is edge/tus/tus_uploads.py's.

Every answer under `/files` carries `Tus-Resumable` (an error too); a 412 also says which
versions cin speaks. The app's credentials and policy are checked at creation: the
apikey in Upload-Metadata (`apikey`), the `key` query parameter or a `Cin-Apikey` header;
policy and signature in Upload-Metadata or the query; the app secret as basic auth. From
then on the upload's URL, unguessable, is what lets a client go on with it.
"""

from __future__ import annotations

import contextlib
import secrets

from aiohttp import hdrs, web

from common.protocol import tus
from common.protocol.errors import CinError, Code
from common.web.request_auth import request_credentials
from edge.disk_space import DISK_SPACE
from edge.keys import CONFIG, POP
from edge.tus.byte_source import READ_BYTES, ByteSource, file_chunks, stage_body
from edge.tus.one_shot import carries_whole_file, store_whole
from edge.tus.tus_state import TusEnd, TusUpload
from edge.tus.tus_uploads import HANDLE_HEADER, TUS_UPLOADS, TusUploads, metadata_header

APIKEY_HEADER = "Cin-Apikey"


def _max_size(request: web.Request) -> int:
    return max((app.max_upload_size for app in request.app[CONFIG].apps.values()), default=0)


async def options(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={
        "Tus-Version": tus.VERSION,
        "Tus-Extension": ",".join(tus.EXTENSIONS),
        "Tus-Max-Size": str(_max_size(request)),
        "Tus-Checksum-Algorithm": ",".join(tus.CHECKSUM_ALGORITHMS),
    })


def _header_size(request: web.Request, name: str) -> int | None:
    value = request.headers.get(name)
    return None if value is None else tus.parse_size(value, name)


def _url(request: web.Request, upload: TusUpload) -> str:
    return _url_of(request, upload.tus_id)


def _url_of(request: web.Request, tus_id: str) -> str:
    return f"{request.app[POP].public_url}{tus.PREFIX}/{tus_id}"


def _expiry(upload: TusUpload) -> dict[str, str]:
    return {} if upload.ended else {"Upload-Expires": tus.http_date(upload.expires)}


def _handle(upload: TusUpload) -> dict[str, str]:
    return {HANDLE_HEADER: upload.handle} if upload.handle else {}


def _has_body(request: web.Request) -> bool:
    chunked = request.headers.get(hdrs.TRANSFER_ENCODING, "").lower() == "chunked"
    return request.content_type == tus.OFFSET_CONTENT_TYPE and (
        chunked or (request.content_length or 0) > 0)


async def create(request: web.Request) -> web.Response:
    tus.check_version(request.headers.get("Tus-Resumable"))
    request.app[DISK_SPACE].refuse_if_full()
    concat = tus.parse_concat(request.headers.get("Upload-Concat"))
    deferred = tus.parse_defer_length(request.headers.get("Upload-Defer-Length"))
    length = _header_size(request, "Upload-Length")
    if concat is not None and concat.final:
        if length is not None or deferred:
            raise CinError(Code.BAD_PARAMETER, "a final upload's length is its partials' "
                                               "sum: no Upload-Length")
        if _has_body(request):
            raise CinError(Code.FINAL_UPLOAD)
    elif (length is None) == (not deferred):
        raise CinError(Code.BAD_PARAMETER, "Upload-Length, or Upload-Defer-Length: 1 "
                                           "(one of the two)")
    metadata = tus.parse_metadata(request.headers.get("Upload-Metadata"))
    apikey = request.query.get("key") or request.headers.get(APIKEY_HEADER)
    creds = request_credentials(request, tus.credential_fields(metadata))
    uploads = request.app[TUS_UPLOADS]
    if length is not None and carries_whole_file(request, length,
                                                 partial=concat is not None):
        start = uploads.checked_start(metadata, apikey=apikey, creds=creds, size=length)
        stored = await store_whole(request, uploads, start, tus.upload_tags(metadata))
        if stored is not None:
            return web.Response(status=201, headers={
                "Location": _url_of(request, uploads.whole_file_id(stored.handle)),
                "Upload-Offset": str(stored.size), HANDLE_HEADER: stored.handle})
    upload = await uploads.create(length=length, metadata=metadata, apikey=apikey,
                                  creds=creds, concat=concat)
    headers = {"Location": _url(request, upload), **_expiry(upload),
               **_handle(upload)}
    if _has_body(request):  # creation-with-upload
        upload, offset = await _patch_bytes(request, uploads, upload, 0)
        headers.update(_expiry(upload), **_handle(upload), **{"Upload-Offset": str(offset)})
    return web.Response(status=201, headers=headers)


async def head(request: web.Request) -> web.Response:
    tus.check_version(request.headers.get("Tus-Resumable"))
    uploads = request.app[TUS_UPLOADS]
    upload = await uploads.get(request.match_info["tus_id"])
    offset = await uploads.offset(upload)
    if upload.ended is None and offset == upload.length:
        # All its bytes came, but the complete that follows them did not get through:
        # it goes through now, or the client hears 503 and asks again.
        async with uploads.patching(upload.tus_id, None):
            upload = await uploads.settle(await uploads.get(upload.tus_id))
    headers = {"Upload-Offset": str(offset), "Cache-Control": "no-store",
               **metadata_header(upload), **_expiry(upload)}
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.concat is not None:
        headers["Upload-Concat"] = upload.concat.header(request.app[POP].public_url)
    return web.Response(status=200, headers=headers)


async def patch(request: web.Request) -> web.Response:
    tus.check_version(request.headers.get("Tus-Resumable"))
    if request.content_type != tus.OFFSET_CONTENT_TYPE:
        raise CinError(Code.NOT_OFFSET_STREAM, f"Content-Type: {request.content_type}")
    offset = _header_size(request, "Upload-Offset")
    if offset is None:
        raise CinError(Code.BAD_PARAMETER, "Upload-Offset: missing")
    request.app[DISK_SPACE].refuse_if_full()
    uploads = request.app[TUS_UPLOADS]
    upload = await uploads.get(request.match_info["tus_id"])
    upload, offset = await _patch_bytes(request, uploads, upload, offset)
    return web.Response(status=204, headers={"Upload-Offset": str(offset),
                                             **_expiry(upload), **_handle(upload)})


async def _patch_bytes(request: web.Request, uploads: TusUploads, upload: TusUpload,
                       offset: int) -> tuple[TusUpload, int]:
    """The bytes of a PATCH (or of a creation-with-upload) at `offset`, durable before
    this returns; then the upload is settled (completed when it is whole)."""
    if upload.partials:
        raise CinError(Code.FINAL_UPLOAD)
    checksum = tus.parse_checksum(request.headers.get("Upload-Checksum"))
    length = _header_size(request, "Upload-Length")
    async with uploads.patching(upload.tus_id, request.content):
        upload = await uploads.get(upload.tus_id)  # as it is now, under the lock
        if upload.ended is TusEnd.FINISHED:
            current = await uploads.offset(upload)
            if offset != current or request.content_length:
                raise CinError(Code.CONFLICT, f"Upload-Offset is {offset}; the upload is "
                                              f"finished at {current}")
            return upload, current
        if length is not None:
            upload = await uploads.set_length(upload, length)
        size = request.content_length
        if checksum is not None or size is None:
            new_offset = await _staged(request, uploads, upload, offset, checksum,
                                       uploads.room(upload, offset))
        else:
            source = ByteSource(request.content.iter_chunked(READ_BYTES))
            new_offset = await uploads.write(upload, offset, source, size)
        upload = await uploads.settle(upload)
    return upload, new_offset


async def _staged(request: web.Request, uploads: TusUploads, upload: TusUpload, offset: int,
                  checksum: tus.Checksum | None, most: int) -> int:
    """A body with a checksum, or without a length, is written to a scratch file first:
    checked whole (460 and nothing kept when it does not match), then written."""
    if offset != await uploads.offset(upload):
        raise CinError(Code.CONFLICT, f"Upload-Offset is {offset}, the upload is at "
                                      f"{await uploads.offset(upload)}")
    path = uploads.scratch / f"{upload.tus_id}-{secrets.token_hex(6)}"
    try:
        size = await stage_body(request.content.iter_chunked(READ_BYTES), path, most,
                                checksum)
        if request.content_length is not None and size != request.content_length:
            raise CinError(Code.INCOMPLETE_BODY)
        return await uploads.write(upload, offset, ByteSource(file_chunks(path, size)), size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


async def delete(request: web.Request) -> web.Response:
    tus.check_version(request.headers.get("Tus-Resumable"))
    uploads = request.app[TUS_UPLOADS]
    upload = await uploads.get(request.match_info["tus_id"])
    async with uploads.patching(upload.tus_id, None):
        await uploads.terminate(await uploads.get(upload.tus_id))
    return web.Response(status=204)


_OVERRIDES = {"PATCH": patch, "DELETE": delete, "HEAD": head}


async def overridden(request: web.Request) -> web.StreamResponse:
    """`X-HTTP-Method-Override`, for clients behind something that passes only GET and
    POST (tus-js-client's `overridePatchMethod`)."""
    handler = _OVERRIDES.get(request.headers.get("X-HTTP-Method-Override", "").upper())
    if handler is None:
        raise CinError(Code.METHOD_NOT_ALLOWED, "POST on an upload needs "
                                                "X-HTTP-Method-Override: PATCH or DELETE")
    return await handler(request)


async def _tus_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == tus.PREFIX or request.path.startswith(tus.PREFIX + "/"):
        response.headers["Tus-Resumable"] = tus.VERSION
        if response.status == 412:
            response.headers["Tus-Version"] = tus.VERSION


def add_routes(app: web.Application) -> None:
    for path in (tus.PREFIX, tus.PREFIX + "/"):
        app.router.add_post(path, create)
        app.router.add_route("OPTIONS", path, options)
    one = tus.PREFIX + "/{tus_id}"
    app.router.add_route("HEAD", one, head)
    app.router.add_patch(one, patch)
    app.router.add_delete(one, delete)
    app.router.add_post(one, overridden)
    app.router.add_route("OPTIONS", one, options)
    app.on_response_prepare.append(_tus_headers)
