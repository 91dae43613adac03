"""A POP's background transfer of spooled parts to the bucket.

A part that arrived whole (a regular part) is sent as soon as it is written, while the
client still sends the rest: stored parts survive this POP, and the client can finish
the upload at another one. The parts that remain are sent when the client completes.
A file smaller than the bucket's smallest part has no multipart upload: its parts go up
as one PutObject after complete.

Sends are bounded, and retried with capped backoff for as long as the bucket fails and
the upload exists: the POP acknowledged these bytes, so it does not give up on them.
Each stored part is reported to the coordinator until the report is acknowledged. When
the coordinator answers that the file is Complete, or Failed (it expired, or was refused),
the POP frees its spool at once: a full spool turns stores away. So it does when the
bucket upload turns out to be gone or a report is refused, once the coordinator says the
upload has ended. Transfers still running at shutdown are cancelled; the spool keeps
their bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from common.storage import Access, StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from edge.coordinator_client import CoordinatorClient
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import FinishedPart, PartSpool

log = logging.getLogger("cin.edge.transfer")

CONCURRENCY = 4  # parts in flight to the bucket per POP
FIRST_RETRY = 0.5  # seconds; doubles after each failure
MAX_RETRY = 60.0
# The bucket will never take these: the multipart upload is gone (completed, or aborted
# when the upload expired) or the request itself is wrong.
_FINAL = frozenset({StorageErrorKind.NO_SUCH_UPLOAD, StorageErrorKind.BAD_KEY,
                    StorageErrorKind.INVALID_PART})
_WHOLE_FILE = 0  # the transfer key of a one-put upload: it has no part numbers
# An upload whose file is in one of these needs nothing of what its POP holds.
_ENDED = frozenset({FileStatus.COMPLETE, FileStatus.FAILED})

_Attempt = Callable[[], Awaitable[str]]


def backoff(first: float = FIRST_RETRY, cap: float = MAX_RETRY) -> Iterator[float]:
    """Delays between attempts: doubling from `first` up to `cap`, jittered so POPs
    that failed together do not retry together."""
    delay = first
    while True:
        yield delay * (0.5 + random.random() / 2)
        delay = min(delay * 2, cap)


class PartTransfer:
    def __init__(self, spool: PartSpool, storage: StorageSet, coordinator: CoordinatorClient,
                 pop: str, metrics: EdgeMetrics | None = None) -> None:
        self.spool = spool
        self.storage = storage
        self.coordinator = coordinator
        self.pop = pop
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._waiting = 0  # transfers waiting for a slot
        self._sending = 0  # and holding one
        self.metrics = metrics if metrics is not None else EdgeMetrics()
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._sizes: dict[tuple[str, int], int] = {}  # the bytes each transfer sends
        # Parts this process stored, with their sizes: complete does not send them again.
        self._stored: dict[tuple[str, int], int] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def show_in(self, metrics: EdgeMetrics) -> None:
        """Set the transfer gauges of a scrape: waiting for a slot, and sending."""
        metrics.parts_sending.set(self._sending)
        metrics.parts_queued.set(self._waiting)

    def backlog(self) -> tuple[int, int]:
        """Transfers queued for or sending to the bucket, and their bytes: the outbound
        part of the POP's load (common.protocol.pop_load)."""
        return len(self._sizes), sum(self._sizes.values())

    def send(self, record: FileRecord, upload: UploadRecord, part: FinishedPart) -> None:
        """Start sending `part` unless it is on its way or stored."""
        key = (upload.upload_id, part.part)
        if self._stored.get(key) == part.size:
            return
        self._start(key, self._send_part(record, upload, part), part.size)

    def send_whole(self, record: FileRecord, upload: UploadRecord,
                   parts: Sequence[FinishedPart]) -> None:
        """Put a one-put upload's parts, in order, as the file's one object."""
        self._start((upload.upload_id, _WHOLE_FILE), self._put_whole(record, upload, parts),
                    sum(part.size for part in parts))

    async def part_arrived(self, upload_id: str, part: FinishedPart) -> None:
        """A regular part was written whole: send it now rather than at complete."""
        meta = await self.spool.upload_meta(upload_id)
        if meta is None:
            return
        upload = UploadRecord.from_wire(meta["upload"])
        if not upload.in_one_put:
            self.send(FileRecord.from_wire(meta["record"]), upload, part)

    async def resume(self) -> None:
        """After a restart: send on the parts of every spooled upload the coordinator
        does not have yet, and drop those it has finished with or never knew."""
        for spooled in await self.spool.recover():
            try:
                reply = await self.coordinator.call(
                    wire.LookupUploadParts(upload_id=spooled.upload_id), wire.UploadPartsReply)
            except CinError as exc:
                if exc.code is Code.FILE_NOT_FOUND:
                    await self.spool.remove_upload(spooled.upload_id)
                    continue
                raise
            record, upload = reply.record, reply.upload
            if record.status in _ENDED:
                await self.spool.remove_upload(upload.upload_id)
                continue
            stored = {p.number: p.size for p in reply.parts if p.state == "stored"}
            self._stored.update({(upload.upload_id, n): size for n, size in stored.items()})
            finished: list[FinishedPart] = []
            for state in spooled.parts:
                try:
                    finished.append(await self.spool.finish_part(upload.upload_id, state.part))
                except CinError:  # still arriving: complete (or expiry) will see to it
                    continue
            # A Started upload's parts wait for its complete: after a restart this POP
            # cannot tell a part that came whole from the first chunk of a longer one.
            if record.status is FileStatus.IN_TRANSIT:
                log.info("resuming the transfer of %s (%d parts)", record.handle,
                         len(finished))
                self.dispatch(record, upload, finished)

    def dispatch(self, record: FileRecord, upload: UploadRecord,
                 parts: Sequence[FinishedPart]) -> None:
        """Send every part of an In Transit upload that this POP holds."""
        if upload.in_one_put:
            self.send_whole(record, upload, parts)
        else:
            for part in parts:
                self.send(record, upload, part)

    async def resume_until_done(self) -> None:
        """`resume`, retried while the coordinator cannot be reached."""
        for delay in backoff(1.0):
            try:
                await self.resume()
                return
            except CinError as exc:
                log.warning("cannot resume transfers yet (%s); retry in %.0fs", exc, delay)
                await asyncio.sleep(delay)

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _start(self, key: tuple[str, int], work: Coroutine[Any, Any, None], size: int) -> None:
        if key in self._running:
            work.close()  # already on its way
            return
        task = asyncio.create_task(work, name=f"transfer-{key[0]}-{key[1]}")
        self._running[key] = task
        self._sizes[key] = size

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(key, None)
            self._sizes.pop(key, None)

        task.add_done_callback(done)

    async def _send_part(self, record: FileRecord, upload: UploadRecord,
                         part: FinishedPart) -> None:
        storage = self.storage[record.storage]
        etag = await self._until_stored(
            record, f"part {part.part}",
            lambda: storage.upload_part(record.container, record.key,
                                        upload.storage_upload_id, part.part,
                                        self.spool.read_part(part), part.size))
        if etag is None:
            await self._free_if_ended(upload)  # completed, or aborted as it expired
            return
        self._stored[(upload.upload_id, part.part)] = part.size
        self.metrics.stored("upload_api", part.size)
        await self._report(record, upload, wire.PartStored(
            upload_id=upload.upload_id, part=part.part, size=part.size, etag=etag,
            pop=self.pop))

    async def _put_whole(self, record: FileRecord, upload: UploadRecord,
                         parts: Sequence[FinishedPart]) -> None:
        storage = self.storage[record.storage]

        async def put() -> str:
            info = await storage.put(record.container, record.key, self._concatenated(parts),
                                     content_type=record.mimetype, access=Access(record.access))
            return info.etag

        etag = await self._until_stored(record, "the file", put)
        if etag is None:
            await self._free_if_ended(upload)
            return
        size = sum(part.size for part in parts)
        self.metrics.stored("upload_api", size)
        await self._report(record, upload,
                           wire.FileStored(handle=record.handle, size=size, etag=etag))

    async def _concatenated(self, parts: Sequence[FinishedPart]) -> AsyncIterator[bytes]:
        for part in sorted(parts, key=lambda p: p.part):
            async for chunk in self.spool.read_part(part):
                yield chunk

    async def _until_stored(self, record: FileRecord, what: str,
                            attempt: _Attempt) -> str | None:
        """The ETag `attempt` got from the bucket, retrying while the failure may pass;
        None when it cannot succeed."""
        retries = backoff()
        while True:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            self._sending += 1
            try:
                return await attempt()
            except StorageError as exc:
                self.metrics.transfer_failed(exc.kind)
                if exc.kind in _FINAL:
                    log.error("%s of %s cannot be stored: %s", what, record.handle, exc)
                    return None
                failure = exc
            finally:
                self._sending -= 1
                self._slots.release()
            delay = next(retries)
            log.warning("%s of %s not stored (%s); retry in %.1fs", what, record.handle,
                        failure, delay)
            await asyncio.sleep(delay)

    async def _report(self, record: FileRecord, upload: UploadRecord,
                      msg: wire.Message) -> None:
        """Tell the coordinator, until it has heard; free the spool once the file is
        Complete or Failed."""
        for delay in backoff():
            try:
                updated = await self.coordinator.file(msg)
                break
            except CinError as exc:
                if exc.code is not Code.COORDINATOR_UNAVAILABLE:
                    log.error("%s of %s refused: %s", msg.TYPE, record.handle, exc)
                    await self._free_if_ended(upload)
                    return
                log.warning("coordinator unreachable; %s of %s again in %.0fs", msg.TYPE,
                            record.handle, delay)
                await asyncio.sleep(delay)
        if updated.status in _ENDED:
            await self.complete(updated, upload)

    async def complete(self, record: FileRecord, upload: UploadRecord) -> None:
        """The file is in the bucket (or Failed): free what this POP holds of it."""
        await self.spool.remove_upload(upload.upload_id)
        for key in [key for key in self._stored if key[0] == upload.upload_id]:
            del self._stored[key]
        log.info("%s %s; spool freed", record.handle, record.status.value)

    async def _free_if_ended(self, upload: UploadRecord) -> None:
        """Free the spool of an upload the coordinator says has ended, or does not know.
        Without its word the spool stays: the POP's spool sweep asks again later."""
        try:
            reply = await self.coordinator.call(wire.LookupUpload(upload_id=upload.upload_id),
                                                wire.UploadReply)
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:
                await self.spool.remove_upload(upload.upload_id)
                log.info("upload %s is unknown to the coordinator; spool freed",
                         upload.upload_id)
            return
        if reply.record.status in _ENDED:
            await self.complete(reply.record, upload)
