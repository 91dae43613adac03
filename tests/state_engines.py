"""The state engines the StateStore conformance suite (tests/state) runs against.

An engine joins the suite with a name in ENGINES and a branch in `engine_config`: the
config `coordinator.state` would hold to reach a fresh, empty database of it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from common.config import SqliteStateConfig, StateConfig
from coordinator.state import StateStore, open_state_store

ENGINES = ["sqlite"]


def engine_config(name: str, tmp_path: Path) -> StateConfig:
    if name == "sqlite":
        return SqliteStateConfig(tmp_path / "state.sqlite3")
    raise AssertionError(f"no engine named {name!r}")


@dataclass(frozen=True)
class Engine:
    """One engine's database for one test. Each `open()` is a new store on it, seeing
    all that the stores opened before committed (as a restarted coordinator does)."""

    name: str
    config: StateConfig

    def open(self) -> AbstractAsyncContextManager[StateStore]:
        return open_state_store(self.config)
