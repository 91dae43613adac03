"""HTTP plumbing both services share: the error middleware and small request helpers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.errors import CinError, Code

log = logging.getLogger("cin.http")

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
    """The whole body, however many reads it takes, refused past `limit` bytes."""
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise CinError(Code.BAD_PARAMETER, f"the body is over {limit} bytes")
    return bytes(body)


def query_flag(query: Mapping[str, str], name: str) -> bool | None:
    """A boolean query parameter: None when absent; true/1/yes or bare (`?dl`) is True,
    false/0/no is False; anything else is a 400. Every route reads flags through this."""
    raw = query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise CinError(Code.BAD_PARAMETER, f"{name} must be true or false, not {raw[:40]!r}")

