"""What only the SQLite engine does: group commits, its synchronous setting, its indexes
and the upgrade of an older schema. What every engine does is tests/state/
test_state_conformance.py, which runs on SQLite too."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from common.config import SqliteStateConfig
from common.protocol.errors import CinError, Code
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from coordinator.state import open_state_store
from coordinator.state.sqlite import (
    _EXPIRED_STORES,
    _EXPIRED_UPLOADS,
    _KEY_IN_USE,
    SCHEMA_VERSION,
    SqliteStateStore,
)

DAY = 86400.0
NOW = 1_700_000_000.0


def record(handle: str, uploaded: float = 1.25) -> FileRecord:
    return FileRecord(handle=handle, apikey="KEY", storage="bucket", provider="s3",
                      container="c", key=f"k/{handle}", filename="f.txt",
                      mimetype="text/plain", size=3, status=FileStatus.STARTED,
                      pop="us-east-1", uploaded=uploaded)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    opened = SqliteStateStore(tmp_path / "state.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


async def test_concurrent_writes_commit_together_and_fail_alone(tmp_path: Path) -> None:
    """Writes that arrive together share a group commit; one that fails is undone alone,
    and every other is committed (and still there after reopening)."""
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.open()
    handles = [f"{n:020d}" for n in range(40)]
    await asyncio.gather(*(store.create_file(record(h), origin=h) for h in handles))
    await store.set_status(handles[7], FileStatus.FAILED)
    statements: list[str] = []
    await store._writer.read(lambda db: db.set_trace_callback(statements.append))
    outcomes = await asyncio.gather(
        *(store.set_status(h, FileStatus.COMPLETE, size=3, etag=f"e{h}") for h in handles),
        return_exceptions=True)
    await store.close()
    commits = statements.count("COMMIT")
    assert 1 <= commits < len(handles) // 2, f"{commits} commits for {len(handles)} writes"
    failed = [h for h, outcome in zip(handles, outcomes, strict=True)
              if isinstance(outcome, BaseException)]
    assert failed == [handles[7]]
    assert isinstance(outcomes[7], CinError) and outcomes[7].code is Code.CONFLICT

    reopened = SqliteStateStore(path)
    await reopened.open()
    found = {h: await reopened.get_file(h) for h in handles}
    await reopened.close()
    refused = found[handles[7]]
    assert refused is not None and refused.status is FileStatus.FAILED
    for h in handles[:7] + handles[8:]:
        stored = found[h]
        assert stored is not None and stored.status is FileStatus.COMPLETE
        assert stored.etag == f"e{h}"


@pytest.mark.parametrize(("setting", "pragma"), [("full", 2), ("normal", 1)])
async def test_the_configured_synchronous_setting_is_the_connection_s(
        tmp_path: Path, setting: Literal["full", "normal"], pragma: int) -> None:
    config = SqliteStateConfig(tmp_path / "state.sqlite3", synchronous=setting)
    async with open_state_store(config) as store:
        assert isinstance(store, SqliteStateStore)
        found = await store._writer.read(
            lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        journal = await store._writer.read(
            lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
    assert (found, journal) == (pragma, "wal")


async def test_finding_expired_uploads_reads_only_started_files(
        store: SqliteStateStore) -> None:
    db = sqlite3.connect(store.path)
    try:
        plan = " | ".join(row[3] for row in db.execute(
            f"EXPLAIN QUERY PLAN {_EXPIRED_UPLOADS}", (NOW, NOW, 10)))
    finally:
        db.close()
    assert "USING INDEX files_started" in plan, plan
    assert "SCAN files" not in plan and "SCAN uploads" not in plan, plan


async def test_a_schema_3_database_gains_the_expiry_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStateStore(path)
    await store.open()
    old = record("old".ljust(20, "x"), uploaded=NOW - 2 * DAY)
    await store.create_upload(old, UploadRecord(
        upload_id="up-old", handle=old.handle, storage_upload_id="s3-old", pop="us-east-1",
        fii=False, created=NOW - 2 * DAY), origin="origin-old")
    await store.close()
    db = sqlite3.connect(path)  # make it what schema 3 was
    db.executescript("DROP INDEX files_started; DROP TABLE upload_aborts; "
                     "UPDATE meta SET value = '3' WHERE name = 'schema_version';")
    db.close()

    reopened = SqliteStateStore(path)
    await reopened.open()
    assert len(await reopened.expire_uploads(NOW - DAY, "r", NOW, 10)) == 1
    await reopened.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'"
                          ).fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'files_started'"
                          ).fetchone() == ("files_started",)
    finally:
        db.close()


@pytest.mark.parametrize(("query", "values", "index"), [
    (_EXPIRED_STORES, (NOW, 10), "files_started"),
    (_KEY_IN_USE, ("k", "c", "bucket", "h"), "files_key"),
])
async def test_store_expiry_reads_through_indexes(store: SqliteStateStore, query: str,
                                                  values: tuple[object, ...],
                                                  index: str) -> None:
    db = sqlite3.connect(store.path)
    try:
        plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", values))
    finally:
        db.close()
    assert f"USING INDEX {index}" in plan, plan
    assert "SCAN files" not in plan and "SCAN uploads" not in plan, plan


async def test_a_schema_4_database_gains_the_store_expiry_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    store = SqliteStateStore(path)
    await store.open()
    await store.create_file(record("old".ljust(20, "x"), uploaded=NOW - 2 * DAY),
                            origin="pop:old")
    await store.close()
    db = sqlite3.connect(path)  # make it what schema 4 was
    db.executescript("DROP INDEX files_key; DROP TABLE store_removals; "
                     "UPDATE meta SET value = '4' WHERE name = 'schema_version';")
    db.close()

    reopened = SqliteStateStore(path)
    await reopened.open()
    try:
        assert len(await reopened.expire_stores(NOW - DAY, NOW, 10)) == 1
        assert len(await reopened.pending_removals(10)) == 1
    finally:
        await reopened.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'"
                          ).fetchone() == (str(SCHEMA_VERSION),)
    finally:
        db.close()
