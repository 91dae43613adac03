"""A POP's aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from common.config import Config, PopConfig
from common.storage.storage_set import StorageSet
from common.web import body_idle, cors, drain, file_routes, metrics, openapi, request_log
from common.web.http import error_middleware
from common.web.in_transit import HolderRedirect
from common.web.request_body import SERVER_ARGS
from edge.coordinator_client import CoordinatorClient, RemoteFiles
from edge.disk_space import DISK_SPACE, DiskSpace, disk_full_middleware
from edge.downloads.transit_download import TransitDownloads
from edge.heartbeat import heartbeat_ctx
from edge.jobs import jobs_ctx
from edge.journal.lifecycle import journal_ctx
from edge.keys import (
    CONFIG,
    COORDINATOR,
    EDGE_METRICS,
    FETCHER,
    FILES,
    JOURNAL,
    PART_SPOOL,
    POP,
    SHIPPER,
    STAGING,
    STORAGE,
    SWEEPER,
    TRANSFER,
    UPLOADS,
)
from edge.local_files import JournalFirstFiles
from edge.metrics import EdgeMetrics
from edge.multipart import part_routes, start_routes
from edge.multipart.part_spool import PartSpool
from edge.multipart.part_transfer import PartTransfer
from edge.multipart.spool_sweeper import SpoolSweeper
from edge.multipart.uploads import PopUploads
from edge.rest import overwrite, process, store
from edge.rest.staging import Staging
from edge.rest.store_recovery import report_interrupted_stores
from edge.rest.url_fetch import UrlFetcher
from edge.tus import tus_routes
from edge.tus.cin_upload import CinUploads
from edge.tus.tus_state import TusStates
from edge.tus.tus_uploads import TUS_UPLOADS, TusUploads

# aiohttp's own body limit does not guard streaming handlers (they read as they go, and
# staging enforces each app's limit); it only bounds what a handler reads whole.
CLIENT_MAX_SIZE = 1024 * 1024


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config, pop = app[CONFIG], app[POP]
    staging = Staging(pop.spool_dir)
    await staging.prepare()
    app[STAGING] = staging
    parts = PartSpool(pop.spool_dir)
    await parts.prepare()
    app[PART_SPOOL] = parts
    fetcher = UrlFetcher(config.url_fetch)
    try:
        async with StorageSet(config) as storage, aiohttp.ClientSession() as session:
            client = CoordinatorClient(config.coordinator.internal_url, config.internal_secret,
                                       session)
            app[STORAGE] = storage
            app[file_routes.FILE_STORAGE] = storage
            app[COORDINATOR] = client
            app[FETCHER] = fetcher
            journal = app[JOURNAL]
            uploads = app[UPLOADS] = PopUploads(config, pop, journal, client, storage,
                                                flush=app[SHIPPER].flush)
            transfer = PartTransfer(parts, storage, uploads, journal, pop.name,
                                    app[EDGE_METRICS])
            app[TRANSFER] = transfer
            app[SHIPPER].on_statuses(transfer.files_ended)
            files = JournalFirstFiles(journal, RemoteFiles(client, pop.name), storage,
                                      flush=app[SHIPPER].flush)
            app[file_routes.FILE_SOURCE] = app[FILES] = files
            app[file_routes.FILE_IN_TRANSIT] = TransitDownloads(
                pop.name, parts, client, journal, files, storage,
                elsewhere=HolderRedirect(config))
            sweeper = app[SWEEPER] = SpoolSweeper(parts, client, journal, config.upload_expiry)
            await report_interrupted_stores(journal)
            tus_dir = pop.spool_dir / "tus"
            tus = app[TUS_UPLOADS] = TusUploads(
                config, CinUploads(config, pop, client, storage, uploads, transfer), parts,
                PartSpool(tus_dir),
                TusStates(tus_dir / "state"), transfer, app[EDGE_METRICS], tus_dir / "scratch")
            await tus.prepare()
            # A restarted POP finishes what it acknowledged; it need not wait to serve.
            resuming = asyncio.create_task(transfer.resume_until_done(), name="resume")
            sweeping = asyncio.create_task(sweeper.run(), name="spool-sweep")
            tus_sweeping = asyncio.create_task(tus.run_sweeps(), name="tus-sweep")
            try:
                yield
            finally:
                resuming.cancel()
                sweeping.cancel()
                tus_sweeping.cancel()
                await asyncio.gather(resuming, sweeping, tus_sweeping, return_exceptions=True)
                await transfer.close()
    finally:
        await fetcher.close()


async def health(request: web.Request) -> web.Response:
    pop = request.app[POP]
    return web.json_response({"status": "ok", "role": "pop", "pop": pop.name,
                              "region": pop.region})


def make_app(config: Config, pop: PopConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware, disk_full_middleware],
                          client_max_size=CLIENT_MAX_SIZE, handler_args=SERVER_ARGS)
    body_idle.install(app, config.timeouts.body_idle)
    request_log.install(app)
    drain.install(app)
    cors.install(app, config.cors)
    app[CONFIG] = config
    app[file_routes.FILE_CONFIG] = config
    app[POP] = pop
    app[DISK_SPACE] = DiskSpace.of(config, pop)
    metrics.install(app, pop.metrics, config.internal_secret)
    edge_metrics = app[EDGE_METRICS] = EdgeMetrics(app[metrics.METRICS].registry)

    async def read_at_scrape() -> None:
        await edge_metrics.read_spool(pop.spool_dir)
        if TRANSFER in app:
            app[TRANSFER].show_in(edge_metrics)
        if JOURNAL in app:
            edge_metrics.events_pending.set(await app[JOURNAL].pending_count())
            edge_metrics.handles_left.set(app[JOURNAL].handles_left())

    app[metrics.METRICS].on_scrape(read_at_scrape)
    # First: the journal is open before anything that records in it, and closes last.
    app.cleanup_ctx.append(journal_ctx)
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(jobs_ctx)  # after the resources: drained before they close
    # Last: the POP registers once everything it serves with is open, and its leave goes
    # out first at shutdown.
    app.cleanup_ctx.append(heartbeat_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/api/store/{provider}", store.store)
    process.add_routes(app)
    file_routes.add_routes(app, overwrite.overwrite)
    start_routes.add_routes(app)
    part_routes.add_routes(app)
    tus_routes.add_routes(app)
    openapi.install(app, "pop", pop.public_url)
    return app
