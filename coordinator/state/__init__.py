"""The coordinator's state: the `StateStore` contract (protocol.py) that every engine
keeps, and the engines behind it, opened by `open_state_store` as the config says.

The embedded engine is SQLite (sqlite.py, with its one-thread group commit in
sqlite_writer.py). tests/state runs one conformance suite against every engine.
"""

from coordinator.state.factory import open_state_store
from coordinator.state.protocol import (
    EventsFor,
    HeardPop,
    PendingAbort,
    PendingRemoval,
    StateStore,
)

__all__ = ["EventsFor", "HeardPop", "PendingAbort", "PendingRemoval", "StateStore",
           "open_state_store"]
