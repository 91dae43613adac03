"""The Upload API at the coordinator: `POST /multipart/start`.

The coordinator picks the POP the bytes go to and answers it as `location_url`; the
steps after start are the POP's.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from common.request_auth import request_credentials
from common.upload_api import read_json
from common.upload_start import start_message, start_reply
from coordinator.keys import CONFIG, UPLOADS


async def start(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    fields = await read_json(request)
    message = start_message(config, fields, request_credentials(request, fields), pop=None,
                            origin=f"coordinator:{secrets.token_hex(12)}")
    record, upload = await request.app[UPLOADS].start(message)
    return web.json_response(start_reply(config, record, upload))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/multipart/start", start)
