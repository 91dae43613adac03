"""The public API's OpenAPI 3.1 description, served at `GET /openapi.json`.

Built as data from the routes each service serves: a POP describes the REST store, the
Processing API's store from a URL, the File API and the whole Upload API; the coordinator
the File API, the Upload API's start and status, and `/pops`. Each names itself as its one
server. Every error answer is the error table's JSON body (common/protocol/errors.py), its
`code` limited to the codes the table gives that status. tests/e2e/test_openapi.py keeps
it true with schemathesis, against a live POP and coordinator.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from common.protocol.errors import Code
from common.protocol.naming import HANDLE_PATTERN
from common.web.file_routes import APIKEY_PATTERN

Role = Literal["pop", "coordinator"]
Schema = dict[str, Any]

OPENAPI_PATH = "/openapi.json"
_JSON = "application/json"

# Every route may meet these: a request the server cannot read, a web origin the CORS
# config refuses, a body that stops arriving, a node draining or full of connections.
_EVERY_ROUTE = (400, 403, 408, 503)
_FILE_ERRORS = (*_EVERY_ROUTE, 404, 409, 410)
_UPLOAD_ERRORS = (*_EVERY_ROUTE, 404, 409)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _text() -> Schema:
    return {"type": "string"}


def _int(minimum: int = 0) -> Schema:
    return {"type": "integer", "minimum": minimum}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}}


_TAGS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def error_schema(status: int | None = None) -> Schema:
    """`{"error": ..., "code": ...}`; for a status, only the codes the table gives it."""
    codes = [code.wire for code in Code if status is None or code.status == status]
    return _object({"error": _text(), "code": {"type": "string", "enum": codes}})


def _schemas() -> dict[str, Schema]:
    return {
        "Error": error_schema(),
        "StoreReply": _object({
            "url": _text(), "handle": {"type": "string", "pattern": f"^{HANDLE_PATTERN}$"},
            "size": _int(1), "type": _text(), "filename": _text(), "key": _text(),
            "container": _text(), "upload_tags": _TAGS}),
        "ProcessReply": _object({
            "url": _text(), "handle": {"type": "string", "pattern": f"^{HANDLE_PATTERN}$"},
            "size": _int(1), "type": _text(), "mimetype": _text(), "filename": _text(),
            "key": _text(), "container": _text(), "upload_tags": _TAGS}),
        "OverwriteReply": _object({
            "url": _text(), "handle": _text(), "mimetype": _text(),
            "isWriteable": {"type": "boolean"}, "size": _int(1), "filename": _text()}),
        "DeleteReply": _object({"handle": _text(), "deleted": {"const": True},
                                "skip_storage": {"type": "boolean"}}),
        "Metadata": _object({}, {
            "size": _int(), "mimetype": _text(), "filename": _text(),
            "uploaded": {"type": "number"}, "writeable": {"type": "boolean"},
            "cloud": {"type": "boolean"}, "source_url": _nullable(_text()),
            "upload_status": _text(), "upload_tags": _TAGS, "exif": {"type": "null"},
            "location": _text(), "path": _text(), "container": _text(), "key": _text(),
            **{name: _nullable(_text()) for name in ("md5", "sha1", "sha224", "sha256",
                                                     "sha384", "sha512")}}),
        "StartReply": _object(
            {"uri": _text(), "region": _text(), "upload_id": _text(),
             "location_url": _text(), "location_region": _text()},
            {"upload_type": {"const": "intelligent_ingestion"}}),
        "PartUrlReply": _object({"url": _text(), "location_url": _text(),
                                 "headers": _TAGS}),
        "CommitReply": _object({"part": _int(1), "size": _int()}),
        "PartReceipt": _object({"part": _int(1), "offset": _int(), "size": _int()}),
        "CompleteReply": _object({
            "handle": _text(), "url": _text(), "filename": _text(), "size": _int(1),
            "mimetype": _text(), "status": {"enum": ["Stored", "InTransit"]},
            "key": _text(), "container": _text(), "upload_tags": _TAGS}),
        "StatusReply": _object({
            "upload_id": _text(), "handle": _text(), "status": _text(), "size": _int(),
            "stored_bytes": _int(),
            "parts": {"type": "array", "items": _object({
                "part_number": _int(1), "size": _int(), "state": _text(),
                "pop": _nullable(_text()), "etag": _nullable(_text())})}}),
        "PopHealth": _object({"status": {"const": "ok"}, "role": {"const": "pop"},
                              "pop": _text(), "region": _text()}),
        "CoordinatorHealth": _object({
            "status": {"const": "ok"}, "role": {"const": "coordinator"},
            "webhooks": {"type": "object", "additionalProperties": _int()},
            "pops": _TAGS}),
        "Pops": _object({
            "pops": {"type": "array", "items": _object({
                "name": _text(), "region": _text(), "url": _text(),
                "healthy": {"type": "boolean"}, "state": _text(),
                "load": _nullable({"type": "number"}),
                "load_detail": _nullable({"type": "object"}),
                "seconds_since_heartbeat": _nullable({"type": "number"})})},
            "heartbeat": _object({"interval": {"type": "number"},
                                  "timeout": {"type": "number"}})}),
    }


def _responses(ok: Schema | None, errors: tuple[int, ...],
               extra: dict[str, Schema] | None = None) -> Schema:
    answers: Schema = {}
    if ok is not None:
        answers["200"] = {"description": "OK", "content": {_JSON: {"schema": ok}}}
    answers.update(extra or {})
    for status in sorted(set(errors)):
        answers[str(status)] = {
            "description": ", ".join(c.wire for c in Code if c.status == status) or "error",
            "content": {_JSON: {"schema": error_schema(status)}}}
    return answers


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or _text()}


_APIKEY = _query("key", "the app's apikey")
_POLICY = _query("policy", "a base64 security policy")
_SIGNATURE = _query("signature", "the policy's HMAC-SHA256, hex")
_CREDENTIALS = [_POLICY, _SIGNATURE]
_HANDLE = {"name": "handle", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": f"^{HANDLE_PATTERN}$"}}
# The CDN form the Filestack SDKs build with the apikey in the path.
_CDN_APIKEY = {"name": "apikey", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": f"^{APIKEY_PATTERN}$"}}
_ANY_HANDLE = {"name": "handle", "in": "path", "required": True, "schema": _text()}


def _upload_body(required: dict[str, Schema],
                 optional: dict[str, Schema] | None = None) -> Schema:
    credentials = {"policy": _text(), "signature": _text()}
    return {"required": True, "content": {_JSON: {"schema": _object(
        required, {**credentials, **(optional or {})})}}}


_IDS = {"apikey": _text(), "upload_id": _text()}


def _bytes(description: str) -> Schema:
    return {"description": description,
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}


def _store() -> Schema:
    params = [
        _APIKEY, *_CREDENTIALS,
        {"name": "provider", "in": "path", "required": True,
         "schema": {"type": "string", "examples": ["s3", "local"]}},
        _query("filename", "the file's name"),
        _query("mimetype", "type/subtype; sniffed when not given"),
        _query("path", "the object key, or a prefix ending in /"),
        _query("container", "the bucket, one the storage allows"),
        _query("region", "a region name"),
        _query("access", "public or private", {"enum": ["public", "private"]}),
        _query("base64decode", "the body is base64", {"type": "boolean"}),
        _query("upload_tags", "a JSON object of string tags"),
    ]
    body = {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": _object({"fileUpload": {
            "type": "string", "format": "binary"}})},
        "application/x-www-form-urlencoded": {"schema": _object({"url": _text()})},
    }}
    return {"post": {
        "operationId": "store", "summary": "Store a file (Filestack REST store)",
        "description": "The body is the file itself, a multipart form with the file as "
                       "`fileUpload`, or a form `url=` naming a file to fetch.",
        "parameters": params, "requestBody": body,
        "responses": _responses(_ref("StoreReply"),
                                (*_EVERY_ROUTE, 413, 415, 507))}}


def _process() -> Schema:
    """The Processing API's store task, as both Filestack SDKs send it."""
    store = {"type": "object", "properties": {
        **{name: _text() for name in ("location", "filename", "mimetype", "path",
                                      "container", "region")},
        "access": {"enum": ["public", "private"]}, "base64decode": {"type": "boolean"}}}
    security = _object({"policy": _text(), "signature": _text()})
    task = {"oneOf": [_object({"name": {"const": "store"}}, {"params": store}),
                      _object({"name": {"const": "security"}, "params": security})]}
    source = {"anyOf": [_text(), _object({"source": _text()})]}
    body = _object({"apikey": _text(),
                    "sources": {"type": "array", "items": source, "minItems": 1,
                                "maxItems": 1},
                    "tasks": {"type": "array", "items": task, "minItems": 1}},
                   {"upload_tags": _TAGS})
    return {"post": {
        "operationId": "process", "summary": "Store a file from a URL (Filestack "
                                             "Processing API, the store task)",
        "description": "The POP fetches the one source URL, as the REST store's `url=` "
                       "does, and stores it with the store task's options; the security "
                       "task carries the policy and signature.",
        "parameters": _CREDENTIALS,
        "requestBody": {"required": True, "content": {_JSON: {"schema": body}}},
        "responses": _responses(_ref("ProcessReply"), (*_EVERY_ROUTE, 413, 415, 507))}}


def _download(operation_id: str, handle: Schema, apikey: Schema = _APIKEY) -> Schema:
    return {"get": {
        "operationId": operation_id, "summary": "Download a file's bytes",
        "parameters": [handle, apikey, *_CREDENTIALS,
                       _query("dl", "answer as an attachment", {"type": "boolean"})],
        "responses": _responses(None, (*_FILE_ERRORS, 416), {
            "200": _bytes("the file"),
            "206": _bytes("the requested range"),
            "302": {"description": "in transit, or at a POP that has not reported it yet: "
                                   "served by the POP holding it",
                    "headers": {"Location": {"schema": _text()}}},
            "304": {"description": "not modified"},
        })}}


def _metadata(operation_id: str, handle: Schema) -> Schema:
    # `key` is the storage key's flag too: true/false asks for it, any other value is
    # the apikey (no apikey is a boolean).
    flags = [_query(name, f"include {name}", {"type": "boolean"}) for name in (
        "size", "mimetype", "filename", "uploaded", "writeable", "cloud", "source_url",
        "upload_status", "upload_tags", "location", "path", "container", "md5", "sha1",
        "sha224", "sha256", "sha384", "sha512", "exif")]
    key = _query("key", "the app's apikey; or true/false: include the storage key")
    return {"get": {
        "operationId": operation_id, "summary": "A file's metadata",
        "parameters": [handle, key, *_CREDENTIALS, *flags],
        "responses": _responses(_ref("Metadata"), _FILE_ERRORS, {
            "302": {"description": "at a POP that has not reported it yet: answered by "
                                   "the POP holding it",
                    "headers": {"Location": {"schema": _text()}}}})}}


def _file_api() -> dict[str, Schema]:
    api = _download("download", _ANY_HANDLE)
    api["post"] = {
        "operationId": "overwrite", "summary": "Overwrite a file's bytes",
        "parameters": [_ANY_HANDLE, _APIKEY, *_CREDENTIALS,
                       _query("mimetype", "the new type; sniffed when not given")],
        "requestBody": {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "application/x-www-form-urlencoded": {"schema": _object({"url": _text()})}}},
        "responses": _responses(_ref("OverwriteReply"),
                                (*_FILE_ERRORS, 413, 415, 507))}
    api["delete"] = {
        "operationId": "delete", "summary": "Delete a file",
        "parameters": [_ANY_HANDLE, _APIKEY, *_CREDENTIALS,
                       _query("skip_storage", "keep the object in the bucket",
                              {"type": "boolean"})],
        "responses": _responses(_ref("DeleteReply"), _FILE_ERRORS, {
            "302": {"description": "at a POP that has not reported it yet: decided by the "
                                   "POP holding it",
                    "headers": {"Location": {"schema": _text()}}}})}
    return {
        "/api/file/{handle}": api,
        "/api/file/{handle}/metadata": _metadata("metadata", _ANY_HANDLE),
        "/{handle}": _download("cdnDownload", _HANDLE),
        "/{apikey}/{handle}": _download("cdnAppDownload", _HANDLE, _CDN_APIKEY),
        "/{handle}/metadata": _metadata("cdnMetadata", _HANDLE),
    }


def _post(operation_id: str, summary: str, body: Schema, reply: str,
          errors: tuple[int, ...]) -> Schema:
    return {"post": {"operationId": operation_id, "summary": summary, "requestBody": body,
                     "responses": _responses(_ref(reply), errors)}}


def _upload_start(role: Role) -> dict[str, Schema]:
    store = {"type": "object", "properties": {name: _text() for name in (
        "location", "path", "container", "region", "access")}}
    body = _upload_body({"apikey": _text(), "filename": _text(), "size": _int(1)},
                        {"mimetype": _text(), "store": store, "fii": {"type": "boolean"}})
    errors = (*_EVERY_ROUTE, 413) + ((507,) if role == "pop" else ())
    return {"/multipart/start": _post("multipartStart", "Start an upload", body,
                                      "StartReply", errors)}


def _upload_status() -> dict[str, Schema]:
    return {"/multipart/status": _post("multipartStatus", "Which parts are stored",
                                       _upload_body(_IDS), "StatusReply", _UPLOAD_ERRORS)}


def _upload_parts() -> dict[str, Schema]:
    part = _upload_body({**_IDS, "part": _int(1), "size": _int(1)},
                        {"md5": _text(), "offset": _int(), "fii": {"type": "boolean"}})
    listed = {"type": "array", "items": _object({"part_number": _int(1)},
                                                {"etag": _text()})}
    complete = _upload_body({**_IDS}, {
        "parts": listed, "filename": _text(), "size": _int(1), "uri": _text(),
        "region": _text(), "fii": {"type": "boolean"}, "upload_tags": _TAGS})
    return {
        "/multipart/part": {"put": _put_part()},
        "/multipart/upload": _post("multipartUpload", "Where to PUT a part", part,
                                   "PartUrlReply", _UPLOAD_ERRORS),
        "/multipart/commit": _post("multipartCommit", "Every chunk of a part is sent",
                                   _upload_body({**_IDS, "part": _int(1)}), "CommitReply",
                                   (*_UPLOAD_ERRORS, 507)),
        "/multipart/complete": _post("multipartComplete", "Every part is sent", complete,
                                     "CompleteReply", (*_UPLOAD_ERRORS, 507)),
    }


def _put_part() -> Schema:
    """The PUT to the URL `/multipart/upload` answers: its query is signed as a whole."""
    signed = {"upload_id": _text(), "part": _int(1), "offset": _int(), "size": _int(1),
              "expires": _int(), "sig": _text()}
    params = [{"name": name, "in": "query", "required": True, "schema": schema}
              for name, schema in signed.items()]
    params += [_query("md5", "the part's MD5 as the client announced it, base64"),
               _query("whole", "the PUT carries the whole part", {"enum": ["1"]})]
    headers = {name: {"schema": _text()}
               for name in ("ETag", "Cin-Throughput", "Cin-Next-Chunk-Size")}
    ok = {"description": "the bytes are durable at this POP", "headers": headers,
          "content": {_JSON: {"schema": _ref("PartReceipt")}}}
    return {"operationId": "multipartPart", "summary": "Send a part's (or a chunk's) bytes",
            "parameters": params,
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": _responses(None, (*_UPLOAD_ERRORS, 507), {"200": ok})}


def _get(operation_id: str, summary: str, reply: str) -> Schema:
    return {"get": {"operationId": operation_id, "summary": summary,
                    "responses": _responses(_ref(reply), (503,))}}


def describe(role: Role, public_url: str) -> Schema:
    """The description of what a POP (`role="pop"`) or the coordinator serves."""
    paths: dict[str, Schema] = {}
    if role == "pop":
        paths["/health"] = _get("health", "Is this POP up", "PopHealth")
        paths["/api/store/{provider}"] = _store()
        paths["/process"] = _process()
    else:
        paths["/health"] = _get("health", "Is the coordinator up", "CoordinatorHealth")
        paths["/pops"] = _get("pops", "The POPs, their health and load", "Pops")
    paths.update(_file_api())
    paths.update(_upload_start(role))
    if role == "pop":
        paths.update(_upload_parts())
    paths.update(_upload_status())
    title = "cin POP" if role == "pop" else "cin coordinator"
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1",
                 "description": "The Filestack-compatible API of a cin "
                                f"{'POP' if role == 'pop' else 'coordinator'}."},
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


def install(app: web.Application, role: Role, public_url: str) -> None:
    """Serve the description at `GET /openapi.json`, built once."""
    description = describe(role, public_url)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(description)

    app.router.add_get(OPENAPI_PATH, openapi)
