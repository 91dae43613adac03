"""The state engine `coordinator.state` names, opened for the time of a `with` block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from common.config import PostgresStateConfig, StateConfig
from coordinator.state.protocol import StateStore
from coordinator.state.sqlite import SqliteStateStore


@contextlib.asynccontextmanager
async def open_state_store(config: StateConfig) -> AsyncIterator[StateStore]:
    """`async with open_state_store(config.coordinator.state) as state:` the engine's
    store, open; closed (its last writes committed) on leaving."""
    store: StateStore
    if isinstance(config, PostgresStateConfig):
        # Imported here: a coordinator on SQLite never loads the PostgreSQL driver.
        from coordinator.state.postgres import PostgresStateStore
        store = PostgresStateStore(config)
    else:
        store = SqliteStateStore(config.path, synchronous=config.synchronous)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
