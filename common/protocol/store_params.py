"""The query parameters of a REST store, checked before any byte is read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from common.config import StorageConfig
from common.protocol.errors import CinError, Code
from common.protocol.flags import query_flag
from common.protocol.locations import choose_container
from common.protocol.naming import clean_filename, validate_path
from common.protocol.sniff import is_mimetype
from common.protocol.tags import tags_from_json_text
from common.storage import Access

_REGION_RE = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}")  # fullmatch: `$` lets "\n" through


@dataclass(frozen=True)
class StoreParams:
    filename: str | None
    mimetype: str | None
    path: str | None
    container: str
    region: str | None
    access: Access
    base64decode: bool
    tags: dict[str, str]

    @classmethod
    def from_query(cls, query: Mapping[str, str], location: StorageConfig) -> StoreParams:
        filename = query.get("filename")
        mimetype = query.get("mimetype")
        if mimetype is not None and not is_mimetype(mimetype.strip()):
            raise CinError(Code.BAD_PARAMETER, f"mimetype {mimetype[:100]!r} is not type/subtype")
        # Kept as the key will have it (no leading '/'), so a policy's path pattern is
        # matched against what is stored, however the client spelled it.
        path = query.get("path")
        if path is not None:
            path = validate_path(path)
        region = query.get("region") or query.get("storeRegion")
        if region is not None and not _REGION_RE.fullmatch(region):
            raise CinError(Code.BAD_PARAMETER, f"region {region[:64]!r} is not a region name")
        access_text = query.get("access", "private").lower()
        try:
            access = Access(access_text)
        except ValueError:
            raise CinError(Code.BAD_PARAMETER, "access must be public or private") from None
        return cls(
            filename=clean_filename(filename) if filename else None,
            mimetype=mimetype.strip().lower() if mimetype else None,
            path=path,
            container=choose_container(location, query.get("container")),
            region=region,
            access=access,
            base64decode=query_flag(query, "base64decode") is True,
            tags=tags_from_json_text(query["upload_tags"]) if "upload_tags" in query else {},
        )

