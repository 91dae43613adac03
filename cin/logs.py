"""How the `cin` command writes its log: `log_format` text or json, at `log_level`, to
stderr, every line naming the request that caused it (common/web/log_context.py).

The readiness lines (`cin: ... at URL`, `cin: ready`) are not log records: they go to
stdout as plain text in either format, for the scripts and tests that wait on them.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from common.config import LogFormat, LogLevel
from common.web.log_context import RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_tag)s] %(message)s"
# The record attributes a JSON line holds, and the names it gives them; its `time` is
# ISO 8601 in UTC.
JSON_FIELDS = ("levelname", "name", "message", "request_id")
JSON_NAMES = {"levelname": "level", "name": "logger"}
NO_REQUEST = "-"


class TextFormatter(logging.Formatter):
    """One readable line; `[-]` where no request caused it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.request_tag = getattr(record, "request_id", None) or NO_REQUEST
        return super().formatMessage(record)


def json_formatter() -> JsonFormatter:
    """One JSON object a line: level, logger, message, request_id (null when no request
    caused it), time, exc_info for a traceback, and whatever `extra` a caller gave."""
    return JsonFormatter(list(JSON_FIELDS), rename_fields=JSON_NAMES, timestamp="time",
                         reserved_attrs=[*RESERVED_ATTRS, "request_tag"])


def handler(stream: TextIO, log_format: LogFormat) -> logging.Handler:
    """A handler writing `log_format` lines to `stream`, each with its request id."""
    writer = logging.StreamHandler(stream)
    writer.addFilter(RequestIdFilter())
    writer.setFormatter(json_formatter() if log_format == "json" else TextFormatter())
    return writer


def configure(log_format: LogFormat = "text", log_level: LogLevel = "info", *,
              verbose: bool = False) -> None:
    """Route every logger through one stderr handler; `verbose` (`-v`) means debug."""
    level = logging.DEBUG if verbose else logging.getLevelNamesMapping()[log_level.upper()]
    # Neither format writes where a line was logged from, nor its thread or process:
    # not gathering them spares every record a walk up the stack and three look-ups
    # (the "Optimization" knobs of the logging HOWTO; a POP logs lines per store).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=level, handlers=[handler(sys.stderr, log_format)], force=True)
