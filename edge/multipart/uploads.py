"""The Upload API's uploads as a POP sees them: its own, and everyone else's.

An upload started at this POP is this POP's to run: its handle comes from the POP's
lease, its upload id is minted here (common/protocol/handle_lease.py), the bucket's
multipart upload is opened here, and every fact about it (started, a part stored, In
Transit, stored whole) is journaled and shipped to the coordinator in the background
(edge/journal). No step of it waits on the coordinator.

An upload started elsewhere (at another POP, or at the coordinator) is the coordinator's
to describe: it is looked up there, and its facts are reported to it at once, as
before. So is an upload of this POP's that moved: a complete here that needs parts this
POP neither holds nor stored first ships this POP's journal, then asks the coordinator,
which has the whole picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from common.config import Config, PopConfig
from common.protocol import pop_events, wire
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import mint_upload_id
from common.protocol.limits import MIN_PART_SIZE
from common.protocol.new_files import new_file_record
from common.protocol.pop_events import new_event_id
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.upload_expiry import expired_reason
from common.storage import Access
from common.storage.storage_set import StorageSet
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal

log = logging.getLogger("cin.edge.uploads")

# How long a complete that needs the coordinator waits for this POP's journal to reach
# it first: its events say which parts this POP stored.
FLUSH_SECONDS = 10.0

Flush = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class KnownUpload:
    record: FileRecord
    upload: UploadRecord
    local: bool  # started at this POP: its journal describes it


class PopUploads:
    def __init__(self, config: Config, pop: PopConfig, journal: PopJournal,
                 coordinator: CoordinatorClient, storage: StorageSet, flush: Flush,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.pop = pop
        self.journal = journal
        self.coordinator = coordinator
        self.storage = storage
        self.flush = flush
        self.clock = clock

    async def start(self, message: wire.StartUpload) -> tuple[FileRecord, UploadRecord]:
        """Name the file from this POP's lease and open the bucket's multipart upload;
        answered once the start is journaled."""
        now = self.clock()
        record = new_file_record(message, handle=await self.journal.take_handle(),
                                 pop=self.pop.name, now=now)
        storage_upload_id = ""
        if record.size >= MIN_PART_SIZE:
            # Smaller files go in one PutObject (UploadRecord.in_one_put): two round
            # trips to the bucket fewer, and nothing left pending if the client gives up.
            storage_upload_id = await self.storage[record.storage].create_multipart(
                record.container, record.key, content_type=record.mimetype,
                access=Access(record.access))
        upload = UploadRecord(upload_id=mint_upload_id(self.config.internal_secret,
                                                       record.handle),
                              handle=record.handle, storage_upload_id=storage_upload_id,
                              pop=self.pop.name, fii=message.fii, created=now)
        started = pop_events.UploadStarted(new_event_id(), record.handle, now, record, upload)
        try:
            await self.journal.begin(record, upload, started)
        except BaseException:
            if storage_upload_id:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.storage[record.storage].abort_multipart(
                        record.container, record.key, storage_upload_id))
            raise
        self.journal.wake_shipper()
        log.info("upload %s of %s started: %s/%s (%d bytes)", upload.upload_id,
                 record.handle, record.container, record.key, record.size)
        return record, upload

    async def find(self, upload_id: str) -> KnownUpload:
        """The upload and its file: from the journal if it started here, else from the
        coordinator (FILE_NOT_FOUND if nobody knows it)."""
        local = await self.journal.upload(upload_id)
        if local is not None and local.upload is not None:
            record, upload = local.record, local.upload
            if (record.status is FileStatus.STARTED
                    and self.clock() - upload.created > self.config.upload_expiry.ttl):
                # The coordinator fails it at the same age; this POP need not ask.
                record = record.with_changes(status=FileStatus.FAILED)
                upload = UploadRecord(**{**upload.to_wire(), "failure": expired_reason(
                    self.config.upload_expiry.ttl)})
            return KnownUpload(record, upload, local=True)
        reply = await self.coordinator.call(wire.LookupUpload(upload_id=upload_id),
                                            wire.UploadReply)
        return KnownUpload(reply.record, reply.upload, local=False)

    async def recorded_parts(self, known: KnownUpload) -> list[PartRecord]:
        """The coordinator's parts of an upload started elsewhere: stored ones (from any
        POP) and, once it is In Transit, the ones a POP holds."""
        reply = await self.coordinator.call(
            wire.LookupUploadParts(upload_id=known.upload.upload_id), wire.UploadPartsReply)
        return reply.parts

    async def part_stored(self, known: KnownUpload, part: int, size: int,
                          etag: str) -> FileRecord | None:
        """A part is in the bucket. For an upload started elsewhere, the coordinator's
        record after hearing it; None for this POP's own (the journal ships the fact)."""
        if known.local:
            await self.journal.record(pop_events.PartStored(
                new_event_id(), known.record.handle, self.clock(), known.upload.upload_id,
                part, size, etag))
            self.journal.wake_shipper()
            return None
        return await self.coordinator.file(wire.PartStored(
            upload_id=known.upload.upload_id, part=part, size=size, etag=etag,
            pop=self.pop.name))

    async def stored_whole(self, known: KnownUpload, size: int, etag: str) -> FileRecord:
        """A one-put upload's object is in the bucket: the file is Complete."""
        if known.local:
            stored = known.record.with_changes(status=FileStatus.COMPLETE, size=size,
                                               etag=etag)
            await self.journal.record(pop_events.UploadStored(
                new_event_id(), known.record.handle, self.clock(), known.upload.upload_id,
                size, etag), record=stored)
            self.journal.wake_shipper()
            return stored
        return await self.coordinator.file(wire.FileStored(handle=known.record.handle,
                                                           size=size, etag=etag))

    async def complete(self, known: KnownUpload, held: Mapping[int, int],
                       tags: dict[str, str]) -> FileRecord:
        """Every byte is durable: In Transit. `held`: the parts this POP holds (number →
        size). When they make up the whole file of this POP's own upload, that is
        decided here; otherwise (parts went to other POPs, or the upload is not this
        POP's) the coordinator checks the parts of every POP together."""
        record = known.record
        if known.local and _whole(held, record.size):
            if record.status is not FileStatus.STARTED:
                return record  # a repeated complete
            in_transit = record.with_changes(status=FileStatus.IN_TRANSIT, tags=dict(tags))
            await self.journal.record(pop_events.UploadInTransit(
                new_event_id(), record.handle, self.clock(), known.upload.upload_id,
                [[number, size] for number, size in sorted(held.items())], dict(tags)),
                record=in_transit, upload=known.upload)
            self.journal.wake_shipper()
            log.info("upload %s of %s in transit (%d parts)", known.upload.upload_id,
                     record.handle, len(held))
            return in_transit
        if known.local:
            # The coordinator must know the start and this POP's stored parts first.
            await self.flush(FLUSH_SECONDS)
        return await self.coordinator.file(wire.CompleteUpload(
            upload_id=known.upload.upload_id,
            parts=[[number, size] for number, size in sorted(held.items())],
            tags=tags, pop=self.pop.name))


def _whole(held: Mapping[int, int], size: int) -> bool:
    """Whether parts 1..N, with these sizes, make up a file of `size` bytes."""
    return bool(held) and sorted(held) == list(range(1, len(held) + 1)) \
        and sum(held.values()) == size
