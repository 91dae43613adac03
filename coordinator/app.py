"""The coordinator's aiohttp application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from common.config import Config
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.records import FileRecord
from common.storage.storage_set import StorageSet
from common.web import (
    body_idle,
    cors,
    drain,
    file_routes,
    metrics,
    openapi,
    periodic,
    request_log,
)
from common.web.file_metadata import build_metadata, requested_fields
from common.web.http import error_middleware
from common.web.in_transit import HolderRedirect
from common.web.request_body import SERVER_ARGS
from coordinator import internal_api, operator, overwrite_proxy, pop_routes, upload_routes
from coordinator.expiry import UploadExpiry
from coordinator.files import FileAuthority
from coordinator.keys import (
    CONFIG,
    COORDINATOR_METRICS,
    EXPIRY,
    FILES,
    HASHES,
    HEARTBEATS,
    LEASES,
    MULTIPART,
    POP_BATCHES,
    POPS,
    SESSION,
    STATE,
    STORAGE,
    STORE_EXPIRY,
)
from coordinator.leases import HandleLeases
from coordinator.metadata import HashCache
from coordinator.metrics import CoordinatorMetrics
from coordinator.multipart import MultipartUploads
from coordinator.pop_batches import PopBatches
from coordinator.pop_registry import PopRegistry
from coordinator.pop_sharing import SharedHeartbeats
from coordinator.state import open_state_store
from coordinator.state.factory import engine_name
from coordinator.store_expiry import StoreExpiry, deleted_handle_retention
from coordinator.upload_finisher import UploadFinisher
from coordinator.webhooks import WebhookSender

log = logging.getLogger("cin.coordinator")

# Seconds between two prunings of the ids of applied POP events (kept for a week).
FORGET_INTERVAL = 3600.0


class LocalFiles:
    """The File API's view of files at the coordinator: straight from its FileAuthority."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def lookup(self, handle: str) -> FileRecord:
        """The file; FileAtPop for a handle leased to a POP that has not reported it yet
        (the File API sends its reads to that POP), FILE_NOT_FOUND for any other (one
        deleted, too)."""
        try:
            return await self.app[FILES].get(handle)
        except CinError as error:
            holder = (await self.app[LEASES].holder(handle)
                      if error.code is Code.FILE_NOT_FOUND else None)
            if holder is None or await self.app[STATE].was_deleted(handle):
                raise
            raise FileAtPop(handle, holder) from error

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]:
        fields = requested_fields(query)
        record = await self.app[FILES].get(handle)
        return await build_metadata(record, fields, self.app[HASHES])

    async def delete(self, handle: str, *, skip_storage: bool) -> FileRecord:
        return await self.app[FILES].delete(handle, skip_storage=skip_storage)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config, figures = app[CONFIG], app[COORDINATOR_METRICS]
    engine = engine_name(config.coordinator.state)
    async with open_state_store(config.coordinator.state,
                                on_transaction=figures.transactions(engine)) as state:
        await state.sync_apps(list(config.apps.values()))
        async with StorageSet(config) as storage, aiohttp.ClientSession() as session:
            sender = WebhookSender(state, config, session, metrics=figures)
            app[STATE] = state
            app[SESSION] = session
            app[STORAGE] = storage
            app[file_routes.FILE_STORAGE] = storage
            files = FileAuthority(state, config, storage, on_events=sender.wake)
            app[FILES] = files
            app[HASHES] = HashCache(state, storage)
            # Made at startup: a POP unheard of since then is pending, not down, for the
            # first heartbeat timeout (see coordinator.pop_choice).
            pops = PopRegistry(config.pops, config.heartbeat)
            app[POPS] = pops
            # What the other coordinators on the state heard, known before the first start.
            heartbeats = app[HEARTBEATS] = SharedHeartbeats(pops, state)
            await heartbeats.refresh()
            uploads = app[MULTIPART] = MultipartUploads(state, config, storage, files, pops)
            expiry = app[EXPIRY] = UploadExpiry(state, storage, config.upload_expiry)
            stores = app[STORE_EXPIRY] = StoreExpiry(
                state, storage, list(config.storage.values()), config.upload_expiry,
                forget_deleted_after=deleted_handle_retention(config))
            leases = app[LEASES] = HandleLeases(
                state, config, on_grant=lambda block: figures.lease_granted(block.pop,
                                                                            block.size))
            batches = app[POP_BATCHES] = PopBatches(state, config, leases, files, uploads,
                                                    figures, on_removals=stores.wake)
            finisher = UploadFinisher(state, uploads)
            tasks = [asyncio.create_task(sender.run(), name="webhook-outbox"),
                     asyncio.create_task(expiry.run(), name="upload-expiry"),
                     asyncio.create_task(stores.run(), name="store-expiry"),
                     asyncio.create_task(finisher.run(), name="upload-finisher"),
                     asyncio.create_task(periodic.every(
                         FORGET_INTERVAL, batches.forget_old_ids, log=log,
                         what="forgetting old POP event ids"), name="event-ids"),
                     asyncio.create_task(heartbeats.run(), name="pop-heartbeats")]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def health(request: web.Request) -> web.Response:
    webhooks = await request.app[STATE].outbox_counts()
    pops = {status.pop.name: status.health.value for status in request.app[POPS].status()}
    return web.json_response({"status": "ok", "role": "coordinator", "webhooks": webhooks,
                              "pops": pops})


def make_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[error_middleware], handler_args=SERVER_ARGS)
    body_idle.install(app, config.timeouts.body_idle)
    request_log.install(app)
    # POPs' own last requests depend on the coordinator; the operator watches it drain.
    drain.install(app, always_open=("/internal/", operator.PAGE_PATH))
    cors.install(app, config.cors)
    app[CONFIG] = config
    app[file_routes.FILE_CONFIG] = config
    app[file_routes.FILE_SOURCE] = LocalFiles(app)
    metrics.install(app, config.coordinator.metrics, config.internal_secret)
    figures = app[COORDINATOR_METRICS] = CoordinatorMetrics(app[metrics.METRICS].registry)

    async def read_at_scrape() -> None:
        if STATE in app:
            await figures.read(app[STATE], app[POPS])

    app[metrics.METRICS].on_scrape(read_at_scrape)
    # The coordinator holds no bytes: an In Transit file is served by the POP holding it,
    # unless its heartbeats say it is gone.
    # A file leased to a POP that has not reported it yet likewise, and one only Started
    # here (its POP may have completed it a moment ago).
    holders = HolderRedirect(config, unavailable=lambda pop: app[POPS].unavailable(pop))
    app[file_routes.FILE_IN_TRANSIT] = holders
    app[file_routes.FILE_AT_POP] = holders
    app[file_routes.FILE_STARTED] = holders.started
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/health", health)
    internal_api.add_routes(app)
    upload_routes.add_routes(app)
    pop_routes.add_routes(app)
    operator.add_routes(app)
    file_routes.add_routes(app, overwrite_proxy.overwrite)
    openapi.install(app, "coordinator", config.coordinator.public_url)
    return app
