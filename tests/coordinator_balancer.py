"""A TCP load balancer in front of several coordinators, as a deployment puts one.

Each new connection goes to the next coordinator in turn that accepts it: one that is
down (its port refuses, or does not answer the dial in `DIAL_TIMEOUT`) is passed over
for that connection, as a load balancer's health check would. A connection already
open stays with its coordinator, and dies with it. Bytes pass unchanged both ways.

It is a `Relay` (tests/impairment/): its own event loop in a thread, so synchronous and
asynchronous tests alike can put it in front of real processes.
"""

from __future__ import annotations

import asyncio
import collections
import itertools

from impairment import Connection, Relay

READ_BYTES = 64 * 1024
DIAL_TIMEOUT = 1.0


class CoordinatorBalancer(Relay):
    def __init__(self, port: int, backends: list[int]) -> None:
        super().__init__(backends[0], port=port)
        self.backends = backends
        self._turn = itertools.cycle(range(len(backends)))
        # Connections handed to each backend (by port), and dials it refused.
        self.connections: collections.Counter[int] = collections.Counter()
        self.refused: collections.Counter[int] = collections.Counter()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        first = next(self._turn)
        for offset in range(len(self.backends)):
            port = self.backends[(first + offset) % len(self.backends)]
            try:
                dialled = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                 DIAL_TIMEOUT)
            except (OSError, TimeoutError):
                self.refused[port] += 1
                continue
            self.connections[port] += 1
            return dialled
        raise OSError("no coordinator is up")

    async def _relay(self, connection: Connection) -> None:
        await self.run_all(_pipe(connection.client_in, connection.server_out),
                           _pipe(connection.server_in, connection.client_out))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(READ_BYTES):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()
