"""Which request a log line belongs to.

The request-id middleware (common/web/request_log.py) puts each request's id in
`REQUEST_ID_VAR` while the request runs; `RequestIdFilter`, on the handlers cin's logging
writes through, copies it onto every record as `request_id`. So a line written anywhere a
request led (a handler, the storage driver, the coordinator client) names the request,
without the id being passed down by hand. Tasks copy their creator's context, so work a
request starts in the background (a shielded job) keeps its id too, after the request
itself has ended. A line no request caused (a heartbeat, a sweep) has `request_id` None.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

REQUEST_ID_VAR: ContextVar[str | None] = ContextVar("cin_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request this code runs for, if any."""
    return REQUEST_ID_VAR.get()


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to each record (keeping one the caller gave in `extra`, as the
    access log does: aiohttp writes that line after the request's context is gone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID_VAR.get()
        return True
