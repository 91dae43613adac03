"""Downloads of In Transit files at a POP (ARCHITECTURE.md, "One file's life", step 4).

A file is In Transit from the moment every byte is durable at the POP that took it
(`record.pop`, the holder) until every part is in the bucket. Its link works meanwhile:
the holder streams the bytes from its spool, part after part, ~1 MiB at a time; another
POP sends the client to the holder (common/web/in_transit.py). The spool is freed once the
coordinator says Complete, so a holder that no longer finds the bytes asks again and, the
file being Complete, serves it from the bucket, even half-way through a response.

The ETag of an In Transit file is weak and derived from its upload: `W/"transit-<hash of
the upload id>"`. A strong, content-derived tag would mean hashing every byte per request
(or the parts' MD5s, which the spool computes only by reading whole parts); the bucket's
ETag does not exist yet. The upload id names these bytes exactly (parts are immutable once
complete), so the tag is stable across requests and POP restarts, and it changes once the
file is Complete, when the bucket's tag takes over: a cache revalidates once then. It is
hashed because the upload id is the key of the upload at the Upload API routes, and weak
because no content hash stands behind it (RFC 9110 also keeps weak tags out of If-Range).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, PartRecord
from common.storage import ByteRange, ObjectReader
from common.storage.storage_set import StorageSet
from common.web.download import Body, serve_bytes
from common.web.file_routes import FileSource, serve_record
from common.web.in_transit import InTransitServer
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal
from edge.multipart.part_spool import PartSpool

log = logging.getLogger("cin.edge.transit")


@dataclass(frozen=True)
class PartSlice:
    """Bytes `[start, start + length)` of part `part`."""

    part: int
    start: int
    length: int


def part_slices(sizes: Sequence[int], wanted: ByteRange) -> list[PartSlice]:
    """The slices of parts 1..N (of `sizes` bytes) that make up bytes `wanted` of the file."""
    slices: list[PartSlice] = []
    part_first = 0
    for number, size in enumerate(sizes, 1):
        first, last = max(wanted.first, part_first), min(wanted.last, part_first + size - 1)
        if first <= last:
            slices.append(PartSlice(number, first - part_first, last - first + 1))
        part_first += size
    return slices


def transit_etag(upload_id: str) -> str:
    digest = hashlib.sha256(f"cin-transit:{upload_id}".encode()).hexdigest()[:32]
    return f'W/"transit-{digest}"'


@dataclass(frozen=True)
class HeldFile:
    """An In Transit file whose every part is whole in this POP's spool."""

    record: FileRecord
    upload_id: str
    sizes: tuple[int, ...]  # of parts 1..N


class TransitDownloads:
    """A POP's `InTransitServer`: the files it holds from its spool, others `elsewhere`."""

    def __init__(self, pop: str, spool: PartSpool, coordinator: CoordinatorClient,
                 journal: PopJournal, files: FileSource, storage: StorageSet,
                 elsewhere: InTransitServer) -> None:
        self.pop = pop
        self.spool = spool
        self.coordinator = coordinator
        self.journal = journal
        self.files = files
        self.storage = storage
        self.elsewhere = elsewhere

    async def __call__(self, request: web.Request,
                       record: FileRecord) -> web.StreamResponse:
        if record.pop != self.pop:
            return await self.elsewhere(request, record)
        reply = await self._upload_of_file(record.handle)
        current = reply.record
        if current.status is FileStatus.IN_TRANSIT:
            held = await self._held(reply)
            if held is not None:
                async def open_body(byte_range: ByteRange | None) -> Body:
                    whole = ByteRange(0, held.record.size - 1)
                    return SpooledBody(self, held, byte_range or whole)

                return await serve_bytes(request, held.record, etag=transit_etag(held.upload_id),
                                         size=held.record.size, open_body=open_body)
            # Freed meanwhile (the file became Complete), or never all here.
            current = await self.files.lookup(record.handle)
        if current.status is FileStatus.IN_TRANSIT:
            raise CinError(Code.IN_TRANSIT_UNAVAILABLE,
                           f"{record.handle} is not all spooled at {self.pop}")
        return await serve_record(request, current)

    async def _upload_of_file(self, handle: str) -> wire.UploadPartsReply:
        """The upload bringing a file and its parts: for an upload started here that the
        coordinator has not acknowledged yet, from the journal and the spool (every part
        of such an upload In Transit is here); otherwise as the coordinator records it."""
        local = await self.journal.file(handle)
        if local is not None and local.upload is not None and not local.acknowledged:
            upload_id = local.upload.upload_id
            parts = []
            try:
                for number in await self.spool.part_numbers(upload_id):
                    state = await self.spool.part_state(upload_id, number)
                    parts.append(PartRecord(number, self.pop, "spooled", state.contiguous,
                                            None))
            except CinError as exc:
                if exc.code is not Code.FILE_NOT_FOUND:
                    raise
            return wire.UploadPartsReply(record=local.record, upload=local.upload, parts=parts)
        return await self.coordinator.call(wire.LookupUploadOfFile(handle=handle),
                                           wire.UploadPartsReply)

    async def _held(self, reply: wire.UploadPartsReply) -> HeldFile | None:
        """The file, if every part the coordinator recorded is whole in the spool."""
        upload_id = reply.upload.upload_id
        parts = sorted(reply.parts, key=lambda part: part.number)
        sizes = tuple(part.size for part in parts)
        if ([part.number for part in parts] != list(range(1, len(parts) + 1))
                or sum(sizes) != reply.record.size):
            log.error("%s: the coordinator's parts do not make up the file", reply.record.handle)
            return None
        try:
            for part in parts:
                state = await self.spool.part_state(upload_id, part.number)
                if state.size_if_complete(part.size) is None:
                    return None
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:  # the upload is not (or no longer) here
                return None
            raise
        return HeldFile(reply.record, upload_id, sizes)

    async def rest_from_bucket(self, held: HeldFile, rest: ByteRange) -> ObjectReader:
        """Bytes `rest` of a file that was In Transit and must now be in the bucket."""
        current = await self.files.lookup(held.record.handle)
        if (current.status is not FileStatus.COMPLETE or current.version != held.record.version
                or current.size != held.record.size):
            raise CinError(Code.IN_TRANSIT_UNAVAILABLE,
                           f"{current.handle} left the spool but is {current.status.value}")
        reader = await self.storage[current.storage].get(current.container, current.key, rest)
        if current.etag is not None and reader.info.etag != current.etag:
            await reader.close()
            raise CinError(Code.FILE_GONE, "another upload replaced the object at this key")
        return reader


class SpooledBody:
    """Bytes `wanted` of a held file: from the spool part by part, never more than a block
    in memory; if the spool is freed mid-way, the rest from the bucket."""

    def __init__(self, downloads: TransitDownloads, held: HeldFile, wanted: ByteRange) -> None:
        self.downloads = downloads
        self.held = held
        self.wanted = wanted
        self._generator: AsyncGenerator[bytes, None] | None = None
        self._part: AsyncIterator[bytes] | None = None
        self._bucket: ObjectReader | None = None

    def chunks(self) -> AsyncIterator[bytes]:
        self._generator = self._generate()
        return self._generator

    async def close(self) -> None:
        if self._generator is not None:
            await self._generator.aclose()
        await self._release()

    async def _generate(self) -> AsyncGenerator[bytes, None]:
        position = self.wanted.first
        spool, upload_id = self.downloads.spool, self.held.upload_id
        try:
            try:
                for piece in part_slices(self.held.sizes, self.wanted):
                    self._part = await spool.read_range(upload_id, piece.part, piece.start,
                                                        piece.length)
                    async for block in self._part:
                        position += len(block)
                        yield block
                    await self._release()
                return
            except (CinError, OSError) as exc:
                # The transfer finished and the POP freed the spool: the same bytes are in
                # the bucket now. Anything else, rest_from_bucket refuses.
                log.info("%s left the spool at byte %d (%s); the rest from the bucket",
                         self.held.record.handle, position, exc)
                await self._release()
            if position > self.wanted.last:
                return
            self._bucket = await self.downloads.rest_from_bucket(
                self.held, ByteRange(position, self.wanted.last))
            async for chunk in self._bucket.chunks():
                yield chunk
        finally:
            await self._release()

    async def _release(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, AsyncGenerator):
            await part.aclose()
        bucket, self._bucket = self._bucket, None
        if bucket is not None:
            await bucket.close()
