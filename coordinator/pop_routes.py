"""`GET /pops`: every configured POP, its health and its load, for clients to choose from.

Public and unauthenticated, like `/health`: it names the POPs' public URLs and regions,
which every start reply hands out anyway. An SDK measures its round trip to the healthy
ones and sends its uploads to the nearest.
"""

from __future__ import annotations

from aiohttp import web

from coordinator.keys import POPS


async def pops(request: web.Request) -> web.Response:
    registry = request.app[POPS]
    return web.json_response({
        "pops": [status.to_json() for status in registry.status()],
        "heartbeat": {"interval": registry.heartbeat.interval,
                      "timeout": registry.heartbeat.timeout},
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/pops", pops)
