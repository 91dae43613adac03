"""Serve a stored file over HTTP: type, length, ETag, ranges, attachment."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from common.errors import CinError, Code
from common.files import FileRecord
from common.http import query_flag
from common.ranges import parse_range
from common.storage import Storage, StorageError


def content_disposition(filename: str, attachment: bool) -> str:
    kind = "attachment" if attachment else "inline"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "'")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def serve_file(
    request: web.Request, storage: Storage, record: FileRecord
) -> web.StreamResponse:
    attachment = query_flag(request.query, "dl") is True
    try:
        info = await storage.head(record.container, record.key)
    except StorageError as exc:
        raise exc.to_cin_error() from exc
    if record.etag is not None and info.etag != record.etag:
        raise CinError(Code.FILE_GONE, "another upload replaced the object at this key")
    etag = f'"{info.etag}"'
    headers = {
        "Content-Type": record.mimetype,
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(record.filename, attachment),
        "Cache-Control": "private, max-age=0, must-revalidate",
        # Uploaded HTML or SVG must not run as a page of this origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    if etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    try:
        byte_range = parse_range(request.headers.get("Range"), info.size)
    except CinError as exc:
        refusal = web.json_response(exc.to_json(), status=exc.status)
        refusal.headers["Content-Range"] = f"bytes */{info.size}"
        return refusal

    status = 200
    length = info.size
    if byte_range is not None:
        status = 206
        length = byte_range.length
        headers["Content-Range"] = f"bytes {byte_range.first}-{byte_range.last}/{info.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD":
        await response.prepare(request)
        return response

    try:
        reader = await storage.get(record.container, record.key, byte_range)
    except StorageError as exc:
        raise exc.to_cin_error() from exc
    try:
        await response.prepare(request)
        sent = 0
        async for chunk in reader.chunks():
            await response.write(chunk)
            sent += len(chunk)
    except StorageError:
        sent = -1
    finally:
        await reader.close()
    if sent != length:
        # The bucket failed mid-stream, or the object changed under us (an overwrite): the
        # headers are gone, so the only honest signal left is to cut the connection, and
        # the client does not take a torn file for a whole one.
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response
