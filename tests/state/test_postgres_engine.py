"""What only the PostgreSQL engine does: its migrations, taken in turns by coordinators
starting together; the retry of transactions the server fails for a conflict; and an
unreachable database reported without its URL. What every engine does is
tests/state/test_state_conformance.py, which runs on PostgreSQL too; here, what two
coordinators on one database see of each other: locks, heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support import free_port

from common.config import PostgresStateConfig
from common.protocol.wire import PopHeartbeat
from coordinator.state import open_state_store
from coordinator.state.postgres import LOCK_SPACE, PostgresStateStore
from coordinator.state.postgres_retry import in_transaction
from coordinator.state.postgres_schema import MIGRATIONS


async def test_coordinators_opening_together_migrate_the_schema_once(
        postgres_database: str) -> None:
    config = PostgresStateConfig(postgres_database)
    stores = [PostgresStateStore(config) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        rows = await stores[0].pool.fetch("SELECT version FROM schema_migrations")
        assert sorted(row["version"] for row in rows) == [v for v, _, _ in MIGRATIONS]
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    async with open_state_store(config) as reopened:  # nothing left to apply
        assert await reopened.outbox_counts() == {"pending": 0, "abandoned": 0}


async def test_a_database_a_newer_cin_migrated_is_refused(postgres_database: str) -> None:
    config = PostgresStateConfig(postgres_database)
    async with open_state_store(config):
        pass
    db = await asyncpg.connect(postgres_database)
    try:
        await db.execute("INSERT INTO schema_migrations VALUES ($1, 'from the future', 0)",
                         MIGRATIONS[-1][0] + 1)
    finally:
        await db.close()
    with pytest.raises(RuntimeError, match="upgrade cin"):
        async with open_state_store(config):
            pass


async def test_a_transaction_failed_for_a_conflict_is_run_again(
        postgres_database: str) -> None:
    pool = await asyncpg.create_pool(postgres_database, min_size=2, max_size=2)
    try:
        await pool.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
        await pool.execute("INSERT INTO counter VALUES (0)")
        both_read = asyncio.Barrier(2)
        tries = 0

        async def increment(db: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
            nonlocal tries
            tries += 1
            n = await db.fetchval("SELECT n FROM counter")
            if tries <= 2:  # the first two tries read the same value before either writes
                await both_read.wait()
            await db.execute("UPDATE counter SET n = $1", n + 1)

        await asyncio.gather(*(in_transaction(pool, increment, isolation="serializable")
                               for _ in range(2)))
        assert await pool.fetchval("SELECT n FROM counter") == 2  # no increment lost
        assert tries == 3  # one of them was run again
    finally:
        await pool.close()


async def test_an_unreachable_database_is_reported_without_its_url() -> None:
    url = f"postgresql://cin:hunter22@127.0.0.1:{free_port()}/cin"
    with pytest.raises(RuntimeError) as caught:
        async with open_state_store(PostgresStateConfig(url)):
            pass
    assert "cannot reach the PostgreSQL state database" in str(caught.value)
    assert "hunter22" not in str(caught.value)


# What coordinators sharing one database share besides the records: two stores on one
# database are two coordinators.


@pytest.fixture
async def two_coordinators(postgres_database: str
                           ) -> AsyncIterator[tuple[PostgresStateStore, PostgresStateStore]]:
    config = PostgresStateConfig(postgres_database)
    first, second = PostgresStateStore(config), PostgresStateStore(config)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_a_key_locked_at_one_coordinator_waits_at_the_other(
        two_coordinators: tuple[PostgresStateStore, PostgresStateStore]) -> None:
    first, second = two_coordinators
    order: list[str] = []

    async def later() -> None:
        async with second.locked("upload:u") as held:
            assert held
            order.append("second")

    async with first.locked("upload:u"):
        async with second.locked("upload:u", wait=False) as taken:
            assert not taken
        waiting = asyncio.create_task(later())
        await asyncio.sleep(0.2)  # time for the second to take it, were it free
        order.append("first")
    await asyncio.wait_for(waiting, 10)
    assert order == ["first", "second"]


async def test_a_coordinator_that_dies_lets_go_of_its_locks(
        two_coordinators: tuple[PostgresStateStore, PostgresStateStore],
        postgres_database: str) -> None:
    first, second = two_coordinators
    holding = first.locked("sweep:upload-expiry")
    assert await holding.__aenter__()
    admin = await asyncpg.connect(postgres_database)
    try:  # as the server sees a coordinator killed: its connections end
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = $1", LOCK_SPACE)
    finally:
        await admin.close()
    async with asyncio.timeout(10), second.locked("sweep:upload-expiry") as held:
        assert held
    # The holder whose connection broke finishes its work: what it did stands.
    await holding.__aexit__(None, None, None)


async def test_heartbeats_heard_at_one_coordinator_are_read_at_the_other(
        two_coordinators: tuple[PostgresStateStore, PostgresStateStore]) -> None:
    first, second = two_coordinators
    await first.pop_heard(PopHeartbeat(pop="east", instance="i", requests=4, transfers=0,
                                       backlog_bytes=0))
    (heard,) = await second.pops_heard()
    assert (heard.pop, heard.load.requests) == ("east", 4)
    assert 0 <= heard.age < 5


async def test_each_committed_transaction_is_timed(postgres_database: str) -> None:
    timed: list[float] = []
    async with open_state_store(PostgresStateConfig(postgres_database),
                                on_transaction=timed.append) as store:
        await store.sync_apps([])
        await store.removal_done("h" * 20)
    assert len(timed) == 2
    assert all(0 <= seconds < 5 for seconds in timed)
