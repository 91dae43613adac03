"""The Upload API's start, as POPs and the coordinator both take it.

Checked where the request arrives (app, storage location, container, path, policy,
size), so a POP refuses a bad start without a round trip; the coordinator then gives the
file its identity and creates the bucket's multipart upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from common.config import Config
from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.naming import clean_filename
from common.protocol.records import FileRecord, UploadRecord
from common.protocol.security import Credentials
from common.protocol.sniff import choose_mimetype
from common.protocol.store_admission import admit_store
from common.protocol.upload_api import StartRequest


def start_message(config: Config, fields: Mapping[str, Any], creds: Credentials,
                  pop: str | None, origin: str) -> wire.StartUpload:
    request = StartRequest.parse(fields)
    # The same store options, checked the same way, as the REST store's query.
    options = {name: value for name, value in (
        ("path", request.store.path), ("container", request.store.container),
        ("region", request.store.region), ("access", request.store.access),
        ("mimetype", request.mimetype)) if value is not None}
    admitted = admit_store(config, apikey=request.apikey, provider=request.store.location,
                           options=options, creds=creds)
    app, location, params = admitted.app, admitted.location, admitted.params
    admitted.grant.check_size(request.size)  # the policy's maxSize and minSize
    if request.size > app.max_upload_size:
        raise CinError(Code.TOO_LARGE,
                       f"the file is {request.size} bytes, over {app.max_upload_size}")
    filename = clean_filename(request.filename)
    return wire.StartUpload(
        origin=origin, apikey=app.apikey, storage=location.name, provider=location.provider,
        container=params.container, path=params.path, filename=filename,
        mimetype=choose_mimetype(params.mimetype, b"", filename), size=request.size,
        access=params.access.value, region=params.region, fii=request.fii, pop=pop)


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
