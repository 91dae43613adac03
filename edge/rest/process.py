"""`POST /process` at a POP: the Processing API's store task, how both Filestack SDKs
store a file from a URL (filestack-python `Client.upload_url`, filestack-js `storeURL`).

The body is parsed whole (common/protocol/process_tasks.py); from there it is a REST
store with `url=`: the same admission of the app, location and store options, the same
credentials (the `security` task's policy and signature, or the query's, or basic auth),
the same guard on the URL, the same limits, through `edge.rest.store.store_incoming`.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from common.protocol.process_tasks import ProcessStore
from common.protocol.records import FileRecord
from common.protocol.store_admission import admit_store
from common.web.http import read_json
from common.web.request_auth import request_credentials
from edge.disk_space import DISK_SPACE
from edge.keys import CONFIG
from edge.rest.intake import from_url
from edge.rest.store import store_incoming, store_reply

PROCESS_PATH = "/process"


async def process(request: web.Request) -> web.Response:
    request.app[DISK_SPACE].refuse_if_full()
    config = request.app[CONFIG]
    task = ProcessStore.parse(await read_json(request))
    creds = request_credentials(request, task.security)
    admitted = admit_store(config, apikey=task.apikey, provider=task.location,
                           options=task.options, creds=creds)
    if task.tags:
        admitted = replace(admitted, params=replace(admitted.params, tags=task.tags))
    record = await store_incoming(request, admitted, from_url(task.source_url), creds)
    return web.json_response(process_reply(config.coordinator.public_url, record))


def process_reply(public_url: str, record: FileRecord) -> dict[str, object]:
    """The REST store's reply, which is what Filestack answers a store task with, and
    `mimetype` beside `type`: filestack-js copies `type` into it, filestack-python keeps
    the reply as the Filelink's `upload_response`, and both need `handle`."""
    return {**store_reply(public_url, record), "mimetype": record.mimetype}


def add_routes(app: web.Application) -> None:
    app.router.add_post(PROCESS_PATH, process)
