"""Security at the HTTP boundary: where a request's credentials are, and whose app it is.

The decisions themselves are `common.protocol.security`'s (pure); this module only reads them out
of an aiohttp request, so every route finds credentials the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from common.config import AppConfig, Config
from common.protocol.errors import CinError, Code
from common.protocol.records import FileRecord
from common.protocol.security import (
    Action,
    Credentials,
    Grant,
    authorize,
    credentials_from,
    parse_security_segment,
)

SECURITY_SEGMENT = "security"  # the match_info name of a CDN `security=` path segment


def request_credentials(request: web.Request,
                        fields: Mapping[str, Any] | None = None) -> Credentials:
    """Credentials from a CDN `security=` segment, the query, basic auth, or JSON fields."""
    return credentials_in(request.query, request.headers.get("Authorization"),
                          request.match_info.get(SECURITY_SEGMENT), fields)


def credentials_in(query: Mapping[str, str], authorization: str | None, segment: str | None,
                   fields: Mapping[str, Any] | None = None) -> Credentials:
    """`request_credentials` of what a request carries, without the request: pure, so
    that it is tested with any input."""
    creds = credentials_from(query, authorization, fields)
    if segment:
        # Every credential presented is checked: the segment's policy, and basic auth
        # beside it. A second, different policy in the query would leave it unclear
        # which one was meant.
        in_path = parse_security_segment(segment)
        if creds.policy is not None and creds.policy.replace(" ", "+") != in_path.policy:
            raise CinError(Code.BAD_POLICY, "policy: the path and the query give different ones")
        return Credentials(in_path.policy, in_path.signature, creds.app_secret)
    if creds.policy is not None and " " in creds.policy:
        # A standard-alphabet policy sent with a bare `+` in the query decodes to a space
        # (form encoding); base64 has no spaces, so the `+` is what the client meant.
        creds = Credentials(creds.policy.replace(" ", "+"), creds.signature, creds.app_secret)
    return creds


def app_of(config: Config, record: FileRecord) -> AppConfig:
    """The app a file belongs to. A file whose app left the config is not served."""
    app = config.apps.get(record.apikey)
    if app is None:
        raise CinError(Code.FILE_NOT_FOUND, record.handle)
    return app


def authorize_file(request: web.Request, config: Config, record: FileRecord,
                   action: Action) -> Grant:
    """Authorize `action` on an existing file with the request's credentials."""
    return authorize(app_of(config, record), request_credentials(request), action)
