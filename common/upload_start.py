"""The Upload API's start, as POPs and the coordinator both take it.

Checked where the request arrives (app, storage location, container, path, policy,
size), so a POP refuses a bad start without a round trip; the coordinator then gives the
file its identity and creates the bucket's multipart upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from common import wire
from common.config import Config
from common.errors import CinError, Code
from common.files import FileRecord, UploadRecord
from common.locations import choose_container, find_app, find_location
from common.naming import clean_filename, validate_path
from common.security import Action, Credentials, authorize
from common.sniff import choose_mimetype, is_mimetype
from common.upload_api import StartRequest


def start_message(config: Config, fields: Mapping[str, Any], creds: Credentials,
                  pop: str | None, origin: str) -> wire.StartUpload:
    request = StartRequest.parse(fields)
    app = find_app(config, request.apikey)
    location = find_location(config, app, request.store.location)
    container = choose_container(location, request.store.container)
    path = validate_path(request.store.path) if request.store.path is not None else None
    grant = authorize(app, creds, Action.store(path=path, container=container))
    allowed = grant.max_size(app.max_upload_size)
    if request.size > allowed:
        if allowed < app.max_upload_size:
            grant.check_size(request.size)  # names the policy's maxSize
        raise CinError(Code.TOO_LARGE, f"the file is {request.size} bytes, over {allowed}")
    grant.check_size(request.size)
    given_type = request.mimetype.strip().lower() if request.mimetype else None
    if given_type is not None and not is_mimetype(given_type):
        raise CinError(Code.BAD_PARAMETER, f"mimetype {given_type[:100]!r} is not type/subtype")
    filename = clean_filename(request.filename)
    return wire.StartUpload(
        origin=origin, apikey=app.apikey, storage=location.name, provider=location.provider,
        container=container, path=path, filename=filename,
        mimetype=choose_mimetype(given_type, b"", filename), size=request.size,
        access=request.store.access, region=request.store.region, fii=request.fii, pop=pop)


def start_reply(config: Config, record: FileRecord, upload: UploadRecord) -> dict[str, Any]:
    """What the SDKs read from a start: every id non-empty, and where to send the bytes.
    `location_url` is host:port without a scheme: filestack-python puts `https://` in
    front of it itself."""
    pop = config.pop(upload.pop)
    reply: dict[str, Any] = {
        "uri": f"/{record.container}/{record.key}",
        "region": record.region or pop.region,
        "upload_id": upload.upload_id,
        "location_url": urlsplit(pop.public_url).netloc,
        "location_region": pop.region,
    }
    if upload.fii:
        reply["upload_type"] = "intelligent_ingestion"
    return reply
