"""A TCP proxy that puts a long link's round trip between two processes on loopback: what
the `wan` case puts between a POP and the coordinator.

Every byte is held for half the round trip each way, in order, and a new connection
first waits one whole round trip, as TCP's handshake does on a real link (the kernel
accepts a loopback connection at once, so without it a connection a peer opens under
load would cost nothing extra). Nothing else is shaped: no bandwidth limit, no loss.

It runs as a process of its own, so its work takes nothing from the load generator's
event loop and none of it is counted as the servers' CPU.

    python -m bench.latency_proxy --port 8801 --target 8800 --rtt 0.08
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from cin.serve import run

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

HOST = "127.0.0.1"
READ_BYTES = 64 * 1024
QUEUE_CHUNKS = 64  # per direction and connection: at most 4 MiB held in flight
CONNECT_TIMEOUT = 10.0


async def _carry(source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float,
                 not_before: float) -> None:
    """Move bytes from `source` to `sink`, each `delay` seconds after it was read and
    none before loop time `not_before`; then pass the end of the stream on."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

    async def take() -> None:
        while data := await source.read(READ_BYTES):
            await held.put((max(loop.time() + delay, not_before), data))
        await held.put(None)

    async def deliver() -> None:
        while (item := await held.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()

    taking = asyncio.ensure_future(take())
    try:
        await deliver()
        await taking
    finally:
        taking.cancel()


def handler(target_port: int, rtt: float) -> Handler:
    """The connection handler of a proxy to `target_port` adding `rtt` seconds."""

    async def relay(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        # The handshake: the first byte up is due one round trip after the connection.
        opened = loop.time() + rtt
        try:
            server_in, server_out = await asyncio.wait_for(
                asyncio.open_connection(HOST, target_port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            client_out.transport.abort()
            return
        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(_carry(client_in, server_out, rtt / 2, opened + rtt / 2))
                both.create_task(_carry(server_in, client_out, rtt / 2, 0.0))
        except* OSError:
            pass  # one side went away (a reset): so does the other
        finally:
            for writer in (client_out, server_out):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    return relay


async def serve(port: int, target_port: int, rtt: float) -> None:
    server = await asyncio.start_server(handler(target_port, rtt), HOST, port)
    async with server:
        print(f"latency proxy: ready on {HOST}:{port} -> {target_port}, "
              f"{rtt * 1000:.0f} ms round trip", flush=True)
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_proxy")
    parser.add_argument("--port", type=int, required=True, help="where it listens")
    parser.add_argument("--target", type=int, required=True, help="the port it relays to")
    parser.add_argument("--rtt", type=float, required=True,
                        help="seconds of round trip it adds (half each way)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.rtt < 0:
        parser.error("--rtt must be >= 0")
    run(serve(args.port, args.target, args.rtt), args.loop)


if __name__ == "__main__":
    main()
