"""`POST /api/store/{provider}`: the Filestack REST store, at a POP.

The reply is sent once the object is stored and the fact is in the POP's journal
(edge/journal), which ships it to the coordinator: an acknowledged store is complete, and
no store waits on the coordinator. A raw body that declares its length goes straight to a
local-disk bucket as it arrives (to S3 only if it is small; see `goes_straight`): its
size is known up front, so the file can be named before the rest of the bytes come, and
nothing is written twice. Any other body (a form, a URL to fetch, base64, a chunked raw
body) is staged first (bounded by the app's size limit), since the file's size is only
known at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from aiohttp import web

from common.config import AppConfig, StorageConfig
from common.protocol import pop_events
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.naming import clean_filename, valid_text
from common.protocol.new_files import NewStore, new_file_record
from common.protocol.pop_events import new_event_id
from common.protocol.records import FileRecord, file_url
from common.protocol.security import Credentials, authorize
from common.protocol.sniff import SNIFF_BYTES, choose_mimetype
from common.protocol.store_admission import AdmittedStore, admit_store
from common.protocol.store_params import StoreParams
from common.storage import Access
from common.storage.drivers import driver_of
from common.web.request_auth import request_credentials
from edge.disk_space import DISK_SPACE
from edge.jobs import JOBS
from edge.keys import CONFIG, EDGE_METRICS, FETCHER, JOURNAL, POP, STAGING, STORAGE
from edge.metrics import Api
from edge.rest.intake import (
    IncomingFile,
    exactly,
    open_incoming,
    receive,
    refuse_size,
    stage_within,
    take_head,
)
from edge.rest.own_object import remove_own_object
from edge.rest.staging import FLUSH_BYTES as STAGING_BATCH_BYTES
from edge.rest.staging import StagedBody

log = logging.getLogger("cin.edge.store")


async def store(request: web.Request) -> web.Response:
    request.app[DISK_SPACE].refuse_if_full()
    config = request.app[CONFIG]
    creds = request_credentials(request)
    apikey = request.query.get("key") or request.query.get("apikey")
    admitted = admit_store(config, apikey=apikey, provider=request.match_info["provider"],
                           options=request.query, creds=creds)
    incoming = await receive(request, base64=admitted.params.base64decode,
                             limit=admitted.app.max_upload_size)
    record = await store_incoming(request, admitted, incoming, creds)
    return web.json_response(store_reply(config.coordinator.public_url, record))


async def store_incoming(request: web.Request, admitted: AdmittedStore,
                         incoming: IncomingFile, creds: Credentials) -> FileRecord:
    """Store an admitted file from what `receive` found: its bytes, or a URL to fetch
    them from (checked against the policy again first). Any route that stores a new file
    (`POST /process` too) stores it through here, under the same limits."""
    config = request.app[CONFIG]
    app, location, params, grant = (admitted.app, admitted.location, admitted.params,
                                    admitted.grant)
    limit = app.max_upload_size
    if incoming.source_url is not None:
        # Checked again now that the URL is known, before anything is fetched from it.
        grant = authorize(app, creds, replace(admitted.action, url=incoming.source_url))
        limit = min(limit, config.url_fetch.max_size)
    async with open_incoming(incoming, request.app[FETCHER],
                             base64=params.base64decode) as opened:
        if opened.size is not None and goes_straight(location, opened.size):
            refuse_size(opened.size, grant=grant, limit=limit)
            head, body = await take_head(opened.chunks, SNIFF_BYTES)
            start = _start_file(request, app, location, params, opened, head=head,
                                size=opened.size)
            # The file is Started while the client sends; a client that stalls fails the
            # read (`timeouts.body_idle`), and the file is recorded Failed.
            body = exactly(opened.size, body)
            # Shielded, so that a cancelled handler still records how the store ended.
            return await request.app[JOBS].shield(
                store_file(request.app, start, body, access=params.access))
        staged = await stage_within(request.app[STAGING], opened, limit=limit, grant=grant)
    try:
        start = _start_file(request, app, location, params, opened, head=staged.head,
                            size=staged.size)
    except BaseException:
        await staged.remove()
        raise
    # The bucket write must finish even if the client hangs up meanwhile, or the file
    # would stay Started forever: it runs as a shielded job that owns the staged file.
    return await request.app[JOBS].shield(_store_staged(request.app, start, staged, params))


def goes_straight(location: StorageConfig, size: int) -> bool:
    """Whether a body of a known size can go to the bucket as it arrives at no more
    memory than staging it: a driver that streams a body (local disk) holds nothing, one
    that gathers it into parts of several MiB (S3) would hold them for as long as a slow
    client takes; a body under one staging batch is held in memory either way."""
    return driver_of(location).capabilities.streams_body or size < STAGING_BATCH_BYTES


def _start_file(request: web.Request, app: AppConfig, location: StorageConfig,
                params: StoreParams, opened: IncomingFile, *, head: bytes,
                size: int) -> NewStore:
    if size == 0:
        raise CinError(Code.EMPTY_FILE)
    source_url = valid_text(opened.source_url) if opened.source_url else None
    given_name = params.filename or opened.filename or _name_from_url(source_url)
    filename = clean_filename(given_name) if given_name else None
    mimetype = choose_mimetype(params.mimetype or opened.content_type, head, filename)
    return NewStore(
        apikey=app.apikey, storage=location.name, provider=location.provider,
        container=params.container, path=params.path, filename=filename or "",
        mimetype=mimetype, size=size, pop=request.app[POP].name,
        access=params.access.value, region=params.region, source_url=source_url,
        tags=params.tags)


async def _store_staged(app: web.Application, start: NewStore, staged: StagedBody,
                        params: StoreParams) -> FileRecord:
    try:
        return await store_file(app, start, staged.chunks(), access=params.access)
    finally:
        await staged.remove()


async def store_file(app: web.Application, start: NewStore,
                     body: AsyncIterator[bytes], *, access: Access,
                     api: Api = "store") -> FileRecord:
    """Name the file from this POP's lease, put its bytes in the bucket, and journal the
    fact: the store is acknowledged once both are durable, without asking the
    coordinator (the journal ships the fact to it). A store that fails on the way is
    forgotten, and what it put removed; one this POP never finishes (it stopped) is
    found in the journal when it starts again (edge/rest/store_recovery.py). tus stores a
    creation that carries its whole file through here too (edge/tus/one_shot.py)."""
    journal, metrics = app[JOURNAL], app[EDGE_METRICS]
    record = new_file_record(start, handle=await journal.take_handle(), pop=start.pop,
                             now=time.time())
    # Before any byte reaches the bucket: whatever happens next, this POP finds the
    # store again.
    await journal.begin(record)
    storage = app[STORAGE][record.storage]
    # A store still Started after the store TTL is taken for one whose POP died, so no
    # store may take longer, however steadily its client trickles.
    store_ttl = app[CONFIG].upload_expiry.store_ttl
    deadline = asyncio.timeout(store_ttl)
    try:
        async with deadline:
            info = await storage.put(record.container, record.key, body,
                                     content_type=record.mimetype, access=access)
    except BaseException as exc:
        failure = (CinError(Code.STORE_TIMEOUT, f"{store_ttl:g} s") if deadline.expired()
                   else exc)
        log.warning("storing %s failed: %s", record.handle, str(failure) or type(failure).__name__)
        metrics.upload(api, FileStatus.FAILED)
        # The driver removed what it wrote; the client hears of `exc`, not of this.
        with contextlib.suppress(Exception):
            await asyncio.shield(journal.forget(record.handle))
        if failure is not exc:
            raise failure from exc
        raise
    metrics.stored(api, info.size)
    stored = record.with_changes(status=FileStatus.COMPLETE, size=info.size, etag=info.etag)
    try:
        if info.size != record.size:
            raise CinError(Code.CONFLICT, f"stored {info.size} bytes, expected {record.size}")
        await journal.record(pop_events.FileStored(new_event_id(), record.handle, time.time(),
                                                   stored), record=stored)
    except BaseException:
        # Not journaled, so the client is told it failed: the object must go too, or it
        # would sit in the bucket with no file pointing at it.
        metrics.upload(api, FileStatus.FAILED)
        await asyncio.shield(_forget(app, record, info.etag))
        raise
    journal.wake_shipper()
    log.info("%s stored: %d bytes in %s/%s", record.handle, info.size, record.container,
             record.key)
    metrics.upload(api, stored.status)
    return stored


async def _forget(app: web.Application, record: FileRecord, etag: str) -> None:
    await remove_own_object(app[STORAGE][record.storage], record, etag)
    try:
        await app[JOURNAL].forget(record.handle)
    except Exception as exc:
        log.warning("could not forget %s: %s", record.handle, exc)


def _name_from_url(url: str | None) -> str | None:
    if not url:
        return None
    tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or None


def store_reply(public_url: str, record: FileRecord) -> dict[str, object]:
    return {
        "url": file_url(public_url, record.handle),
        "handle": record.handle,
        "size": record.size,
        "type": record.mimetype,
        "filename": record.filename,
        "key": record.key,
        "container": record.container,
        "upload_tags": dict(record.tags),
    }
