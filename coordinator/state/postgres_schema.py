"""The PostgreSQL engine's schema, as numbered migrations applied once each.

Every coordinator applies the migrations it knows when it opens the store; several may
start at once, so they take turns under an advisory lock, and each migration commits with
its row in `schema_migrations` (a coordinator that stops half way leaves no half-applied
migration behind). A migration is never edited once released: a change of schema is a new
entry at the end of MIGRATIONS.

The tables are SQLite's (coordinator/state/sqlite.py), in PostgreSQL's types: times are
unix seconds (double precision), JSON objects are kept as the text cin wrote (an event's
body is then the same bytes on every retry, as receivers expect).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.state.postgres_retry import Db

# Which advisory lock the migrations are applied under: any constant, the same for every
# coordinator ("cin" and a schema counter, as bytes).
MIGRATION_LOCK = 0x63696E_0001

_SCHEMA_1 = """
CREATE TABLE apps (
    apikey TEXT PRIMARY KEY,
    security TEXT NOT NULL,
    storage TEXT NOT NULL,              -- JSON list of storage location names
    max_upload_size BIGINT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE files (
    handle TEXT PRIMARY KEY,
    origin TEXT NOT NULL UNIQUE,        -- who asked for it: makes StartFile idempotent
    apikey TEXT NOT NULL,
    storage TEXT NOT NULL,
    provider TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    filename TEXT NOT NULL,
    mimetype TEXT NOT NULL,
    size BIGINT NOT NULL,
    status TEXT NOT NULL,
    pop TEXT NOT NULL,
    uploaded DOUBLE PRECISION NOT NULL,
    access TEXT NOT NULL,
    region TEXT,
    source_url TEXT,
    tags TEXT NOT NULL,                 -- JSON object
    version INTEGER NOT NULL,
    etag TEXT,
    hashes TEXT                         -- JSON object, for `version`
);
-- Files still Started, by age: what expiry looks through.
CREATE INDEX files_started ON files (uploaded) WHERE status = 'Started';
-- The files at a key: before a failed store's leftovers go, whether they are another's.
CREATE INDEX files_key ON files (key);
CREATE TABLE parts (
    handle TEXT NOT NULL REFERENCES files(handle) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    pop TEXT NOT NULL,
    state TEXT NOT NULL,                -- spooled | stored
    size BIGINT NOT NULL,
    etag TEXT,
    PRIMARY KEY (handle, part_number)
);
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE REFERENCES files(handle) ON DELETE CASCADE,
    storage_upload_id TEXT NOT NULL,
    pop TEXT NOT NULL,
    fii BOOLEAN NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
-- Uploads ended without their file (they expired), and whether the bucket's multipart
-- upload is aborted yet. No reference to `uploads`: the abort is owed even once the
-- file's record is deleted.
CREATE TABLE upload_aborts (
    upload_id TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    storage TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    storage_upload_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    ended DOUBLE PRECISION NOT NULL,
    aborted DOUBLE PRECISION            -- when the bucket confirmed it; NULL until then
);
CREATE INDEX upload_aborts_pending ON upload_aborts (ended) WHERE aborted IS NULL;
-- Failed REST stores whose leftovers in the bucket are still to be removed.
CREATE TABLE store_removals (
    handle TEXT PRIMARY KEY,
    storage TEXT NOT NULL,
    container TEXT NOT NULL,
    key TEXT NOT NULL,
    ended DOUBLE PRECISION NOT NULL
);
-- Webhook events waiting to be delivered, written in the transaction of the change they
-- report. A delivered row is deleted; one that ran out of retries stays, abandoned.
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the event id receivers see
    apikey TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL,                 -- JSON object
    created DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL,  -- also pushed on while a coordinator sends it
    last_error TEXT,
    abandoned BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_due ON outbox (next_attempt, id) WHERE NOT abandoned;
"""

# What the operator's page reads (`files_in_flight`, `failed_files`, `outbox_entries`),
# each a range of an index read in order and cut at its LIMIT; Started files are read
# through `files_started`.
_OPERATOR_INDEXES = """
CREATE INDEX files_in_transit ON files (uploaded) WHERE status = 'In Transit';
CREATE INDEX files_failed ON files (uploaded) WHERE status = 'Failed';
CREATE INDEX outbox_abandoned ON outbox (id) WHERE abandoned;
"""

_SCHEMA_3 = """
-- Blocks of handles leased to POPs, which give them out on their own.
CREATE TABLE handle_leases (
    block TEXT PRIMARY KEY,
    pop TEXT NOT NULL,
    size INTEGER NOT NULL,
    granted DOUBLE PRECISION NOT NULL
);
-- The ids of the events POPs shipped that were applied: one sent again is skipped.
CREATE TABLE pop_events (
    id TEXT PRIMARY KEY,
    pop TEXT NOT NULL,
    applied DOUBLE PRECISION NOT NULL
);
CREATE INDEX pop_events_applied ON pop_events (applied);
-- Files In Transit (what the finishing of uploads whose parts are all stored looks
-- through) are indexed by migration 2: `files_in_transit`.
"""

# What several coordinators share besides the records: each POP's latest heartbeat,
# whichever coordinator heard it. `heard` is the database's clock (unix seconds), so the
# coordinators' clocks play no part in a POP's health.
_POP_HEARTBEATS = """
CREATE TABLE pop_heartbeats (
    pop TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    requests BIGINT NOT NULL,
    transfers BIGINT NOT NULL,
    backlog_bytes BIGINT NOT NULL,
    draining BOOLEAN NOT NULL,
    disk_full BOOLEAN NOT NULL,
    heard DOUBLE PRECISION NOT NULL
);
"""

_DELETED_FILES = """
-- The handles of deleted files: a leased handle without a record is otherwise taken for
-- a file its POP has not reported yet.
CREATE TABLE deleted_files (
    handle TEXT PRIMARY KEY,
    deleted DOUBLE PRECISION NOT NULL
);
"""

_DELETED_FILES_BY_AGE = """
-- By age: what the sweep forgets (`forget_deleted_files`).
CREATE INDEX deleted_files_deleted ON deleted_files (deleted);
"""

# (version, what it does, the statements). Append only.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "files, parts, uploads, expiry and the webhook outbox", _SCHEMA_1),
    (2, "indexes for the operator's page", _OPERATOR_INDEXES),
    (3, "handle leases and the ids of applied POP events", _SCHEMA_3),
    (4, "the POPs' heartbeats, shared by the coordinators", _POP_HEARTBEATS),
    (5, "the handles of deleted files", _DELETED_FILES),
    (6, "the handles of deleted files by age", _DELETED_FILES_BY_AGE),
)


async def migrate(db: Db) -> list[int]:
    """Apply the migrations this database has not had, in order; returns their versions.
    Coordinators starting together take turns: the lock is held until all are applied."""
    await db.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            "applied DOUBLE PRECISION NOT NULL)")
        rows = await db.fetch("SELECT version FROM schema_migrations")
        have = {row["version"] for row in rows}
        newer = max(have, default=0)
        if newer > MIGRATIONS[-1][0]:
            # A newer cin migrated this database: its schema may not be what this one reads.
            raise RuntimeError(f"the state database has schema version {newer}; this cin "
                               f"knows up to {MIGRATIONS[-1][0]}: upgrade cin")
        applied: list[int] = []
        for version, description, statements in MIGRATIONS:
            if version in have:
                continue
            async with db.transaction():
                await db.execute(statements)
                await db.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                                 version, description, time.time())
            applied.append(version)
        return applied
    finally:
        await db.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
