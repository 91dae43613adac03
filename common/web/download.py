"""Serve a file's bytes over HTTP: type, length, ETag, ranges, attachment.

`serve_file` serves a Complete file from the bucket. `serve_bytes` is what it shares with
a POP's In Transit downloads (edge/downloads/transit_download.py), which read the spool instead:
the headers, revalidation, the one `Range` we serve, and streaming from any `Body`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from common.protocol.errors import CinError, Code
from common.protocol.flags import query_flag
from common.protocol.ranges import parse_range
from common.protocol.records import FileRecord
from common.storage import ByteRange, Storage, StorageError


class Body(Protocol):
    """A download's bytes, open for its byte range (an `ObjectReader` is one)."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


# Opens the bytes of the range a request asked for (None: all of them). Raised before the
# headers are sent, a CinError is still the client's JSON answer.
OpenBody = Callable[[ByteRange | None], Awaitable[Body]]


def content_disposition(filename: str, attachment: bool) -> str:
    kind = "attachment" if attachment else "inline"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def file_headers(record: FileRecord, etag: str, *, attachment: bool) -> dict[str, str]:
    return {
        "Content-Type": record.mimetype,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(record.filename, attachment),
        "Cache-Control": "private, max-age=0, must-revalidate",
        # Uploaded HTML or SVG must not run as a page of this origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag`. The comparison is weak (RFC 9110 13.1.2):
    `W/"x"` and `"x"` match, so a weak In Transit tag revalidates like a strong one."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


async def serve_file(
    request: web.Request, storage: Storage, record: FileRecord
) -> web.StreamResponse:
    """A Complete file, from the bucket."""
    info = await storage.head(record.container, record.key)
    if record.etag is not None and info.etag != record.etag:
        raise CinError(Code.FILE_GONE, "another upload replaced the object at this key")

    async def open_body(byte_range: ByteRange | None) -> Body:
        return await storage.get(record.container, record.key, byte_range)

    return await serve_bytes(request, record, etag=f'"{info.etag}"', size=info.size,
                             open_body=open_body)


async def serve_bytes(request: web.Request, record: FileRecord, *, etag: str, size: int,
                      open_body: OpenBody) -> web.StreamResponse:
    """Answer a download of `size` bytes: 304, 416, a HEAD, or the (ranged) bytes."""
    attachment = query_flag(request.query, "dl") is True
    headers = file_headers(record, etag, attachment=attachment)
    if not_modified(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    try:
        byte_range = parse_range(request.headers.get("Range"), size)
    except CinError as exc:
        refusal = web.json_response(exc.to_json(), status=exc.status)
        refusal.headers["Content-Range"] = f"bytes */{size}"
        return refusal

    status = 200
    length = size
    if byte_range is not None:
        status = 206
        length = byte_range.length
        headers["Content-Range"] = f"bytes {byte_range.first}-{byte_range.last}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD":
        await response.prepare(request)
        return response

    body = await open_body(byte_range)
    try:
        await response.prepare(request)
        sent = 0
        async for chunk in body.chunks():
            await response.write(chunk)
            sent += len(chunk)
    except (StorageError, CinError):
        sent = -1
    finally:
        await body.close()
    if sent != length:
        # The source failed mid-stream, or the object changed under us (an overwrite): the
        # headers are gone, so the only honest signal left is to cut the connection, and
        # the client does not take a torn file for a whole one.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
