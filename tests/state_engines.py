"""The state engines the StateStore conformance suite (tests/state) runs against.

An engine joins the suite with a name in ENGINES and a branch in `engine_config`: the
config `coordinator.state` would hold to reach a fresh, empty database of it. A server
engine's database comes from a fixture (tests/conftest.py), asked for only by the tests
that run on that engine.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import PostgresStateConfig, SqliteStateConfig, StateConfig
from coordinator.state import StateStore, open_state_store

ENGINES = ["sqlite", "postgresql"]


def engine_config(name: str, request: pytest.FixtureRequest) -> StateConfig:
    if name == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return SqliteStateConfig(tmp_path / "state.sqlite3")
    if name == "postgresql":
        return PostgresStateConfig(request.getfixturevalue("postgres_database"))
    raise AssertionError(f"no engine named {name!r}")


@dataclass(frozen=True)
class Engine:
    """One engine's database for one test. Each `open()` is a new store on it, seeing
    all that the stores opened before committed (as a restarted coordinator does)."""

    name: str
    config: StateConfig

    def open(self) -> AbstractAsyncContextManager[StateStore]:
        return open_state_store(self.config)
