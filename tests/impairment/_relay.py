"""A TCP relay on loopback in front of one target, on an event loop of its own in a
thread, so that synchronous and asynchronous tests alike can put it in front of a real
process or of a server on their own loop.

It accepts, dials the target, hands both ends to `_relay` (what a subclass does to the
bytes), and ends the pair: closed when `_relay` returns, reset (RST) when it raises. It
can end TLS on either side (`server_ssl`, `target_ssl`) for a subclass that needs to
see requests; otherwise TLS passes through like any bytes. Every wait is bounded and
`close` leaves no task, connection or thread behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

TIMEOUT = 10.0  # seconds for the relay to start, dial its target, or close
HOST = "127.0.0.1"


class Reset(Exception):
    """Raised in `_relay` to end both sides of a connection with a reset."""


@dataclass(eq=False)
class Connection:
    """A client's connection and the relay's own connection to the target for it."""

    client_in: asyncio.StreamReader
    client_out: asyncio.StreamWriter
    server_in: asyncio.StreamReader
    server_out: asyncio.StreamWriter

    def reset(self) -> None:
        """End both sides at once with an RST, as a broken network does: no FIN, and
        whatever is still buffered is thrown away."""
        for writer in (self.client_out, self.server_out):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # closed by the peer: nothing to reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def close(self) -> None:
        self.client_out.close()
        self.server_out.close()


class Relay:
    def __init__(self, target_port: int, *, port: int = 0, target_host: str = HOST,
                 server_ssl: ssl.SSLContext | None = None,
                 target_ssl: ssl.SSLContext | None = None) -> None:
        self.target = (target_host, target_port)
        self._port = port
        self._server_ssl = server_ssl
        self._target_ssl = target_ssl
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"relay-{target_port}",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._closing = False
        self._open: dict[Connection, asyncio.Task[None]] = {}  # and their handlers
        self._handlers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """Where clients connect (chosen at start when 0 was asked for)."""
        return self._port

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> Self:
        self._thread.start()
        try:
            self._server = self.call(asyncio.start_server(
                self._accept, HOST, self._port, ssl=self._server_ssl))
        except BaseException:  # the port is taken, say: no thread is left behind
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
            raise
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        """Stop accepting, reset what is open, and end the loop and its thread."""
        if self._thread.ident is None:  # never started
            self._loop.close()
            return
        if not self._thread.is_alive():
            return
        try:
            self.call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the relay to port {self.target[1]} did not stop")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        # In a thread: the caller's loop may serve the target, which must keep running
        # while the relay resets its connections.
        await asyncio.to_thread(self.close)

    def reset_connections(self) -> None:
        """Reset every open connection at once, as a network that drops everything:
        after a test, so that no connection left over still takes the link's bytes."""

        async def reset() -> None:
            for connection in self._open:
                connection.reset()
            if self._open:
                await asyncio.wait(self._open.values(), timeout=TIMEOUT)

        if self.running:
            self.call(reset())

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the relay's loop and wait for it (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(TIMEOUT)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    async def _shutdown(self) -> None:
        self._closing = True
        assert self._server is not None
        self._server.close()
        for connection in self._open:
            connection.reset()
        await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True),
                               TIMEOUT)
        await self._server.wait_closed()
        # A handler the server started while closing, before it could register: none
        # should be left, and none may outlive the loop.
        left = asyncio.all_tasks() - {asyncio.current_task()}
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    # ---------------------------------------------------------------- connections

    async def _accept(self, client_in: asyncio.StreamReader,
                      client_out: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            if self._closing:
                client_out.transport.abort()
                return
            try:
                server_in, server_out = await self._dial()
            except (OSError, TimeoutError):
                client_out.transport.abort()  # as a target that refuses
                return
            connection = Connection(client_in, client_out, server_in, server_out)
            self._open[connection] = handler
            try:
                await self._relay(connection)
            except (Reset, OSError, asyncio.IncompleteReadError):
                connection.reset()  # asked for, or the network's doing
            except BaseException:
                connection.reset()
                raise
            else:
                connection.close()
            finally:
                del self._open[connection]
        finally:
            self._handlers.discard(handler)

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connection to the target for a client that has just connected."""
        return await asyncio.wait_for(asyncio.open_connection(
            *self.target, ssl=self._target_ssl,
            server_hostname=self.target[0] if self._target_ssl else None), TIMEOUT)

    async def _relay(self, connection: Connection) -> None:
        """Move bytes both ways until both are done; raise to reset the connection."""
        raise NotImplementedError

    @staticmethod
    async def run_all(*work: Coroutine[Any, Any, None]) -> None:
        """Run `work` together until all end; the first to fail cancels the others and
        its error is raised."""
        tasks = [asyncio.ensure_future(w) for w in work]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
