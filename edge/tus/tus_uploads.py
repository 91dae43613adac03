"""tus uploads at a POP: where each one's bytes go, how far it is, and its end.

A tus upload with a length is a cin upload from its creation (edge/tus/cin_upload.py):
its handle, its file record (Started), the bucket's multipart upload. Its bytes go into
the POP's part spool under its upload id, cut into parts of `tus.part_size(length)`
bytes; a PATCH's bytes are fsync'd and journaled by the spool before its Upload-Offset is
answered, and each part that fills goes to the bucket at once (edge/multipart/
part_transfer.py) while the client sends the next. When the last byte is in, the upload
is completed as the Upload API's complete does it: the file is In Transit, served from
this POP until its last part is stored, then Complete.

A partial upload (concatenation) and one whose length is deferred have no cin upload yet:
their bytes wait in the tus spool. A final upload starts the cin upload of their sum and
writes its partials' bytes into it; a deferred upload does so once it learns its length.

The offset of an upload is the bytes the spool acknowledged from its start without a
gap; a PATCH that is cut off keeps the whole pieces it wrote (a piece ends at the end of
a part or of the PATCH). One PATCH per upload at a time: a new one stops the one still
running (its client gave up on it) and takes over once its disk work settles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import StreamReader, web

from common.config import Config
from common.protocol import tus, wire
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import mint_upload_id
from common.protocol.records import FileRecord, UploadRecord
from common.protocol.security import Credentials
from common.threads import in_thread
from common.web import periodic
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import FinishedPart, PartSpool
from edge.multipart.part_transfer import PartTransfer
from edge.multipart.uploads import KnownUpload
from edge.tus.byte_source import ByteSource
from edge.tus.cin_upload import CinUpload, CinUploads
from edge.tus.tus_state import TusEnd, TusKind, TusStates, TusUpload

log = logging.getLogger("cin.edge.tus")

TAKEOVER_SECONDS = 10.0  # how long a PATCH waits for the one it stopped to settle
FINISHED_KEPT = 100_000  # cin uploads remembered as finished until their spool is freed
_ENDED = (FileStatus.IN_TRANSIT, FileStatus.COMPLETE)


@dataclass
class _Live:
    """An upload in this process: its PATCH lock, the body being read under it, and the
    offset (read from the spool once, then kept up to date)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    body: StreamReader | None = None  # the running PATCH's, stopped by the next PATCH
    offset: int | None = None


class TusUploads:
    def __init__(self, config: Config, cin: CinUploads, spool: PartSpool, local: PartSpool,
                 states: TusStates, transfer: PartTransfer, metrics: EdgeMetrics,
                 scratch: Path) -> None:
        self.config = config
        self.cin = cin
        self.spool = spool  # the POP's part spool: cin uploads' bytes
        self.local = local  # partial and deferred uploads' bytes
        self.states = states
        self.transfer = transfer
        self.metrics = metrics
        self.scratch = scratch
        self._live: dict[str, _Live] = {}
        self.clock: Callable[[], float] = time.time
        self._finished: dict[str, None] = {}  # cin uploads finished here, oldest first

    async def prepare(self) -> None:
        await self.local.prepare()
        await self.states.prepare()
        await in_thread(self.scratch.mkdir, parents=True, exist_ok=True)

    # ------------------------------------------------------------------ creation

    async def create(self, *, length: int | None, metadata: dict[str, str | None],
                     apikey: str | None, creds: Credentials,
                     concat: tus.Concat | None) -> TusUpload:
        """Check the app, its credentials and policy, and the store options, then make
        the upload: a cin upload when its length is known and it is not a partial one."""
        partials = await self._partials(concat) if concat is not None and concat.final else []
        if partials:
            length = sum(partial.length or 0 for partial in partials)
            if length == 0:
                raise CinError(Code.EMPTY_FILE, "the partial uploads hold no bytes")
        # A deferred length is checked against the app's limit when it comes; the
        # policy's maxSize only here, where its credentials are.
        start = self.checked_start(metadata, apikey=apikey, creds=creds,
                                   size=length if length is not None else 1)
        tags = tus.upload_tags(metadata)
        now = self.clock()
        expires = now + self.config.upload_expiry.ttl
        shown = tus.shown_metadata(metadata)
        if partials:
            return await self._create_final(start, partials, shown, tags)
        if length == 0 and concat is None:
            raise CinError(Code.EMPTY_FILE, "Upload-Length: 0; a cin file has a byte or more")
        if concat is not None or length is None:
            kind = TusKind.PARTIAL if concat is not None else TusKind.DEFERRED
            # Placed as for the largest file the app takes: a PATCH cut off keeps the
            # pieces it wrote, each at most a part.
            most = length if length is not None else self.config.apps[start.apikey].max_upload_size
            upload = TusUpload(secrets.token_urlsafe(24), kind, length, tus.part_size(most),
                               shown, now, expires, start=asdict(start), tags=tags)
            await self.local.open_upload(upload.tus_id, {"tus": upload.tus_id})
            await self.states.put(upload)
            return upload
        cin = await self.cin.start(start)
        return await self._open_file(cin, cin.upload.upload_id, length, shown, tags,
                                     created=now)

    def checked_start(self, metadata: dict[str, str | None], *, apikey: str | None,
                      creds: Credentials, size: int) -> wire.StartUpload:
        """The app, its credentials and policy, and the store options, checked for a file
        of `size` bytes (at least one: an empty file is refused after)."""
        fields = tus.start_fields(metadata, apikey=apikey, size=max(size, 1))
        return self.cin.check_start(fields, creds)

    def whole_file_id(self, handle: str) -> str:
        """The tus id of a file a creation stored whole (edge/tus/one_shot.py): the upload
        id an upload of it would have had, so any POP finds the file from it."""
        return mint_upload_id(self.config.internal_secret, handle)

    async def _open_file(self, cin: CinUpload, tus_id: str, length: int,
                         metadata: dict[str, str | None], tags: dict[str, str], *,
                         created: float, partials: tuple[str, ...] = ()) -> TusUpload:
        upload = TusUpload(tus_id, TusKind.FILE, length, tus.part_size(length), metadata,
                           created, cin.upload.created + self.config.upload_expiry.ttl,
                           upload_id=cin.upload.upload_id, handle=cin.record.handle,
                           tags=tags, partials=partials)
        await self._keep(upload, cin)
        return upload

    async def _keep(self, upload: TusUpload, cin: CinUpload) -> None:
        """Record a cin upload's tus side. Where its tus id is its upload id (it was
        created with its length, or taken on from another POP) that is one more key in
        what the part spool keeps of it, written with it: no file of its own. Only a
        deferred upload that became a cin upload keeps its state file, which maps its
        tus id to the upload id."""
        if upload.tus_id == upload.upload_id:
            await self.spool.open_upload(upload.tus_id, {**cin.meta(),
                                                         "tus": upload.to_json()})
        else:
            await self.spool.open_upload(cin.upload.upload_id, cin.meta())
            await self.states.put(upload)

    async def _partials(self, concat: tus.Concat) -> list[TusUpload]:
        """A final upload's partial uploads: each here, and finished."""
        partials = []
        for tus_id in concat.partials:
            partial = await self.states.get(tus_id)
            if partial is None or partial.kind is not TusKind.PARTIAL or partial.ended:
                raise CinError(Code.BAD_PARAMETER, f"Upload-Concat: {tus_id} is not a "
                                                   "partial upload at this POP")
            if partial.length is None or await self.offset(partial) != partial.length:
                raise CinError(Code.BAD_PARAMETER, f"Upload-Concat: {tus_id} is not "
                                                   "finished")
            partials.append(partial)
        return partials

    async def _create_final(self, start: wire.StartUpload, partials: Sequence[TusUpload],
                            metadata: dict[str, str | None],
                            tags: dict[str, str]) -> TusUpload:
        """The cin upload of the partials' bytes, one after the other: written into it
        (each part to the bucket as it fills) and completed before the creation's 201."""
        cin = await self.cin.start(start)
        length = start.size
        upload = await self._open_file(cin, cin.upload.upload_id, length, metadata, tags,
                                       created=self.clock(),
                                       partials=tuple(p.tus_id for p in partials))
        await self._write(upload, 0, ByteSource(self._local_bytes(partials)), length)
        await self.finish(upload)
        return upload

    async def _local_bytes(self, uploads: Sequence[TusUpload]) -> AsyncIterator[bytes]:
        for upload in uploads:
            for part in await self.local.part_numbers(upload.tus_id):
                finished = await self.local.finish_part(upload.tus_id, part)
                async for chunk in self.local.read_part(finished):
                    yield chunk

    def _check_size(self, start: wire.StartUpload, length: int) -> None:
        app = self.config.apps[start.apikey]
        if length > app.max_upload_size:
            raise CinError(Code.TOO_LARGE, f"the file is {length} bytes, over "
                                           f"{app.max_upload_size}")

    # ------------------------------------------------------------------ lookup

    async def get(self, tus_id: str) -> TusUpload:
        """The upload `tus_id` names: 404 if there is none, 410 if it was terminated or
        expired. One this POP never saw is looked up at the coordinator (the client
        brought its URL from another POP) and taken on here."""
        if not tus.valid_id(tus_id):
            raise CinError(Code.FILE_NOT_FOUND, "no tus upload has this id")
        upload = await self.states.get(tus_id)
        if upload is None:
            upload = await self._spooled(tus_id)
        if upload is None:
            return await self._adopt(tus_id)
        if upload.ended is TusEnd.TERMINATED:
            raise CinError(Code.UPLOAD_GONE, "the upload was terminated")
        if upload.ended is None and self.clock() >= upload.expires:
            raise CinError(Code.UPLOAD_GONE, "the upload expired")
        return upload

    async def _spooled(self, upload_id: str) -> TusUpload | None:
        """A cin upload whose tus side the part spool keeps (`_keep`)."""
        meta = await self.spool.upload_meta(upload_id)
        if meta is None or "tus" not in meta:
            return None
        upload = TusUpload.from_json(meta["tus"])
        if upload_id in self._finished:
            upload = upload.with_changes(ended=TusEnd.FINISHED)
        return upload

    async def _adopt(self, upload_id: str) -> TusUpload:
        whole = await self.cin.stored_whole(upload_id, ask_coordinator=False)
        if whole is not None:
            return self._stored_whole(upload_id, whole)
        try:
            cin = await self.cin.lookup(upload_id)
        except CinError as error:
            if error.code is Code.FILE_NOT_FOUND:
                whole = await self.cin.stored_whole(upload_id, ask_coordinator=True)
                if whole is not None:
                    return self._stored_whole(upload_id, whole)
                raise CinError(Code.FILE_NOT_FOUND, "no tus upload has this id") from error
            raise
        record, upload = cin.record, cin.upload
        if record.status is FileStatus.FAILED:
            raise CinError(Code.UPLOAD_GONE, upload.failure or "the upload ended")
        size = tus.part_size(record.size)
        stored = {part.number for part in cin.parts if part.state == "stored"}
        prefix = 0
        while prefix + 1 in stored:
            prefix += 1
        adopted = TusUpload(upload_id, TusKind.FILE, record.size, size,
                            {"filename": record.filename, "filetype": record.mimetype},
                            upload.created, upload.created + self.config.upload_expiry.ttl,
                            upload_id=upload_id, handle=record.handle,
                            tags=dict(record.tags), stored_prefix=prefix,
                            ended=TusEnd.FINISHED if record.status in _ENDED else None)
        if adopted.ended is None:
            log.info("tus upload %s of %s taken on here: %d parts stored elsewhere",
                     upload_id, record.handle, prefix)
            await self._keep(adopted, cin)
        return adopted

    def _stored_whole(self, tus_id: str, record: FileRecord) -> TusUpload:
        """A file a creation stored whole: finished, at every POP, once it is stored."""
        if record.status is FileStatus.FAILED:
            raise CinError(Code.UPLOAD_GONE, "the upload failed")
        if record.status not in _ENDED:  # still being stored: its creation is unanswered
            raise CinError(Code.FILE_NOT_FOUND, "no tus upload has this id")
        return TusUpload(tus_id, TusKind.FILE, record.size, tus.part_size(record.size),
                         {"filename": record.filename, "filetype": record.mimetype},
                         record.uploaded, record.uploaded + self.config.upload_expiry.ttl,
                         handle=record.handle, tags=dict(record.tags), ended=TusEnd.FINISHED)

    async def offset(self, upload: TusUpload) -> int:
        """The bytes acknowledged from the upload's start without a gap."""
        live = self._live_of(upload.tus_id)
        if live.offset is None:
            live.offset = await self._acknowledged(upload)
        return live.offset

    async def _acknowledged(self, upload: TusUpload) -> int:
        if upload.ended is TusEnd.FINISHED:
            return upload.length or 0
        spool, spool_id = self._bytes_of(upload)
        part = upload.stored_prefix + 1
        offset = upload.stored_prefix * upload.part_size
        while upload.length is None or offset < upload.length:
            try:
                contiguous = (await spool.part_state(spool_id, part)).contiguous
            except CinError as error:
                if error.code is Code.FILE_NOT_FOUND:
                    raise CinError(Code.UPLOAD_GONE, "the upload's bytes are gone "
                                                     "from this POP") from error
                raise
            offset += contiguous
            if contiguous < upload.part_size:
                break
            part += 1
        return offset

    def _bytes_of(self, upload: TusUpload) -> tuple[PartSpool, str]:
        if upload.local:
            return self.local, upload.tus_id
        assert upload.upload_id is not None
        return self.spool, upload.upload_id

    def _live_of(self, tus_id: str) -> _Live:
        live = self._live.get(tus_id)
        if live is None:
            live = self._live[tus_id] = _Live()
        return live

    # ------------------------------------------------------------------ bytes

    @contextlib.asynccontextmanager
    async def patching(self, tus_id: str, body: StreamReader | None) -> AsyncIterator[None]:
        """Hold the upload's PATCH lock; a PATCH still reading its body is stopped."""
        live = self._live_of(tus_id)
        if live.body is not None:
            live.body.set_exception(CinError(Code.CONFLICT, "a newer PATCH took over"))
        try:
            await asyncio.wait_for(live.lock.acquire(), TAKEOVER_SECONDS)
        except TimeoutError as exc:
            raise CinError(Code.CONFLICT, "another PATCH of this upload is still "
                                          "writing; retry") from exc
        live.body = body
        try:
            yield
        finally:
            live.body = None
            live.lock.release()

    async def write(self, upload: TusUpload, offset: int, source: ByteSource,
                    size: int) -> int:
        """Write `size` bytes from `source` at `offset` (checked against the upload's
        own): each piece durable before the next; returns the new offset. The caller
        holds `patching`."""
        current = await self.offset(upload)
        if offset != current:
            raise CinError(Code.CONFLICT, f"Upload-Offset is {offset}, the upload is at "
                                          f"{current}")
        if upload.length is not None and offset + size > upload.length:
            raise CinError(Code.TOO_LARGE, f"the body goes past Upload-Length "
                                           f"({upload.length})")
        if upload.length is None and size > self.room(upload, offset):
            raise CinError(Code.TOO_LARGE, "the upload would be over the app's limit")
        return await self._write(upload, offset, source, size)

    def room(self, upload: TusUpload, offset: int) -> int:
        """How many more bytes the upload takes after `offset`."""
        most = (upload.length if upload.length is not None
                else self.config.apps[_start_of(upload).apikey].max_upload_size)
        return max(most - offset, 0)

    async def _write(self, upload: TusUpload, offset: int, source: ByteSource,
                     size: int) -> int:
        """Each piece is written by the spool, fsync'd and journaled; the offset moves
        past a piece only once it is, and in order. While one piece is made durable (its
        fsync and journal line: disk work), the next one's body is already read: the
        client is not kept waiting on the disk at every part's end."""
        spool, spool_id = self._bytes_of(upload)
        cin = None if upload.local else await self._cin_of(upload)
        end = offset + size
        unsettled: list[_Piece] = []  # in order: at most one being made durable, one read
        try:
            while offset < end:
                part, within = tus.part_of(offset, upload.part_size)
                length = min(end - offset, upload.part_size - within)
                piece = _Piece(part, within + length, offset + length)
                unsettled.append(piece)
                piece.start(spool.write_chunk(spool_id, part, within, piece.reading(
                    source.take(length)), length))
                await piece.read()
                if len(unsettled) == 2:
                    await self._acknowledged_piece(upload, spool, spool_id, cin, unsettled[0])
                    unsettled.pop(0)
                offset = piece.end
            if unsettled:
                await self._acknowledged_piece(upload, spool, spool_id, cin, unsettled[0])
                unsettled.pop(0)
        finally:
            # Failed: a piece still reading its body stops; one being made durable is
            # waited for before the next PATCH, and counted if all before it were.
            counted = True
            for piece in unsettled:
                acknowledged = await piece.settle()
                counted = counted and acknowledged
                if counted:
                    self._live_of(upload.tus_id).offset = piece.end
        return end

    async def _acknowledged_piece(self, upload: TusUpload, spool: PartSpool, spool_id: str,
                                  cin: CinUpload | None, piece: _Piece) -> None:
        """Wait for `piece` to be durable, move the offset past it, and send its part to
        the bucket now when it filled one (not the last: that goes at the end)."""
        await piece.done()
        self._live_of(upload.tus_id).offset = piece.end
        last = upload.length is not None and piece.end == upload.length
        if (cin is not None and not cin.upload.in_one_put
                and piece.part_end == upload.part_size and not last):
            finished = await spool.finish_part(spool_id, piece.part)
            self.transfer.send(cin.known, finished)

    async def _cin_of(self, upload: TusUpload) -> CinUpload:
        assert upload.upload_id is not None
        meta = await self.spool.upload_meta(upload.upload_id)
        if meta is None:
            raise CinError(Code.UPLOAD_GONE, "the upload's bytes are gone from this POP")
        return CinUpload(FileRecord.from_wire(meta["record"]),
                         UploadRecord.from_wire(meta["upload"]), local=bool(meta.get("local")))

    async def set_length(self, upload: TusUpload, length: int) -> TusUpload:
        """A deferred upload learns its length (Upload-Length on a PATCH)."""
        if upload.length is not None:
            if length != upload.length:
                raise CinError(Code.BAD_PARAMETER, "Upload-Length: it cannot change")
            return upload
        if length == 0:
            raise CinError(Code.EMPTY_FILE, "Upload-Length: 0; a cin file has a byte or more")
        if length < await self.offset(upload):
            raise CinError(Code.CONFLICT, "Upload-Length: less than the bytes received")
        start = _start_of(upload)
        self._check_size(start, length)
        upload = upload.with_changes(length=length)
        await self.states.put(upload)
        return upload

    async def settle(self, upload: TusUpload) -> TusUpload:
        """After bytes or a length arrived: a deferred upload with its length becomes a
        cin upload once all its bytes are here (they are written into it); a cin upload
        with all its bytes is completed. Returns the upload as it now is."""
        if upload.kind is TusKind.DEFERRED and upload.length is not None:
            if await self.offset(upload) != upload.length:
                return upload
            cin = await self.cin.start(_sized(_start_of(upload), upload.length))
            became = await self._open_file(cin, upload.tus_id, upload.length,
                                           upload.metadata, upload.tags,
                                           created=upload.created)
            self._live_of(upload.tus_id).offset = 0
            await self._write(became, 0, ByteSource(self._local_bytes([upload])),
                              upload.length)
            await self.local.remove_upload(upload.tus_id)
            upload = became
        if (upload.kind is TusKind.FILE and upload.ended is None
                and await self.offset(upload) == upload.length):
            await self.finish(upload)
            upload = upload.with_changes(ended=TusEnd.FINISHED)
        return upload

    async def finish(self, upload: TusUpload) -> FileRecord:
        """Every byte is here: complete the cin upload, as the Upload API's complete
        does, and send what remains to the bucket."""
        cin = await self._cin_of(upload)
        assert upload.upload_id is not None
        numbers = await self.spool.part_numbers(upload.upload_id)
        finished: list[FinishedPart] = [
            await self.spool.finish_part(upload.upload_id, n) for n in numbers]
        held = {part.part: part.size for part in finished if part.size}
        record = await self.cin.complete(cin, held, upload.tags)
        if record.status is FileStatus.IN_TRANSIT:
            self.transfer.dispatch(KnownUpload(record, cin.upload, cin.local),
                                   [p for p in finished if p.size])
        elif record.status is FileStatus.COMPLETE:
            await self.transfer.complete(record, cin.upload)
        self.metrics.upload("tus", record.status)
        if upload.tus_id != upload.upload_id:
            await self.states.put(upload.with_changes(ended=TusEnd.FINISHED))
        else:
            # Until the spool is freed: then the coordinator answers for it. A restarted
            # POP that forgot this completes it again, which the coordinator takes as
            # the repeat it is.
            self._finished[upload.tus_id] = None
            while len(self._finished) > FINISHED_KEPT:
                del self._finished[next(iter(self._finished))]
        self._live.pop(upload.tus_id, None)  # its offset is its length from now on
        return record

    # ------------------------------------------------------------------ the end

    async def terminate(self, upload: TusUpload) -> None:
        """tus termination: the upload takes no more bytes and its bytes are removed.
        A cin upload's file becomes Failed; one already In Transit or Complete is a file,
        which the File API deletes."""
        if upload.kind is TusKind.FILE:
            if upload.ended is TusEnd.FINISHED:
                raise CinError(Code.CONFLICT, "the upload is finished: its file is deleted "
                                              "through the File API")
            cin = await self._cin_of(upload)
            record = await self.cin.terminate(cin)
            if record.status in _ENDED:
                raise CinError(Code.CONFLICT, f"the upload is {record.status.value}")
            await self.spool.remove_upload(cin.upload.upload_id)
        else:
            await self.local.remove_upload(upload.tus_id)
        await self.states.put(upload.with_changes(ended=TusEnd.TERMINATED))
        self._live.pop(upload.tus_id, None)

    async def sweep_once(self, now: float | None = None) -> list[str]:
        """Forget uploads past their expiry: a local one's bytes go with it; a cin
        upload's are the part spool's to remove once the coordinator expired it, and
        the coordinator answers for it from then on."""
        now = self.clock() if now is None else now
        removed = []
        for upload in await self.states.all():
            if now < upload.expires:
                continue
            if upload.local:
                await self.local.remove_upload(upload.tus_id)
            await self.states.remove(upload.tus_id)
            self._live.pop(upload.tus_id, None)
            removed.append(upload.tus_id)
        # Bytes whose state was never written (the POP stopped between the two at a
        # creation): nothing answers for them.
        for tus_id in await self.local.uploads_older_than(self.config.upload_expiry.ttl,
                                                          now=now):
            if await self.states.get(tus_id) is None:
                await self.local.remove_upload(tus_id)
                removed.append(tus_id)
        return removed

    async def run_sweeps(self) -> None:
        await periodic.every(self.config.upload_expiry.sweep_interval, self.sweep_once,
                             log=log, what="tus sweep")


def _start_of(upload: TusUpload) -> wire.StartUpload:
    if upload.start is None:
        raise CinError(Code.INTERNAL, f"tus upload {upload.tus_id} has no start")
    return wire.StartUpload(**upload.start)


def _sized(start: wire.StartUpload, size: int) -> wire.StartUpload:
    return replace(start, size=size)


HANDLE_HEADER = "Cin-Handle"


def metadata_header(upload: TusUpload) -> Mapping[str, str]:
    """Upload-Metadata as it came (credentials left out), and the file's handle once the
    upload is a cin file's."""
    headers = {HANDLE_HEADER: upload.handle} if upload.handle else {}
    shown = tus.encode_metadata(upload.metadata)
    return {"Upload-Metadata": shown, **headers} if shown else headers


TUS_UPLOADS = web.AppKey("tus_uploads", TusUploads)


class _Piece:
    """One piece of a PATCH (it ends at the end of a part or of the PATCH) in the spool:
    its body being read, then its bytes being made durable."""

    def __init__(self, part: int, part_end: int, end: int) -> None:
        self.part = part
        self.part_end = part_end  # its end in the part
        self.end = end  # its end in the upload
        self._read = asyncio.Event()
        self._task: asyncio.Task[object] | None = None

    def start(self, write: Coroutine[Any, Any, object]) -> None:
        self._task = asyncio.ensure_future(write)

    async def reading(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`body`, noting when it has all been read."""
        async for chunk in body:
            yield chunk
        self._read.set()

    async def read(self) -> None:
        """Until the piece's body is all read; its failure before that is raised."""
        assert self._task is not None
        read = asyncio.ensure_future(self._read.wait())
        try:
            await asyncio.wait({self._task, read}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            read.cancel()
        if self._task.done():
            self._task.result()  # it failed before the end of its body: so does the PATCH

    async def done(self) -> None:
        """The piece is acknowledged (its failure raised). A caller cancelled here
        leaves its disk work be: `settle` waits for it."""
        assert self._task is not None
        await asyncio.shield(self._task)

    async def settle(self) -> bool:
        """After a failure: stop the piece if it still reads its body, wait for its disk
        work whatever happens to the caller; whether it was acknowledged."""
        if self._task is None:
            return False
        if not self._read.is_set():
            self._task.cancel()
        while not self._task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._task})
        return not self._task.cancelled() and self._task.exception() is None
