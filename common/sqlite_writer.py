"""The one thread that owns the SQLite connection, and its group commits.

One thread owns the connection, so every statement is serialized without locks and the
event loop never waits on the disk. A write returns only after its transaction has
committed (with `synchronous=FULL`, the default), so whatever a service acknowledged on the strength
of it survives a kill -9 or a power cut.

Writes are committed in groups: the writes that arrive while the thread is busy go
together in the next transaction, each inside a savepoint of its own, and none returns
before that transaction has committed. Under load many writes then share one fsync of
the WAL instead of queueing for one each; a lone write is committed at once. A write that
fails is rolled back to its savepoint and fails alone. A write alone in its transaction,
or one that is a single statement (which SQLite undoes by itself if it fails), needs no
savepoint: two statements fewer, each a hand-off of the GIL with the event loop.

The queries (the coordinator's state, coordinator/state/sqlite.py, and a POP's journal,
edge/journal/sqlite_journal.py) see none of this: a read is a function of the
connection, and so is a write, which runs inside a transaction it need not open.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
# A queued write: its function, its caller's future, and whether it is one statement.
_Write = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], bool]

# Writes in one group commit, at most: bounds how long the first of them waits.
MAX_GROUP = 256


class SqliteWriter:
    """Runs functions of one connection on its own thread: reads one at a time, writes
    in group commits."""

    def __init__(self, on_commit: Callable[[float], None] | None = None) -> None:
        # Told the seconds of each group commit, on this writer's thread.
        self._on_commit = on_commit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cin-sqlite")
        self._db: sqlite3.Connection | None = None
        # Writes waiting for the next group commit, with their callers' futures.
        self._queued: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._flush_scheduled = False

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Make the connection (in autocommit mode) on the thread that will own it."""
        def opened() -> None:
            self._db = connect()

        await asyncio.get_running_loop().run_in_executor(self._executor, opened)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn`, which only reads, on the connection's thread."""
        def call() -> T:
            assert self._db is not None, "the database is not open"
            return fn(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def write(self, fn: Callable[[sqlite3.Connection], T], *,
                    one_statement: bool = False) -> T:
        """Run `fn` in the next group commit; return once it is committed. `fn` runs in
        a transaction (in a savepoint of its own): what it writes commits with the group,
        or, if it raises, is undone and the error is raised here.

        `one_statement`: `fn` runs exactly one statement and raises only from it. It
        then needs no savepoint: SQLite undoes a statement that fails, and nothing else."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._queue_lock:
            self._queued.append((fn, future, one_statement))
            schedule, self._flush_scheduled = not self._flush_scheduled, True
        if schedule:
            loop.run_in_executor(self._executor, self._commit_group, loop)
        return await future

    def _commit_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the SQLite thread: every queued write (up to MAX_GROUP) in one transaction."""
        with self._queue_lock:
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
            if self._queued:
                self._executor.submit(self._commit_group, loop)
            else:
                self._flush_scheduled = False
        db = self._db
        outcomes: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        try:
            if db is None:
                raise RuntimeError("the database is not open")
            db.execute("BEGIN IMMEDIATE")
            if len(group) == 1:
                # Alone in its transaction, a write needs no savepoint: if it fails, the
                # whole transaction is rolled back, which undoes nothing but it. Two
                # statements fewer, each a hand-off of the GIL with the event loop.
                outcomes.append(_run_alone(db, group[0][0]))
            else:
                for fn, _, one_statement in group:
                    if one_statement:
                        outcomes.append(_run_one_statement(db, fn))
                        continue
                    db.execute("SAVEPOINT write")
                    try:
                        outcomes.append((True, fn(db)))
                    except Exception as exc:
                        db.execute("ROLLBACK TO write")
                        outcomes.append((False, exc))
                    db.execute("RELEASE write")
            if db.in_transaction:
                db.execute("COMMIT")
        except Exception as exc:
            if db is not None and db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(group)
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started)
        # One wake-up of the loop for the whole group, not one per write.
        settled = [(future, ok, value)
                   for (_, future, _), (ok, value) in zip(group, outcomes, strict=True)]
        loop.call_soon_threadsafe(_settle, settled)


def _run_one_statement(db: sqlite3.Connection,
                       fn: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
    try:
        return True, fn(db)
    except Exception as exc:
        if not db.in_transaction:
            # SQLite ended the transaction itself (a full disk, I/O): every write of the
            # group is undone, and every one fails.
            raise
        return False, exc


def _run_alone(db: sqlite3.Connection,
               fn: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any]:
    try:
        return True, fn(db)
    except Exception as exc:
        # SQLite itself rolls the transaction back on some errors (a full disk, I/O).
        if db.in_transaction:
            db.execute("ROLLBACK")
        return False, exc


def _settle(settled: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():  # the caller was cancelled; the write stands all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
