"""`PopJournal` on SQLite: `<spool_dir>/journal.sqlite3`, in WAL mode with
`synchronous=FULL`, written through the group-commit writer (common/sqlite_writer.py) so
that the stores a POP takes at once share an fsync instead of queueing for one each.

Handles are given out from memory. What is on disk is, per leased block, a `reserved`
mark: every index below it may have been given out. Taking a handle past the mark first
moves the mark `RESERVE_AHEAD` further (one small write for that many handles), and a
journal that opens takes up from the mark, never from what it had given out before it
stopped: a crash costs at most `RESERVE_AHEAD` unused handles of a block, and never gives
one out twice.

Events are kept in the order they committed (`seq`) until the coordinator acknowledges
them. Each file this POP began has a view (its record and upload), marked acknowledged
once no event of it is pending; acknowledged views are pruned after a retention, so the
table holds what the coordinator may not know yet and what the POP was asked about lately.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import MAX_BLOCK_SIZE, is_block_id, mint_handle
from common.protocol.pop_events import PopEvent, event_from_wire
from common.protocol.records import FileRecord, UploadRecord
from common.sqlite_writer import SqliteWriter
from edge.journal.protocol import LocalFile, Unshipped

log = logging.getLogger("cin.edge.journal")

JOURNAL_FILE = "journal.sqlite3"
SCHEMA_VERSION = 1
# Handles reserved on disk at a time: one write per this many stores, and what a crash
# may leave unused of a block.
RESERVE_AHEAD = 64
# Acknowledged views removed per transaction: a prune never holds the writer for long.
PRUNE_BATCH = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Blocks of handles the coordinator leased this POP. Indexes below `reserved` may have
-- been given out: after a restart the POP goes on from there.
CREATE TABLE IF NOT EXISTS leases (
    block TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    granted REAL NOT NULL
);
-- Facts not yet acknowledged by the coordinator, in the order they were recorded.
-- AUTOINCREMENT: a seq is never used twice, even once its event is gone.
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    handle TEXT NOT NULL,
    body BLOB NOT NULL              -- msgpack of the event's `to_wire()`
);
CREATE INDEX IF NOT EXISTS events_by_handle ON events (handle);
-- This POP's view of the files it began or recorded events of.
CREATE TABLE IF NOT EXISTS files (
    handle TEXT PRIMARY KEY,
    upload_id TEXT UNIQUE,          -- the Upload API's; NULL for a REST store
    record BLOB NOT NULL,           -- msgpack of FileRecord.to_wire()
    upload BLOB,                    -- msgpack of UploadRecord.to_wire()
    status TEXT NOT NULL,           -- the record's, or the coordinator's latest answer
    last_seq INTEGER,               -- its newest event; NULL: none recorded yet
    acknowledged REAL               -- when its last event was acknowledged; NULL: pending
);
CREATE INDEX IF NOT EXISTS files_acknowledged ON files (acknowledged)
    WHERE acknowledged IS NOT NULL;
-- REST stores begun and not finished: what a restarted POP looks for.
CREATE INDEX IF NOT EXISTS files_interrupted ON files (handle)
    WHERE upload_id IS NULL AND last_seq IS NULL;
"""


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


@dataclass
class _Block:
    """A leased block as the journal gives it out: `next` in memory, `reserved` on disk."""

    block: str
    size: int
    next: int
    reserved: int

    @property
    def left(self) -> int:
        return self.size - self.next


class SqliteJournal:
    """`retention`: seconds an acknowledged view of a Complete or Failed file is kept;
    `started_retention`: the same for a file still Started or In Transit (an upload under
    way, whose later requests read its view here), usually the upload TTL."""

    def __init__(self, spool_dir: Path, secret: str, *, retention: float = 3600.0,
                 started_retention: float = 24 * 3600.0,
                 on_commit: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = spool_dir / JOURNAL_FILE
        self.secret = secret
        self.retention = retention
        self.started_retention = started_retention
        self.clock = clock
        # Called on the loop after every durable event (the shipper's wake-up).
        self.on_event: Callable[[], None] | None = None
        self._writer = SqliteWriter(on_commit=on_commit)
        self._blocks: list[_Block] = []
        self._reserving: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ open, close

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(name) "
                       "DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            return db

        await self._writer.open(connect)
        rows = await self._writer.read(lambda db: db.execute(
            "SELECT block, size, reserved FROM leases WHERE reserved < size "
            "ORDER BY granted, rowid").fetchall())
        # Whatever was reserved may have been given out before the journal last closed.
        self._blocks = [_Block(block, size, reserved, reserved) for block, size, reserved in rows]
        await self.prune()

    async def close(self) -> None:
        if self._reserving is not None:
            await asyncio.gather(self._reserving, return_exceptions=True)
        await self._writer.close()

    # ------------------------------------------------------------------ handles

    async def take_handle(self) -> str:
        while True:
            block = next((b for b in self._blocks if b.left > 0), None)
            if block is None:
                raise CinError(Code.NO_HANDLES)
            if block.next < block.reserved:
                index = block.next
                block.next += 1
                if block.reserved - block.next < RESERVE_AHEAD // 2:
                    self._reserve_soon(block)  # so the next callers need not wait
                return mint_handle(self.secret, block.block, index)
            # Every caller waits on one reservation; a cancelled caller does not undo it.
            await asyncio.shield(self._reserve_soon(block))

    def _reserve_soon(self, block: _Block) -> asyncio.Task[None]:
        if self._reserving is None or self._reserving.done():
            self._reserving = asyncio.create_task(self._reserve(block), name="journal-reserve")
            self._reserving.add_done_callback(_log_failure)
        return self._reserving

    async def _reserve(self, block: _Block) -> None:
        mark = min(block.size, max(block.reserved, block.next) + RESERVE_AHEAD)
        if mark <= block.reserved:
            return
        await self._writer.write(lambda db: db.execute(
            "UPDATE leases SET reserved = ? WHERE block = ? AND reserved < ?",
            (mark, block.block, mark)))
        block.reserved = mark  # only once it is on disk

    def handles_left(self) -> int:
        return sum(block.left for block in self._blocks)

    async def add_lease(self, block: str, size: int) -> None:
        if not is_block_id(block) or not 0 < size <= MAX_BLOCK_SIZE:
            raise ValueError(f"not a lease: block {block!r} of {size} handles")
        granted = self.clock()
        added: bool = await self._writer.write(lambda db: db.execute(
            "INSERT INTO leases (block, size, reserved, granted) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (block) DO NOTHING", (block, size, granted)).rowcount == 1)
        if added:
            self._blocks.append(_Block(block, size, 0, 0))

    # ------------------------------------------------------------------ facts

    async def begin(self, record: FileRecord, upload: UploadRecord | None = None,
                    event: PopEvent | None = None) -> None:
        view = _View.of(record, upload)
        body = _pack(event.to_wire()) if event is not None else b""

        def write(db: sqlite3.Connection) -> None:
            last_seq = _append(db, event, body) if event is not None else None
            db.execute("INSERT INTO files (handle, upload_id, record, upload, status, "
                       "last_seq, acknowledged) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                       (record.handle, view.upload_id, view.record, view.upload,
                        record.status.value, last_seq))

        # A REST store's begin is the one INSERT: no savepoint needed in a group commit.
        await self._writer.write(write, one_statement=event is None)
        if event is not None:
            self.wake_shipper()

    async def record(self, event: PopEvent, record: FileRecord | None = None,
                     upload: UploadRecord | None = None) -> None:
        view = _View.of(record, upload) if record is not None else None
        upload_blob = _pack(upload.to_wire()) if upload is not None else None
        body = _pack(event.to_wire())

        def write(db: sqlite3.Connection) -> None:
            seq = _append(db, event, body)
            if view is not None and record is not None:
                db.execute(
                    "INSERT INTO files (handle, upload_id, record, upload, status, last_seq, "
                    "acknowledged) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (handle) DO "
                    "UPDATE SET record = excluded.record, status = excluded.status, "
                    "upload_id = coalesce(excluded.upload_id, upload_id), "
                    "upload = coalesce(excluded.upload, upload), "
                    "last_seq = excluded.last_seq, acknowledged = NULL",
                    (event.handle, view.upload_id, view.record, view.upload,
                     record.status.value, seq))
            else:
                db.execute("UPDATE files SET last_seq = ?, acknowledged = NULL, "
                           "upload_id = coalesce(?, upload_id), upload = coalesce(?, upload) "
                           "WHERE handle = ?",
                           (seq, upload.upload_id if upload is not None else None,
                            upload_blob, event.handle))

        await self._writer.write(write)
        self.wake_shipper()

    async def forget(self, handle: str) -> None:
        await self._writer.write(lambda db: db.execute(
            "DELETE FROM files WHERE handle = ?", (handle,)), one_statement=True)

    # ------------------------------------------------------------------ this POP's view

    async def file(self, handle: str) -> LocalFile | None:
        row = await self._writer.read(lambda db: db.execute(
            "SELECT record, upload, status, acknowledged FROM files WHERE handle = ?",
            (handle,)).fetchone())
        return _local_file(row) if row is not None else None

    async def upload(self, upload_id: str) -> LocalFile | None:
        row = await self._writer.read(lambda db: db.execute(
            "SELECT record, upload, status, acknowledged FROM files WHERE upload_id = ?",
            (upload_id,)).fetchone())
        return _local_file(row) if row is not None else None

    async def interrupted_stores(self) -> list[FileRecord]:
        rows = await self._writer.read(lambda db: db.execute(
            "SELECT record FROM files WHERE upload_id IS NULL AND last_seq IS NULL "
            "ORDER BY handle").fetchall())
        return [FileRecord.from_wire(_unpack(blob)) for (blob,) in rows]

    # ------------------------------------------------------------------ shipping

    async def unshipped(self, limit: int) -> list[Unshipped]:
        rows: list[tuple[int, bytes]] = await self._writer.read(lambda db: db.execute(
            "SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall())
        found: list[Unshipped] = []
        unreadable: list[int] = []
        for seq, body in rows:
            try:
                found.append(Unshipped(seq, event_from_wire(_unpack(body))))
            except (CinError, ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
                # Shipped it could only be refused, and kept it would stop every later one.
                log.error("journal event %d cannot be read (%s): dropped", seq, exc)
                unreadable.append(seq)
        if unreadable:
            await self._writer.write(lambda db: db.executemany(
                "DELETE FROM events WHERE seq = ?", [(seq,) for seq in unreadable]))
        return found

    async def newest_seq(self) -> int:
        """The seq of the newest event recorded (0 if none ever was): a flush waits for
        every event up to it."""
        row = await self._writer.read(lambda db: db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone())
        return int(row[0]) if row is not None else 0

    async def acknowledged(self, seqs: Sequence[int], statuses: dict[str, str]) -> None:
        now = self.clock()
        known = {status.value for status in FileStatus}
        answered = [(status, handle) for handle, status in statuses.items() if status in known]

        def write(db: sqlite3.Connection) -> None:
            handles = {row[0] for seq in seqs for row in db.execute(
                "DELETE FROM events WHERE seq = ? RETURNING handle", (seq,))}
            # A file is acknowledged once none of its events waits any more.
            db.executemany(
                "UPDATE files SET acknowledged = ? WHERE handle = ? AND acknowledged IS "
                "NULL AND NOT EXISTS (SELECT 1 FROM events WHERE events.handle = "
                "files.handle)", [(now, handle) for handle in handles])
            db.executemany("UPDATE files SET status = ? WHERE handle = ?", answered)
            # Here rather than on a timer of its own: no extra commit, and a POP that
            # records nothing adds nothing to prune.
            self._prune(db)

        await self._writer.write(write)

    async def prune(self) -> int:
        """Remove views acknowledged longer ago than their retention; how many went."""
        removed = 0
        while (count := await self._writer.write(self._prune)) > 0:
            removed += count
            if count < PRUNE_BATCH:
                break
        return removed

    def _prune(self, db: sqlite3.Connection) -> int:
        """In a write: up to PRUNE_BATCH views past their retention removed."""
        now = self.clock()
        return db.execute(
            "DELETE FROM files WHERE handle IN (SELECT handle FROM files WHERE "
            "acknowledged IS NOT NULL AND acknowledged < ? AND (status IN (?, ?) OR "
            "acknowledged < ?) LIMIT ?)",
            (now - self.retention, FileStatus.COMPLETE.value, FileStatus.FAILED.value,
             now - self.started_retention, PRUNE_BATCH)).rowcount

    async def pending_count(self) -> int:
        row = await self._writer.read(lambda db: db.execute(
            "SELECT count(*) FROM events").fetchone())
        return int(row[0])

    def wake_shipper(self) -> None:
        if self.on_event is not None:
            self.on_event()


@dataclass(frozen=True)
class _View:
    upload_id: str | None
    record: bytes
    upload: bytes | None

    @classmethod
    def of(cls, record: FileRecord, upload: UploadRecord | None) -> _View:
        """Encoded on the loop, so the writer's thread only writes."""
        return cls(upload.upload_id if upload is not None else None,
                   _pack(record.to_wire()),
                   _pack(upload.to_wire()) if upload is not None else None)


def _append(db: sqlite3.Connection, event: PopEvent, body: bytes) -> int:
    cursor = db.execute("INSERT INTO events (id, handle, body) VALUES (?, ?, ?)",
                        (event.id, event.handle, body))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _local_file(row: tuple[bytes, bytes | None, str, float | None]) -> LocalFile:
    record_blob, upload_blob, status, acknowledged = row
    record = FileRecord.from_wire(_unpack(record_blob))
    if status != record.status.value:
        record = record.with_changes(status=FileStatus(status))
    upload = UploadRecord.from_wire(_unpack(upload_blob)) if upload_blob is not None else None
    return LocalFile(record, upload, acknowledged is not None)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reserving handles in the journal failed: %r", task.exception())
