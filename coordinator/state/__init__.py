"""The coordinator's state: the `StateStore` contract (protocol.py) and its engines.

The embedded engine is SQLite (sqlite.py, with its one-thread group commit in
sqlite_writer.py).
"""

from coordinator.state.protocol import EventsFor, PendingAbort, StateStore

__all__ = ["EventsFor", "PendingAbort", "StateStore"]
