"""The embedded StateStore: SQLite in WAL mode, driven by one dedicated thread.

One thread owns the connection, so every statement is serialized without locks and the
event loop never waits on the disk. A write returns only after its transaction has
committed (with `synchronous=FULL` by default), so whatever the coordinator acknowledged
survives a kill -9 or a power cut.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from common.config import AppConfig
from common.errors import CinError, Code
from common.files import FileRecord
from common.status import FileStatus, check_transition

T = TypeVar("T")

SCHEMA_VERSION = 1
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
"""

_FILE_COLUMNS = ("handle", "apikey", "storage", "provider", "container", "key", "filename",
                 "mimetype", "size", "status", "pop", "uploaded", "access", "region",
                 "source_url", "tags", "version", "etag", "hashes")


class SqliteStateStore:
    def __init__(self, path: Path, *, synchronous: str = "full") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cin-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._db is not None, "state store is not open"
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        rows = [(a.apikey, a.security, json.dumps(list(a.storage)), a.max_upload_size,
                 time.time()) for a in apps]

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(
                    "INSERT INTO apps VALUES (?, ?, ?, ?, ?) ON CONFLICT(apikey) DO UPDATE SET "
                    "security=excluded.security, storage=excluded.storage, "
                    "max_upload_size=excluded.max_upload_size, updated=excluded.updated", rows)

        await self._run(write)

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        row = _to_row(record)

        def write(db: sqlite3.Connection) -> FileRecord:
            with _transaction(db):
                existing = db.execute("SELECT * FROM files WHERE origin = ?", (origin,))
                found = existing.fetchone()
                if found is not None:
                    return _from_row(found, existing.description)
                columns = ", ".join(("origin", *_FILE_COLUMNS))
                marks = ", ".join("?" * (len(_FILE_COLUMNS) + 1))
                db.execute(f"INSERT INTO files ({columns}) VALUES ({marks})",  # noqa: S608
                           (origin, *row))
                return record

        return await self._run(write)

    async def get_file(self, handle: str) -> FileRecord | None:
        def read(db: sqlite3.Connection) -> FileRecord | None:
            cursor = db.execute("SELECT * FROM files WHERE handle = ?", (handle,))
            found = cursor.fetchone()
            return _from_row(found, cursor.description) if found is not None else None

        return await self._run(read)

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> FileRecord:
        def write(db: sqlite3.Connection) -> FileRecord:
            with _transaction(db):
                cursor = db.execute("SELECT * FROM files WHERE handle = ?", (handle,))
                found = cursor.fetchone()
                if found is None:
                    raise CinError(Code.FILE_NOT_FOUND, handle)
                record = _from_row(found, cursor.description)
                check_transition(record.status, status)
                changes: dict[str, Any] = {"status": status}
                if size is not None:
                    changes["size"] = size
                if etag is not None:
                    changes["etag"] = etag
                updated = record.with_changes(**changes)
                db.execute("UPDATE files SET status = ?, size = ?, etag = ? WHERE handle = ?",
                           (updated.status.value, updated.size, updated.etag, handle))
                return updated

        return await self._run(write)

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute("UPDATE files SET hashes = ? WHERE handle = ? AND version = ?",
                           (json.dumps(hashes), handle, version))

        await self._run(write)


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error (the connection is in autocommit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


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
