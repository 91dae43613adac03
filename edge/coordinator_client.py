"""How a POP talks to the coordinator: signed msgpack messages, retried when safe.

Every message the POP sends is idempotent on the coordinator's side (event batches are
applied once by event id, status reports are repeatable), so a connection failure or a
503 is retried with backoff; a definite answer, error or not, is returned as is. Stores
and uploads started at the POP send nothing here on their way: the journal ships their
facts (edge/journal/shipper.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import aiohttp

from common.protocol import wire
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.records import FileRecord
from common.web.log_context import current_request_id
from common.web.request_log import REQUEST_ID_HEADER

log = logging.getLogger("cin.edge.coordinator")

R = TypeVar("R", bound=wire.Message)
T = TypeVar("T")

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
DEFAULT_TIMEOUT = 15.0
# Metadata may hash a large file on first request, which takes seconds per gigabyte.
METADATA_TIMEOUT = 300.0


_DEPLOYMENT_FAULTS = frozenset({Code.BAD_INTERNAL_SIGNATURE, Code.BAD_MESSAGE, Code.INTERNAL})


class _NotTheCoordinator(Exception):
    pass


class CoordinatorClient:
    def __init__(self, base_url: str, secret: str, session: aiohttp.ClientSession) -> None:
        self.url = base_url.rstrip("/") + "/internal/v1/rpc"
        self.secret = secret
        self.session = session

    async def call(self, msg: wire.Message, expect: type[R], *,
                   wait_seconds: float = DEFAULT_TIMEOUT, retry: bool = True) -> R:
        """`retry=False`: one attempt, for a message soon superseded by the next one."""
        body = wire.encode(msg)
        delays = RETRY_DELAYS if retry else ()
        for attempt, delay in enumerate((*delays, None)):
            try:
                reply = await self._post(body, wait_seconds)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError,
                    _NotTheCoordinator) as exc:
                if delay is None:
                    raise CinError(Code.COORDINATOR_UNAVAILABLE, str(exc) or "timed out") from exc
                log.warning("coordinator unreachable (%s), retry %d", exc, attempt + 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
                continue
            if isinstance(reply, wire.ErrorReply):
                error = reply.to_error()
                if error.code in _DEPLOYMENT_FAULTS:
                    # The POP and the coordinator disagree (secret, clock, version): not
                    # the client's doing, and nothing the client can fix.
                    log.error("coordinator refused a message: %s", error)
                    raise CinError(Code.COORDINATOR_UNAVAILABLE, error.code.wire)
                raise error
            if not isinstance(reply, expect):
                raise CinError(Code.INTERNAL, f"coordinator answered {reply.TYPE!r}")
            return reply
        raise AssertionError("unreachable")

    async def _post(self, body: bytes, wait_seconds: float) -> wire.Message:
        headers = {"Content-Type": wire.CONTENT_TYPE,
                   wire.SIGNATURE_HEADER: wire.sign(self.secret, body)}
        request_id = current_request_id()
        if request_id is not None:
            # The coordinator logs its part of the request under the client's own id.
            headers[REQUEST_ID_HEADER] = request_id
        async with self.session.post(self.url, data=body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=wait_seconds)) as response:
            payload = await response.read()
        if response.content_type != wire.CONTENT_TYPE:
            # Not the coordinator's answer: a proxy's error page, a draining coordinator's
            # 503, or something else listening there. Worth retrying.
            raise _NotTheCoordinator(f"no coordinator at {self.url} (HTTP {response.status})")
        return wire.decode(payload)

    async def file(self, msg: wire.Message) -> FileRecord:
        return (await self.call(msg, wire.FileReply)).record


class RemoteFiles:
    """The File API's view of files at a POP: asked of the coordinator.

    A file another POP took and has not reported yet is answered FILE_AT_POP, naming that
    POP: raised here as `FileAtPop`, which the File API turns into a redirect to it, as
    the coordinator does. Not when the holder is this POP (`pop`): a redirect to itself
    would never end; such a file is answered from this POP's own journal, and one that is
    not there is a 503 to retry."""

    def __init__(self, client: CoordinatorClient, pop: str | None = None) -> None:
        self.client = client
        self.pop = pop

    async def lookup(self, handle: str) -> FileRecord:
        return await self._asking(self.client.file(wire.LookupFile(handle=handle)))

    async def metadata(self, handle: str, query: Mapping[str, str]) -> dict[str, Any]:
        reply = await self._asking(self.client.call(
            wire.GetMetadata(handle=handle, query=dict(query)), wire.MetadataReply,
            wait_seconds=METADATA_TIMEOUT))
        return reply.fields

    async def delete(self, handle: str, *, skip_storage: bool) -> FileRecord:
        return await self._asking(self.client.file(
            wire.DeleteFile(handle=handle, skip_storage=skip_storage)))

    async def _asking(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except CinError as error:
            at_pop = FileAtPop.from_error(error)
            if at_pop is None or at_pop.pop == self.pop:
                raise
            raise at_pop from None
