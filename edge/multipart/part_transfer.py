"""A POP's background transfer of spooled parts to the bucket.

A part that arrived whole (a regular part) is sent as soon as it is written, while the
client still sends the rest: stored parts survive this POP, and the client can finish
the upload at another one. The parts that remain are sent when the client completes.
A file smaller than the bucket's smallest part has no multipart upload: its parts go up
as one PutObject after complete.

Sends are bounded, and retried with capped backoff for as long as the bucket fails and
the upload exists: the POP acknowledged these bytes, so it does not give up on them.
Each stored part is a fact: journaled, for an upload started at this POP (the journal
ships it), or reported to the coordinator until it is acknowledged, for one started
elsewhere (edge/multipart/uploads.py). Once the file is Complete, or Failed (it expired,
or was refused), the POP frees its spool at once: a full spool turns stores away. So it
does when the bucket upload turns out to be gone or a report is refused, once the upload
is known to have ended. Transfers still running at shutdown are cancelled; the spool
keeps their bytes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.storage import Access, StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from edge.journal.protocol import PopJournal
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import FinishedPart, PartSpool
from edge.multipart.uploads import KnownUpload, PopUploads

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
    def __init__(self, spool: PartSpool, storage: StorageSet, uploads: PopUploads,
                 journal: PopJournal, pop: str, metrics: EdgeMetrics | None = None) -> None:
        self.spool = spool
        self.storage = storage
        self.uploads = uploads
        self.journal = journal
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

    def stored_parts(self, upload_id: str) -> list[PartRecord]:
        """The parts of an upload this process has put in the bucket."""
        return [PartRecord(number, self.pop, "stored", size, None)
                for (upload, number), size in sorted(self._stored.items())
                if upload == upload_id]

    def send(self, known: KnownUpload, part: FinishedPart) -> None:
        """Start sending `part` unless it is on its way or stored."""
        key = (known.upload.upload_id, part.part)
        if self._stored.get(key) == part.size:
            return
        self._start(key, self._send_part(known, part), part.size)

    def send_whole(self, known: KnownUpload, parts: Sequence[FinishedPart]) -> None:
        """Put a one-put upload's parts, in order, as the file's one object."""
        self._start((known.upload.upload_id, _WHOLE_FILE), self._put_whole(known, parts),
                    sum(part.size for part in parts))

    async def part_arrived(self, upload_id: str, part: FinishedPart) -> None:
        """A regular part was written whole: send it now rather than at complete."""
        meta = await self.spool.upload_meta(upload_id)
        if meta is None:
            return
        upload = UploadRecord.from_wire(meta["upload"])
        if not upload.in_one_put:
            self.send(KnownUpload(FileRecord.from_wire(meta["record"]), upload,
                                  bool(meta.get("local"))), part)

    async def files_ended(self, statuses: dict[str, str]) -> None:
        """The coordinator answered these statuses for files of this POP's journal: free
        the spool of each upload whose file is now Complete or Failed."""
        for handle, status in statuses.items():
            if status not in (FileStatus.COMPLETE.value, FileStatus.FAILED.value):
                continue
            local = await self.journal.file(handle)
            if local is not None and local.upload is not None:
                await self.complete(local.record.with_changes(status=FileStatus(status)),
                                    local.upload)

    async def resume(self) -> None:
        """After a restart: send on the parts of every spooled upload not in the bucket
        yet, and drop those that have ended or that nobody knows."""
        for spooled in await self.spool.recover():
            try:
                known = await self.uploads.find(spooled.upload_id)
            except CinError as exc:
                if exc.code is Code.FILE_NOT_FOUND:
                    await self.spool.remove_upload(spooled.upload_id)
                    continue
                raise
            record, upload = known.record, known.upload
            if record.status in _ENDED:
                await self.spool.remove_upload(upload.upload_id)
                continue
            if not known.local:
                stored = {p.number: p.size for p in await self.uploads.recorded_parts(known)
                          if p.state == "stored"}
                self._stored.update({(upload.upload_id, n): size
                                     for n, size in stored.items()})
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
                self.dispatch(known, finished)

    def dispatch(self, known: KnownUpload, parts: Sequence[FinishedPart]) -> None:
        """Send every part of an In Transit upload that this POP holds."""
        if known.upload.in_one_put:
            self.send_whole(known, parts)
        else:
            for part in parts:
                self.send(known, part)

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

    async def _send_part(self, known: KnownUpload, part: FinishedPart) -> None:
        record, upload = known.record, known.upload
        storage = self.storage[record.storage]
        etag = await self._until_stored(
            record, f"part {part.part}",
            lambda: storage.upload_part(record.container, record.key,
                                        upload.storage_upload_id, part.part,
                                        self.spool.read_part(part), part.size))
        if etag is None:
            await self._free_if_ended(known)  # completed, or aborted as it expired
            return
        self._stored[(upload.upload_id, part.part)] = part.size
        self.metrics.stored("upload_api", part.size)
        await self._report(known, lambda: self.uploads.part_stored(known, part.part,
                                                                   part.size, etag))

    async def _put_whole(self, known: KnownUpload, parts: Sequence[FinishedPart]) -> None:
        record = known.record
        storage = self.storage[record.storage]

        async def put() -> str:
            info = await storage.put(record.container, record.key, self._concatenated(parts),
                                     content_type=record.mimetype, access=Access(record.access))
            return info.etag

        etag = await self._until_stored(record, "the file", put)
        if etag is None:
            await self._free_if_ended(known)
            return
        size = sum(part.size for part in parts)
        self.metrics.stored("upload_api", size)
        await self._report(known, lambda: self.uploads.stored_whole(known, size, etag))

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

    async def _report(self, known: KnownUpload,
                      report: Callable[[], Awaitable[FileRecord | None]]) -> None:
        """Record a fact, until it is recorded: journaled for this POP's own upload,
        told to the coordinator (while it is unreachable, again and again) for one
        started elsewhere. Free the spool once the file is Complete or Failed."""
        for delay in backoff():
            try:
                updated = await report()
                break
            except CinError as exc:
                if exc.code not in (Code.COORDINATOR_UNAVAILABLE, Code.FILE_AT_POP,
                                    Code.INSUFFICIENT_STORAGE):
                    log.error("a transfer report on %s was refused: %s", known.record.handle,
                              exc)
                    await self._free_if_ended(known)
                    return
                log.warning("cannot record a transfer of %s yet (%s); again in %.0fs",
                            known.record.handle, exc, delay)
                await asyncio.sleep(delay)
        if updated is not None and updated.status in _ENDED:
            await self.complete(updated, known.upload)

    async def complete(self, record: FileRecord, upload: UploadRecord) -> None:
        """The file is in the bucket (or Failed): free what this POP holds of it."""
        await self.spool.remove_upload(upload.upload_id)
        for key in [key for key in self._stored if key[0] == upload.upload_id]:
            del self._stored[key]
        log.info("%s %s; spool freed", record.handle, record.status.value)

    async def _free_if_ended(self, known: KnownUpload) -> None:
        """Free the spool of an upload that has ended, or that nobody knows. Without
        that word the spool stays: the POP's spool sweep asks again later."""
        try:
            current = await self.uploads.find(known.upload.upload_id)
        except CinError as exc:
            if exc.code is Code.FILE_NOT_FOUND:
                await self.spool.remove_upload(known.upload.upload_id)
                log.info("upload %s is unknown; spool freed", known.upload.upload_id)
            return
        if current.record.status in _ENDED:
            await self.complete(current.record, known.upload)
