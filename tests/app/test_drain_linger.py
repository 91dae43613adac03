"""A node shutting down answers a request whose body is still arriving 503 and closes the
connection, rather than read the rest of the body first: aiohttp's lingering over it would
hold up the shutdown for up to 10 s."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from common.web import drain
from common.web.drain import DRAIN
from common.web.http import error_middleware

BODY_BYTES = 1024 * 1024
SENT_BYTES = 64 * 1024  # of BODY_BYTES: the rest never comes
# aiohttp lingers 10 s by default; a shutdown that waits for it takes that long.
SHUTDOWN_BOUND_SECONDS = 3.0


async def take_body(request: web.Request) -> web.Response:
    return web.json_response({"bytes": len(await request.read())})


async def test_a_draining_node_closes_at_once_on_a_body_still_arriving() -> None:
    app = web.Application(middlewares=[error_middleware])
    drain.install(app)
    app.router.add_put("/upload", take_body)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        try:
            assert await app[DRAIN].drain(5.0)  # nothing in flight: draining at once
            writer.write(b"PUT /upload HTTP/1.1\r\nHost: pop\r\n"
                         b"Content-Length: %d\r\n\r\n" % BODY_BYTES + b"x" * SENT_BYTES)
            await writer.drain()
            async with asyncio.timeout(5.0):
                head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                answer = json.loads(await reader.readexactly(length))
            assert head.startswith("http/1.1 503"), head
            assert "connection: close" in head, head
            assert answer["code"] == "shutting_down"

            loop = asyncio.get_running_loop()
            began = loop.time()
            async with asyncio.timeout(SHUTDOWN_BOUND_SECONDS):
                await runner.cleanup()
            assert loop.time() - began < SHUTDOWN_BOUND_SECONDS
        finally:
            writer.close()
    finally:
        await runner.cleanup()
