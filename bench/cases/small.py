"""Small files: 10 KiB REST stores from 1 client and from 50 concurrent clients (each a
keep-alive connection sending its next store as soon as the last is answered), for a
bounded time: stores per second, with the p50 and p99 latency of a store. Target at 50
clients: ≥ 1,500 stores/s with p99 under 100 ms.

A store is answered once the file is in the bucket and recorded Complete: every one is
a coordinator start, a bucket put (fsync'd), and a coordinator report.
The ceiling takes the same requests, each into a new file, with and without fsync.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from bench.cases import Context
from bench.clients import client_cpu_seconds
from bench.http import Connection
from bench.processes import APIKEY, CinNetwork, Process, ceiling, cin_network, started
from bench.report import Figure, Summary, percentile, ratios

CASE = "small"
SIZE = 10 * 1024
CLIENTS = (1, 50)
FULL_SECONDS, QUICK_SECONDS = 8.0, 1.5
WARMUP_SECONDS = 0.5
MAX_REQUESTS = 200_000  # per run, whatever the time
TARGET = "≥ 1,500/s at 50 clients, p99 < 100 ms"
_BODY = os.urandom(SIZE)


@dataclass(frozen=True)
class Load:
    rate: float  # answered requests per second
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # per request
    client_cpu_ms: float


async def closed_loop(url: str, target: str, clients: int, seconds: float,
                      servers: list[Process]) -> Load:
    """`clients` connections, each sending a request as soon as its last was answered,
    for `seconds` after a warm-up; every request must be answered 200."""
    latencies: list[float] = []
    counting = False
    stop_at = time.monotonic() + WARMUP_SECONDS + seconds
    headers = {"Content-Type": "application/octet-stream"}

    async def client() -> None:
        connection = Connection.to(url)
        try:
            while time.monotonic() < stop_at and len(latencies) < MAX_REQUESTS:
                began = time.perf_counter()
                (await connection.request("POST", target, _BODY, headers)).check()
                if counting:
                    latencies.append(time.perf_counter() - began)
        finally:
            await connection.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(WARMUP_SECONDS)
    counting = True
    cpu, server_cpu = client_cpu_seconds(), sum(p.cpu_seconds() for p in servers)
    started_at = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started_at
    count = max(len(latencies), 1)
    return Load(rate=len(latencies) / elapsed,
                p50_ms=percentile(latencies, 0.50) * 1000,
                p99_ms=percentile(latencies, 0.99) * 1000,
                server_cpu_ms=(sum(p.cpu_seconds() for p in servers) - server_cpu) / count
                * 1000,
                client_cpu_ms=(client_cpu_seconds() - cpu) / count * 1000)


def _figure(name: str, loop: str, loads: list[Load], ceiling_loads: list[Load] | None = None,
            against: str | None = None, target: str | None = None) -> Figure:
    return Figure(
        CASE, name, loop, "stores/s" if ceiling_loads else "req/s",
        Summary.of(load.rate for load in loads),
        ratio=ratios([load.rate for load in loads], [load.rate for load in ceiling_loads])
        if ceiling_loads else None,
        against=against, target=target,
        extra={"p50_ms": Summary.of(load.p50_ms for load in loads),
               "p99_ms": Summary.of(load.p99_ms for load in loads),
               "server_cpu_ms": Summary.of(load.server_cpu_ms for load in loads),
               "client_cpu_ms": Summary.of(load.client_cpu_ms for load in loads)})


async def run(ctx: Context) -> list[Figure]:
    seconds = QUICK_SECONDS if ctx.quick else FULL_SECONDS
    runs = min(ctx.runs, 3)  # each run is already thousands of stores
    figures: list[Figure] = []
    for loop in ctx.loops:
        root = ctx.scratch(f"{CASE}-{loop}")
        network = CinNetwork(root / "cin", event_loop=loop)
        ceiling_process, ceiling_url = ceiling(root, loop)
        with started(ceiling_process) as bare, cin_network(network) as (coordinator, pop):
            for clients in CLIENTS:
                loads: dict[str, list[Load]] = {"fsync": [], "plain": [], "cin": []}
                for _ in range(runs):
                    loads["fsync"].append(await closed_loop(
                        ceiling_url, "/store?fsync=1", clients, seconds, [bare]))
                    loads["plain"].append(await closed_loop(
                        ceiling_url, "/store?fsync=0", clients, seconds, [bare]))
                    loads["cin"].append(await closed_loop(
                        network.pop_url, f"/api/store/S3?key={APIKEY}&filename=small.bin",
                        clients, seconds, [coordinator, pop]))
                    if ctx.out_of_time():
                        break
                who = f"{clients} client{'s' if clients > 1 else ''}"
                ceiling_name = f"ceiling: 10 KiB POSTs, fsync, {who}"
                figures += [
                    _figure(ceiling_name, loop, loads["fsync"]),
                    _figure(f"ceiling: 10 KiB POSTs, no fsync, {who}", loop, loads["plain"]),
                    _figure(f"REST store 10 KiB, {who}", loop, loads["cin"], loads["fsync"],
                            ceiling_name, TARGET if clients > 1 else None),
                ]
    return figures
