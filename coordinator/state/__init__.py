"""The coordinator's state: the `StateStore` contract (protocol.py) that every engine
keeps, and the engines behind it, opened by `open_state_store` as the config says.

The embedded engine is SQLite (sqlite.py, with its one-thread group commit in
common/sqlite_writer.py, which a POP's journal uses too). tests/state runs one
conformance suite against every engine.
"""

from coordinator.state.factory import open_state_store
from coordinator.state.protocol import (
    AppliedBatch,
    EventOutcome,
    EventsFor,
    HeardPop,
    OutboxEntry,
    PendingAbort,
    PendingRemoval,
    StateStore,
)

__all__ = ["AppliedBatch", "EventOutcome", "EventsFor", "HeardPop", "OutboxEntry",
           "PendingAbort", "PendingRemoval", "StateStore", "open_state_store"]
