"""A closed-loop load: N clients, each on its own keep-alive connection, sending its next
request as soon as the last is answered, for a bounded time and count. What the small
stores and the coordinator's RPCs are measured with."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bench.clients import client_cpu_seconds
from bench.http import Connection
from bench.processes import Process
from bench.report import percentile

MAX_REQUESTS = 200_000  # per load, whatever the time

# One request on a connection; the int numbers the requests of the load, from 0.
Send = Callable[[Connection, int], Awaitable[object]]


@dataclass(frozen=True)
class Load:
    rate: float  # answered requests per second
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # per request, the servers' processes together
    client_cpu_ms: float


async def closed_loop(url: str | Sequence[str], clients: int, seconds: float,
                      servers: Sequence[Process], send: Send, *, warmup: float) -> Load:
    """`clients` connections sending with `send` for `warmup` and then `seconds` more;
    only the requests answered after the warm-up are counted. `send` raises on a
    request that did not succeed. Several URLs (servers sharing the work) take the
    connections in turn."""
    urls = [url] if isinstance(url, str) else list(url)
    latencies: list[float] = []
    counting = False
    numbers = itertools.count()
    stop_at = time.monotonic() + warmup + seconds

    async def client(url: str) -> None:
        connection = Connection.to(url)
        try:
            while time.monotonic() < stop_at and len(latencies) < MAX_REQUESTS:
                began = time.perf_counter()
                await send(connection, next(numbers))
                if counting:
                    latencies.append(time.perf_counter() - began)
        finally:
            await connection.close()

    tasks = [asyncio.create_task(client(urls[n % len(urls)])) for n in range(clients)]
    await asyncio.sleep(warmup)
    counting = True
    cpu, server_cpu = client_cpu_seconds(), sum(p.cpu_seconds() for p in servers)
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    count = max(len(latencies), 1)
    return Load(rate=len(latencies) / elapsed,
                p50_ms=percentile(latencies, 0.50) * 1000,
                p99_ms=percentile(latencies, 0.99) * 1000,
                server_cpu_ms=(sum(p.cpu_seconds() for p in servers) - server_cpu) / count
                * 1000,
                client_cpu_ms=(client_cpu_seconds() - cpu) / count * 1000)
