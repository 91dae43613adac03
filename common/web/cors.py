"""CORS, so that web pages of the configured origins can use cin from a browser.

A browser lets a page read an answer from another origin only if the answer says so, and
asks first (a preflight `OPTIONS`) before any request a plain form could not send: every
JSON call, the part `PUT` with its `Content-MD5`, every tus request. Two pieces:

* a middleware, first in the chain, that answers preflights itself: 204 with what cin
  accepts for an allowed origin, a 403 JSON error for any other, never the route's
  handler. An `OPTIONS` without `Access-Control-Request-Method` is no preflight and goes
  to the router, where tus answers its capability discovery.
* an `on_response_prepare` hook that marks every answer to an allowed origin readable.
  A middleware would miss answers made outside it (a raised `HTTPException` aiohttp turns
  into a response, a handler's 500) and could not touch a download's headers, which are
  sent when the handler prepares its `StreamResponse`; the hook runs inside `prepare`,
  just before the headers leave, for all of them.

No credentials mode: cin's clients authenticate with an apikey, a policy and signature
in the request, or an `Authorization` header the page sets itself, never with cookies,
so `Access-Control-Allow-Credentials` is not sent and `*` stays usable.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from aiohttp import hdrs, web

from common.config import CorsConfig, normalize_origin
from common.protocol.errors import CinError, Code
from common.web.http import Handler, error_response

ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Headers cin's clients set: the Upload API and the File API (JSON bodies, part MD5s,
# basic auth, conditional and range downloads), tus 1.0 with its extensions, and the
# tracing headers filestack-js adds to its API calls (src/lib/request/helpers/data.ts).
ALLOW_HEADERS = (
    "Content-Type", "Content-MD5", "Authorization", "Range", "If-None-Match",
    "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Concat",
    "Upload-Defer-Length", "Upload-Checksum", "X-HTTP-Method-Override", "X-Requested-With",
    "Filestack-Source", "Filestack-Trace-Id", "Filestack-Trace-Span", "X-Request-Id",
    "Cin-Apikey",
)

# Response headers a page may read beyond the few every browser shows: the part ETag the
# Upload API's regular mode needs, what tus clients read from HEAD, POST and OPTIONS, and
# what a download's caller wants to know about the bytes, the chunk-size hints of a
# part PUT (common/protocol/chunk_sizer.py), and the id to quote in a support request.
EXPOSE_HEADERS = (
    "ETag", "Location", "Upload-Offset", "Upload-Length", "Tus-Resumable", "Upload-Expires",
    "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Tus-Version",
    "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
    "Content-Range", "Content-Length", "Content-Disposition",
    "Cin-Throughput", "Cin-Next-Chunk-Size", "Cin-Handle", "X-Request-Id",
)


class CorsPolicy:
    """Which origins are allowed, and the headers that say so."""

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        self._origins = frozenset(config.origins)
        self._preflight_headers = {
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(ALLOW_METHODS),
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOW_HEADERS),
            hdrs.ACCESS_CONTROL_MAX_AGE: str(config.max_age),
        }

    def allow_origin(self, origin: str) -> str | None:
        """The `Access-Control-Allow-Origin` for a request from `origin`, None if refused.
        The origin is echoed as sent: a browser compares it with its own, byte for byte."""
        if self.config.any_origin:
            return "*"
        return origin if normalize_origin(origin) in self._origins else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (request.method != hdrs.METH_OPTIONS or origin is None
                or hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers):
            return await handler(request)
        if self.allow_origin(origin) is None:
            return error_response(CinError(Code.ORIGIN_NOT_ALLOWED, origin[:200]))
        # The allow-origin itself is added by `on_response_prepare`, like on any answer.
        return web.Response(status=204, headers=self._preflight_headers)

    async def on_response_prepare(self, request: web.Request,
                                  response: web.StreamResponse) -> None:
        # The answer depends on the origin: a shared cache must not hand one made without
        # the allow-origin to an allowed page, or one made for one page to another.
        add_vary_origin(response.headers)
        origin = request.headers.get(hdrs.ORIGIN)
        allowed = self.allow_origin(origin) if origin is not None else None
        if allowed is None:
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSE_HEADERS)


def add_vary_origin(headers: MutableMapping[str, str]) -> None:
    """Add `Origin` to `Vary`, keeping what a handler put there."""
    current = headers.get(hdrs.VARY)
    if current is None:
        headers[hdrs.VARY] = hdrs.ORIGIN
        return
    names = {name.strip().lower() for name in current.split(",")}
    if "*" not in names and "origin" not in names:
        headers[hdrs.VARY] = f"{current}, {hdrs.ORIGIN}"


CORS = web.AppKey("cors", CorsPolicy)


def install(app: web.Application, config: CorsConfig) -> None:
    """Add CORS to a cin app; with no origins configured, nothing at all. The middleware
    goes first, before the error and drain middlewares: a preflight is answered even while
    the node drains, and then the request itself gets the drain's 503, readable."""
    if not config.enabled:
        return
    policy = CorsPolicy(config)
    app[CORS] = policy
    app.middlewares.insert(0, policy.middleware)
    app.on_response_prepare.append(policy.on_response_prepare)
