"""What an operator sees of each request: its id, and one access log line.

Every answer carries `X-Request-Id`: the client's own, when it sent a sane one (so that a
request can be followed through a client's logs, a proxy's and cin's), or one made here.
The access log (logger `cin.access`, off with `access_log: false`) has one line per
request, written by aiohttp once the answer is sent (or the client has gone):

    POST /api/store/{provider} 200 in=1048576 out=424 0.532s id=5f0c2a9e41d7b3c8 from=10.0.0.7

the route is the pattern the request matched, never its path (which holds handles and
keys), "-" for none; `in` is the bytes of the request body, `out` those sent (headers
included); the status of a client that hung up first is 499. The same figures go to the
app's Prometheus metrics (common/web/metrics.py), when it has them.

While a request runs its id is the context's request id (common/web/log_context.py), so
every other line it causes carries it as well, and a POP passes it to the coordinator on
each RPC it makes for the request: the coordinator takes it as its own request's id.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from common.protocol.errors import Code
from common.web.log_context import REQUEST_ID_VAR
from common.web.metrics import METRICS

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", str)
NO_ROUTE = "-"

# What a proxy or an SDK may send: UUIDs, hex, base64 and dotted ids; nothing that could
# break a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

access_logger = logging.getLogger("cin.access")


def request_id(request: web.BaseRequest) -> str:
    """The request's id, taken from the client or made on first use."""
    if REQUEST_ID in request:
        return request[REQUEST_ID]
    given = request.headers.get(REQUEST_ID_HEADER, "")
    made = given if _SANE_ID.fullmatch(given) else secrets.token_hex(8)
    request[REQUEST_ID] = made
    return made


def route_of(request: web.BaseRequest) -> str:
    """The resource pattern the request matched (`/api/file/{handle}`), or "-"."""
    route: str = request.get(ROUTE, NO_ROUTE)
    return route


@web.middleware
async def _note_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = request[ROUTE] = resource.canonical if resource is not None else NO_ROUTE
    # Reset after: a keep-alive connection's task runs its next request, and the lines
    # between requests, in this same context.
    token = REQUEST_ID_VAR.set(request_id(request))
    metrics = request.app.get(METRICS)
    if metrics is None:
        try:
            return await handler(request)
        finally:
            REQUEST_ID_VAR.reset(token)
    started = time.perf_counter()
    status = Code.INTERNAL.status  # what an error that escapes the error middleware is
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = Code.CLIENT_CLOSED.status
        raise
    except web.HTTPException as exc:  # a redirect the error middleware lets through
        status = exc.status
        raise
    finally:
        REQUEST_ID_VAR.reset(token)
        metrics.observe_request(request.method, route, status, time.perf_counter() - started,
                                request.content.total_bytes)


async def _send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    # Here rather than in a middleware: a download's headers leave when its handler
    # prepares the response, before any middleware sees it.
    response.headers[REQUEST_ID_HEADER] = request_id(request)


class AccessLog(AbstractAccessLogger):
    """aiohttp's access logger, writing cin's line (see the module docstring)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d in=%d out=%d %.3fs id=%s from=%s", request.method,
                         route_of(request), response.status, request.content.total_bytes,
                         response.body_length, time, request_id(request), request.remote,
                         extra={"request_id": request_id(request)})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def install(app: web.Application) -> None:
    """Note each request's route and id, and send the id back; first in the chain, so
    that the error middleware's log lines can name them."""
    app.middlewares.insert(0, _note_request)
    app.on_response_prepare.append(_send_request_id)
