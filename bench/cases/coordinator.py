"""The coordinator alone, driven as POPs drive it: signed msgpack RPCs over loopback.

- starts: `StartUpload` for a file under the bucket's smallest part (no bucket call,
  so this is the coordinator's own cost: a POP choice and one SQLite transaction);
- part events: `PartStored` for the parts of one upload, as POPs report them once each
  part is in the bucket (one SQLite transaction each, and a look at whether the upload
  is now whole).

Each at 1 and 50 concurrent connections, with `sqlite_synchronous` full (the default:
a commit is on disk before the answer) and normal (WAL without an fsync per commit: a
power cut may lose the last commits, a crash of the process loses nothing).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from bench.cases import Context
from bench.closed_loop import Load, closed_loop
from bench.http import Connection
from bench.processes import APIKEY, INTERNAL_SECRET, POP_NAME, CinNetwork, Process, started
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


async def _rpc_load(url: str, clients: int, seconds: float, server: Process,
                    message: Callable[[int], wire.Message]) -> Load:
    async def send(connection: Connection, n: int) -> None:
        await _call(connection, message(n))

    return await closed_loop(url, clients, seconds, [server], send, warmup=WARMUP_SECONDS)


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
    seconds = QUICK_SECONDS if ctx.quick else FULL_SECONDS
    runs = min(ctx.runs, 3)
    figures: list[Figure] = []
    for loop in ctx.loops:
        for synchronous in ("full", "normal"):
            root = ctx.scratch(f"{CASE}-{loop}-{synchronous}")
            network = CinNetwork(root, event_loop=loop, sqlite_synchronous=synchronous)
            with started(network.coordinator()) as coordinator:
                url = network.coordinator_url
                connection = Connection.to(url)
                try:
                    big = await _call(connection, _start("bench:big", BIG_FILE))
                finally:
                    await connection.close()
                assert isinstance(big, wire.UploadReply)
                upload_id = big.upload.upload_id

                def start(n: int) -> wire.Message:
                    return _start(f"bench:{time.monotonic_ns()}:{n}", 1024)

                part = functools.partial(_part_stored, upload_id)

                for clients in CLIENTS:
                    for kind, message in (("starts", start), ("part events", part)):
                        loads = [await _rpc_load(url, clients, seconds, coordinator, message)
                                 for _ in range(runs)]
                        figures.append(_figure(
                            f"{kind}, {clients} client{'s' if clients > 1 else ''}, "
                            f"synchronous={synchronous}", loop, loads))
                        if ctx.out_of_time():
                            return figures
    return figures
