"""One transaction of the PostgreSQL engine, run again when the server gives it up.

With several coordinators on one database, two transactions can wait on each other (a
deadlock, which the server breaks by failing one) or, at a stricter isolation level,
conflict (a serialization failure). Neither changed anything, and the same transaction
run again succeeds: every change goes through `in_transaction`, so none handles this
itself, and none retries anything else (a refusal of the rules, or a broken connection,
is the caller's to see).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of the pool, as a transaction is given it.
    Db: TypeAlias = PoolConnectionProxy[asyncpg.Record]

log = logging.getLogger("cin.coordinator.state")

T = TypeVar("T")
Isolation = Literal["read_committed", "repeatable_read", "serializable"]

# Tries in all, and the first wait between two (doubled each time, with jitter): a
# conflict clears in milliseconds, and a change that conflicts this often is reported.
ATTEMPTS = 8
FIRST_WAIT = 0.005

RETRIED: tuple[type[Exception], ...] = (
    asyncpg.SerializationError,  # 40001
    asyncpg.DeadlockDetectedError,  # 40P01
)


async def in_transaction(pool: asyncpg.Pool, work: Callable[[Db], Awaitable[T]],
                         *, isolation: Isolation = "read_committed",
                         readonly: bool = False,
                         on_commit: Callable[[float], None] | None = None) -> T:
    """`work` on one connection of `pool`, in a transaction at `isolation`; committed when
    it returns, rolled back when it raises, and run again from the start (a new
    transaction) when the server failed it for a conflict with another. `on_commit` is
    told the seconds the transaction that committed took, from its start to its commit
    (not the wait for a connection)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with pool.acquire() as db:
                started = time.perf_counter()
                async with db.transaction(isolation=isolation, readonly=readonly):
                    result = await work(db)
                if on_commit is not None:
                    on_commit(time.perf_counter() - started)
                return result
        except RETRIED as exc:
            if attempt == ATTEMPTS:
                raise
            wait = FIRST_WAIT * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            log.debug("state transaction conflicted (%s), try %d in %.3fs",
                      type(exc).__name__, attempt + 1, wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
