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

It is a `Relay` (tests/impairment/): its own event loop in a thread, so synchronous
tests can put it in front of a real process.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from impairment import Connection, Relay, Reset

READ_BYTES = 64 * 1024


class LossyProxy(Relay):
    def __init__(self, port: int, target_port: int, *, lose: bytes, certificate: Path,
                 ca: Path) -> None:
        as_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        as_server.load_cert_chain(certificate)
        super().__init__(target_port, port=port, server_ssl=as_server,
                         target_ssl=ssl.create_default_context(cafile=ca))
        self.lose = lose
        self.lost = 0  # answers lost so far: at most one
        self._marked: asyncio.StreamWriter | None = None  # the client whose answer to lose

    async def _relay(self, connection: Connection) -> None:
        # A lost answer is a reset: the connection ends at once, with no orderly goodbye.
        await self.run_all(
            self._requests(connection.client_in, connection.server_out, connection.client_out),
            self._answers(connection.server_in, connection.client_out))

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
                raise Reset
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
