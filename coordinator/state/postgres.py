"""The StateStore on PostgreSQL: one database that several coordinators share.

Each method is one transaction from a connection pool (coordinator/state/postgres_retry.py
runs it, again if the server fails it for a conflict). Transactions are READ COMMITTED:
a change to a file first locks that file's row (`SELECT ... FOR UPDATE`), so changes to
one file, from whichever coordinator, happen one after the other and each reads what the
one before it committed; changes to different files never wait on each other. The sweeps
and the webhook outbox take rows with `FOR UPDATE SKIP LOCKED`: two coordinators sweeping
or delivering at once each take other rows, neither waits.

What several coordinators share besides the records: the POPs' heartbeats, one row per
POP timed by the database's clock; and `locked`, an advisory lock of the server held by a
connection of a pool of its own (a holder waiting for a connection to do its work never
keeps one that a lock is waiting for). A coordinator that dies loses its connections,
and the server lets go of its locks.

The schema is coordinator/state/postgres_schema.py, migrated when the store opens.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from common.config import AppConfig, PostgresStateConfig
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.handle_lease import HandleBlock
from common.protocol.pop_events import PopEvent, UploadInTransit
from common.protocol.pop_load import PopLoad
from common.protocol.records import FileRecord, PartRecord, UploadRecord
from common.protocol.wire import PopHeartbeat
from coordinator.events import Delivery, WebhookEvent
from coordinator.keyed_locks import KeyedLocks
from coordinator.state import pop_event_rules, rules
from coordinator.state.pop_event_rules import refusal
from coordinator.state.postgres_retry import in_transaction
from coordinator.state.postgres_schema import migrate
from coordinator.state.protocol import (
    AppliedBatch,
    EventOutcome,
    EventsFor,
    HeardPop,
    OutboxEntry,
    PendingAbort,
    PendingRemoval,
)

if TYPE_CHECKING:
    from coordinator.state.postgres_retry import Db

_FILE_COLUMNS = ("handle", "apikey", "storage", "provider", "container", "key", "filename",
                 "mimetype", "size", "status", "pop", "uploaded", "access", "region",
                 "source_url", "tags", "version", "etag", "hashes")
_FILES = ", ".join(f"files.{name}" for name in _FILE_COLUMNS)
_INSERT_FILE = (f"INSERT INTO files (origin, {', '.join(_FILE_COLUMNS)}) VALUES "  # noqa: S608
                f"({', '.join(f'${n}' for n in range(1, len(_FILE_COLUMNS) + 2))})")

_UPLOAD_SELECT = ("SELECT uploads.upload_id, uploads.handle, uploads.storage_upload_id, "
                  "uploads.pop, uploads.fii, uploads.created, upload_aborts.reason "
                  "FROM uploads JOIN files ON files.handle = uploads.handle "
                  "LEFT JOIN upload_aborts ON upload_aborts.upload_id = uploads.upload_id "
                  "WHERE ")
_UPLOAD_BY = {key: _UPLOAD_SELECT + f"{column} = $1"
              for key, column in (("upload_id", "uploads.upload_id"), ("origin", "origin"),
                                  ("handle", "uploads.handle"))}
# Rows another coordinator's sweep holds are skipped, not waited for: it is failing them.
_EXPIRED_UPLOADS = (
    f"SELECT uploads.upload_id, uploads.storage_upload_id, {_FILES} "  # noqa: S608
    "FROM files JOIN uploads ON uploads.handle = files.handle "
    "WHERE files.status = 'Started' AND files.uploaded < $1 AND uploads.created < $1 "
    "ORDER BY files.uploaded LIMIT $2 FOR UPDATE OF files SKIP LOCKED")
_EXPIRED_STORES = (
    f"SELECT {_FILES} FROM files "  # noqa: S608
    "WHERE status = 'Started' AND uploaded < $1 "
    "AND NOT EXISTS (SELECT 1 FROM uploads WHERE uploads.handle = files.handle) "
    "ORDER BY uploaded LIMIT $2 FOR UPDATE SKIP LOCKED")
_DELIVERY = "id, apikey, endpoint, action, text, created, attempts"
# The latest files of a status, one status a query: `status = ANY(...)` would read every
# match to sort them. The status is a literal (FileStatus's own text): a prepared
# statement's generic plan cannot use a partial index for a bound value.
_LATEST_OF = {status: f"SELECT {_FILES} FROM files "  # noqa: S608
                      f"WHERE status = '{status.value}' ORDER BY uploaded DESC LIMIT $1"
              for status in (FileStatus.STARTED, FileStatus.IN_TRANSIT, FileStatus.FAILED)}
_OUTBOX_ENTRY = ("SELECT id, apikey, endpoint, action, created, attempts, next_attempt, "
                 "last_error, abandoned FROM outbox ")
# The conditions of the partial indexes `outbox_due` and `outbox_abandoned`, as written.
_OUTBOX_ENTRIES = {
    False: _OUTBOX_ENTRY + "WHERE NOT abandoned ORDER BY next_attempt, id LIMIT $1",
    True: _OUTBOX_ENTRY + "WHERE abandoned ORDER BY id DESC LIMIT $1",
}

_FINISHABLE = (
    "SELECT files.handle FROM files JOIN uploads ON uploads.handle = files.handle "
    "WHERE files.status = 'In Transit' AND uploads.storage_upload_id != '' "
    "AND EXISTS (SELECT 1 FROM parts WHERE parts.handle = files.handle) "
    "AND NOT EXISTS (SELECT 1 FROM parts WHERE parts.handle = files.handle "
    "AND parts.state != 'stored') ORDER BY files.uploaded LIMIT $1")
# The database's clock, in unix seconds: when a heartbeat was heard, and how long ago.
_NOW = "extract(epoch from clock_timestamp())::double precision"
_SAVE_HEARTBEAT = (
    "INSERT INTO pop_heartbeats VALUES ($1, $2, $3, $4, $5, $6, $7, "  # noqa: S608
    f"{_NOW}) ON CONFLICT (pop) DO UPDATE SET instance = excluded.instance, "
    "requests = excluded.requests, transfers = excluded.transfers, "
    "backlog_bytes = excluded.backlog_bytes, draining = excluded.draining, "
    "disk_full = excluded.disk_full, heard = excluded.heard")
_HEARTBEATS = ("SELECT pop, instance, requests, transfers, backlog_bytes, draining, "  # noqa: S608
               f"disk_full, {_NOW} - heard AS age FROM pop_heartbeats")
# `locked` keys are advisory locks (LOCK_SPACE, hashtext(key)): two 32-bit keys, a space
# apart from the migrations' one 64-bit key. Two keys that hash alike only take turns.
LOCK_SPACE = 0x63696E

T = TypeVar("T")


class PostgresStateStore:
    def __init__(self, config: PostgresStateConfig, *,
                 on_transaction: Callable[[float], None] | None = None) -> None:
        self.config = config
        self._on_transaction = on_transaction
        self._pool: asyncpg.Pool | None = None
        # The connections that hold `locked` keys, and the keys this coordinator holds or
        # waits for: a second holder here waits in the process, not on a connection.
        self._lock_pool: asyncpg.Pool | None = None
        self._local = KeyedLocks()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "state store is not open"
        return self._pool

    async def open(self) -> None:
        try:
            pool = await asyncpg.create_pool(self.config.url, min_size=1,
                                             max_size=self.config.pool_size)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The error names the server, never the URL (it may hold a password).
            raise RuntimeError("cannot reach the PostgreSQL state database: "
                               f"{type(exc).__name__}: {exc}") from None
        try:
            async with pool.acquire() as db:
                await migrate(db)
            self._lock_pool = await asyncpg.create_pool(self.config.url, min_size=0,
                                                        max_size=self.config.pool_size)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        for pool in (self._lock_pool, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._lock_pool = None

    async def _transaction(self, work: Callable[[Db], Awaitable[T]]) -> T:
        return await in_transaction(self.pool, work, on_commit=self._on_transaction)

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        rows = [(a.apikey, a.security, json.dumps(list(a.storage)), a.max_upload_size,
                 time.time()) for a in apps]

        async def write(db: Db) -> None:
            await db.executemany(
                "INSERT INTO apps VALUES ($1, $2, $3, $4, $5) ON CONFLICT (apikey) DO UPDATE "
                "SET security = excluded.security, storage = excluded.storage, "
                "max_upload_size = excluded.max_upload_size, updated = excluded.updated",
                rows)

        await self._transaction(write)

    # ------------------------------------------------------------------ files

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        async def write(db: Db) -> FileRecord:
            # A create racing another with the same origin waits for it, then finds it.
            inserted = await db.fetchval(
                _INSERT_FILE + " ON CONFLICT (origin) DO NOTHING RETURNING handle",
                origin, *_to_row(record))
            if inserted is not None:
                return record
            found = await db.fetchrow(f"SELECT {_FILES} FROM files WHERE origin = $1",  # noqa: S608
                                      origin)
            assert found is not None, "a file whose origin conflicted is there"
            return _from_row(found)

        return await self._transaction(write)

    async def get_file(self, handle: str) -> FileRecord | None:
        found = await self.pool.fetchrow(
            f"SELECT {_FILES} FROM files WHERE handle = $1", handle)  # noqa: S608
        return _from_row(found) if found is not None else None

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
        events: EventsFor | None = None,
    ) -> FileRecord:
        async def write(db: Db) -> FileRecord:
            updated = rules.with_status(await _file_for_update(db, handle), status,
                                        size=size, etag=etag)
            await db.execute("UPDATE files SET status = $1, size = $2, etag = $3 "
                             "WHERE handle = $4",
                             updated.status.value, updated.size, updated.etag, handle)
            if events is not None:
                await _enqueue(db, events(updated))
            return updated

        return await self._transaction(write)

    async def overwrite_file(self, handle: str, *, size: int, etag: str, mimetype: str,
                             events: EventsFor) -> FileRecord:
        async def write(db: Db) -> FileRecord:
            updated = rules.overwritten(await _file_for_update(db, handle), size=size,
                                        etag=etag, mimetype=mimetype, now=time.time())
            await db.execute("UPDATE files SET size = $1, etag = $2, mimetype = $3, "
                             "version = $4, hashes = NULL, uploaded = $5 WHERE handle = $6",
                             size, etag, mimetype, updated.version, updated.uploaded, handle)
            await _enqueue(db, events(updated))
            return updated

        return await self._transaction(write)

    async def delete_file(self, handle: str, *, events: EventsFor) -> FileRecord:
        async def write(db: Db) -> FileRecord:
            record = await _file_for_update(db, handle)
            rules.check_delete(record)
            await db.execute("DELETE FROM files WHERE handle = $1", handle)
            await db.execute("INSERT INTO deleted_files VALUES ($1, $2) "
                             "ON CONFLICT (handle) DO NOTHING", handle, time.time())
            await _enqueue(db, events(record))
            return record

        return await self._transaction(write)

    async def was_deleted(self, handle: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM deleted_files WHERE handle = $1", handle)
        return found is not None

    async def forget_deleted_files(self, deleted_before: float) -> int:
        async def write(db: Db) -> int:
            status = await db.execute("DELETE FROM deleted_files WHERE deleted < $1",
                                      deleted_before)
            return int(status.split()[-1])

        return await self._transaction(write)

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        async def write(db: Db) -> None:
            found = await db.fetchrow(
                f"SELECT {_FILES} FROM files WHERE handle = $1 FOR UPDATE",  # noqa: S608
                handle)
            if found is not None and rules.hashes_apply(_from_row(found), version):
                await db.execute("UPDATE files SET hashes = $1 WHERE handle = $2",
                                 json.dumps(hashes), handle)

        await self._transaction(write)

    # ------------------------------------------------------------------ uploads, parts

    async def create_upload(self, record: FileRecord, upload: UploadRecord,
                            origin: str) -> UploadRecord:
        async def write(db: Db) -> UploadRecord:
            # A start repeated to another coordinator at once: the origin's unique index
            # makes this insert wait for the other's to commit, then do nothing.
            inserted = await db.fetchval(
                _INSERT_FILE + " ON CONFLICT (origin) DO NOTHING RETURNING handle",
                origin, *_to_row(record))
            if inserted is None:
                earlier = await _upload_by(db, "origin", origin)
                if earlier is None:
                    raise CinError(Code.CONFLICT, "this origin started a file, not an upload")
                return earlier
            await db.execute("INSERT INTO uploads VALUES ($1, $2, $3, $4, $5, $6)",
                             upload.upload_id, upload.handle, upload.storage_upload_id,
                             upload.pop, upload.fii, upload.created)
            return upload

        return await self._transaction(write)

    async def get_upload(self, upload_id: str | None = None, *, origin: str | None = None,
                         handle: str | None = None) -> UploadRecord | None:
        key, value = next(((key, value) for key, value in (
            ("upload_id", upload_id), ("origin", origin), ("handle", handle))
            if value is not None), ("upload_id", None))
        async with self.pool.acquire() as db:
            return await _upload_by(db, key, value)

    async def upload_in_transit(self, handle: str, parts: Sequence[PartRecord],
                                tags: dict[str, str]) -> FileRecord:
        async def write(db: Db) -> FileRecord:
            record = await _file_for_update(db, handle)
            updated = rules.in_transit(record, tags)
            if updated is None:
                return record
            recorded = {part.number: part for part in await _parts(db, handle)}
            await _put_parts(db, handle, rules.held_parts(recorded, parts))
            await db.execute("UPDATE files SET status = $1, tags = $2 WHERE handle = $3",
                             updated.status.value, json.dumps(updated.tags), handle)
            return updated

        return await self._transaction(write)

    async def part_stored(self, handle: str, part: PartRecord) -> None:
        stored = rules.stored_part(part)

        async def write(db: Db) -> None:
            # Only whether the file is there (the busiest write of all), and that it stays
            # there until this commits; a complete of the same file waits for it.
            found = await db.fetchval("SELECT 1 FROM files WHERE handle = $1 FOR SHARE",
                                      handle)
            if found is None:
                raise CinError(Code.FILE_NOT_FOUND, handle)
            await _put_parts(db, handle, [stored])

        await self._transaction(write)

    async def parts_of(self, handle: str) -> list[PartRecord]:
        async with self.pool.acquire() as db:
            return await _parts(db, handle)

    # ------------------------------------------------------------------ upload expiry

    async def expire_uploads(self, started_before: float, reason: str, now: float,
                             limit: int) -> list[PendingAbort]:
        async def write(db: Db) -> list[PendingAbort]:
            ended: list[PendingAbort] = []
            for row in await db.fetch(_EXPIRED_UPLOADS, started_before, limit):
                failed = rules.expired(_from_row(row))
                abort = PendingAbort(upload_id=row["upload_id"], handle=failed.handle,
                                     storage=failed.storage, container=failed.container,
                                     key=failed.key,
                                     storage_upload_id=row["storage_upload_id"],
                                     reason=reason)
                ended.append(abort)
                await db.execute("UPDATE files SET status = $1 WHERE handle = $2",
                                 failed.status.value, failed.handle)
                await db.execute(
                    "INSERT INTO upload_aborts VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL) "
                    "ON CONFLICT (upload_id) DO NOTHING",
                    abort.upload_id, abort.handle, abort.storage, abort.container,
                    abort.key, abort.storage_upload_id, reason, now)
            return ended

        return await self._transaction(write)

    async def pending_aborts(self, limit: int) -> list[PendingAbort]:
        rows = await self.pool.fetch(
            "SELECT upload_id, handle, storage, container, key, storage_upload_id, reason "
            "FROM upload_aborts WHERE aborted IS NULL ORDER BY ended, upload_id LIMIT $1",
            limit)
        return [PendingAbort(*row) for row in rows]

    async def abort_done(self, upload_id: str, now: float) -> None:
        await self._transaction(lambda db: db.execute(
            "UPDATE upload_aborts SET aborted = $1 WHERE upload_id = $2 AND aborted IS NULL",
            now, upload_id))

    # ------------------------------------------------------------------ store expiry

    async def expire_stores(self, started_before: float, now: float,
                            limit: int) -> list[PendingRemoval]:
        async def write(db: Db) -> list[PendingRemoval]:
            ended: list[PendingRemoval] = []
            for row in await db.fetch(_EXPIRED_STORES, started_before, limit):
                failed = rules.expired(_from_row(row))
                removal = PendingRemoval(handle=failed.handle, storage=failed.storage,
                                         container=failed.container, key=failed.key)
                ended.append(removal)
                await db.execute("UPDATE files SET status = $1 WHERE handle = $2",
                                 failed.status.value, failed.handle)
                await db.execute("INSERT INTO store_removals VALUES ($1, $2, $3, $4, $5) "
                                 "ON CONFLICT (handle) DO NOTHING",
                                 removal.handle, removal.storage, removal.container,
                                 removal.key, now)
            return ended

        return await self._transaction(write)

    async def pending_removals(self, limit: int) -> list[PendingRemoval]:
        rows = await self.pool.fetch(
            "SELECT handle, storage, container, key FROM store_removals "
            "ORDER BY ended, handle LIMIT $1", limit)
        return [PendingRemoval(*row) for row in rows]

    async def removal_done(self, handle: str) -> None:
        await self._transaction(lambda db: db.execute(
            "DELETE FROM store_removals WHERE handle = $1", handle))

    async def key_in_use(self, storage: str, container: str, key: str, *,
                         besides: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM files WHERE key = $1 AND container = $2 AND storage = $3 "
            "AND handle != $4 AND status != 'Failed' LIMIT 1", key, container, storage,
            besides)
        return found is not None

    # ------------------------------------------------------------------ handle leases

    async def grant_lease(self, block: HandleBlock) -> None:
        async def write(db: Db) -> None:
            inserted = await db.fetchval(
                "INSERT INTO handle_leases VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (block) DO NOTHING RETURNING block",
                block.block, block.pop, block.size, block.granted)
            if inserted is None:
                raise CinError(Code.CONFLICT, f"block {block.block} is leased already")

        await self._transaction(write)

    async def lease(self, block: str) -> HandleBlock | None:
        row = await self.pool.fetchrow("SELECT block, size, pop, granted FROM handle_leases "
                                       "WHERE block = $1", block)
        return HandleBlock(*row) if row is not None else None

    async def leases(self) -> list[HandleBlock]:
        rows = await self.pool.fetch("SELECT block, size, pop, granted FROM handle_leases "
                                     "ORDER BY granted, block")
        return [HandleBlock(*row) for row in rows]

    # ------------------------------------------------------------------ POP events

    async def apply_pop_events(self, pop: str, events: Sequence[PopEvent], *, now: float,
                               stored: EventsFor) -> AppliedBatch:
        async def write(db: Db) -> AppliedBatch:
            outcomes: list[EventOutcome] = []
            for event in events:
                try:
                    async with db.transaction():  # a savepoint: one event undone alone
                        outcomes.append(await _apply_event(db, pop, event, now, stored))
                except CinError as exc:
                    outcomes.append(EventOutcome(event, "refused", refusal(exc)))
            handles = list(dict.fromkeys(event.handle for event in events))
            rows = await db.fetch("SELECT handle, status FROM files "
                                  "WHERE handle = ANY($1::text[])", handles)
            found = {row["handle"]: FileStatus(row["status"]) for row in rows}
            return AppliedBatch(outcomes, {handle: found[handle] for handle in handles
                                           if handle in found})

        return await self._transaction(write)

    async def forget_applied_events(self, applied_before: float) -> int:
        async def write(db: Db) -> int:
            status = await db.execute("DELETE FROM pop_events WHERE applied < $1",
                                      applied_before)
            return int(status.split()[-1])

        return await self._transaction(write)

    async def finishable_uploads(self, limit: int) -> list[str]:
        rows = await self.pool.fetch(_FINISHABLE, limit)
        return [row["handle"] for row in rows]

    # ------------------------------------------------------------------ webhook outbox

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = await self.pool.fetch(
            f"SELECT {_DELIVERY} FROM outbox WHERE NOT abandoned "  # noqa: S608
            "AND next_attempt <= $1 ORDER BY next_attempt, id LIMIT $2", now, limit)
        return [_delivery(row) for row in rows]

    async def claim_deliveries(self, now: float, limit: int,
                               until: float) -> list[Delivery]:
        async def write(db: Db) -> list[Delivery]:
            # Rows another coordinator is claiming are skipped, not waited for; the ones
            # taken are not due again (for anyone) until `until`.
            rows = await db.fetch(
                f"SELECT {_DELIVERY} FROM outbox WHERE NOT abandoned "  # noqa: S608
                "AND next_attempt <= $1 ORDER BY next_attempt, id LIMIT $2 "
                "FOR UPDATE SKIP LOCKED", now, limit)
            await db.execute("UPDATE outbox SET next_attempt = $1 WHERE id = ANY($2::bigint[])",
                             until, [row["id"] for row in rows])
            return [_delivery(row) for row in rows]

        return await self._transaction(write)

    async def release_deliveries(self, delivery_ids: Collection[int], now: float) -> None:
        await self._transaction(lambda db: db.execute(
            "UPDATE outbox SET next_attempt = $1 WHERE id = ANY($2::bigint[]) "
            "AND NOT abandoned", now, list(delivery_ids)))

    async def next_delivery_time(self, excluding: Collection[int] = ()) -> float | None:
        value = await self.pool.fetchval(
            "SELECT MIN(next_attempt) FROM outbox WHERE NOT abandoned "
            "AND id != ALL($1::bigint[])", list(excluding))
        return float(value) if value is not None else None

    async def delivery_done(self, delivery_id: int) -> None:
        await self._transaction(lambda db: db.execute(
            "DELETE FROM outbox WHERE id = $1", delivery_id))

    async def delivery_failed(self, delivery_id: int, error: str, *,
                              retry_at: float | None) -> None:
        if retry_at is None:
            statement = ("UPDATE outbox SET attempts = attempts + 1, last_error = $1, "
                         "abandoned = TRUE WHERE id = $2")
            values: tuple[Any, ...] = (error[:1000], delivery_id)
        else:
            statement = ("UPDATE outbox SET attempts = attempts + 1, last_error = $1, "
                         "next_attempt = $3 WHERE id = $2")
            values = (error[:1000], delivery_id, retry_at)
        await self._transaction(lambda db: db.execute(statement, *values))

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT abandoned, COUNT(*) AS n FROM outbox GROUP BY abandoned")
        counts = {row["abandoned"]: row["n"] for row in rows}
        return {"pending": counts.get(False, 0), "abandoned": counts.get(True, 0)}

    # ------------------------------------------------------------------ the operator's page

    async def files_in_flight(self, limit: int) -> list[FileRecord]:
        return await self._latest((FileStatus.STARTED, FileStatus.IN_TRANSIT), limit)

    async def failed_files(self, limit: int) -> list[FileRecord]:
        return await self._latest((FileStatus.FAILED,), limit)

    async def _latest(self, statuses: Sequence[FileStatus], limit: int) -> list[FileRecord]:
        found: list[FileRecord] = []
        async with self.pool.acquire() as db:
            for status in statuses:
                found += [_from_row(row) for row in await db.fetch(_LATEST_OF[status], limit)]
        return rules.latest_started(found, limit)

    async def outbox_entries(self, *, abandoned: bool, limit: int) -> list[OutboxEntry]:
        rows = await self.pool.fetch(_OUTBOX_ENTRIES[abandoned], limit)
        return [OutboxEntry(*row) for row in rows]


    # ------------------------------------------------------------------ shared

    async def pop_heard(self, beat: PopHeartbeat) -> None:
        # One statement, no transaction: a heartbeat is the most frequent write there is,
        # and the last one written is the one that counts.
        await self.pool.execute(
            _SAVE_HEARTBEAT, beat.pop, beat.instance, beat.requests, beat.transfers,
            beat.backlog_bytes, beat.draining, beat.disk_full)

    async def pops_heard(self) -> list[HeardPop]:
        rows = await self.pool.fetch(_HEARTBEATS)
        return [HeardPop(pop=row["pop"], instance=row["instance"],
                         load=PopLoad(row["requests"], row["transfers"],
                                      row["backlog_bytes"]),
                         draining=row["draining"], disk_full=row["disk_full"],
                         age=max(0.0, row["age"]))
                for row in rows]

    @contextlib.asynccontextmanager
    async def locked(self, key: str, *, wait: bool = True) -> AsyncIterator[bool]:
        local = self._local(key)
        if not wait and local.locked():
            yield False
            return
        assert self._lock_pool is not None, "state store is not open"
        async with local, self._lock_pool.acquire() as db:
            if wait:
                await db.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_SPACE,
                                 key)
            elif not await db.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))",
                                       LOCK_SPACE, key):
                yield False
                return
            try:
                yield True
            finally:
                # Back to the pool unlocked. A connection that broke meanwhile lost the
                # lock with it (the server lets go): the work done stands, and is not
                # reported failed for that.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError,
                                         OSError):
                    await db.execute("SELECT pg_advisory_unlock($1, hashtext($2))",
                                     LOCK_SPACE, key)


async def _apply_event(db: Db, pop: str, event: PopEvent, now: float,
                       stored: EventsFor) -> EventOutcome:
    """One event of a batch, inside its savepoint (see pop_event_rules.py). Another
    coordinator applying the same event waits on its id, then finds it applied."""
    fresh = await db.fetchval("INSERT INTO pop_events VALUES ($1, $2, $3) "
                              "ON CONFLICT (id) DO NOTHING RETURNING id", event.id, pop, now)
    if fresh is None:
        return EventOutcome(event, "repeated")
    row = await db.fetchrow(f"SELECT {_FILES} FROM files WHERE handle = $1 FOR UPDATE",  # noqa: S608
                            event.handle)
    file = _from_row(row) if row is not None else None
    upload_id = pop_event_rules.needs_upload(event)
    upload = await _upload_by(db, "upload_id", upload_id) if upload_id is not None else None
    parts = tuple(await _parts(db, event.handle)) if isinstance(event, UploadInTransit) else ()
    change = pop_event_rules.change_for(event, pop, pop_event_rules.Found(file, upload,
                                                                          parts))
    if change.insert_file is not None:
        inserted = await db.fetchval(
            _INSERT_FILE + " ON CONFLICT DO NOTHING RETURNING handle",
            pop_event_rules.origin_of(event.handle), *_to_row(change.insert_file))
        if inserted is None:
            # Another coordinator recorded the file between the read and the insert:
            # it is that event's to have made, this one's effect is there already.
            return EventOutcome(event, "applied")
    if change.insert_upload is not None:
        upload = change.insert_upload
        await db.execute("INSERT INTO uploads VALUES ($1, $2, $3, $4, $5, $6)",
                         upload.upload_id, upload.handle, upload.storage_upload_id,
                         upload.pop, upload.fii, upload.created)
    if change.update_file is not None:
        updated = change.update_file
        await db.execute("UPDATE files SET status = $1, size = $2, etag = $3, tags = $4 "
                         "WHERE handle = $5", updated.status.value, updated.size,
                         updated.etag, json.dumps(updated.tags), updated.handle)
    await _put_parts(db, event.handle, change.parts)
    if change.removal is not None:
        removal = change.removal
        await db.execute("INSERT INTO store_removals VALUES ($1, $2, $3, $4, $5) "
                         "ON CONFLICT (handle) DO NOTHING", removal.handle,
                         removal.storage, removal.container, removal.key, now)
    if change.stored:
        changed = change.update_file or change.insert_file
        assert changed is not None, "a file made Complete is written"
        await _enqueue(db, stored(changed))
    return EventOutcome(event, "applied")


async def _upload_by(db: Db, key: str, value: str | None) -> UploadRecord | None:
    found = await db.fetchrow(_UPLOAD_BY[key], value)
    if found is None:
        return None
    return UploadRecord(upload_id=found[0], handle=found[1], storage_upload_id=found[2],
                        pop=found[3], fii=found[4], created=found[5], failure=found[6])


async def _file_for_update(db: Db, handle: str) -> FileRecord:
    """The file a change is about, locked until the change commits; FILE_NOT_FOUND if
    there is none."""
    found = await db.fetchrow(
        f"SELECT {_FILES} FROM files WHERE handle = $1 FOR UPDATE", handle)  # noqa: S608
    if found is None:
        raise CinError(Code.FILE_NOT_FOUND, handle)
    return _from_row(found)


async def _parts(db: Db, handle: str) -> list[PartRecord]:
    rows = await db.fetch("SELECT part_number, pop, state, size, etag FROM parts "
                          "WHERE handle = $1 ORDER BY part_number", handle)
    return [PartRecord(*row) for row in rows]


async def _put_parts(db: Db, handle: str, parts: Sequence[PartRecord]) -> None:
    """Record `parts`, each replacing what was recorded of it."""
    if not parts:
        return
    await db.executemany(
        "INSERT INTO parts VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (handle, part_number) DO UPDATE SET pop = excluded.pop, "
        "state = excluded.state, size = excluded.size, etag = excluded.etag",
        [(handle, part.number, part.pop, part.state, part.size, part.etag) for part in parts])


async def _enqueue(db: Db, events: Sequence[WebhookEvent]) -> None:
    if not events:
        return
    await db.executemany(
        "INSERT INTO outbox (apikey, endpoint, action, text, created, next_attempt) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [(e.apikey, e.endpoint, e.action, json.dumps(e.text), e.created, e.created)
         for e in events])


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(id=row["id"], apikey=row["apikey"], endpoint=row["endpoint"],
                    action=row["action"], text=json.loads(row["text"]),
                    created=row["created"], attempts=row["attempts"])


def _to_row(record: FileRecord) -> tuple[Any, ...]:
    values = record.to_wire()
    values["tags"] = json.dumps(values["tags"])
    values["hashes"] = json.dumps(values["hashes"]) if values["hashes"] is not None else None
    return tuple(values[name] for name in _FILE_COLUMNS)


def _from_row(row: asyncpg.Record) -> FileRecord:
    values = {name: row[name] for name in _FILE_COLUMNS}
    values["tags"] = json.loads(values["tags"])
    values["hashes"] = json.loads(values["hashes"]) if values["hashes"] else None
    return FileRecord.from_wire(values)
