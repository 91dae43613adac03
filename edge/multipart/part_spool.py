"""A POP's durable spool for multipart uploads (the Upload API).

    <root>/uploads/<upload_id>/upload.json         the caller's metadata, written once
    <root>/uploads/<upload_id>/part-<N>.data       the part's bytes, each at its offset
    <root>/uploads/<upload_id>/part-<N>.journal    one JSON line per acknowledged chunk

A chunk is acknowledged once its bytes are fsync'd in the data file and then its line
`{"offset":..,"size":..,"md5":"<hex>"}` is fsync'd in the journal: the journal, not the
data file, says which bytes exist, so bytes of a chunk that failed (or of a crash
mid-chunk) are never believed. Acknowledged bytes are never written again: a chunk equal
to an acknowledged one is accepted without a write, and a chunk over acknowledged bytes
otherwise (a retry, smaller, of a chunk whose answer was lost) has those bytes compared,
not written: a difference is a conflict.

What a journal says, and the byte ranges it covers, is edge/multipart/part_journal.py.

All disk work (and the MD5 of the bytes, hashed as they are written) runs in worker
threads, batched into ~1 MiB calls; a part is never held in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.limits import MAX_PART_SIZE, MAX_PARTS
from common.threads import in_thread
from edge.multipart.part_journal import (
    ChunkReceipt,
    Extent,
    PartState,
    merge_extents,
    read_journal,
)

__all__ = ["ChunkReceipt", "Extent", "FinishedPart", "PartSpool", "PartState",
           "SpooledUpload", "merge_extents"]

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


@dataclass(frozen=True)
class _Overlap:
    """The acknowledged bytes within a chunk's range (sorted, clipped to it): they are
    compared with the chunk's, never written again."""

    held: tuple[Extent, ...]


@dataclass
class _InFlight:
    extent: Extent
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class _PartBook:
    """What this process knows of one part: its acknowledged chunks (mirroring its journal),
    the chunks being written now, and the lock that serializes its journal appends."""

    def __init__(self, directory: Path, part: int, receipts: list[ChunkReceipt],
                 journal_end: int) -> None:
        self.part = part
        self.data_path = directory / f"part-{part}.data"
        self.journal_path = directory / f"part-{part}.journal"
        self.receipts = receipts
        self.journal_end = journal_end  # where the next line goes: after the last whole line
        self.journal_lock = asyncio.Lock()
        self.in_flight: list[_InFlight] = []
        self._directory_synced = False

    def state(self) -> PartState:
        return PartState.of(self.part, list(self.receipts))

    def admit(self, extent: Extent) -> ChunkReceipt | _InFlight | _Overlap | None:
        """What stands in the chunk's way: an in-flight chunk it overlaps (wait for it), an
        acknowledged chunk it repeats exactly, acknowledged bytes it overlaps otherwise,
        or nothing."""
        for writing in self.in_flight:
            if writing.extent.overlaps(extent):
                return writing
        for receipt in list(self.receipts):
            if receipt.extent == extent:
                return receipt
        # A client that lost a chunk's answer sends it again, smaller (FII halves a chunk
        # on a failure), and the chunk after it may straddle the end of what arrived.
        held = tuple(Extent(max(h.offset, extent.offset),
                            min(h.end, extent.end) - max(h.offset, extent.offset))
                     for h in self.state().extents if h.overlaps(extent))
        return _Overlap(held) if held else None

    def append(self, receipt: ChunkReceipt) -> None:
        """Journal `receipt` durably (in a worker thread, under `journal_lock`).

        The in-memory list is updated here rather than by the caller so that it can never
        lag the file, even when the caller is cancelled while the thread runs.
        """
        line = receipt.journal_line()
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
        self.receipts.append(receipt)


class PartSpool:
    def __init__(self, root: Path, *, max_part_bytes: int = MAX_PART_SIZE) -> None:
        self.uploads = root / "uploads"
        self.max_part_bytes = max_part_bytes
        self._known: set[str] = set()
        self._books: dict[tuple[str, int], _PartBook] = {}
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
        _check_part(part)
        if type(offset) is not int or type(size) is not int or offset < 0 or size < 1:
            raise CinError(Code.BAD_PARAMETER, "a chunk needs an offset >= 0 and a size >= 1")
        if offset + size > self.max_part_bytes:
            raise CinError(Code.BAD_PARAMETER,
                           f"a part may not pass {self.max_part_bytes} bytes")
        expected_md5 = _decode_md5(md5_b64)
        book = await self._book(upload_id, part)
        extent = Extent(offset, size)
        while isinstance(obstacle := book.admit(extent), _InFlight):
            # Once it settles, this chunk either repeats it, conflicts with it, or is free.
            await obstacle.settled.wait()
        if isinstance(obstacle, ChunkReceipt):
            return await self._repeat(obstacle, body, expected_md5)
        held = obstacle.held if isinstance(obstacle, _Overlap) else ()

        writing = _InFlight(extent)
        book.in_flight.append(writing)
        try:
            md5_hex, written = await _receive(book.data_path, extent, body, expected_md5,
                                              held)
            async with book.journal_lock:
                for segment, segment_md5 in written:
                    await in_thread(book.append, ChunkReceipt(part, segment.offset,
                                                             segment.size, segment_md5))
            return ChunkReceipt(part, offset, size, md5_hex)
        except FileNotFoundError as error:
            raise CinError(Code.FILE_NOT_FOUND,
                           f"upload {upload_id} was removed from this POP") from error
        finally:
            book.in_flight.remove(writing)
            writing.settled.set()

    async def _repeat(self, acknowledged: ChunkReceipt, body: AsyncIterable[bytes],
                      expected_md5: bytes | None) -> ChunkReceipt:
        """A chunk at the range of an acknowledged one: fine if its bytes are the same."""
        conflict = CinError(Code.CONFLICT, f"bytes {acknowledged.offset}-"
                            f"{acknowledged.extent.end - 1} of part {acknowledged.part} were "
                            "acknowledged with different content")
        if expected_md5 is not None and expected_md5.hex() != acknowledged.md5_hex:
            raise conflict
        md5_hex, _ = await _receive(None, acknowledged.extent, body, expected_md5)
        if md5_hex != acknowledged.md5_hex:
            raise conflict
        return acknowledged

    async def part_state(self, upload_id: str, part: int) -> PartState:
        _check_part(part)
        return (await self._book(upload_id, part)).state()

    async def finish_part(self, upload_id: str, part: int,
                          expected_size: int | None = None) -> FinishedPart:
        """Check the part has all its bytes. Reads nothing: a part's MD5 is asked for
        separately (`part_md5`), as only some callers need it."""
        _check_part(part)
        book = await self._book(upload_id, part)
        state = book.state()
        gap = state.first_gap(expected_size)
        if gap is not None:
            raise CinError(Code.CONFLICT, f"part {part} has a gap at byte {gap}")
        if expected_size is not None and state.end != expected_size:
            raise CinError(Code.CONFLICT,
                           f"part {part} has {state.end} bytes, its size is {expected_size}")
        whole = [r for r in book.receipts if r.offset == 0 and r.size == state.end]
        return FinishedPart(upload_id, part, book.data_path, state.end,
                            whole[0].md5_hex if whole else None)

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
        _check_part(part)
        book = await self._book(upload_id, part)
        wanted = Extent(start, length)
        if start < 0 or length < 0 or not any(
            extent.offset <= wanted.offset and wanted.end <= extent.end
            for extent in book.state().extents
        ):
            raise CinError(Code.RANGE_NOT_SATISFIABLE,
                           f"bytes {start}-{start + length - 1} of part {part} are not here")
        return _stream(book.data_path, start, length)

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
        _check_part(part)
        directory = self._directory(upload_id)
        book = self._books.pop((upload_id, part), None)

        def remove() -> None:
            for name in (f"part-{part}.data", f"part-{part}.journal"):
                (directory / name).unlink(missing_ok=True)

        await in_thread(remove)
        if book is not None:
            book.receipts.clear()

    async def remove_upload(self, upload_id: str) -> None:
        directory = self._directory(upload_id)
        self._known.discard(upload_id)
        for key in [key for key in self._books if key[0] == upload_id]:
            self._books.pop(key).receipts.clear()

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

    async def _book(self, upload_id: str, part: int) -> _PartBook:
        directory = self._directory(upload_id)
        book = self._books.get((upload_id, part))
        if book is not None:
            return book
        if upload_id not in self._known:
            if not await in_thread((directory / _META_FILE).is_file):
                raise CinError(Code.FILE_NOT_FOUND,
                               f"upload {upload_id} is not spooled at this POP")
            self._known.add(upload_id)
        async with self._loading:
            book = self._books.get((upload_id, part))
            if book is None:
                receipts, journal_end = await in_thread(
                    read_journal, directory / f"part-{part}.journal", part)
                book = self._books[(upload_id, part)] = _PartBook(
                    directory, part, receipts, journal_end)
        return book


class _ChunkSink:
    """One chunk's bytes on their way to the data file (or, with no file, only hashed).

    Bytes that fall in `held` (acknowledged before) are compared with the file's, and a
    difference is a conflict; the others are written, and `written` lists each run of
    them with its MD5, for the journal.
    """

    def __init__(self, fd: int | None, extent: Extent, held: tuple[Extent, ...] = ()) -> None:
        self.fd = fd
        self.position = extent.offset
        self.end = extent.end
        self.held = held
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.written: list[tuple[Extent, Any]] = []  # (run, its md5 hasher)

    def write(self, buffers: list[bytes]) -> None:
        for buffer in buffers:
            self.md5.update(buffer)
        if not self.held:
            if self.fd is not None:
                _pwrite_all(self.fd, buffers, self.position)
            # Nothing held: the chunk is one run of new bytes, whose MD5 is the chunk's,
            # hashed just above. Hashing every byte a second time for the run cost a
            # POP ~2 s of CPU per GB.
            self._extend_run(sum(len(buffer) for buffer in buffers), self.md5)
            return
        to_write: list[bytes] = []  # a run of new bytes, written in one call
        for buffer in buffers:
            view = memoryview(buffer)
            while view:
                run, inside = self._run_at(self.position + sum(map(len, to_write)))
                start = self.position + sum(map(len, to_write))
                piece = view[:min(len(view), run - start)]
                if inside:
                    self._flush(to_write)
                    to_write = []
                    assert self.fd is not None
                    if os.pread(self.fd, len(piece), self.position) != piece:
                        raise CinError(Code.CONFLICT, f"bytes from {self.position} were "
                                       "acknowledged with different content")
                    self.position += len(piece)
                else:
                    to_write.append(bytes(piece))
                view = view[len(piece):]
        self._flush(to_write)

    def _flush(self, pieces: list[bytes]) -> None:
        if pieces:
            if self.fd is not None:
                _pwrite_all(self.fd, pieces, self.position)
            self._wrote(pieces)

    def written_runs(self) -> list[tuple[Extent, str]]:
        return [(run, md5.hexdigest()) for run, md5 in self.written]

    def _run_at(self, position: int) -> tuple[int, bool]:
        """Where the run holding `position` ends, and whether it is held bytes."""
        for held in self.held:
            if held.offset <= position < held.end:
                return held.end, True
            if position < held.offset:
                return held.offset, False
        return self.end, False

    def _wrote(self, pieces: list[bytes]) -> None:
        md5 = self._extend_run(sum(len(piece) for piece in pieces), None)
        for piece in pieces:
            md5.update(piece)

    def _extend_run(self, size: int, hasher: Any | None) -> Any:
        """Count `size` new bytes at the position into the run they continue, or into a
        new run (hashed by `hasher`, else a new MD5); the run's MD5, to feed them to."""
        if self.written and self.written[-1][0].end == self.position:
            run, md5 = self.written[-1]
            self.written[-1] = (Extent(run.offset, run.size + size), md5)
        else:
            md5 = hasher if hasher is not None else hashlib.md5(usedforsecurity=False)
            self.written.append((Extent(self.position, size), md5))
        self.position += size
        return md5


async def _receive(path: Path | None, extent: Extent, body: AsyncIterable[bytes],
                   expected_md5: bytes | None,
                   held: tuple[Extent, ...] = ()) -> tuple[str, list[tuple[Extent, str]]]:
    """Take exactly `extent.size` bytes from `body`, write them at `extent.offset` in `path`
    (when given; bytes in `held` are compared instead) and fsync them. Returns their MD5
    in hex, and the runs written with theirs. Never writes past the extent."""
    fd = None if path is None else await in_thread(_open_for_writing, path)
    sink = _ChunkSink(fd, extent, held)
    try:
        received = 0
        pending: list[bytes] = []
        pending_bytes = 0
        async for piece in body:
            received += len(piece)
            if received > extent.size:
                raise CinError(Code.BAD_PARAMETER, f"the chunk is at least {received} bytes, "
                               f"the request said {extent.size}")
            pending.append(piece)
            pending_bytes += len(piece)
            if pending_bytes >= FLUSH_BYTES:
                await in_thread(sink.write, pending)
                pending, pending_bytes = [], 0
        if pending:
            await in_thread(sink.write, pending)
        if received != extent.size:
            raise CinError(Code.BAD_PARAMETER,
                           f"the chunk is {received} bytes, the request said {extent.size}")
        if expected_md5 is not None and sink.md5.digest() != expected_md5:
            raise CinError(Code.BAD_PARAMETER, "Content-MD5 does not match")
        if fd is not None:
            await in_thread(os.fsync, fd)
        return sink.md5.hexdigest(), sink.written_runs()
    finally:
        if fd is not None:
            await in_thread(os.close, fd)


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


def _check_part(part: int) -> None:
    if type(part) is not int or not 1 <= part <= MAX_PARTS:
        raise CinError(Code.BAD_PARAMETER, f"a part number is 1 to {MAX_PARTS}")


def _decode_md5(md5_b64: str | None) -> bytes | None:
    if md5_b64 is None:
        return None
    try:
        digest = base64.b64decode(md5_b64, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CinError(Code.BAD_PARAMETER, "Content-MD5 is not valid base64") from error
    if len(digest) != hashlib.md5(usedforsecurity=False).digest_size:
        raise CinError(Code.BAD_PARAMETER, "Content-MD5 is not the base64 of an MD5 digest")
    return digest


def _open_for_writing(path: Path) -> int:
    # No O_TRUNC: the file holds other chunks of the part.
    # Read too: a chunk over acknowledged bytes is compared with them.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def _open_for_reading(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)


def _pwrite_all(fd: int, buffers: list[bytes], offset: int) -> None:
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
            receipts, _ = read_journal(journal, part)
            if receipts:
                parts.append(PartState.of(part, receipts))
        parts.sort(key=lambda state: state.part)
        found.append(SpooledUpload(directory.name, meta, tuple(parts)))
    return found


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
