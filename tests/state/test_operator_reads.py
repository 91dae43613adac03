"""The reads of the operator's page, on every engine (conftest.py): the latest files in a
status, and the outbox's pending and abandoned deliveries, each bounded. Then, on each
engine, that they are answered from an index rather than by reading every row: the page
polls them every two seconds, whatever the state holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
from state_engines import Engine

from common.config import PostgresStateConfig, SqliteStateConfig
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from coordinator.events import WebhookEvent
from coordinator.state import StateStore, open_state_store
from coordinator.state import postgres as postgres_engine
from coordinator.state import sqlite as sqlite_engine

STARTED, IN_TRANSIT, COMPLETE, FAILED = (FileStatus.STARTED, FileStatus.IN_TRANSIT,
                                         FileStatus.COMPLETE, FileStatus.FAILED)


def record(handle: str, **changes: object) -> FileRecord:
    started = FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                         container="c", key=f"k/{handle}", filename="f.txt",
                         mimetype="text/plain", size=3, status=STARTED, pop="us-east-1",
                         uploaded=1.25, tags={"user": "42"})
    return started.with_changes(**changes)


async def add_upload(store: StateStore, name: str, started: float,
                     status: FileStatus = STARTED) -> FileRecord:
    """An Upload API upload `name`, started at `started`, moved on to `status`."""
    file = record(name.ljust(20, "x"), uploaded=started)
    await store.create_upload(file, UploadRecord(
        upload_id=f"up-{name}", handle=file.handle, storage_upload_id=f"s3-{name}",
        pop="eu-west-1", fii=False, created=started), origin=f"origin-{name}")
    if status is not STARTED:
        await store.set_status(file.handle, status)
    return file


def one_event(changed: FileRecord) -> list[WebhookEvent]:
    return [WebhookEvent(apikey=changed.apikey, endpoint="http://hooks.test/a",
                         action="fp.upload", text={"size": changed.size}, created=10.0)]


async def add_file(store: StateStore, name: str, started: float,
                   status: str = "Started") -> FileRecord:
    """A REST store's file `name` started at `started`, moved on to `status`."""
    file = record(name.ljust(20, "x"), uploaded=started)
    await store.create_file(file, origin=f"origin-{name}")
    if status != "Started":
        await store.set_status(file.handle, IN_TRANSIT if status == "In Transit" else FAILED)
    return file


async def test_files_in_flight_are_the_latest_started_or_in_transit(
        store: StateStore) -> None:
    await add_file(store, "old-started", 10.0)
    await add_upload(store, "moving", started=30.0, status=IN_TRANSIT)
    await add_file(store, "new-started", 40.0)
    await add_file(store, "failed", 50.0, status="Failed")
    await add_upload(store, "done", started=60.0, status=COMPLETE)
    await add_upload(store, "uploading", started=20.0)

    in_flight = await store.files_in_flight(limit=10)
    assert [f.handle.rstrip("x") for f in in_flight] == [
        "new-started", "moving", "uploading", "old-started"]
    assert [f.status for f in in_flight] == [STARTED, IN_TRANSIT, STARTED, STARTED]
    assert await store.files_in_flight(limit=2) == in_flight[:2]
    assert await store.files_in_flight(limit=0) == []
    (failed,) = await store.failed_files(limit=10)
    assert (failed.handle.rstrip("x"), failed.status) == ("failed", FAILED)


async def test_failed_files_are_the_latest_started_and_whole(store: StateStore) -> None:
    assert await store.failed_files(limit=5) == []
    for name, started in (("early", 1.0), ("late", 3.0), ("middle", 2.0)):
        await add_file(store, name, started, status="Failed")
    failed = await store.failed_files(limit=2)
    assert [f.handle.rstrip("x") for f in failed] == ["late", "middle"]
    assert failed[0] == record("late".ljust(20, "x"), uploaded=3.0, status=FAILED)


async def test_outbox_entries_pending_earliest_due_and_abandoned_latest(
        store: StateStore) -> None:
    assert await store.outbox_entries(abandoned=False, limit=10) == []
    for index in range(4):
        handle = f"{index:020d}"
        await store.create_file(record(handle), origin=handle)
        await store.set_status(handle, COMPLETE, events=one_event)
    first, second, third, fourth = await store.due_deliveries(now=1e12, limit=10)
    await store.delivery_failed(first.id, "HTTP 503 from the receiver", retry_at=500.0)
    await store.delivery_failed(second.id, "refused", retry_at=None)
    await store.delivery_failed(third.id, "timed out", retry_at=None)

    pending = await store.outbox_entries(abandoned=False, limit=10)
    assert [(e.id, e.attempts, e.last_error, e.abandoned) for e in pending] == [
        (fourth.id, 0, None, False), (first.id, 1, "HTTP 503 from the receiver", False)]
    assert (pending[1].next_attempt, pending[1].action, pending[1].apikey,
            pending[1].endpoint, pending[1].created) == (
        500.0, "fp.upload", "KEY", "http://hooks.test/a", 10.0)
    abandoned = await store.outbox_entries(abandoned=True, limit=10)
    assert [(e.id, e.last_error, e.abandoned) for e in abandoned] == [
        (third.id, "timed out", True), (second.id, "refused", True)]
    assert await store.outbox_entries(abandoned=True, limit=1) == abandoned[:1]
    assert await store.outbox_counts() == {"pending": 2, "abandoned": 2}


# ---------------------------------------------------------------------------- query plans

INDEX_OF = {STARTED: "files_started", IN_TRANSIT: "files_in_transit", FAILED: "files_failed"}


async def filled(config: SqliteStateConfig | PostgresStateConfig) -> None:
    """The engine's database with the page's indexes in place and a row to plan on."""
    async with open_state_store(config) as store:
        await add_file(store, "plan", 1.0)


async def test_sqlite_answers_the_page_from_its_indexes(tmp_path: Path) -> None:
    config = SqliteStateConfig(tmp_path / "state.sqlite3")
    await filled(config)
    db = sqlite3.connect(config.path)
    try:
        def plan(query: str, *values: object) -> str:
            rows = db.execute("EXPLAIN QUERY PLAN " + query, values).fetchall()
            return " / ".join(str(row[-1]) for row in rows)

        for status, index in INDEX_OF.items():
            latest = plan(sqlite_engine._LATEST_OF[status], 50)
            assert f"USING INDEX {index}" in latest, latest
            assert "TEMP B-TREE" not in latest, latest  # read in order, cut at the LIMIT
        for abandoned, index in ((False, "outbox_due"), (True, "outbox_abandoned")):
            entries = plan(sqlite_engine._OUTBOX_ENTRIES[abandoned], 50)
            assert f"INDEX {index}" in entries, entries
            assert "TEMP B-TREE" not in entries, entries
    finally:
        db.close()


async def test_postgresql_answers_the_page_from_its_indexes(postgres_database: str) -> None:
    await filled(PostgresStateConfig(postgres_database))
    db = await asyncpg.connect(postgres_database)
    try:
        # A few rows make a sequential scan the cheapest plan; with it ruled out, the plan
        # shows whether an index answers the query in its order (no Sort above it).
        await db.execute("SET enable_seqscan = off")

        async def plan(query: str, *values: object) -> str:
            rows = await db.fetch("EXPLAIN " + query, *values)
            return " / ".join(row[0] for row in rows)

        for status, index in INDEX_OF.items():
            latest = await plan(postgres_engine._LATEST_OF[status], 50)
            assert index in latest and "Sort" not in latest, latest
        for abandoned, index in ((False, "outbox_due"), (True, "outbox_abandoned")):
            entries = await plan(postgres_engine._OUTBOX_ENTRIES[abandoned], 50)
            assert index in entries and "Sort" not in entries, entries
    finally:
        await db.close()


async def test_reopening_keeps_what_the_page_reads(engine: Engine) -> None:
    async with engine.open() as store:
        written = await add_file(store, "kept", 7.0, status="Failed")
    async with open_state_store(engine.config) as reopened:
        assert await reopened.failed_files(limit=5) == [
            written.with_changes(status=FAILED)]


async def test_a_schema_5_sqlite_database_gains_the_page_indexes(tmp_path: Path) -> None:
    config = SqliteStateConfig(tmp_path / "old.sqlite3")
    async with open_state_store(config) as store:
        await add_file(store, "older", 3.0, status="Failed")
    db = sqlite3.connect(config.path)  # make it what schema 5 was
    db.executescript("DROP INDEX files_in_transit; DROP INDEX files_failed; "
                     "DROP INDEX outbox_abandoned; "
                     "UPDATE meta SET value = '5' WHERE name = 'schema_version';")
    db.close()
    async with open_state_store(config) as reopened:
        assert [f.handle for f in await reopened.failed_files(limit=5)] == ["older".ljust(20, "x")]
    db = sqlite3.connect(config.path)
    try:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    finally:
        db.close()
    assert {"files_in_transit", "files_failed", "outbox_abandoned"} <= names
    assert version == (str(sqlite_engine.SCHEMA_VERSION),)
