"""The Upload API at the coordinator: `POST /multipart/start` and `/multipart/status`.

The coordinator picks the POP the bytes go to and answers it as `location_url`; the
steps after start are the POP's.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from common.protocol.errors import CinError, Code
from common.protocol.part_status import status_reply
from common.protocol.upload_access import authorize_upload
from common.protocol.upload_api import UploadIds
from common.protocol.upload_start import start_message, start_reply
from common.web.http import read_json
from common.web.request_auth import app_of, request_credentials
from coordinator.keys import CONFIG, FILES, MULTIPART


async def start(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    fields = await read_json(request)
    message = start_message(config, fields, request_credentials(request, fields), pop=None,
                            origin=f"coordinator:{secrets.token_hex(12)}")
    # The peer's own address: X-Forwarded-For is not read, since anyone can send it; a
    # coordinator behind a proxy sees the proxy, and the choice falls to the least load.
    record, upload = await request.app[MULTIPART].start(message, client=request.remote)
    return web.json_response(start_reply(config, record, upload))


async def status(request: web.Request) -> web.Response:
    """Which parts of an upload are stored: see common/protocol/part_status.py."""
    fields = await read_json(request)
    ids = UploadIds.parse(fields)
    upload, recorded = await request.app[MULTIPART].parts(ids.upload_id)
    record = await request.app[FILES].get(upload.handle)
    if record.apikey != ids.apikey:
        raise CinError(Code.FILE_NOT_FOUND, "no upload has this upload_id")
    authorize_upload(app_of(request.app[CONFIG], record), request_credentials(request, fields),
                     record)
    return web.json_response(status_reply(record, upload, recorded))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/multipart/start", start)
    app.router.add_post("/multipart/status", status)
