"""HTTP plumbing both services share: the error middleware and small request helpers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.protocol.errors import CinError, Code
from common.protocol.upload_api import parse_body
from common.storage import StorageError
from common.web.request_body import body_chunks
from common.web.request_log import request_id, route_of

log = logging.getLogger("cin.http")

_READ_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {
    400: Code.BAD_PARAMETER,
    403: Code.UNKNOWN_APIKEY,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.TOO_LARGE,
    416: Code.RANGE_NOT_SATISFIABLE,
}


def error_response(error: CinError) -> web.Response:
    return web.json_response(error.to_json(), status=error.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON body from the error table; never a stack trace. Every
    5xx is logged at ERROR with its cause; a client that hangs up, at INFO."""
    try:
        return await handler(request)
    except CinError as error:
        return _answer(request, error)
    except StorageError as exc:
        # The one place a storage failure becomes an answer: a handler lets it escape
        # unless it decides something on it (a NOT_FOUND meaning "already gone").
        mapped = exc.to_cin_error()
        mapped.__cause__ = exc
        return _answer(request, mapped)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like pass through
        code = _STATUS_CODES.get(exc.status, Code.BAD_PARAMETER)
        detail = f"{request.method} {request.path}" if code in (
            Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED) else exc.reason
        return web.json_response(CinError(code, detail).to_json(), status=exc.status)
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        return error_response(CinError(Code.BAD_PARAMETER, f"unreadable body: {exc}"))
    except Exception as exc:
        if isinstance(exc, ConnectionError) and request.transport is None:
            # Nobody to answer, and nothing wrong here: what the request had begun was
            # undone on the way out, as for any failure.
            log.info("%s %s: the client hung up after %d bytes of the body (%s); id %s",
                     request.method, route_of(request), request.content.total_bytes,
                     exc, request_id(request))
            return error_response(CinError(Code.CLIENT_CLOSED))
        log.exception("unhandled error in %s %s (%s); id %s", request.method,
                      route_of(request), request.path, request_id(request))
        return error_response(CinError(Code.INTERNAL))


def _answer(request: web.Request, error: CinError) -> web.Response:
    if error.status >= 500:
        cause = error.__cause__
        log.error("%s %s answered %d %s: %s%s; id %s", request.method, route_of(request),
                  error.status, error.code.wire, error,
                  f" (from {type(cause).__name__}: {cause})" if cause is not None else "",
                  request_id(request))
    return error_response(error)


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole (decoded) body, however many reads it takes, refused past `limit` bytes."""
    body = bytearray()
    async for chunk in body_chunks(request, _READ_BYTES):
        body += chunk
        if len(body) > limit:
            raise CinError(Code.BAD_PARAMETER, f"the body is over {limit} bytes")
    return bytes(body)


# An Upload API body: a complete request lists up to 10,000 parts.
MAX_JSON_BODY_BYTES = 256 * 1024


async def read_json(request: web.Request) -> dict[str, Any]:
    return parse_body(await read_bounded(request, MAX_JSON_BODY_BYTES))
