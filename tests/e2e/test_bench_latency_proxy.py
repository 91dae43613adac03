"""bench/latency_proxy.py, the link the `wan` benchmark puts between a POP and the
coordinator, as the benchmark runs it: its own process, in front of a server on the
test's loop. A figure measured through it is only as good as its round trip.

Timing is checked by lower bounds (no byte may arrive before its time), which a loaded
machine cannot break, and by a loose upper bound.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
from support import REPO, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

RTT = 0.1
SLACK = 1.0  # seconds past the expected time still taken as on time, on a busy machine


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """Echoes what each connection sends, and ends its side at the client's EOF."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@contextmanager
def latency_proxy(target: int) -> Iterator[int]:
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_proxy", "--port", str(port), "--target",
         str(target), "--rtt", str(RTT), "--loop", "asyncio"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
        assert "latency proxy: ready" in line, line + proxy.stdout.read()
        yield port
    finally:
        proxy.terminate()
        proxy.wait(10)


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     payload: bytes) -> float:
    began = time.monotonic()
    writer.write(payload)
    await writer.drain()
    assert await reader.readexactly(len(payload)) == payload
    return time.monotonic() - began


async def test_each_exchange_waits_the_round_trip_and_a_new_connection_one_more() -> None:
    async with echo_server() as target:
        with latency_proxy(target) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            first = await round_trip(reader, writer, b"hello")
            later = [await round_trip(reader, writer, b"again") for _ in range(3)]
            writer.write_eof()
            assert await reader.read() == b""  # the end passes through, both ways
            writer.close()

    assert 2 * RTT <= first < 2 * RTT + SLACK  # the handshake's round trip, then the request's
    for took in later:
        assert RTT <= took < RTT + SLACK


async def test_the_bytes_arrive_whole_and_in_order() -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # many reads and queued pieces each way
    async with echo_server() as target:
        with latency_proxy(target) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await round_trip(reader, writer, payload)
            writer.close()
