"""The embedded StateStore: SQLite in WAL mode, its schema and its queries.

The connection belongs to one thread (common/sqlite_writer.py): each query
here is a function of the connection that the writer runs there, a write inside a group
commit that has returned only once it is on disk.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from common.config import AppConfig
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import HandleBlock
from common.protocol.pop_events import PopEvent, UploadInTransit
from common.protocol.pop_load import PopLoad
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.wire import PopHeartbeat
from common.sqlite_writer import SqliteWriter
from coordinator.events import Delivery, WebhookEvent
from coordinator.keyed_locks import KeyedLocks
from coordinator.state import pop_event_rules, rules
from coordinator.state.pop_event_rules import refusal
from coordinator.state.protocol import (
    AppliedBatch,
    EventOutcome,
    EventsFor,
    HeardPop,
    OutboxEntry,
    PendingAbort,
    PendingRemoval,
)

SCHEMA_VERSION = 9
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    apikey TEXT PRIMARY KEY,
    security TEXT NOT NULL,
    storage TEXT NOT NULL,          -- JSON list of storage location names
    max_upload_size INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    handle TEXT PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,    -- who asked for it: makes StartFile idempotent
    apikey TEXT NOT NULL,
    storage TEXT NOT NULL,
    provider TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    filename TEXT NOT NULL,
    mimetype TEXT NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    pop TEXT NOT NULL,
    uploaded REAL NOT NULL,
    access TEXT NOT NULL,
    region TEXT,
    source_url TEXT,
    tags TEXT NOT NULL,             -- JSON object
    version INTEGER NOT NULL,
    etag TEXT,
    hashes TEXT                     -- JSON object, for `version`
);
CREATE TABLE IF NOT EXISTS parts (
    handle TEXT NOT NULL REFERENCES files(handle) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    pop TEXT NOT NULL,
    state TEXT NOT NULL,            -- spooled | stored
    size INTEGER NOT NULL,
    etag TEXT,
    PRIMARY KEY (handle, part_number)
);
-- Multipart uploads (the Upload API): the client's upload id for a file being uploaded.
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE REFERENCES files(handle) ON DELETE CASCADE,
    storage_upload_id TEXT NOT NULL,
    pop TEXT NOT NULL,
    fii INTEGER NOT NULL,
    created REAL NOT NULL
);
-- Uploads the coordinator ended without their file (they expired): why, and whether the
-- bucket's multipart upload is aborted yet. Written in the transaction that fails the
-- file, so an abort the coordinator did not get to before it stopped is found again.
-- No reference to `uploads`: the abort is owed even if the file's record is deleted.
CREATE TABLE IF NOT EXISTS upload_aborts (
    upload_id TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    storage TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    storage_upload_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    ended REAL NOT NULL,
    aborted REAL                    -- when the bucket confirmed it; NULL until then
);
CREATE INDEX IF NOT EXISTS upload_aborts_pending ON upload_aborts (ended)
    WHERE aborted IS NULL;
-- Files still Started, by age: what expiry looks through, without reading the (many more)
-- files that are done. Schema 4 added it and `upload_aborts`; IF NOT EXISTS upgrades a
-- schema 3 database when it is opened, as for every earlier version.
CREATE INDEX IF NOT EXISTS files_started ON files (uploaded) WHERE status = 'Started';
-- REST stores the coordinator failed because they stayed Started past the store TTL
-- (their POP stopped mid-store), whose leftovers in the bucket are still to be removed.
-- Written in the transaction that fails the file; a row goes once its removal is done.
-- Schema 5 added it and `files_key`.
CREATE TABLE IF NOT EXISTS store_removals (
    handle TEXT PRIMARY KEY,
    storage TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    ended REAL NOT NULL
);
-- The files at a key: before a failed store's leftovers go, whether they are another's.
CREATE INDEX IF NOT EXISTS files_key ON files (key);
-- Webhook events waiting to be delivered, written in the transaction of the change they
-- report. A delivered row is deleted; one that ran out of retries stays, abandoned.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- the event id receivers see
    apikey TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL,             -- JSON object
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    abandoned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (abandoned, next_attempt);
-- Blocks of handles leased to POPs, which give them out on their own
-- (common/protocol/handle_lease.py). Schema 7 added it and `pop_events`.
CREATE TABLE IF NOT EXISTS handle_leases (
    block TEXT PRIMARY KEY,
    pop TEXT NOT NULL,
    size INTEGER NOT NULL,
    granted REAL NOT NULL
);
-- The ids of the events POPs shipped that were applied: one sent again is skipped. Kept
-- for a while (`forget_applied_events`), far longer than a POP retries a batch.
CREATE TABLE IF NOT EXISTS pop_events (
    id TEXT PRIMARY KEY,
    pop TEXT NOT NULL,
    applied REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pop_events_applied ON pop_events (applied);
-- The handles of deleted files: a leased handle without a record is otherwise taken for
-- a file its POP has not reported yet.
CREATE TABLE IF NOT EXISTS deleted_files (handle TEXT PRIMARY KEY, deleted REAL NOT NULL);
-- By age: what the sweep forgets (`forget_deleted_files`).
CREATE INDEX IF NOT EXISTS deleted_files_deleted ON deleted_files (deleted);
"""
# What the operator's page reads (`files_in_flight`, `failed_files`, `outbox_entries`),
# each a range of an index read in order and cut at its LIMIT; Started files are read
# through `files_started`. Schema 6 added them; `files_in_transit` is also what the
# finishing of uploads whose parts are all stored looks through.
_OPERATOR_INDEXES = """
CREATE INDEX IF NOT EXISTS files_in_transit ON files (uploaded) WHERE status = 'In Transit';
CREATE INDEX IF NOT EXISTS files_failed ON files (uploaded) WHERE status = 'Failed';
-- Not a partial index: SQLite 3.40's planner prefers `outbox_due` and a sort to one.
CREATE INDEX IF NOT EXISTS outbox_abandoned ON outbox (abandoned, id);
"""

_UPLOAD_SELECT = ("SELECT uploads.upload_id, uploads.handle, uploads.storage_upload_id, "
                  "uploads.pop, fii, created, upload_aborts.reason FROM uploads "
                  "JOIN files ON files.handle = uploads.handle "
                  "LEFT JOIN upload_aborts ON upload_aborts.upload_id = uploads.upload_id "
                  "WHERE ")
_UPLOAD_BY = {key: _UPLOAD_SELECT + f"{column} = ?"
              for key, column in (("upload_id", "uploads.upload_id"), ("origin", "origin"),
                                  ("handle", "uploads.handle"))}
# The literal 'Started' (not a bound value) is what lets SQLite use `files_started`.
# `files.uploaded` is the start of an upload's file, the indexed twin of `created`.
_EXPIRED_UPLOADS = (
    "SELECT uploads.upload_id, uploads.storage_upload_id, files.* "
    "FROM files JOIN uploads ON uploads.handle = files.handle "
    "WHERE files.status = 'Started' AND files.uploaded < ? AND uploads.created < ? "
    "ORDER BY files.uploaded LIMIT ?")

# A REST store's file is one that no Upload API upload brings (`uploads.handle` is
# unique, so the NOT EXISTS is one index probe per Started file).
_EXPIRED_STORES = (
    "SELECT * FROM files "
    "WHERE status = 'Started' AND uploaded < ? "
    "AND NOT EXISTS (SELECT 1 FROM uploads WHERE uploads.handle = files.handle) "
    "ORDER BY uploaded LIMIT ?")
_KEY_IN_USE = (
    "SELECT 1 FROM files WHERE key = ? AND container = ? AND storage = ? AND handle != ? "
    "AND status != 'Failed' LIMIT 1")

# The latest files of a status, one status a query: `status IN (...)` would read every
# match to sort them. The status is a literal (FileStatus's own text), as a partial
# index's condition is only matched by one.
_LATEST_OF = {status: f"SELECT * FROM files WHERE status = '{status.value}' "  # noqa: S608
                      "ORDER BY uploaded DESC LIMIT ?"
              for status in (FileStatus.STARTED, FileStatus.IN_TRANSIT, FileStatus.FAILED)}
_OUTBOX_ENTRY = ("SELECT id, apikey, endpoint, action, created, attempts, next_attempt, "
                 "last_error, abandoned FROM outbox ")
_OUTBOX_ENTRIES = {
    False: _OUTBOX_ENTRY + "WHERE abandoned = 0 ORDER BY next_attempt, id LIMIT ?",
    True: _OUTBOX_ENTRY + "WHERE abandoned = 1 ORDER BY id DESC LIMIT ?",
}

# An In Transit upload whose every part is in the bucket (and that has parts, and a bucket
# multipart upload: one put whole has neither).
_FINISHABLE = (
    "SELECT files.handle FROM files JOIN uploads ON uploads.handle = files.handle "
    "WHERE files.status = 'In Transit' AND uploads.storage_upload_id != '' "
    "AND EXISTS (SELECT 1 FROM parts WHERE parts.handle = files.handle) "
    "AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.handle = files.handle "
    "AND parts.state != 'stored') ORDER BY files.uploaded LIMIT ?")

_FILE_COLUMNS = ("handle", "apikey", "storage", "provider", "container", "key", "filename",
                 "mimetype", "size", "status", "pop", "uploaded", "access", "region",
                 "source_url", "tags", "version", "etag", "hashes")


class SqliteStateStore:
    def __init__(self, path: Path, *, synchronous: str = "full",
                 on_transaction: Callable[[float], None] | None = None) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._writer = SqliteWriter(on_commit=on_transaction)
        # One coordinator alone uses a SQLite database, so what coordinators share stays
        # in its process: the heartbeats it heard (by its monotonic clock), and its locks.
        self._heard: dict[str, tuple[PopHeartbeat, float]] = {}
        self._locks = KeyedLocks()

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA + _OPERATOR_INDEXES)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(name) "
                       "DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            return db

        await self._writer.open(connect)

    async def close(self) -> None:
        await self._writer.close()

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        rows = [(a.apikey, a.security, json.dumps(list(a.storage)), a.max_upload_size,
                 time.time()) for a in apps]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO apps VALUES (?, ?, ?, ?, ?) ON CONFLICT(apikey) DO UPDATE SET "
                "security=excluded.security, storage=excluded.storage, "
                "max_upload_size=excluded.max_upload_size, updated=excluded.updated", rows)

        await self._writer.write(write)

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        row = _to_row(record)

        def write(db: sqlite3.Connection) -> FileRecord:
            existing = db.execute("SELECT * FROM files WHERE origin = ?", (origin,))
            found = existing.fetchone()
            if found is not None:
                return _from_row(found, existing.description)
            columns = ", ".join(("origin", *_FILE_COLUMNS))
            marks = ", ".join("?" * (len(_FILE_COLUMNS) + 1))
            db.execute(f"INSERT INTO files ({columns}) VALUES ({marks})",  # noqa: S608
                       (origin, *row))
            return record

        return await self._writer.write(write)

    async def create_upload(self, record: FileRecord, upload: UploadRecord,
                            origin: str) -> UploadRecord:
        row = _to_row(record)

        def write(db: sqlite3.Connection) -> UploadRecord:
            earlier = _upload_by(db, "origin", origin)
            if earlier is not None:
                return earlier
            if db.execute("SELECT 1 FROM files WHERE origin = ?", (origin,)).fetchone():
                raise CinError(Code.CONFLICT, "this origin started a file, not an upload")
            columns = ", ".join(("origin", *_FILE_COLUMNS))
            marks = ", ".join("?" * (len(_FILE_COLUMNS) + 1))
            db.execute(f"INSERT INTO files ({columns}) VALUES ({marks})",  # noqa: S608
                       (origin, *row))
            db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                       (upload.upload_id, upload.handle, upload.storage_upload_id,
                        upload.pop, int(upload.fii), upload.created))
            return upload

        return await self._writer.write(write)

    async def get_upload(self, upload_id: str | None = None, *, origin: str | None = None,
                         handle: str | None = None) -> UploadRecord | None:
        # One key per query: `a = ? OR b = ?` across the join would scan every upload.
        key, value = next(((key, value) for key, value in (
            ("upload_id", upload_id), ("origin", origin), ("handle", handle))
            if value is not None), ("upload_id", None))

        return await self._writer.read(lambda db: _upload_by(db, key, value))

    async def upload_in_transit(self, handle: str, parts: Sequence[PartRecord],
                                tags: dict[str, str]) -> FileRecord:
        def write(db: sqlite3.Connection) -> FileRecord:
            record = _file_for_update(db, handle)
            updated = rules.in_transit(record, tags)
            if updated is None:
                return record
            recorded = {part.number: part for part in _parts(db, handle)}
            _put_parts(db, handle, rules.held_parts(recorded, parts))
            db.execute("UPDATE files SET status = ?, tags = ? WHERE handle = ?",
                       (updated.status.value, json.dumps(updated.tags), handle))
            return updated

        return await self._writer.write(write)

    async def part_stored(self, handle: str, part: PartRecord) -> None:
        stored = rules.stored_part(part)

        def write(db: sqlite3.Connection) -> None:
            # Only whether the file is there: this is the busiest write of all.
            if db.execute("SELECT 1 FROM files WHERE handle = ?", (handle,)).fetchone() is None:
                raise CinError(Code.FILE_NOT_FOUND, handle)
            _put_parts(db, handle, [stored])

        await self._writer.write(write)

    async def parts_of(self, handle: str) -> list[PartRecord]:
        return await self._writer.read(lambda db: _parts(db, handle))

    async def get_file(self, handle: str) -> FileRecord | None:
        return await self._writer.read(lambda db: _file(db, handle))

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
        events: EventsFor | None = None,
    ) -> FileRecord:
        def write(db: sqlite3.Connection) -> FileRecord:
            updated = rules.with_status(_file_for_update(db, handle), status, size=size,
                                        etag=etag)
            db.execute("UPDATE files SET status = ?, size = ?, etag = ? WHERE handle = ?",
                       (updated.status.value, updated.size, updated.etag, handle))
            if events is not None:
                _enqueue(db, events(updated))
            return updated

        return await self._writer.write(write)

    async def overwrite_file(
        self,
        handle: str,
        *,
        size: int,
        etag: str,
        mimetype: str,
        events: EventsFor,
    ) -> FileRecord:
        def write(db: sqlite3.Connection) -> FileRecord:
            updated = rules.overwritten(_file_for_update(db, handle), size=size, etag=etag,
                                        mimetype=mimetype, now=time.time())
            db.execute("UPDATE files SET size = ?, etag = ?, mimetype = ?, version = ?, "
                       "hashes = NULL, uploaded = ? WHERE handle = ?",
                       (size, etag, mimetype, updated.version, updated.uploaded, handle))
            _enqueue(db, events(updated))
            return updated

        return await self._writer.write(write)

    async def delete_file(
        self, handle: str, *, events: EventsFor
    ) -> FileRecord:
        def write(db: sqlite3.Connection) -> FileRecord:
            record = _file_for_update(db, handle)
            rules.check_delete(record)
            db.execute("DELETE FROM files WHERE handle = ?", (handle,))
            db.execute("INSERT OR IGNORE INTO deleted_files VALUES (?, ?)",
                       (handle, time.time()))
            _enqueue(db, events(record))
            return record

        return await self._writer.write(write)

    async def was_deleted(self, handle: str) -> bool:
        def read(db: sqlite3.Connection) -> bool:
            return db.execute("SELECT 1 FROM deleted_files WHERE handle = ?",
                              (handle,)).fetchone() is not None

        return await self._writer.read(read)

    async def forget_deleted_files(self, deleted_before: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM deleted_files WHERE deleted < ?",
                              (deleted_before,)).rowcount

        return await self._writer.write(write)

    # ------------------------------------------------------------------ upload expiry

    async def expire_uploads(self, started_before: float, reason: str, now: float,
                             limit: int) -> list[PendingAbort]:
        def write(db: sqlite3.Connection) -> list[PendingAbort]:
            cursor = db.execute(_EXPIRED_UPLOADS, (started_before, started_before, limit))
            file_columns = cursor.description[2:]
            ended: list[PendingAbort] = []
            for upload_id, storage_upload_id, *file_row in cursor.fetchall():
                failed = rules.expired(_from_row(tuple(file_row), file_columns))
                abort = PendingAbort(upload_id=upload_id, handle=failed.handle,
                                     storage=failed.storage, container=failed.container,
                                     key=failed.key, storage_upload_id=storage_upload_id,
                                     reason=reason)
                ended.append(abort)
                db.execute("UPDATE files SET status = ? WHERE handle = ?",
                           (failed.status.value, failed.handle))
                db.execute(
                    "INSERT INTO upload_aborts VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT(upload_id) DO NOTHING",
                    (abort.upload_id, abort.handle, abort.storage, abort.container,
                     abort.key, abort.storage_upload_id, reason, now))
            return ended

        return await self._writer.write(write)

    async def pending_aborts(self, limit: int) -> list[PendingAbort]:
        def read(db: sqlite3.Connection) -> list[PendingAbort]:
            rows = db.execute(
                "SELECT upload_id, handle, storage, container, key, storage_upload_id, "
                "reason FROM upload_aborts WHERE aborted IS NULL ORDER BY ended LIMIT ?",
                (limit,)).fetchall()
            return [PendingAbort(*row) for row in rows]

        return await self._writer.read(read)

    async def abort_done(self, upload_id: str, now: float) -> None:
        await self._write("UPDATE upload_aborts SET aborted = ? "
                          "WHERE upload_id = ? AND aborted IS NULL", (now, upload_id))

    # ------------------------------------------------------------------ store expiry

    async def expire_stores(self, started_before: float, now: float,
                            limit: int) -> list[PendingRemoval]:
        def write(db: sqlite3.Connection) -> list[PendingRemoval]:
            cursor = db.execute(_EXPIRED_STORES, (started_before, limit))
            ended: list[PendingRemoval] = []
            for row in cursor.fetchall():
                failed = rules.expired(_from_row(row, cursor.description))
                removal = PendingRemoval(handle=failed.handle, storage=failed.storage,
                                         container=failed.container, key=failed.key)
                ended.append(removal)
                db.execute("UPDATE files SET status = ? WHERE handle = ?",
                           (failed.status.value, failed.handle))
                db.execute("INSERT INTO store_removals VALUES (?, ?, ?, ?, ?) "
                           "ON CONFLICT(handle) DO NOTHING",
                           (removal.handle, removal.storage, removal.container,
                            removal.key, now))
            return ended

        return await self._writer.write(write)

    async def pending_removals(self, limit: int) -> list[PendingRemoval]:
        def read(db: sqlite3.Connection) -> list[PendingRemoval]:
            rows = db.execute("SELECT handle, storage, container, key FROM store_removals "
                              "ORDER BY ended LIMIT ?", (limit,)).fetchall()
            return [PendingRemoval(*row) for row in rows]

        return await self._writer.read(read)

    async def removal_done(self, handle: str) -> None:
        await self._write("DELETE FROM store_removals WHERE handle = ?", (handle,))

    async def key_in_use(self, storage: str, container: str, key: str, *,
                         besides: str) -> bool:
        def read(db: sqlite3.Connection) -> bool:
            found = db.execute(_KEY_IN_USE, (key, container, storage, besides)).fetchone()
            return found is not None

        return await self._writer.read(read)

    # ------------------------------------------------------------------ handle leases

    async def grant_lease(self, block: HandleBlock) -> None:
        def write(db: sqlite3.Connection) -> None:
            try:
                db.execute("INSERT INTO handle_leases VALUES (?, ?, ?, ?)",
                           (block.block, block.pop, block.size, block.granted))
            except sqlite3.IntegrityError:
                raise CinError(Code.CONFLICT, f"block {block.block} is leased already") from None

        await self._writer.write(write)

    async def lease(self, block: str) -> HandleBlock | None:
        def read(db: sqlite3.Connection) -> HandleBlock | None:
            row = db.execute("SELECT block, size, pop, granted FROM handle_leases "
                             "WHERE block = ?", (block,)).fetchone()
            return HandleBlock(*row) if row is not None else None

        return await self._writer.read(read)

    async def leases(self) -> list[HandleBlock]:
        def read(db: sqlite3.Connection) -> list[HandleBlock]:
            rows = db.execute("SELECT block, size, pop, granted FROM handle_leases "
                              "ORDER BY granted, block").fetchall()
            return [HandleBlock(*row) for row in rows]

        return await self._writer.read(read)

    # ------------------------------------------------------------------ POP events

    async def apply_pop_events(self, pop: str, events: Sequence[PopEvent], *, now: float,
                               stored: EventsFor) -> AppliedBatch:
        def write(db: sqlite3.Connection) -> AppliedBatch:
            outcomes: list[EventOutcome] = []
            for event in events:
                db.execute("SAVEPOINT event")
                try:
                    outcomes.append(_apply_event(db, pop, event, now, stored))
                except CinError as exc:
                    db.execute("ROLLBACK TO event")
                    outcomes.append(EventOutcome(event, "refused", refusal(exc)))
                db.execute("RELEASE event")
            statuses: dict[str, FileStatus] = {}
            for handle in dict.fromkeys(event.handle for event in events):
                row = db.execute("SELECT status FROM files WHERE handle = ?",
                                 (handle,)).fetchone()
                if row is not None:
                    statuses[handle] = FileStatus(row[0])
            return AppliedBatch(outcomes, statuses)

        return await self._writer.write(write)

    async def forget_applied_events(self, applied_before: float) -> int:
        def write(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM pop_events WHERE applied < ?",
                              (applied_before,)).rowcount

        return await self._writer.write(write)

    async def finishable_uploads(self, limit: int) -> list[str]:
        def read(db: sqlite3.Connection) -> list[str]:
            return [row[0] for row in db.execute(_FINISHABLE, (limit,)).fetchall()]

        return await self._writer.read(read)

    # ------------------------------------------------------------------ webhook outbox

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        return await self._writer.read(lambda db: _due(db, now, limit))

    async def claim_deliveries(self, now: float, limit: int, until: float) -> list[Delivery]:
        def write(db: sqlite3.Connection) -> list[Delivery]:
            deliveries = _due(db, now, limit)
            db.executemany("UPDATE outbox SET next_attempt = ? WHERE id = ?",
                           [(until, delivery.id) for delivery in deliveries])
            return deliveries

        return await self._writer.write(write)

    async def release_deliveries(self, delivery_ids: Collection[int], now: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE outbox SET next_attempt = ? WHERE id = ? AND abandoned = 0",
                           [(now, delivery_id) for delivery_id in delivery_ids])

        await self._writer.write(write)

    async def next_delivery_time(self, excluding: Collection[int] = ()) -> float | None:
        skipped = list(excluding)

        def read(db: sqlite3.Connection) -> float | None:
            marks = ", ".join("?" * len(skipped))  # placeholders only; the ids are bound
            query = f"SELECT MIN(next_attempt) FROM outbox WHERE abandoned = 0 AND id NOT IN ({marks})"  # noqa: S608, E501
            row = db.execute(query, skipped)
            value = row.fetchone()[0]
            return float(value) if value is not None else None

        return await self._writer.read(read)

    async def delivery_done(self, delivery_id: int) -> None:
        await self._write("DELETE FROM outbox WHERE id = ?", (delivery_id,))

    async def delivery_failed(self, delivery_id: int, error: str, *,
                              retry_at: float | None) -> None:
        """Count a failed attempt; try again at `retry_at`, or never when it is None."""
        if retry_at is None:
            await self._write("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                              "abandoned = 1 WHERE id = ?", (error[:1000], delivery_id))
        else:
            await self._write("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                              "next_attempt = ? WHERE id = ?",
                              (error[:1000], retry_at, delivery_id))

    async def outbox_counts(self) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            rows = db.execute("SELECT abandoned, COUNT(*) FROM outbox GROUP BY abandoned")
            counts = dict(rows.fetchall())
            return {"pending": counts.get(0, 0), "abandoned": counts.get(1, 0)}

        return await self._writer.read(read)

    # ------------------------------------------------------------------ the operator's page

    async def files_in_flight(self, limit: int) -> list[FileRecord]:
        return await self._latest((FileStatus.STARTED, FileStatus.IN_TRANSIT), limit)

    async def failed_files(self, limit: int) -> list[FileRecord]:
        return await self._latest((FileStatus.FAILED,), limit)

    async def _latest(self, statuses: Sequence[FileStatus], limit: int) -> list[FileRecord]:
        def read(db: sqlite3.Connection) -> list[FileRecord]:
            found: list[FileRecord] = []
            for status in statuses:
                cursor = db.execute(_LATEST_OF[status], (limit,))
                found += [_from_row(row, cursor.description) for row in cursor.fetchall()]
            return rules.latest_started(found, limit)

        return await self._writer.read(read)

    async def outbox_entries(self, *, abandoned: bool, limit: int) -> list[OutboxEntry]:
        def read(db: sqlite3.Connection) -> list[OutboxEntry]:
            rows = db.execute(_OUTBOX_ENTRIES[abandoned], (limit,)).fetchall()
            return [OutboxEntry(id=row[0], apikey=row[1], endpoint=row[2], action=row[3],
                                created=row[4], attempts=row[5], next_attempt=row[6],
                                last_error=row[7], abandoned=bool(row[8])) for row in rows]

        return await self._writer.read(read)

    # ------------------------------------------------------------------ shared

    async def pop_heard(self, beat: PopHeartbeat) -> None:
        self._heard[beat.pop] = (beat, time.monotonic())

    async def pops_heard(self) -> list[HeardPop]:
        now = time.monotonic()
        return [HeardPop(pop=beat.pop, instance=beat.instance,
                         load=PopLoad(beat.requests, beat.transfers, beat.backlog_bytes),
                         draining=beat.draining, disk_full=beat.disk_full, age=now - at)
                for beat, at in self._heard.values()]

    @contextlib.asynccontextmanager
    async def locked(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        lock = self._locks(key)
        if not wait and lock.locked():
            yield False
            return
        async with lock:
            yield True

    async def _write(self, statement: str, values: tuple[Any, ...]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute(statement, values)

        await self._writer.write(write)

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        def write(db: sqlite3.Connection) -> None:
            record = _file(db, handle)
            if record is not None and rules.hashes_apply(record, version):
                db.execute("UPDATE files SET hashes = ? WHERE handle = ?",
                           (json.dumps(hashes), handle))

        await self._writer.write(write)


def _apply_event(db: sqlite3.Connection, pop: str, event: PopEvent, now: float,
                 stored: EventsFor) -> EventOutcome:
    """One event of a batch, inside its savepoint (see pop_event_rules.py)."""
    seen = db.execute("INSERT INTO pop_events VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING",
                      (event.id, pop, now))
    if seen.rowcount == 0:
        return EventOutcome(event, "repeated")
    file = _file(db, event.handle)
    upload_id = pop_event_rules.needs_upload(event)
    upload = _upload_by(db, "upload_id", upload_id) if upload_id is not None else None
    parts = tuple(_parts(db, event.handle)) if isinstance(event, UploadInTransit) else ()
    change = pop_event_rules.change_for(event, pop, pop_event_rules.Found(file, upload,
                                                                          parts))
    if change.insert_file is not None:
        columns = ", ".join(("origin", *_FILE_COLUMNS))
        marks = ", ".join("?" * (len(_FILE_COLUMNS) + 1))
        db.execute(f"INSERT INTO files ({columns}) VALUES ({marks})",  # noqa: S608
                   (pop_event_rules.origin_of(event.handle), *_to_row(change.insert_file)))
    if change.insert_upload is not None:
        upload = change.insert_upload
        db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                   (upload.upload_id, upload.handle, upload.storage_upload_id, upload.pop,
                    int(upload.fii), upload.created))
    if change.update_file is not None:
        updated = change.update_file
        db.execute("UPDATE files SET status = ?, size = ?, etag = ?, tags = ? "
                   "WHERE handle = ?", (updated.status.value, updated.size, updated.etag,
                                        json.dumps(updated.tags), updated.handle))
    _put_parts(db, event.handle, change.parts)
    if change.removal is not None:
        removal = change.removal
        db.execute("INSERT INTO store_removals VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT(handle) DO NOTHING",
                   (removal.handle, removal.storage, removal.container, removal.key, now))
    if change.stored:
        changed = change.update_file or change.insert_file
        assert changed is not None, "a file made Complete is written"
        _enqueue(db, stored(changed))
    return EventOutcome(event, "applied")


def _upload_by(db: sqlite3.Connection, key: str, value: str | None) -> UploadRecord | None:
    found = db.execute(_UPLOAD_BY[key], (value,)).fetchone()
    if found is None:
        return None
    return UploadRecord(upload_id=found[0], handle=found[1], storage_upload_id=found[2],
                        pop=found[3], fii=bool(found[4]), created=found[5], failure=found[6])


def _file(db: sqlite3.Connection, handle: str) -> FileRecord | None:
    cursor = db.execute("SELECT * FROM files WHERE handle = ?", (handle,))
    found = cursor.fetchone()
    return _from_row(found, cursor.description) if found is not None else None


def _file_for_update(db: sqlite3.Connection, handle: str) -> FileRecord:
    """The file a change is about; FILE_NOT_FOUND if there is none."""
    record = _file(db, handle)
    if record is None:
        raise CinError(Code.FILE_NOT_FOUND, handle)
    return record


def _parts(db: sqlite3.Connection, handle: str) -> list[PartRecord]:
    rows = db.execute("SELECT part_number, pop, state, size, etag FROM parts "
                      "WHERE handle = ? ORDER BY part_number", (handle,)).fetchall()
    return [PartRecord(*row) for row in rows]


def _put_parts(db: sqlite3.Connection, handle: str, parts: Sequence[PartRecord]) -> None:
    """Record `parts`, each replacing what was recorded of it."""
    db.executemany(
        "INSERT INTO parts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(handle, part_number) "
        "DO UPDATE SET pop = excluded.pop, state = excluded.state, size = excluded.size, "
        "etag = excluded.etag",
        [(handle, part.number, part.pop, part.state, part.size, part.etag) for part in parts])


def _due(db: sqlite3.Connection, now: float, limit: int) -> list[Delivery]:
    rows = db.execute(
        "SELECT id, apikey, endpoint, action, text, created, attempts FROM outbox "
        "WHERE abandoned = 0 AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
        (now, limit)).fetchall()
    return [Delivery(id=row[0], apikey=row[1], endpoint=row[2], action=row[3],
                     text=json.loads(row[4]), created=row[5], attempts=row[6])
            for row in rows]


def _enqueue(db: sqlite3.Connection, events: Sequence[WebhookEvent]) -> None:
    db.executemany(
        "INSERT INTO outbox (apikey, endpoint, action, text, created, next_attempt) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(e.apikey, e.endpoint, e.action, json.dumps(e.text), e.created, e.created)
         for e in events])


def _to_row(record: FileRecord) -> tuple[Any, ...]:
    values = record.to_wire()
    values["tags"] = json.dumps(values["tags"])
    values["hashes"] = json.dumps(values["hashes"]) if values["hashes"] is not None else None
    return tuple(values[name] for name in _FILE_COLUMNS)


def _from_row(row: tuple[Any, ...], description: Any) -> FileRecord:
    values = {column[0]: value for column, value in zip(description, row, strict=True)}
    values.pop("origin", None)
    values["tags"] = json.loads(values["tags"])
    values["hashes"] = json.loads(values["hashes"]) if values["hashes"] else None
    return FileRecord.from_wire(values)
