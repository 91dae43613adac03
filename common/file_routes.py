"""The read side of the File API, served alike by POPs and the coordinator.

Download and metadata, under the API routes (`/api/file/{handle}`) and the CDN routes
the SDKs call (`/{handle}`, `/{handle}/metadata`). Where the file record comes from is
the only difference between the two services, so it is a small injected protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from common.download import serve_file
from common.errors import CinError, Code
from common.files import FileRecord
from common.locations import StorageSet
from common.naming import HANDLE_PATTERN, is_handle
from common.status import FileStatus


class FileSource(Protocol):
    async def lookup(self, handle: str) -> FileRecord: ...

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]: ...


FILE_SOURCE = web.AppKey("file_source", FileSource)
FILE_STORAGE = web.AppKey("file_storage", StorageSet)


def _handle(request: web.Request) -> str:
    handle = request.match_info["handle"]
    if not is_handle(handle):
        raise CinError(Code.FILE_NOT_FOUND, handle[:64])
    return handle


async def download(request: web.Request) -> web.StreamResponse:
    record = await request.app[FILE_SOURCE].lookup(_handle(request))
    if record.status is FileStatus.FAILED:
        raise CinError(Code.FILE_NOT_FOUND, f"{record.handle} failed to upload")
    if record.status is not FileStatus.COMPLETE:
        # Serving In Transit files from the POP's spool arrives with the multipart API.
        raise CinError(Code.CONFLICT, f"{record.handle} is {record.status.value}, not stored yet")
    storage = request.app[FILE_STORAGE][record.storage]
    return await serve_file(request, storage, record)


async def metadata(request: web.Request) -> web.Response:
    fields = await request.app[FILE_SOURCE].metadata(_handle(request), request.query)
    return web.json_response(fields)


def add_routes(app: web.Application) -> None:
    # The API routes take any handle-looking segment so that a wrong one is a JSON 404;
    # the CDN routes match real handles only, so they never shadow other routes.
    app.router.add_get("/api/file/{handle}", download)
    app.router.add_get("/api/file/{handle}/metadata", metadata)
    app.router.add_get(f"/{{handle:{HANDLE_PATTERN}}}", download)
    app.router.add_get(f"/{{handle:{HANDLE_PATTERN}}}/metadata", metadata)
