"""`cin dev --coordinators N`: several coordinators behind the one address the config
gives the coordinator, as a load balancer puts them in a deployment.

Each new connection goes to the next coordinator in turn that accepts it (one that
refuses is passed over, as a load balancer's health check would); bytes pass unchanged
both ways. A development aid: a deployment puts its own load balancer in front.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from collections.abc import Sequence

from cin.serve import StartError
from common.config import Listen

log = logging.getLogger("cin.dev")

READ_BYTES = 64 * 1024
DIAL_TIMEOUT = 2.0  # seconds a coordinator may take to accept a connection


def free_listens(host: str, count: int) -> list[Listen]:
    """`count` addresses on `host` that nothing listens on now, for the coordinators."""
    found = []
    for _ in range(count):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            found.append(Listen(host, int(probe.getsockname()[1])))
    return found


class DevBalancer:
    def __init__(self, listen: Listen, backends: Sequence[Listen]) -> None:
        self.listen = listen
        self.backends = list(backends)
        self._turn = itertools.cycle(range(len(self.backends)))
        self._connections: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.listen.host,
                                                      self.listen.port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartError(f"coordinator: cannot listen on {self.listen}: {reason}") from exc
        log.info("coordinators %s behind %s", ", ".join(map(str, self.backends)), self.listen)

    async def stop(self) -> None:
        """Stop taking connections and cut the ones open (their coordinators are
        stopping too)."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, client_in: asyncio.StreamReader,
                      client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            dialled = await self._dial()
            if dialled is None:
                client_out.transport.abort()
                return
            server_in, server_out = dialled
            try:
                await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))
            except OSError:
                server_out.transport.abort()
                client_out.transport.abort()
            finally:
                server_out.close()
                client_out.close()
        finally:
            self._connections.discard(task)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        first = next(self._turn)
        for offset in range(len(self.backends)):
            backend = self.backends[(first + offset) % len(self.backends)]
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), DIAL_TIMEOUT)
            except (OSError, TimeoutError):
                log.warning("coordinator at %s is not answering; trying the next", backend)
        return None


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(READ_BYTES):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()
