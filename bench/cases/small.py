"""Small files: 10 KiB REST stores from 1 client and from 50 concurrent clients (each a
keep-alive connection sending its next store as soon as the last is answered), for a
bounded time: stores per second, with the p50 and p99 latency of a store. Target at 50
clients: ≥ 1,500 stores/s with p99 under 100 ms.

A store is answered once the file is in the bucket and recorded Complete: every one is
a coordinator start, a bucket put (fsync'd), and a coordinator report.
The ceiling takes the same requests, each into a new file, with and without fsync.
"""

from __future__ import annotations

import os

from bench.cases import Context
from bench.closed_loop import Load, closed_loop
from bench.http import Connection
from bench.processes import APIKEY, CinNetwork, Process, ceiling, cin_network, started
from bench.report import Figure, Summary, ratios

CASE = "small"
SIZE = 10 * 1024
CLIENTS = (1, 50)
FULL_SECONDS, QUICK_SECONDS = 8.0, 1.5
WARMUP_SECONDS = 0.5
TARGET = "≥ 1,500/s at 50 clients, p99 < 100 ms"
_BODY = os.urandom(SIZE)


async def _store(url: str, target: str, clients: int, seconds: float,
                 servers: list[Process]) -> Load:
    """Stores (or the ceiling's takes) of one 10 KiB body; every one must be answered 200."""
    headers = {"Content-Type": "application/octet-stream"}

    async def send(connection: Connection, _: int) -> None:
        (await connection.request("POST", target, _BODY, headers)).check()

    return await closed_loop(url, clients, seconds, servers, send, warmup=WARMUP_SECONDS)


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
                    loads["fsync"].append(await _store(
                        ceiling_url, "/store?fsync=1", clients, seconds, [bare]))
                    loads["plain"].append(await _store(
                        ceiling_url, "/store?fsync=0", clients, seconds, [bare]))
                    loads["cin"].append(await _store(
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
