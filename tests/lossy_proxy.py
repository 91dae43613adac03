"""A TLS proxy that loses one answer, as a network that fails between client and server.

It stands between a client and a TLS server on loopback and forwards each connection's
bytes both ways, unchanged, except for the first request that starts with `lose` (say
`PUT /multipart/part`): that request reaches the server whole, and its connection is
dropped as the server's answer starts back, so the client never hears it. One answer is
lost, no more, so whatever the client does next gets through.

It ends TLS on each side (the server's certificate for the client, the test CA for the
server), as it must to see where a request starts. It loses an answer rather than cutting
a request half-sent because filestack-js 4.3 on Node can crash its process on a reset
while it is still writing a body (an 'error' event nothing listens to): a flaw of the
SDK, which a test of cin should not trip over by chance.

It runs its own event loop in a thread, so synchronous tests can put it in front of a
real process.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from types import TracebackType

READ_BYTES = 64 * 1024


class _Drop(Exception):
    """The connection is to be dropped here."""


class LossyProxy:
    def __init__(self, port: int, target_port: int, *, lose: bytes, certificate: Path,
                 ca: Path) -> None:
        self.port = port
        self.target_port = target_port
        self.lose = lose
        self.lost = 0  # answers lost so far: at most one
        self._marked: asyncio.StreamWriter | None = None  # the client whose answer to lose
        self._as_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._as_server.load_cert_chain(certificate)
        self._as_client = ssl.create_default_context(cafile=ca)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", self.port,
                                 ssl=self._as_server), self._loop).result(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.transport.abort()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _connection(self, client_in: asyncio.StreamReader,
                          client_out: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            server_in, server_out = await asyncio.open_connection(
                "127.0.0.1", self.target_port, ssl=self._as_client,
                server_hostname="127.0.0.1")
        except OSError:
            client_out.transport.abort()
            self._handlers.discard(handler)
            return
        self._open.update((client_out, server_out))
        pumps = {asyncio.ensure_future(self._requests(client_in, server_out, client_out)),
                 asyncio.ensure_future(self._answers(server_in, client_out))}
        done, running = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        if any(pump.exception() for pump in done):  # dropped here, or reset by either side
            # Aborted, not closed: the connection ends at once, with no orderly goodbye.
            client_out.transport.abort()
            server_out.transport.abort()
            await asyncio.gather(*running, return_exceptions=True)
        else:
            client_out.close()
            server_out.close()
        self._open.difference_update((client_out, server_out))
        self._handlers.discard(handler)

    async def _requests(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                        client: asyncio.StreamWriter) -> None:
        head = b""
        while data := await source.read(READ_BYTES):
            if len(head) < len(self.lose):
                head += data[:len(self.lose)]
                if self._marked is None and head.startswith(self.lose):
                    self._marked = client
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()

    async def _answers(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(READ_BYTES):
            if sink is self._marked and not self.lost:
                self.lost += 1
                raise _Drop
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
