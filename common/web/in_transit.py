"""Who answers a download of an In Transit file: injected into the File API by each app.

While a file is In Transit its bytes are only in the spool of the POP that took them,
`record.pop` (ARCHITECTURE.md, "One file's life", step 4). `common.web.file_routes` hands such
a download, once authorized, to the app's `InTransitServer`. The holding POP streams the
file from its spool (edge/downloads/transit_download.py); every other node, the coordinator
included, uses `HolderRedirect`: a 302 to the same path and query at the holder, so a link
works wherever it points. A node that should fetch from the holder and relay the bytes
instead would set another `InTransitServer` in its place; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from common.config import Config, PopConfig
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.records import FileRecord


class InTransitServer(Protocol):
    async def __call__(self, request: web.Request,
                       record: FileRecord) -> web.StreamResponse: ...


def holder_of(config: Config, record: FileRecord) -> PopConfig:
    """The POP holding an In Transit file's bytes, as this node's config knows it."""
    for pop in config.pops:
        if pop.name == record.pop:
            return pop
    raise CinError(Code.IN_TRANSIT_UNAVAILABLE,
                   f"{record.handle} is held by POP {record.pop!r}, unknown to this node")


HolderCheck = Callable[[PopConfig], str | None]
"""Why a POP cannot serve now ("down", ...), or None when it is not known not to."""


def _no_news(pop: PopConfig) -> None:
    return None


class HolderRedirect:
    """`302 Found` to the holding POP. Not 307: filestack-js's Node client follows only 301
    and 302, and takes a 307 as the download itself (an empty body). Only downloads come
    here, and a GET or HEAD keeps its method through a 302 in every client (only a POST
    may turn into a GET). Not cacheable: once the file is Complete, every node serves it.

    `unavailable` is what this node knows of the holder's health (the coordinator hears
    every POP's heartbeat): a holder known to be down or leaving is answered here with a
    503 to retry, rather than a redirect to a POP that will not answer."""

    def __init__(self, config: Config, unavailable: HolderCheck = _no_news) -> None:
        self.config = config
        self.unavailable = unavailable

    async def __call__(self, request: web.Request,
                       record: FileRecord) -> web.StreamResponse:
        pop = holder_of(self.config, record)
        return self._to(request, pop, record.handle, Code.IN_TRANSIT_UNAVAILABLE)

    async def started(self, request: web.Request,
                      record: FileRecord) -> web.StreamResponse:
        """The same redirect for a file this node knows only as Started: at the
        coordinator, an upload its POP completed a moment ago stays Started until that
        POP's In Transit fact arrives. The POP knows, so ask it."""
        return self.to_pop(request, FileAtPop(record.handle, record.pop))

    def to_pop(self, request: web.Request, at_pop: FileAtPop) -> web.StreamResponse:
        """The same redirect for a file leased to a POP that has not reported it yet
        (FILE_AT_POP when that POP cannot serve it, or is unknown here)."""
        pop = next((pop for pop in self.config.pops if pop.name == at_pop.pop), None)
        if pop is None:
            raise CinError(Code.FILE_AT_POP, f"{at_pop.handle} is at POP {at_pop.pop!r}, "
                                             "unknown to this node")
        return self._to(request, pop, at_pop.handle, Code.FILE_AT_POP)

    def _to(self, request: web.Request, pop: PopConfig, handle: str,
            unavailable: Code) -> web.StreamResponse:
        why = self.unavailable(pop)
        if why is not None:
            raise CinError(unavailable, f"{handle} is held by POP {pop.name}, which is {why}")
        # `rel_url` is the path and query as received, still percent-encoded, and never an
        # authority: a policy and signature in either pass through unchanged.
        location = pop.public_url.rstrip("/") + str(request.rel_url)
        return web.Response(status=302, headers={"Location": location,
                                                 "Cache-Control": "no-store"})
