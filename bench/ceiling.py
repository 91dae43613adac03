"""The ceiling: a bare aiohttp server that streams each request body into a new file.

It does what a POP must do with bytes at the least cost this stack allows, on the same
disk and event loop, so a POP's figure divided by this one says how much of the machine
cin leaves unused. Bodies are written in ~1 MiB `writev` calls in a worker thread (as the
POP's spools do, so the event loop never waits on the disk); with `?fsync=1` the file is
fsync'd before the answer, the durability a POP gives before it acknowledges.

    python -m bench.ceiling --port 8800 --dir /tmp/ceiling --loop asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from pathlib import Path

from aiohttp import web

from cin.serve import run

READ_BYTES = 256 * 1024
FLUSH_BYTES = 1024 * 1024
DIRECTORY = web.AppKey("directory", Path)
_names = itertools.count()
_removals: set[asyncio.Task[None]] = set()


def _write_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(buffer) for buffer in buffers]
    while views:
        written = os.writev(fd, views[:1024])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _finish(fd: int, durable: bool) -> None:
    try:
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


async def take(request: web.Request) -> web.Response:
    path = request.app[DIRECTORY] / f"{os.getpid()}-{next(_names)}.data"
    fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        async for chunk in request.content.iter_chunked(READ_BYTES):
            size += len(chunk)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FLUSH_BYTES:
                await asyncio.to_thread(_write_all, fd, pending)
                pending, pending_bytes = [], 0
        if pending:
            await asyncio.to_thread(_write_all, fd, pending)
    finally:
        await asyncio.to_thread(_finish, fd, request.query.get("fsync") == "1")
    # Removed after the answer, as a POP drops its spool once the bytes have moved on; the
    # next request must not find the disk busy with this one's unlink.
    removal = asyncio.create_task(asyncio.to_thread(path.unlink))
    _removals.add(removal)
    removal.add_done_callback(_removals.discard)
    return web.json_response({"size": size})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(directory: Path) -> web.Application:
    app = web.Application()
    app[DIRECTORY] = directory
    app.router.add_get("/health", health)
    app.router.add_route("POST", "/{tail:.*}", take)
    app.router.add_route("PUT", "/{tail:.*}", take)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    async def serve() -> None:
        runner = web.AppRunner(make_app(args.dir), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print("ceiling: ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    run(serve(), args.loop)


if __name__ == "__main__":
    main()
