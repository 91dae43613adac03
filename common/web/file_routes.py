"""The File API, served alike by POPs and the coordinator.

Download, metadata and delete, under the API routes (`/api/file/{handle}`) and the CDN
routes the SDKs call (`/{handle}`, `/{handle}/metadata`, `/security=p:..,s:../{handle}`,
`/{apikey}/[security=../]{handle}`). Every route authorizes against the app the file
belongs to. Where the file record comes from, how an overwrite's bytes are taken, and
who serves a file while it is In Transit (or, at the coordinator, only Started) are the
only differences between the two services: small injected protocols (`FileSource`,
`InTransitServer`) and a handler.

A file a POP took on its own is there before the coordinator hears of it: a `FileSource`
answers such a handle with `FileAtPop`, naming the POP that holds it. Downloads and
metadata are then sent there (`FILE_AT_POP`, a redirect as for an In Transit file; 503
FILE_AT_POP when that POP cannot serve): never a 404 for a file a client was told exists.
Delete and overwrite answer the 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from common.config import Config
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.file_status import FileStatus
from common.protocol.flags import is_flag_value, query_flag
from common.protocol.naming import HANDLE_PATTERN, is_handle
from common.protocol.records import FileRecord
from common.protocol.security import Action
from common.storage.storage_set import StorageSet
from common.web.download import serve_file
from common.web.http import Handler
from common.web.in_transit import HolderRedirect, InTransitServer
from common.web.request_auth import SECURITY_SEGMENT, authorize_file


class FileSource(Protocol):
    async def lookup(self, handle: str) -> FileRecord: ...

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]: ...

    async def delete(self, handle: str, *, skip_storage: bool) -> FileRecord: ...


FILE_CONFIG = web.AppKey("file_config", Config)
FILE_SOURCE = web.AppKey("file_source", FileSource)
FILE_STORAGE = web.AppKey("file_storage", StorageSet)
FILE_IN_TRANSIT = web.AppKey("file_in_transit", InTransitServer)
# Who sends reads of a file at a POP to it; by default a redirect with no news of the
# POPs' health (the coordinator sets one that knows it).
FILE_AT_POP = web.AppKey("file_at_pop", HolderRedirect)
# Who answers a download of a file that is Started here, where another node may know
# better: the coordinator asks the file's POP (`HolderRedirect.started`). Absent where
# nobody knows more than this node (a POP): 409, not stored yet.
FILE_STARTED = web.AppKey("file_started", InTransitServer)

APIKEY_PATTERN = "[A-Za-z0-9_-]{8,64}"


def request_handle(request: web.Request) -> str:
    handle = request.match_info["handle"]
    if not is_handle(handle):
        raise CinError(Code.FILE_NOT_FOUND, handle[:64])
    return handle


async def find_file(request: web.Request) -> FileRecord:
    """The file a File API request names, if the apikey given is its own."""
    record = await request.app[FILE_SOURCE].lookup(request_handle(request))
    check_apikey(request, record)
    return record


def check_apikey(request: web.Request, record: FileRecord) -> None:
    """An apikey given with a request (query `key`, or the CDN path) must be the file's
    own: another app's file is as good as missing."""
    key = request.query.get("key")
    if key is not None and is_flag_value(key):
        key = None  # `key=true` asks metadata for the storage key; it names no app
    apikey = request.match_info.get("apikey") or key or request.query.get("apikey")
    if apikey and apikey != record.apikey:
        raise CinError(Code.FILE_NOT_FOUND, record.handle)


def to_holder(request: web.Request, at_pop: FileAtPop) -> web.StreamResponse:
    """A read of a file its POP has not reported yet, sent to that POP. Authorized there:
    only the holder knows the file's app (its handle is unguessable: leased, with a MAC)."""
    holders = request.app.get(FILE_AT_POP) or HolderRedirect(request.app[FILE_CONFIG])
    return holders.to_pop(request, at_pop)


async def download(request: web.Request) -> web.StreamResponse:
    try:
        record = await find_file(request)
    except FileAtPop as at_pop:
        return to_holder(request, at_pop)
    authorize_file(request, request.app[FILE_CONFIG], record, Action.read(record.handle))
    return await serve_record(request, record)


async def serve_record(request: web.Request, record: FileRecord) -> web.StreamResponse:
    """An authorized download, as the file's status allows: from the bucket once Complete,
    by the app's `InTransitServer` while In Transit, by its `FILE_STARTED` (if any) while
    Started."""
    if record.status is FileStatus.FAILED:
        raise CinError(Code.FILE_NOT_FOUND, f"{record.handle} failed to upload")
    if record.status is FileStatus.IN_TRANSIT:
        return await request.app[FILE_IN_TRANSIT](request, record)
    if record.status is FileStatus.STARTED and FILE_STARTED in request.app:
        return await request.app[FILE_STARTED](request, record)
    if record.status is not FileStatus.COMPLETE:
        raise CinError(Code.CONFLICT, f"{record.handle} is {record.status.value}, not stored yet")
    storage = request.app[FILE_STORAGE][record.storage]
    return await serve_file(request, storage, record)


async def metadata(request: web.Request) -> web.StreamResponse:
    try:
        record = await find_file(request)
    except FileAtPop as at_pop:
        return to_holder(request, at_pop)
    wants_exif = query_flag(request.query, "exif") is True
    action = Action.exif(record.handle) if wants_exif else Action.stat(record.handle)
    authorize_file(request, request.app[FILE_CONFIG], record, action)
    fields = await request.app[FILE_SOURCE].metadata(record.handle, request.query)
    return web.json_response(fields)


async def delete(request: web.Request) -> web.Response:
    # A file the coordinator has not heard of yet is 503 file_at_pop, not a redirect: a
    # 302 turns a DELETE into a GET in some clients (python-requests), which would read
    # the file and report it deleted.
    record = await find_file(request)
    authorize_file(request, request.app[FILE_CONFIG], record, Action.remove(record.handle))
    skip_storage = query_flag(request.query, "skip_storage") is True
    await request.app[FILE_SOURCE].delete(record.handle, skip_storage=skip_storage)
    return web.json_response({"handle": record.handle, "deleted": True,
                              "skip_storage": skip_storage})


def add_routes(app: web.Application, overwrite: Handler) -> None:
    """The File API routes; `overwrite` is the service's own way of taking new bytes."""
    # The API routes take any handle-looking segment so that a wrong one is a JSON 404;
    # the CDN routes match real handles only, so they never shadow other routes.
    app.router.add_get("/api/file/{handle}", download)
    app.router.add_post("/api/file/{handle}", overwrite)
    app.router.add_delete("/api/file/{handle}", delete)
    app.router.add_get("/api/file/{handle}/metadata", metadata)
    handle = f"{{handle:{HANDLE_PATTERN}}}"
    # A standard-alphabet policy may hold `/`, so the security value may span segments.
    security = f"security={{{SECURITY_SEGMENT}:.+}}"
    apikey = f"{{apikey:{APIKEY_PATTERN}}}"
    for prefix in ("", f"/{security}", f"/{apikey}", f"/{apikey}/{security}"):
        app.router.add_get(f"{prefix}/{handle}", download)
    app.router.add_get(f"/{handle}/metadata", metadata)
    app.router.add_get(f"/{security}/{handle}/metadata", metadata)
