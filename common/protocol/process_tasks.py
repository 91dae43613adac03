"""`POST /process`, Filestack's Processing API, as far as cin runs it: store a file from
a URL (the `store` task), under a policy (the `security` task).

Both Filestack SDKs store from a URL this way (PROTOCOL.md §2), with a JSON body:

    {"apikey": "...", "sources": ["https://..."],
     "tasks": [{"name": "store", "params": {"location": "s3", "path": "in/", ...}},
               {"name": "security", "params": {"policy": "...", "signature": "..."}}],
     "upload_tags": {...}}

filestack-python sends `params` always (`{}` when empty); filestack-js leaves it out
when there are none, and may send a source as `{"source": url, "headers": {...}}`.

Pure: the body in, a `ProcessStore` (or a `CinError` naming what is wrong) out. The store
options come out as a REST store's query names them, so that they are checked where
that query is (common/protocol/store_params.py), and the URL as text, checked by the
fetcher's guard before anything is fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.naming import is_unicode
from common.protocol.tags import validate_tags

STORE_TASK = "store"
SECURITY_TASK = "security"
# The options of a store task that cin takes, as the REST store's query spells them.
STORE_OPTIONS = ("filename", "mimetype", "path", "container", "region", "access",
                 "base64decode")
# A body cin runs has two tasks at most; a longer list is refused before it is read.
MAX_TASKS = 16
MAX_TEXT = 4096  # a URL is at most 2,048 characters (edge/rest/url_fetch.py); a path less


def _bad(detail: str) -> CinError:
    return CinError(Code.BAD_PARAMETER, detail)


@dataclass(frozen=True)
class ProcessStore:
    """A `/process` body that asks cin to store one URL."""

    apikey: str | None  # None: the request names no apikey (MISSING_APIKEY, later)
    source_url: str
    location: str | None  # the storage provider; None is the app's first location
    options: dict[str, str]  # store options, as a REST store's query would carry them
    security: dict[str, Any] | None  # the security task's params: policy, signature
    tags: dict[str, str]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ProcessStore:
        tasks = _tasks(body.get("tasks"))
        store = tasks.get(STORE_TASK)
        if store is None:
            raise _bad("tasks: cin runs a store task, and the body has none")
        location = _option_text(store, "location")
        return cls(
            apikey=_optional_text(body, "apikey", limit=64),
            source_url=_source(body.get("sources")),
            location=location,
            options=_options(store),
            security=tasks.get(SECURITY_TASK),
            tags=validate_tags(body.get("upload_tags")),
        )


def _optional_text(fields: Mapping[str, Any], name: str, *, limit: int = MAX_TEXT,
                   where: str = "") -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(f"{where}{name} must be a string of at most {limit} characters")
    if not is_unicode(value):
        raise _bad(f"{where}{name} is not valid Unicode text")
    return value


def _tasks(value: Any) -> dict[str, dict[str, Any]]:
    """The tasks by name, each with its params (`{}` when it has none)."""
    if not isinstance(value, list) or not value:
        raise _bad("tasks must be a non-empty list of {name, params}")
    if len(value) > MAX_TASKS:
        raise _bad(f"tasks: at most {MAX_TASKS}")
    tasks: dict[str, dict[str, Any]] = {}
    for task in value:
        if not isinstance(task, dict):
            raise _bad("tasks: each task must be an object {name, params}")
        name = task.get("name")
        if not isinstance(name, str) or not is_unicode(name):
            raise _bad("tasks: each task needs a name")
        if name not in (STORE_TASK, SECURITY_TASK):
            # A transformation cin skipped would leave the client believing it stored
            # what it asked for: refuse it by name.
            raise _bad(f"tasks: cin runs only the store and security tasks, "
                       f"not {name[:40]!r}")
        if name in tasks:
            raise _bad(f"tasks: {name} is given twice")
        params = task.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise _bad(f"tasks: the params of {name} must be an object")
        tasks[name] = params
    return tasks


def _source(value: Any) -> str:
    """The one URL to store: `sources` holds it as text, or as {source, headers}."""
    if not isinstance(value, list) or len(value) != 1:
        raise _bad("sources must be a list of one URL: a store task stores one file")
    source = value[0]
    if isinstance(source, dict):
        if source.get("headers"):
            # The source is fetched by the POP as the URL alone; a fetch that silently
            # left out the client's headers (its Authorization, say) would store
            # something else, or fail for a reason the client cannot see.
            raise _bad("sources: cin fetches a URL without the client's headers")
        url = _optional_text(source, "source", where="sources: ")
    elif isinstance(source, str):
        url = _optional_text({"source": source}, "source", where="sources: ")
    else:
        raise _bad("sources: a source is a URL, or {source: URL}")
    if url is None:
        raise _bad("sources: the source URL is empty")
    return url


def _option_text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, bool):
        # A flag as the REST store's query carries one (common/protocol/flags.py).
        return "true" if value else "false"
    return _optional_text(params, name, where="store: ")


def _options(params: Mapping[str, Any]) -> dict[str, str]:
    """The store options cin takes. Others are ignored, as the Upload API ignores extra
    keys (`workflows`: cin runs no workflows)."""
    options: dict[str, str] = {}
    for name in STORE_OPTIONS:
        value = _option_text(params, name)
        if value is not None:
            options[name] = value
    return options
