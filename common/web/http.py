"""HTTP plumbing both services share: the error middleware and small request helpers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.protocol.errors import CinError, Code
from common.web.request_body import body_chunks

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
    """Every failure becomes a JSON body from the error table; never a stack trace."""
    try:
        return await handler(request)
    except CinError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like pass through
        code = _STATUS_CODES.get(exc.status, Code.BAD_PARAMETER)
        detail = f"{request.method} {request.path}" if code in (
            Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED) else exc.reason
        return web.json_response(CinError(code, detail).to_json(), status=exc.status)
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        return error_response(CinError(Code.BAD_PARAMETER, f"unreadable body: {exc}"))
    except (ConnectionResetError, TimeoutError):
        raise  # the client went away; there is nobody to answer
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(CinError(Code.INTERNAL))


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
    body = await read_bounded(request, MAX_JSON_BODY_BYTES)
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CinError(Code.BAD_PARAMETER, f"the body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CinError(Code.BAD_PARAMETER, "the body must be a JSON object")
    return value
