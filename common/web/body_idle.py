"""The body idle timeout: a request body that sends no byte for too long is given up.

aiohttp times nothing out while a handler reads a request body, and cin reads bodies in
many ways (a raw stream, chunked, a multipart form, a url-encoded form, JSON, msgpack, a
part or a chunk, a body relayed to a POP). Every one of them reads through the request's
`StreamReader`, and that reader runs a timer context around each wait for bytes not yet
received (the slot aiohttp's client fills with its read timeout). So one middleware,
installed once per app, sets a timer there for every request with a body:

* it runs only while a reader waits with nothing left to read, so a node slow to write
  what it has read (and so not reading on) is never taken for a client that stalls;
* when it expires, the stream fails with `BodyStalled`: the reader raises it wherever it
  waits, the handler unwinds as it would for a client that hangs up (a half-written spool,
  object or chunk is removed, a Started file recorded Failed), and the error middleware
  answers `408 body_timeout` if the client is still there to hear it;
* it is disarmed once the handler returns.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import web
from aiohttp.helpers import BaseTimerContext
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Middleware

from common.protocol.errors import CinError, Code
from common.web.http import Handler


class BodyStalled(CinError, TimeoutError):
    """No byte of the request body came for `seconds`.

    A CinError, so that the client hears `408 body_timeout`; a TimeoutError as well,
    because that is what aiohttp expects of a body read that timed out: when it reads
    off the rest of an unfinished body after the answer, it then closes the connection
    quietly instead of logging an unhandled error.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(Code.BODY_TIMEOUT, f"no byte of the body arrived for {seconds:g} s")


class IdleTimer(BaseTimerContext):
    """Entered by the stream each time a reader starts to wait for bytes, left when it
    has them (or fails)."""

    __slots__ = ("_armed", "_expiry", "_received", "_seconds", "_stream")

    def __init__(self, stream: StreamReader, seconds: float) -> None:
        self._stream = stream
        self._seconds = seconds
        self._armed = True
        self._expiry: asyncio.TimerHandle | None = None
        self._received = 0

    def __enter__(self) -> BaseTimerContext:
        if self._armed:
            self._received = self._stream.total_bytes
            self._expiry = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        self._cancel()

    def disarm(self) -> None:
        self._armed = False
        self._cancel()

    def _cancel(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _expire(self) -> None:
        self._expiry = None
        # Bytes (or the end) may have come in the same turn of the loop, before the
        # waiting reader ran again: then the client did not stall.
        if self._stream.total_bytes != self._received or self._stream.is_eof():
            return
        self._stream.set_exception(BodyStalled(self._seconds))


def watch(stream: StreamReader, seconds: float) -> IdleTimer:
    """Fail `stream` with BodyStalled once a read of it has waited `seconds` for bytes."""
    timer = IdleTimer(stream, seconds)
    # The one slot aiohttp leaves for timing a body read; on a server request it holds a
    # timer that does nothing.
    stream._timer = timer
    return timer


def middleware(seconds: float) -> Middleware:
    @web.middleware
    async def body_idle_timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        timer = watch(request.content, seconds)
        try:
            return await handler(request)
        finally:
            # What aiohttp reads of the body after the answer (to keep the connection
            # usable) is bounded by aiohttp itself.
            timer.disarm()

    return body_idle_timeout


def install(app: web.Application, seconds: float) -> None:
    """Time out the body of every request to `app`; install it inside the error
    middleware, which turns the stall into its answer."""
    app.middlewares.append(middleware(seconds))
