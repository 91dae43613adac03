"""How a cin process takes connections: the clocks that run before a request, the cap on
connections, and the answer to a request that is not HTTP.

aiohttp gives each connection a `RequestHandler` (its protocol). cin's listening sites
make `GuardedRequestHandler`s instead, which add to aiohttp's own:

* keep-alive (aiohttp's `keepalive_timeout`, set from `timeouts.keep_alive`): a connection
  with no request under way is closed, counting from when it opened or its last answer;
* a header clock (`timeouts.header`): a header block that has begun must end within it,
  or the connection is closed, so a client trickling header lines (slowloris) is dropped
  without waiting out the keep-alive;
* the connection count behind `max_connections`: past it, a new connection is answered
  `503 too_many_connections` at once and closed, never queued;
* cin's JSON error, `400 malformed_http`, instead of aiohttp's plain text when aiohttp's
  parser refuses a request (a bad request line, an over-long line, too many headers, a bad
  Content-Length), logged at INFO without a traceback: it is the client's doing.

The body idle timeout is the apps' own (`common.web.body_idle`): it needs the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.config import Config, Listen
from common.protocol.errors import CinError, Code
from common.web.request_body import SERVER_ARGS
from common.web.request_log import REQUEST_ID_HEADER, AccessLog, access_logger, request_id

log = logging.getLogger("cin.connections")

# How long a refused connection is kept to read off what the client already sent: closing
# a socket with unread bytes resets it, and the reset can destroy the 503 on its way.
REFUSAL_LINGER_SECONDS = 1.0
# At most one warning this often while connections are being refused.
REFUSAL_WARNING_INTERVAL = 10.0


class ConnectionCap:
    """The client connections one process holds, against `max_connections`; shared by
    every site of the process (`cin dev` runs three services in one)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._refused = 0
        self._warned_at = -REFUSAL_WARNING_INTERVAL

    @property
    def full(self) -> bool:
        return self.open >= self.limit

    def refuse(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= REFUSAL_WARNING_INTERVAL:
            log.warning("refusing new connections with 503: %d open, max_connections %d "
                        "(%d refused since the last warning)", self.open, self.limit,
                        self._refused)
            self._warned_at, self._refused = now, 0


def handler_options(config: Config) -> dict[str, Any]:
    """aiohttp `RequestHandler` settings from the config. The site builds its handlers
    itself, so the apps' own `handler_args` (`SERVER_ARGS`: no inflating by aiohttp)
    must come in here too, or a real process would inflate what the app tests do not."""
    return {**SERVER_ARGS,
            "keepalive_timeout": config.timeouts.keep_alive,
            "access_log_class": AccessLog,
            "access_log": access_logger if config.access_log else None}


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, with the header clock, the count and the JSON errors
    described in the module docstring."""

    __slots__ = ("_cap", "_counted", "_header_clock", "_header_seconds")

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 cap: ConnectionCap, header_seconds: float, **options: Any) -> None:
        super().__init__(manager, loop=loop, **options)
        self._cap = cap
        self._counted = False
        self._header_seconds = header_seconds
        self._header_clock: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._cap.open += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._cap.open -= 1
            self._counted = False
        self._stop_header_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_request():
            self._stop_header_clock()  # a whole header block is in, or a body is arriving
        elif data and self._header_clock is None:
            self._header_clock = self._loop.call_later(self._header_seconds,
                                                       self._header_stalled)

    def _awaiting_request(self) -> bool:
        """Between requests, the next one not yet whole: aiohttp's own test of an idle
        connection (`RequestHandler._process_keepalive`), or a new connection whose first
        bytes came before aiohttp started to wait for them."""
        waiter = self._waiter
        if waiter is None:
            return self._request_count == 0 and not self._messages
        return not waiter.done()

    def _stop_header_clock(self) -> None:
        if self._header_clock is not None:
            self._header_clock.cancel()
            self._header_clock = None

    def _header_stalled(self) -> None:
        self._header_clock = None
        if self._awaiting_request():
            log.info("closed a connection from %s: its request's header block did not end "
                     "within %g s", _peer(self.peername), self._header_seconds)
            self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request its parser refused (or, never in cin, a handler
        that raised past the error middleware): the same JSON as every other error."""
        if request.writer.output_size > 0:  # as aiohttp: an answer was already under way
            raise ConnectionError("the answer was already being sent")
        ident = request_id(request)
        if status >= 500:
            log.error("answered %d to %s: %s; id %s", status, request.remote, exc, ident,
                      exc_info=exc)
            error = CinError(Code.INTERNAL)
        else:
            detail = " ".join((message or str(exc) or "").split())[:200]
            log.info("malformed HTTP from %s: %s; id %s", request.remote, detail, ident)
            error = CinError(Code.MALFORMED_HTTP, detail or None)
        response = web.json_response(error.to_json(), status=status,
                                     headers={REQUEST_ID_HEADER: ident})
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError | HttpProcessingError | ConnectionError):
            # A body framed wrongly or cut off, met while aiohttp read off the rest of a
            # body after the answer: the client's doing, and the connection is closed.
            log.info("dropped a connection from %s: %s", _peer(self.peername), exc)
            return
        super().log_exception(*args, **kwargs)


class _Refusal(asyncio.Protocol):
    """A connection past the cap: answered 503 at once, read off and closed."""

    ANSWER = CinError(Code.TOO_MANY_CONNECTIONS).to_json()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closing: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        body = json.dumps(self.ANSWER).encode()
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\n"
                        b"Content-Type: application/json; charset=utf-8\r\n"
                        b"Retry-After: 1\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if transport.can_write_eof():
            transport.write_eof()
        self._closing = self._loop.call_later(REFUSAL_LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # the request is not taken

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closing is not None:
            self._closing.cancel()


class GuardedSite(web.BaseSite):
    """A TCP listener (TLS if given a context) whose connections are guarded as above."""

    __slots__ = ("_cap", "_header_seconds", "_listen", "_options")

    def __init__(self, runner: web.BaseRunner, listen: Listen, config: Config,
                 cap: ConnectionCap, *, ssl_context: Any = None) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._listen = listen
        self._cap = cap
        self._header_seconds = config.timeouts.header
        self._options = handler_options(config)

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self._listen}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def accept() -> asyncio.Protocol:
            if self._cap.full:
                self._cap.refuse()
                return _Refusal(loop)
            return GuardedRequestHandler(server, loop=loop, cap=self._cap,
                                         header_seconds=self._header_seconds, **self._options)

        self._server = await loop.create_server(accept, self._listen.host, self._listen.port,
                                                ssl=self._ssl_context, backlog=self._backlog)


def _peer(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
