"""A POP's heartbeat: registers it with the coordinator and keeps telling it how busy it is.

The first heartbeat goes out as soon as the POP's resources are open, then one every
`heartbeat.interval`, each saying whether the POP has room to take bytes
(edge/disk_space.py). When the POP starts draining for shutdown it says so at once, and
goes on saying so (a coordinator restarted meanwhile learns it too); the last one, as the
POP stops, says it is leaving, once the events the POP recorded have had a bounded chance
to reach the coordinator (edge/journal/shipper.py). A coordinator that cannot be reached
misses heartbeats and nothing else: the POP serves on, and the next heartbeat tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from common.protocol import wire
from common.protocol.errors import CinError
from common.protocol.pop_load import PopLoad
from common.web.drain import DRAIN, Drain
from edge.coordinator_client import CoordinatorClient
from edge.disk_space import DISK_SPACE, DiskSpace
from edge.keys import CONFIG, COORDINATOR, POP, SHIPPER, TRANSFER

log = logging.getLogger("cin.edge.heartbeat")

# The leave as the POP stops is worth a moment, not a stalled shutdown.
LEAVE_TIMEOUT = 2.0
# So is shipping the events the POP recorded, before it says it leaves: the coordinator
# then has every file it took, rather than waiting for the POP to come back.
DRAIN_FLUSH_TIMEOUT = 3.0


class Heartbeat:
    def __init__(self, pop: str, coordinator: CoordinatorClient, drain: Drain,
                 measure: Callable[[], PopLoad], space: DiskSpace, *, interval: float,
                 timeout: float) -> None:
        self.pop = pop
        self.coordinator = coordinator
        self.drain = drain
        self.measure = measure
        self.space = space
        self.interval = interval
        self.timeout = timeout  # a reply later than this is no use: the POP counts as down
        self.instance = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None
        self._reachable = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.pop}")

    async def stop(self, *, leave: bool = True) -> None:
        """Stop beating; `leave` tells the coordinator the POP is gone, so it need not wait
        for the timeout to stop handing it out."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if leave:
            await self.beat(draining=True, wait_seconds=min(self.timeout, LEAVE_TIMEOUT))

    async def beat(self, *, draining: bool, wait_seconds: float | None = None) -> bool:
        """Send one heartbeat now; True if the coordinator took it."""
        load = self.measure()
        # Looked at before every beat: a full POP learns it has space again by itself.
        disk_full = await self.space.check()
        message = wire.PopHeartbeat(pop=self.pop, instance=self.instance,
                                    requests=load.requests, transfers=load.transfers,
                                    backlog_bytes=load.backlog_bytes, draining=draining,
                                    disk_full=disk_full)
        try:
            await self.coordinator.call(
                message, wire.Ack, retry=False,
                wait_seconds=self.timeout if wait_seconds is None else wait_seconds)
        except CinError as exc:
            if self._reachable:  # once per outage, not once per heartbeat
                log.warning("heartbeat of %s not taken (%s); retrying every %g s",
                            self.pop, exc, self.interval)
            self._reachable = False
            return False
        if not self._reachable:
            log.info("heartbeat of %s taken again", self.pop)
        self._reachable = True
        return True

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            draining = self.drain.draining
            await self.beat(draining=draining)
            # The interval runs from the start of a beat: a slow reply does not stretch it.
            left = max(0.0, self.interval - (time.monotonic() - began))
            if draining:
                await asyncio.sleep(left)
                continue
            # A drain that starts meanwhile is told at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.drain.until_draining()


HEARTBEAT = web.AppKey("heartbeat", Heartbeat)


def measure_load(app: web.Application) -> PopLoad:
    """What a POP reports as its load (see common.protocol.pop_load for why these)."""
    transfers, backlog_bytes = app[TRANSFER].backlog()
    return PopLoad(requests=app[DRAIN].active, transfers=transfers,
                   backlog_bytes=backlog_bytes)


async def heartbeat_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx entry, after the resources it measures and talks through: its leave
    goes out first at shutdown, while the POP's connection to the coordinator is open."""
    config = app[CONFIG]
    heartbeat = Heartbeat(app[POP].name, app[COORDINATOR], app[DRAIN],
                          lambda: measure_load(app), app[DISK_SPACE],
                          interval=config.heartbeat.interval,
                          timeout=config.heartbeat.timeout)
    app[HEARTBEAT] = heartbeat
    heartbeat.start()
    try:
        yield
    finally:
        if SHIPPER in app:  # the requests are drained: the events they recorded go now
            try:
                await app[SHIPPER].flush(DRAIN_FLUSH_TIMEOUT)
            except CinError as exc:
                log.warning("%s leaves with events not shipped (%s); they go when it "
                            "starts again", app[POP].name, exc.detail)
        await heartbeat.stop()
