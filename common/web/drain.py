"""Graceful shutdown that lets uploads in flight finish.

aiohttp's own shutdown stops reading from every connection at once, which cuts off a
request whose body is still arriving. So a cin node first stops listening, then waits
(up to a timeout) for the requests it is serving to end, answering any new request on a
kept-alive connection with a 503 that tells the client to go elsewhere; only then does
aiohttp close the connections.

That 503 closes its connection a moment after it is written. aiohttp would otherwise go
on reading ("lingering") a body still arriving for up to 10 s after the answer, so that
the client gets to see it, and the node's shutdown would wait for that reading; a node on
its way out reads off what arrives for `LAST_ANSWER_LINGER_SECONDS` only (closing a
socket with unread bytes resets it, and the reset can destroy the 503 on its way, as for
a refused connection in common/web/connections.py), then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from common.protocol.errors import CinError, Code
from common.web.http import Handler

# How long a draining node reads off a body still arriving after its 503, before it closes.
LAST_ANSWER_LINGER_SECONDS = 1.0


class Drain:
    """`always_open`: path prefixes still served while draining (the coordinator keeps
    answering POPs, whose own last requests depend on it)."""

    def __init__(self, always_open: tuple[str, ...] = ()) -> None:
        self.always_open = always_open
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.draining and not request.path.startswith(self.always_open):
            return _LastAnswer(request, CinError(Code.SHUTTING_DOWN))
        self.active += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def until_draining(self) -> None:
        """Return once the drain has started: a POP then tells the coordinator at once,
        rather than let it go on handing out a POP that no longer listens."""
        await self._started.wait()

    async def drain(self, grace_seconds: float) -> bool:
        """Refuse new requests and wait for the current ones; False if some outlived it."""
        self.draining = True
        self._started.set()
        # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` can swallow a cancel
        # that arrives just as the event is set.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_seconds):
                await self._idle.wait()
        return self.active == 0


class _LastAnswer(web.Response):
    """An error answer after which the connection is closed at once: `Connection: close`,
    and no lingering over a body still arriving (aiohttp skips it on a connection it has
    been told to close)."""

    def __init__(self, request: web.Request, error: CinError) -> None:
        super().__init__(text=json.dumps(error.to_json()), status=error.status,
                         content_type="application/json")
        self._request = request
        self.force_close()

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        # The answer is with the transport: read off what the client is still sending
        # for a moment, so that the close does not reset the answer away, then close.
        with contextlib.suppress(TimeoutError, OSError, HttpProcessingError):
            async with asyncio.timeout(LAST_ANSWER_LINGER_SECONDS):
                while await self._request.content.readany():
                    pass
        self._request.protocol.force_close()


DRAIN = web.AppKey("drain", Drain)


def install(app: web.Application, always_open: tuple[str, ...] = ()) -> None:
    """Add the drain middleware; it must come after the error middleware."""
    app[DRAIN] = Drain(always_open)
    app.middlewares.append(app[DRAIN].middleware)
