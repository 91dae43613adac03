"""The coordinator alone, driven as POPs drive it: signed msgpack RPCs over loopback.

- starts: `StartUpload` for a file under the bucket's smallest part (no bucket call,
  so this is the coordinator's own cost: a POP choice and one SQLite transaction);
- part events: `PartStored` for the parts of one upload, as POPs report them once each
  part is in the bucket (one SQLite transaction each, and a look at whether the upload
  is now whole).

Each at 1 and 50 concurrent connections, with the state in SQLite, `sqlite_synchronous`
full (the default: a commit is on disk before the answer) and normal (WAL without an
fsync per commit: a power cut may lose the last commits, a crash of the process loses
nothing); then in PostgreSQL (a local server, each commit on disk before it returns) with
one coordinator and with two sharing it, the connections taking the two in turn (one
connection: the first coordinator only). Server CPU counts the coordinators' processes,
not PostgreSQL's.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack

from bench.cases import Context
from bench.closed_loop import Load, closed_loop
from bench.http import Connection
from bench.postgres import PostgresUnavailable, durable_server, new_database
from bench.processes import (
    APIKEY,
    INTERNAL_SECRET,
    POP_NAME,
    CinNetwork,
    Process,
    free_port,
    started,
)
from bench.report import Figure, Summary
from common.protocol import wire

CASE = "coordinator"
CLIENTS = (1, 50)
FULL_SECONDS, QUICK_SECONDS = 5.0, 1.0
WARMUP_SECONDS = 0.3
RPC = "/internal/v1/rpc"
BIG_FILE = 10_000 * 5 * 1024**2  # room for every part number S3 allows


def _part_stored(upload_id: str, n: int) -> wire.Message:
    return wire.PartStored(upload_id=upload_id, part=n % 10_000 + 1, size=5 * 1024**2,
                           etag=f"{n:032x}", pop=POP_NAME)


def _start(origin: str, size: int) -> wire.StartUpload:
    return wire.StartUpload(origin=origin, apikey=APIKEY, storage="bucket", provider="s3",
                            container="cin-bench", path=None, filename="bench.bin",
                            mimetype="application/octet-stream", size=size,
                            access="private", region=None, fii=False, pop=POP_NAME)


async def _rpc_load(urls: Sequence[str], clients: int, seconds: float,
                    servers: Sequence[Process],
                    message: Callable[[int], wire.Message]) -> Load:
    async def send(connection: Connection, n: int) -> None:
        await _call(connection, message(n))

    return await closed_loop(urls, clients, seconds, servers, send, warmup=WARMUP_SECONDS)


async def _call(connection: Connection, msg: wire.Message) -> wire.Message:
    body = wire.encode(msg)
    response = await connection.request("POST", RPC, body, {
        "Content-Type": wire.CONTENT_TYPE,
        wire.SIGNATURE_HEADER: wire.sign(INTERNAL_SECRET, body)})
    reply = wire.decode(response.check().body)
    if isinstance(reply, wire.ErrorReply):
        raise RuntimeError(f"the coordinator refused {msg.TYPE}: {reply}")
    return reply


def _figure(name: str, loop: str, loads: list[Load]) -> Figure:
    return Figure(CASE, name, loop, "events/s", Summary.of(load.rate for load in loads),
                  extra={"p50_ms": Summary.of(load.p50_ms for load in loads),
                         "p99_ms": Summary.of(load.p99_ms for load in loads),
                         "server_cpu_ms": Summary.of(load.server_cpu_ms for load in loads)})


async def run(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    for loop in ctx.loops:
        for synchronous in ("full", "normal"):
            root = ctx.scratch(f"{CASE}-{loop}-{synchronous}")
            network = CinNetwork(root, event_loop=loop, sqlite_synchronous=synchronous)
            figures += await _measure(ctx, network, 1, f"synchronous={synchronous}", loop)
            if ctx.out_of_time():
                return figures
    try:
        with durable_server() as server:
            for loop in ctx.loops:
                for count in (1, 2):
                    root = ctx.scratch(f"{CASE}-{loop}-postgresql-{count}")
                    network = CinNetwork(root, event_loop=loop,
                                         state=await new_database(server))
                    figures += await _measure(
                        ctx, network, count,
                        f"postgresql, {count} coordinator{'s' if count > 1 else ''}", loop)
                    if ctx.out_of_time():
                        return figures
    except PostgresUnavailable as exc:
        print(f"bench: coordinator: no PostgreSQL server ({exc}); its figures are left out",
              file=sys.stderr)
    return figures


async def _measure(ctx: Context, network: CinNetwork, coordinators: int, state: str,
                   loop: str) -> list[Figure]:
    """Starts and part events at 1 and 50 connections, at `coordinators` coordinators on
    the network's state."""
    seconds = QUICK_SECONDS if ctx.quick else FULL_SECONDS
    runs = min(ctx.runs, 3)
    ports = [network.coordinator_port] + [free_port() for _ in range(coordinators - 1)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    figures: list[Figure] = []
    with ExitStack() as stack:
        servers = [stack.enter_context(started(network.coordinator(
            None if port == network.coordinator_port else port))) for port in ports]
        connection = Connection.to(urls[0])
        try:
            big = await _call(connection, _start(f"bench:big:{time.monotonic_ns()}", BIG_FILE))
        finally:
            await connection.close()
        assert isinstance(big, wire.UploadReply)

        def start(n: int) -> wire.Message:
            return _start(f"bench:{time.monotonic_ns()}:{n}", 1024)

        part = functools.partial(_part_stored, big.upload.upload_id)
        for clients in CLIENTS:
            for kind, message in (("starts", start), ("part events", part)):
                loads = [await _rpc_load(urls, clients, seconds, servers, message)
                         for _ in range(runs)]
                figures.append(_figure(
                    f"{kind}, {clients} client{'s' if clients > 1 else ''}, {state}", loop,
                    loads))
                if ctx.out_of_time():
                    return figures
    return figures
