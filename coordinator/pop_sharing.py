"""The POPs' heartbeats, shared by every coordinator on one state.

A POP sends each heartbeat to one coordinator (whichever its connection reached). That
coordinator records it in its registry and writes it through to the state; every
coordinator reads the state's heartbeats back into its registry every `REFRESH` seconds,
so all answer `/pops` and choose a POP from the same news, at most that much older. A
heartbeat is one small upsert, and a read of every POP one small query: cheap beside the
interval at which POPs send them.

On SQLite, one coordinator alone uses the state: what it reads back is what it heard.
"""

from __future__ import annotations

import logging

from common.protocol.wire import PopHeartbeat
from common.web import periodic
from coordinator.pop_registry import PopRegistry
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator.pops")

# Seconds between two reads of the shared heartbeats, at most: small beside the heartbeat
# timeout, so another coordinator's news is never what decides a POP is down.
REFRESH = 1.0


class SharedHeartbeats:
    def __init__(self, registry: PopRegistry, state: StateStore) -> None:
        self.registry = registry
        self.state = state
        self.refresh_every = min(REFRESH, registry.heartbeat.interval / 2)

    async def heard(self, beat: PopHeartbeat) -> None:
        """A POP's heartbeat, received here: checked and known here at once, then written
        through for the other coordinators."""
        self.registry.heard(beat)
        await self.state.pop_heard(beat)

    async def refresh(self) -> None:
        """Learn the heartbeats the other coordinators heard."""
        for heard in await self.state.pops_heard():
            self.registry.learned(heard)

    async def run(self) -> None:
        await periodic.every(self.refresh_every, self.refresh, log=log,
                             what="reading the POPs' heartbeats")
