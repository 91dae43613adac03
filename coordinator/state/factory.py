"""The state engine `coordinator.state` names, opened for the time of a `with` block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from common.config import PostgresStateConfig, SqliteStateConfig, StateConfig
from coordinator.state.protocol import StateStore
from coordinator.state.sqlite import SqliteStateStore


@contextlib.asynccontextmanager
async def open_state_store(config: StateConfig, *,
                           on_transaction: Callable[[float], None] | None = None,
                           ) -> AsyncIterator[StateStore]:
    """`async with open_state_store(config.coordinator.state) as state:` the engine's
    store, open; closed (its last writes committed) on leaving. `on_transaction` is told
    the seconds each write transaction took (from any thread)."""
    store: StateStore
    if isinstance(config, PostgresStateConfig):
        # Imported here: a coordinator on SQLite never loads the PostgreSQL driver.
        from coordinator.state.postgres import PostgresStateStore
        store = PostgresStateStore(config, on_transaction=on_transaction)
    else:
        store = SqliteStateStore(config.path, synchronous=config.synchronous,
                                 on_transaction=on_transaction)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def engine_name(config: StateConfig) -> str:
    """The engine `config` names, as metrics label it."""
    return "sqlite" if isinstance(config, SqliteStateConfig) else "postgresql"
