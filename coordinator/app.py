"""The coordinator's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from common import drain, file_routes
from common.config import Config
from common.files import FileRecord
from common.http import error_middleware
from common.locations import StorageSet
from coordinator import internal_api
from coordinator.keys import CONFIG, HASHES, REGISTRY, STATE, STORAGE
from coordinator.metadata import HashCache, build_metadata, requested_fields
from coordinator.registry import FileRegistry
from coordinator.sqlite_state import SqliteStateStore

STATE_FILE = "state.sqlite3"


class LocalFiles:
    """The File API's view of files at the coordinator: straight from the registry."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def lookup(self, handle: str) -> FileRecord:
        return await self.app[REGISTRY].get(handle)

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]:
        fields = requested_fields(query)
        record = await self.app[REGISTRY].get(handle)
        return await build_metadata(record, fields, self.app[HASHES])


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    state = SqliteStateStore(config.coordinator.state_dir / STATE_FILE,
                             synchronous=config.coordinator.sqlite_synchronous)
    await state.open()
    try:
        await state.sync_apps(list(config.apps.values()))
        async with StorageSet(config) as storage:
            app[STATE] = state
            app[STORAGE] = storage
            app[file_routes.FILE_STORAGE] = storage
            app[REGISTRY] = FileRegistry(state)
            app[HASHES] = HashCache(state, storage)
            yield
    finally:
        await state.close()


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "role": "coordinator"})


def make_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    drain.install(app, always_open=("/internal/",))
    app[CONFIG] = config
    app[file_routes.FILE_SOURCE] = LocalFiles(app)
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/health", health)
    internal_api.add_routes(app)
    file_routes.add_routes(app)
    return app
