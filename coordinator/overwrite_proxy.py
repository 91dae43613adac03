"""Overwrite at the coordinator: the bytes are handed, as they arrive, to a POP.

Taking bytes is the POPs' work (spool, size limits, store-from-URL), but a file's link
points at the coordinator, and a client overwrites at the link it has. So the
coordinator streams the request through to a POP and relays its answer, never holding
more than one read of the body.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from common.protocol.errors import CinError, Code
from common.web.request_log import REQUEST_ID_HEADER, request_id
from coordinator.keys import POPS, SESSION

log = logging.getLogger("cin.coordinator.proxy")

# The request headers a POP needs to read the body and the credentials the same way. The
# body goes on as it came, still encoded (the coordinator does not inflate bodies): the
# POP inflates it and refuses a broken stream, and that answer is relayed. Not
# Content-Length: the body goes on chunked, and the POP counts it as it arrives.
_FORWARDED = ("Content-Type", "Content-Encoding", "Authorization")
MAX_REPLY_BYTES = 64 * 1024  # a POP's JSON answer
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)


async def overwrite(request: web.Request) -> web.StreamResponse:
    headers = {name: request.headers[name] for name in _FORWARDED if name in request.headers}
    # The POP's lines for the overwrite, and its calls back here, under this request's id.
    headers[REQUEST_ID_HEADER] = request_id(request)
    session = request.app[SESSION]
    for pop in request.app[POPS].by_preference():
        url = pop.public_url + request.path_qs
        try:
            async with session.post(url, data=request.content, headers=headers,
                                    timeout=TIMEOUT, allow_redirects=False) as reply:
                body = await reply.content.read(MAX_REPLY_BYTES)
                return web.Response(body=body, status=reply.status,
                                    content_type=reply.content_type)
        except aiohttp.ClientConnectorError as exc:
            # Nothing of the body was sent yet: the next POP can take it whole.
            log.warning("POP %s unreachable for an overwrite: %s", pop.name, exc)
            continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            if (failed := request.content.exception()) is not None:
                # The client's body failed (it stalled, or was malformed) while it was
                # relayed: that is the answer, not the POP, which only lost its sender.
                raise failed from exc
            log.warning("POP %s failed during an overwrite: %s", pop.name, exc)
            raise CinError(Code.POP_UNAVAILABLE, f"{pop.name} failed mid-request") from exc
    raise CinError(Code.POP_UNAVAILABLE, "none of the POPs answered")
