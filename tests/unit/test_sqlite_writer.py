"""The group commit of common/sqlite_writer.py when a write is alone in its transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from common.sqlite_writer import SqliteWriter


async def _opened(path: Path) -> SqliteWriter:
    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
        return db

    writer = SqliteWriter()
    await writer.open(connect)
    return writer


def _insert_then_fail(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO t VALUES ('half')")
    raise ValueError("the second half failed")


async def test_a_lone_write_takes_no_savepoint_and_a_failing_one_is_undone_whole(
        tmp_path: Path) -> None:
    writer = await _opened(tmp_path / "w.db")
    statements: list[str] = []
    await writer.read(lambda db: db.set_trace_callback(statements.append))
    await writer.write(lambda db: db.execute("INSERT INTO t VALUES ('one')"))
    assert not any("SAVEPOINT" in s for s in statements), statements
    with pytest.raises(ValueError, match="second half"):
        await writer.write(_insert_then_fail)
    await writer.write(lambda db: db.execute("INSERT INTO t VALUES ('two')"))
    rows = await writer.read(lambda db: db.execute("SELECT k FROM t ORDER BY k").fetchall())
    await writer.close()
    assert rows == [("one",), ("two",)]


async def test_a_lone_write_whose_transaction_sqlite_ended_fails_with_its_own_error(
        tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself on some errors (a full disk, I/O): the
    write is told its own error, not that there was nothing left to roll back."""
    writer = await _opened(tmp_path / "w.db")

    def transaction_lost(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES ('lost')")
        db.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        await writer.write(transaction_lost)
    await writer.write(lambda db: db.execute("INSERT INTO t VALUES ('next')"))
    rows = await writer.read(lambda db: db.execute("SELECT k FROM t").fetchall())
    await writer.close()
    assert rows == [("next",)]


def _inserting(key: str) -> Callable[[sqlite3.Connection], None]:
    """A write of one row."""
    def write(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO t VALUES (?)", (key,))
    return write


async def test_writes_together_still_fail_alone(tmp_path: Path) -> None:
    """Several writes in one transaction each keep a savepoint: the one that fails after
    writing undoes only its own rows."""
    writer = await _opened(tmp_path / "w.db")
    statements: list[str] = []
    await writer.read(lambda db: db.set_trace_callback(statements.append))

    outcomes = await asyncio.gather(
        *(writer.write(_inserting(f"k{n}")) for n in range(5)), writer.write(_insert_then_fail),
        *(writer.write(_inserting(f"m{n}")) for n in range(5)), return_exceptions=True)
    rows = await writer.read(lambda db: db.execute("SELECT k FROM t ORDER BY k").fetchall())
    await writer.close()
    assert [isinstance(o, ValueError) for o in outcomes] == [False] * 5 + [True] + [False] * 5
    assert rows == sorted((f"{p}{n}",) for p in "km" for n in range(5))
    assert any("SAVEPOINT" in s for s in statements)


async def test_one_statement_writes_take_no_savepoint_and_fail_alone(tmp_path: Path) -> None:
    """A write of one statement, in a group with others, is undone by SQLite alone if it
    fails: the others commit, and it took no savepoint."""
    writer = await _opened(tmp_path / "w.db")
    await writer.write(lambda db: db.execute("INSERT INTO t VALUES ('taken')"))
    statements: list[str] = []
    await writer.read(lambda db: db.set_trace_callback(statements.append))

    keys = ["a", "b", "taken", "c", "d"]  # "taken" breaks the primary key
    outcomes = await asyncio.gather(
        *(writer.write(_inserting(key), one_statement=True) for key in keys),
        return_exceptions=True)
    rows = await writer.read(lambda db: db.execute("SELECT k FROM t ORDER BY k").fetchall())
    await writer.close()
    assert [isinstance(o, sqlite3.IntegrityError) for o in outcomes] == [
        False, False, True, False, False]
    assert rows == [("a",), ("b",), ("c",), ("d",), ("taken",)]
    assert statements.count("COMMIT") < len(keys)  # some of them shared a transaction
    assert not any("SAVEPOINT" in s for s in statements), statements
