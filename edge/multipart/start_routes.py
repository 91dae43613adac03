"""The Upload API at a POP: `POST /multipart/start`, answered here.

A start at a POP is checked here, named from the POP's lease and journaled
(edge/multipart/uploads.py): it costs no round trip to the coordinator, and works while
the coordinator is away. The client that called this POP gets it back as `location_url`.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from common.protocol.upload_start import start_message, start_reply
from common.web.http import read_json
from common.web.request_auth import request_credentials
from edge.disk_space import DISK_SPACE
from edge.keys import CONFIG, POP, UPLOADS


async def start(request: web.Request) -> web.Response:
    # A full POP is not handed out by the coordinator: a client that calls it itself is
    # told at once, before it sends its parts here.
    request.app[DISK_SPACE].refuse_if_full()
    config, pop = request.app[CONFIG], request.app[POP]
    fields = await read_json(request)
    message = start_message(config, fields, request_credentials(request, fields),
                            pop=pop.name, origin=f"{pop.name}:{secrets.token_hex(12)}")
    record, upload = await request.app[UPLOADS].start(message)
    return web.json_response(start_reply(config, record, upload))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/multipart/start", start)
