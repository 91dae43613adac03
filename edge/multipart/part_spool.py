"""A POP's durable spool for multipart uploads (the Upload API): the IO.

    <root>/uploads/<upload_id>/upload.json         the caller's metadata, written once
    <root>/uploads/<upload_id>/part-<N>.data       the part's bytes, each at its offset
    <root>/uploads/<upload_id>/part-<N>.journal    one JSON line per acknowledged chunk

A chunk is acknowledged once its bytes are fsync'd in the data file and then its line
is fsync'd in the journal (edge/multipart/part_journal.py): the journal, not the data
file, says which bytes exist, so bytes of a chunk that failed (or of a crash mid-chunk)
are never believed. Acknowledged bytes are never written again: a chunk equal to an
acknowledged one is accepted without a write, and a chunk over acknowledged bytes
otherwise (a retry, smaller, of a chunk whose answer was lost) has those bytes compared,
not written: a difference is a conflict.

Which bytes are acknowledged, what a new chunk must do and when a part is whole are
decided in edge/multipart/part_ledger.py, without a disk; this module does what it
decides. A chunk never waits on another request's client: a retry of a chunk whose
body stalled takes its range over at once (the stalled request writes no more), and
waits only for disk work under way (a write batch of the stalled request, or the fsync
and journal line of a chunk whose body is all here).

All disk work (and the MD5 of the bytes, hashed as they are written) runs in worker
threads, batched into ~1 MiB calls; a part is never held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_PART_SIZE, MAX_PARTS
from common.threads import in_thread
from edge.multipart.part_journal import journal_line, parse_journal
from edge.multipart.part_ledger import (
    ChunkReceipt,
    ChunkRuns,
    Claim,
    PartLedger,
    PartState,
    Repeat,
    WaitFor,
    check_chunk_range,
    check_part_number,
    decode_md5,
)

__all__ = ["FinishedPart", "PartSpool", "SpooledUpload"]

log = logging.getLogger("cin.edge.part_spool")

FLUSH_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024
HASH_STEP_BYTES = 8 * 1024 * 1024
_IOV_MAX = 1024  # Linux's limit on buffers per pwritev call

_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_PART_JOURNAL = re.compile(r"part-([1-9][0-9]{0,4})\.journal")
_META_FILE = "upload.json"
_META_VERSION = 1


@dataclass(frozen=True)
class FinishedPart:
    """A part whose bytes are all acknowledged: ready to go to the bucket as one UploadPart."""

    upload_id: str
    part: int
    path: Path
    size: int
    # The part's MD5 when it is known without reading the part: it came as one chunk
    # (a regular part always does). `PartSpool.part_md5` computes it otherwise.
    md5_hex: str | None


@dataclass(frozen=True)
class SpooledUpload:
    """An upload found on disk after a restart."""

    upload_id: str
    meta: dict[str, Any]
    parts: tuple[PartState, ...]  # parts with acknowledged bytes, by part number


class _PartOnDisk:
    """One part in this process: its ledger (mirroring its journal), its files, and the
    lock that serializes its journal appends."""

    def __init__(self, directory: Path, ledger: PartLedger, journal_end: int) -> None:
        self.ledger = ledger
        self.data_path = directory / f"part-{ledger.part}.data"
        self.journal_path = directory / f"part-{ledger.part}.journal"
        self.journal_end = journal_end  # where the next line goes: after the last whole line
        self.journal_lock = asyncio.Lock()
        self.in_flight: dict[Claim, _ClaimedRange] = {}
        self._directory_synced = False

    def append(self, receipt: ChunkReceipt) -> None:
        """Journal `receipt` durably (in a worker thread, under `journal_lock`).

        The ledger is updated here rather than by the caller so that it can never lag
        the file, even when the caller is cancelled while the thread runs.
        """
        line = journal_line(receipt)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            if os.fstat(fd).st_size != self.journal_end:
                # A torn line from a crash, or an append that failed: the new line must start
                # on a line boundary, or it would be glued to garbage and lost.
                os.ftruncate(fd, self.journal_end)
            _pwrite_all(fd, [line], self.journal_end)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._directory_synced:
            # The part's two new names must survive a crash too.
            _fsync_directory(self.journal_path.parent)
            self._directory_synced = True
        self.journal_end += len(line)
        self.ledger.acknowledge(receipt)


class PartSpool:
    def __init__(self, root: Path, *, max_part_bytes: int = MAX_PART_SIZE) -> None:
        self.uploads = root / "uploads"
        self.max_part_bytes = max_part_bytes
        self._known: set[str] = set()
        self._parts: dict[tuple[str, int], _PartOnDisk] = {}
        self._loading = asyncio.Lock()

    async def prepare(self) -> None:
        await in_thread(self.uploads.mkdir, parents=True, exist_ok=True)

    async def open_upload(self, upload_id: str, meta: dict[str, Any]) -> None:
        """Create the upload's directory and record `meta`; a second call keeps the first."""
        directory = self._directory(upload_id)
        text = json.dumps({"version": _META_VERSION, "upload_id": upload_id, "meta": meta})
        await in_thread(_create_once, directory, _META_FILE, text.encode())
        self._known.add(upload_id)

    async def upload_meta(self, upload_id: str) -> dict[str, Any] | None:
        """The `meta` open_upload recorded, or None if the upload is not here."""
        return await in_thread(_read_meta, self._directory(upload_id))

    async def write_chunk(self, upload_id: str, part: int, offset: int,
                          body: AsyncIterable[bytes], size: int,
                          md5_b64: str | None = None) -> ChunkReceipt:
        """Write `size` bytes from `body` at `offset` in the part, and acknowledge them.

        When this returns the bytes are durable. When it raises, nothing is acknowledged
        and no acknowledged byte was touched.
        """
        check_part_number(part)
        extent = check_chunk_range(offset, size, self.max_part_bytes)
        expected_md5 = decode_md5(md5_b64)
        on_disk = await self._part(upload_id, part)
        ledger = on_disk.ledger
        while isinstance(admission := ledger.admit(extent), WaitFor):
            # Being made durable: once it settles, this chunk either repeats it, conflicts
            # with it, or is free.
            await on_disk.in_flight[admission.claim].settled.wait()
        if isinstance(admission, Repeat):
            return await self._repeat(admission.receipt, body, expected_md5)

        claim = admission.claim
        claimed = on_disk.in_flight[claim] = _ClaimedRange(claim)
        try:
            for older in admission.superseded:
                # It writes no more, but a batch of it may be on its way to the disk.
                await on_disk.in_flight[older].idle.wait()
            runs = await _receive(ChunkRuns(extent, claim.held), body, expected_md5,
                                  on_disk.data_path, claimed)
            async with on_disk.journal_lock:
                for run, run_md5 in runs.written_runs():
                    await in_thread(on_disk.append,
                                    ChunkReceipt(part, run.offset, run.size, run_md5))
            return ChunkReceipt(part, offset, size, runs.md5.hexdigest())
        except FileNotFoundError as error:
            raise CinError(Code.FILE_NOT_FOUND,
                           f"upload {upload_id} was removed from this POP") from error
        finally:
            ledger.release(claim)
            on_disk.in_flight.pop(claim).settled.set()

    async def _repeat(self, acknowledged: ChunkReceipt, body: AsyncIterable[bytes],
                      expected_md5: bytes | None) -> ChunkReceipt:
        """A chunk at the range of an acknowledged one: fine if its bytes are the same."""
        conflict = CinError(Code.CONFLICT, f"bytes {acknowledged.offset}-"
                            f"{acknowledged.extent.end - 1} of part {acknowledged.part} were "
                            "acknowledged with different content")
        if expected_md5 is not None and expected_md5.hex() != acknowledged.md5_hex:
            raise conflict
        runs = await _receive(ChunkRuns(acknowledged.extent), body, expected_md5)
        if runs.md5.hexdigest() != acknowledged.md5_hex:
            raise conflict
        return acknowledged

    async def part_state(self, upload_id: str, part: int) -> PartState:
        check_part_number(part)
        return (await self._part(upload_id, part)).ledger.state()

    async def finish_part(self, upload_id: str, part: int,
                          expected_size: int | None = None) -> FinishedPart:
        """Check the part has all its bytes. Reads nothing: a part's MD5 is asked for
        separately (`part_md5`), as only some callers need it."""
        check_part_number(part)
        on_disk = await self._part(upload_id, part)
        size, md5_hex = on_disk.ledger.finished_size(expected_size)
        return FinishedPart(upload_id, part, on_disk.data_path, size, md5_hex)

    async def part_md5(self, finished: FinishedPart) -> str:
        """The part's MD5 (its ETag in the bucket): from its one chunk's receipt, or by
        reading the part in a thread when it came in several chunks."""
        if finished.md5_hex is not None:
            return finished.md5_hex
        md5 = hashlib.md5(usedforsecurity=False)
        fd = await in_thread(_open_for_reading, finished.path)
        try:
            for start in range(0, finished.size, HASH_STEP_BYTES):
                await in_thread(_hash_range, fd, md5.update, start,
                                min(HASH_STEP_BYTES, finished.size - start))
        finally:
            await in_thread(os.close, fd)
        return md5.hexdigest()

    def read_part(self, finished: FinishedPart) -> AsyncIterator[bytes]:
        """The part's bytes, ~1 MiB at a time (for UploadPart)."""
        return _stream(finished.path, 0, finished.size)

    async def read_range(self, upload_id: str, part: int, start: int,
                         length: int) -> AsyncIterator[bytes]:
        """Bytes `[start, start + length)` of a part, ~1 MiB at a time (for In Transit
        downloads). Checked before anything is read: only acknowledged bytes are served."""
        check_part_number(part)
        on_disk = await self._part(upload_id, part)
        wanted = on_disk.ledger.check_readable(start, length)
        return _stream(on_disk.data_path, wanted.offset, wanted.size)

    async def recover(self) -> list[SpooledUpload]:
        """Every upload on disk with its metadata and acknowledged bytes (after a restart)."""
        found = await in_thread(_scan, self.uploads)
        self._known.update(upload.upload_id for upload in found)
        return found

    async def part_numbers(self, upload_id: str) -> list[int]:
        """The parts of an upload this POP has a journal for, in order."""
        directory = self._directory(upload_id)

        def scan() -> list[int]:
            numbers = []
            for path in directory.glob("part-*.journal"):
                number = path.name[len("part-"):-len(".journal")]
                if number.isdigit():
                    numbers.append(int(number))
            return sorted(numbers)

        return await in_thread(scan)

    async def remove_part(self, upload_id: str, part: int) -> None:
        check_part_number(part)
        directory = self._directory(upload_id)
        on_disk = self._parts.pop((upload_id, part), None)

        def remove() -> None:
            for name in (f"part-{part}.data", f"part-{part}.journal"):
                (directory / name).unlink(missing_ok=True)

        await in_thread(remove)
        if on_disk is not None:
            on_disk.ledger.forget()

    async def remove_upload(self, upload_id: str) -> None:
        directory = self._directory(upload_id)
        self._known.discard(upload_id)
        for key in [key for key in self._parts if key[0] == upload_id]:
            self._parts.pop(key).ledger.forget()

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(directory)

        await in_thread(remove)

    async def uploads_older_than(self, seconds: float, *,
                                 now: float | None = None) -> list[str]:
        """Uploads with no activity for `seconds` before `now` (default: the clock),
        oldest first (to expire them).

        Activity is the newest modification time of the upload's directory and files:
        writing into an existing part file does not touch the directory itself.
        """
        before = (time.time() if now is None else now) - seconds
        return await in_thread(_idle_uploads, self.uploads, before)

    def _directory(self, upload_id: str) -> Path:
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise CinError(Code.BAD_PARAMETER, "the upload id is not valid")
        return self.uploads / upload_id

    async def _part(self, upload_id: str, part: int) -> _PartOnDisk:
        directory = self._directory(upload_id)
        on_disk = self._parts.get((upload_id, part))
        if on_disk is not None:
            return on_disk
        if upload_id not in self._known:
            if not await in_thread((directory / _META_FILE).is_file):
                raise CinError(Code.FILE_NOT_FOUND,
                               f"upload {upload_id} is not spooled at this POP")
            self._known.add(upload_id)
        async with self._loading:
            on_disk = self._parts.get((upload_id, part))
            if on_disk is None:
                receipts, journal_end = await in_thread(
                    _read_journal, directory / f"part-{part}.journal", part)
                on_disk = self._parts[(upload_id, part)] = _PartOnDisk(
                    directory, PartLedger(part, receipts), journal_end)
        return on_disk


class _ClaimedRange:
    """What the IO knows of a claimed chunk: when it has settled (acknowledged or failed),
    and whether a write batch of it is in a worker thread now."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.settled = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def start_write(self, fd: int, runs: ChunkRuns,
                    buffers: list[bytes]) -> asyncio.Future[None]:
        """Start writing the next batch in a worker thread; the caller goes on reading
        the body while it runs, and awaits it before starting the next.

        Checked and marked busy in one step of the event loop: a newer chunk that takes
        the range over after this either sees the write under way and waits for it, or
        this chunk sees it was superseded and writes nothing."""
        self.claim.check_current()
        self.idle.clear()
        batch = asyncio.ensure_future(in_thread(_write_runs, fd, runs, buffers))
        batch.add_done_callback(lambda _: self.idle.set())
        return batch


async def _receive(runs: ChunkRuns, body: AsyncIterable[bytes], expected_md5: bytes | None,
                   path: Path | None = None,
                   claimed: _ClaimedRange | None = None) -> ChunkRuns:
    """Take exactly the chunk's size in bytes from `body`, write them at its offset in
    `path` (when given, for the `claimed` range; held bytes are compared instead) and
    fsync them. Returns `runs`, which has their MD5 and the runs written with theirs.
    Never writes past the chunk, nor once a newer chunk took its range over.

    One batch at a time is hashed and written in a worker thread while the event loop
    reads the next from the body: hashlib and the write release the GIL, so on a large
    chunk the two run side by side instead of taking turns."""
    fd = None if path is None else await in_thread(_open_for_writing, path)

    def start(buffers: list[bytes]) -> asyncio.Future[None]:
        if fd is None or claimed is None:
            # Only hashed.
            return asyncio.ensure_future(in_thread(_write_runs, None, runs, buffers))
        return claimed.start_write(fd, runs, buffers)

    batch: asyncio.Future[None] | None = None
    try:
        pending: list[bytes] = []
        pending_bytes = 0
        async for piece in body:
            if claimed is not None:
                claimed.claim.check_current()  # superseded: refused as soon as it sends
            runs.count(len(piece))
            pending.append(piece)
            pending_bytes += len(piece)
            if pending_bytes >= FLUSH_BYTES:
                if batch is not None:
                    await batch  # in order, and its failure stops the chunk
                batch = start(pending)
                pending, pending_bytes = [], 0
        if batch is not None:
            await batch
            batch = None
        if pending:
            await start(pending)
        runs.check_whole(expected_md5)
        if claimed is not None:
            claimed.claim.commit()
        if fd is not None:
            await in_thread(os.fsync, fd)
        return runs
    finally:
        if batch is not None:
            # The chunk failed while a batch was in a thread: the descriptor is closed,
            # and the range freed, only once that write has ended.
            await _outlive(batch)
        if fd is not None:
            await in_thread(os.close, fd)


async def _outlive(batch: asyncio.Future[None]) -> None:
    """Wait for a batch under way whatever happens to the caller, its outcome dropped
    (the chunk already failed for another reason)."""
    while not batch.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({batch})
    if not batch.cancelled():
        batch.exception()


def _write_runs(fd: int | None, runs: ChunkRuns, buffers: list[bytes]) -> None:
    """The next bytes of a chunk (hashed here, in a worker thread): new ones written,
    acknowledged ones compared with the file's, a difference a conflict. With no file,
    they are only hashed."""
    for run in runs.take(buffers):
        if fd is None:
            continue
        if not run.held:
            _pwrite_all(fd, run.pieces, run.offset)
        elif os.pread(fd, run.size, run.offset) != b"".join(run.pieces):
            raise CinError(Code.CONFLICT, f"bytes from {run.offset} were acknowledged "
                           "with different content")


async def _stream(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    fd = await in_thread(_open_for_reading, path)
    try:
        position, end = start, start + length
        while position < end:
            block = await in_thread(os.pread, fd, min(READ_BYTES, end - position), position)
            if not block:
                raise CinError(Code.INTERNAL, f"{path} is shorter than its acknowledged bytes")
            position += len(block)
            yield block
    finally:
        await in_thread(os.close, fd)


def _open_for_writing(path: Path) -> int:
    # No O_TRUNC: the file holds other chunks of the part.
    # Read too: a chunk over acknowledged bytes is compared with them.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _open_for_reading(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)


def _pwrite_all(fd: int, buffers: Sequence[bytes | memoryview], offset: int) -> None:
    views = [memoryview(buffer) for buffer in buffers if buffer]
    while views:
        written = os.pwritev(fd, views[:_IOV_MAX], offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _hash_range(fd: int, update: Callable[[bytes], None], start: int, length: int) -> None:
    position, end = start, start + length
    while position < end:
        block = os.pread(fd, min(READ_BYTES, end - position), position)
        if not block:
            raise CinError(Code.INTERNAL, "a part file is shorter than its acknowledged bytes")
        update(block)
        position += len(block)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_once(directory: Path, name: str, content: bytes) -> None:
    """Create `directory/name` holding `content`, atomically and durably, unless it exists."""
    target = directory / name
    if target.exists():
        return
    directory.mkdir(exist_ok=True)
    _fsync_directory(directory.parent)
    temporary = directory / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        _pwrite_all(fd, [content], 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # A link, not a rename: it never replaces, so of two racing callers the first wins.
        os.link(temporary, target)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    _fsync_directory(directory)


def _read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        stored = json.loads((directory / _META_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    meta = stored.get("meta") if isinstance(stored, dict) else None
    return meta if isinstance(meta, dict) else None


def _scan(uploads: Path) -> list[SpooledUpload]:
    found: list[SpooledUpload] = []
    for directory in sorted(_upload_directories(uploads)):
        meta = _read_meta(directory)
        if meta is None:
            # open_upload never returned for it, so nothing of it was acknowledged.
            log.warning("%s: no readable %s, left for expiry", directory, _META_FILE)
            continue
        parts: list[PartState] = []
        for journal in directory.iterdir():
            match = _PART_JOURNAL.fullmatch(journal.name)
            if match is None or int(match[1]) > MAX_PARTS:
                continue
            part = int(match[1])
            receipts, _ = _read_journal(journal, part)
            if receipts:
                parts.append(PartState.of(part, receipts))
        parts.sort(key=lambda state: state.part)
        found.append(SpooledUpload(directory.name, meta, tuple(parts)))
    return found


def _read_journal(path: Path, part: int) -> tuple[list[ChunkReceipt], int]:
    """A journal's acknowledged chunks, and the length of its whole lines."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    journal = parse_journal(raw, part)
    for line in journal.malformed:
        log.warning("%s: ignoring a malformed journal line %r", path, line[:200])
    return journal.receipts, journal.end


def _upload_directories(uploads: Path) -> list[Path]:
    try:
        entries = list(uploads.iterdir())
    except FileNotFoundError:
        return []
    return [entry for entry in entries
            if _UPLOAD_ID.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()]


def _idle_uploads(uploads: Path, before: float) -> list[str]:
    idle: list[tuple[float, str]] = []
    for directory in _upload_directories(uploads):
        try:
            latest = max([directory.stat().st_mtime,
                          *(entry.stat().st_mtime for entry in directory.iterdir())])
        except FileNotFoundError:
            continue  # removed while we looked
        if latest < before:
            idle.append((latest, directory.name))
    return [name for _, name in sorted(idle)]
