"""The Upload API's JSON requests (PROTOCOL.md §3), parsed and checked before anything runs.

Every request is a JSON object; extra keys are ignored, as the SDKs send more than any
one step needs. A missing or ill-typed field is a 400 that names it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS
from common.protocol.naming import is_unicode
from common.protocol.tags import validate_tags

MIN_CHUNK = 32 * 1024  # Intelligent Ingestion's smallest chunk
# A count sent as a string: 20 digits hold any size S3 allows; int() refuses 4,300+.
_MAX_DIGITS = 20


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:  # `[[[[…` deeper than the interpreter's stack
        raise CinError(Code.BAD_PARAMETER, f"{what} nests too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is one
        raise CinError(Code.BAD_PARAMETER, f"{what} is not JSON: {exc}") from exc


def parse_body(body: bytes) -> dict[str, Any]:
    """An Upload API request body: a JSON object (an empty body is an empty one)."""
    value = _json(body or b"{}", "the body")
    if not isinstance(value, dict):
        raise CinError(Code.BAD_PARAMETER, "the body must be a JSON object")
    return value


def _optional_text(fields: Mapping[str, Any], name: str, *, limit: int = 1024) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise CinError(Code.BAD_PARAMETER, f"{name} must be a string of at most {limit} "
                                           "characters")
    if not is_unicode(value):
        raise CinError(Code.BAD_PARAMETER, f"{name} is not valid Unicode text")
    return value


def _text(fields: Mapping[str, Any], name: str, *, limit: int = 1024) -> str:
    value = _optional_text(fields, name, limit=limit)
    if value is None:
        raise CinError(Code.BAD_PARAMETER, f"{name} is required")
    return value


def _optional_int(fields: Mapping[str, Any], name: str, *, minimum: int,
                  maximum: int) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() \
            and len(value) <= _MAX_DIGITS:
        # Some clients send numbers as strings. ASCII digits only: `"²".isdigit()` is
        # true but int() refuses it, and int() would take "٣", " 3" or "1_0".
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise CinError(Code.BAD_PARAMETER,
                       f"{name} must be an integer from {minimum} to {maximum}")
    return value


def _int(fields: Mapping[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = _optional_int(fields, name, minimum=minimum, maximum=maximum)
    if value is None:
        raise CinError(Code.BAD_PARAMETER, f"{name} is required")
    return value


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if value in (True, "true", "True", 1):
        return True
    if value in (False, None, "false", "False", 0, ""):
        return False
    raise CinError(Code.BAD_PARAMETER, f"{name} must be true or false")


@dataclass(frozen=True)
class StoreOptions:
    """The `store` object, as text; its values are checked as the REST store's query is
    (common/protocol/store_params.py)."""

    location: str | None
    path: str | None
    container: str | None
    region: str | None
    access: str | None

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> StoreOptions:
        store = fields.get("store") or {}
        if not isinstance(store, dict):
            raise CinError(Code.BAD_PARAMETER, "store must be an object")
        return cls(location=_optional_text(store, "location"),
                   path=_optional_text(store, "path"),
                   container=_optional_text(store, "container"),
                   region=_optional_text(store, "region"),
                   access=_optional_text(store, "access"))


@dataclass(frozen=True)
class StartRequest:
    apikey: str
    filename: str
    mimetype: str | None
    size: int
    store: StoreOptions
    fii: bool

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> StartRequest:
        return cls(
            apikey=_text(fields, "apikey", limit=64),
            filename=_text(fields, "filename"),
            mimetype=_optional_text(fields, "mimetype", limit=255),
            size=_int(fields, "size", minimum=1, maximum=MAX_OBJECT_SIZE),
            store=StoreOptions.parse(fields),
            fii=_flag(fields, "fii"),
        )


@dataclass(frozen=True)
class UploadIds:
    """What every step after start names: the app and the upload."""

    apikey: str
    upload_id: str

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> UploadIds:
        return cls(apikey=_text(fields, "apikey", limit=64),
                   upload_id=_text(fields, "upload_id", limit=128))


@dataclass(frozen=True)
class PartRequest:
    """`/multipart/upload`: where to PUT one part, or one chunk of a part (FII)."""

    ids: UploadIds
    part: int
    size: int
    md5: str | None  # base64 of the raw digest
    offset: int
    fii: bool

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> PartRequest:
        md5 = _optional_text(fields, "md5", limit=64)
        if md5 is not None:
            try:
                if len(base64.b64decode(md5, validate=True)) != 16:
                    raise ValueError
            except (binascii.Error, ValueError):
                raise CinError(Code.BAD_PARAMETER,
                               "md5 must be the base64 of a 16-byte MD5 digest") from None
        return cls(
            ids=UploadIds.parse(fields),
            part=_int(fields, "part", minimum=1, maximum=MAX_PARTS),
            size=_int(fields, "size", minimum=1, maximum=MAX_PART_SIZE),
            md5=md5,
            offset=_optional_int(fields, "offset", minimum=0, maximum=MAX_PART_SIZE) or 0,
            fii=_flag(fields, "fii"),
        )


@dataclass(frozen=True)
class CommitRequest:
    """`/multipart/commit` (FII): every chunk of `part` has been sent."""

    ids: UploadIds
    part: int

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> CommitRequest:
        return cls(ids=UploadIds.parse(fields),
                   part=_int(fields, "part", minimum=1, maximum=MAX_PARTS))


@dataclass(frozen=True)
class CompleteRequest:
    ids: UploadIds
    parts: dict[int, str]  # regular parts the client lists: number → ETag it was given
    fii: bool
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> CompleteRequest:
        listed = fields.get("parts") or []
        if isinstance(listed, str):  # filestack-js sends it as a JSON string in some modes
            listed = _json(listed, "parts")
        if not isinstance(listed, list) or len(listed) > MAX_PARTS:
            raise CinError(Code.BAD_PARAMETER, f"parts must be a list of at most {MAX_PARTS}")
        parts: dict[int, str] = {}
        for item in listed:
            if not isinstance(item, dict):
                raise CinError(Code.BAD_PARAMETER, "each part is {part_number, etag}")
            number = _int(item, "part_number", minimum=1, maximum=MAX_PARTS)
            parts[number] = (_optional_text(item, "etag", limit=128) or "").strip('"')
        return cls(ids=UploadIds.parse(fields), parts=parts, fii=_flag(fields, "fii"),
                   tags=validate_tags(fields.get("upload_tags")))
