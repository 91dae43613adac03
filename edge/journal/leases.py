"""Keeps a POP's lease of handles topped up, in the background.

A POP gives out only handles the coordinator leased it (common/protocol/handle_lease.py),
so it must hold enough to ride out an outage of the coordinator: the keeper keeps the
handles left above `max(low_water, recent stores per second * outage)`, asking for blocks
of `block_size` (as many as the rate needs) well before it runs low. While the coordinator
is away it retries with a capped, jittered backoff; the POP goes on giving out what it
holds, and answers 503 no_handles only once that is used up.

At start-up a POP with no handles asks once, briefly, before it serves; if the
coordinator cannot be reached it starts all the same, and stores wait for the keeper.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable

from common.protocol import wire
from common.protocol.errors import CinError, Code
from common.protocol.handle_lease import MAX_BLOCK_SIZE, is_block_id
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal
from edge.metrics import EdgeMetrics

log = logging.getLogger("cin.edge.leases")

# How often the keeper looks at what is left, and over how long it measures the rate.
TICK = 1.0
RATE_WINDOW = 60.0
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
# What start-up waits for a first block when the POP holds none.
STARTUP_WAIT = 5.0
LEASE_TIMEOUT = 10.0
# Blocks asked for in one round at most: a coordinator granting tiny blocks cannot keep
# the keeper asking in a tight loop.
MAX_BLOCKS_PER_ROUND = 16


class LeaseKeeper:
    """Made once the journal is open (it counts what the journal holds then)."""

    def __init__(self, journal: PopJournal, client: CoordinatorClient, pop: str, *,
                 block_size: int, low_water: int, outage: float,
                 tick: float = TICK, max_backoff: float = MAX_BACKOFF,
                 metrics: EdgeMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.client = client
        self.pop = pop
        self.block_size = min(block_size, MAX_BLOCK_SIZE)
        self.low_water = low_water
        self.outage = outage
        self.tick = tick
        self.max_backoff = max_backoff
        self.metrics = metrics
        self.clock = clock
        # Handles ever held (since this start) minus those left: how many were taken.
        self._held = journal.handles_left()
        self._samples: deque[tuple[float, int]] = deque()
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, startup_wait: float = STARTUP_WAIT) -> None:
        """Begin keeping the lease; a POP holding no handle first asks for one block,
        waiting at most `startup_wait` seconds."""
        if self.journal.handles_left() == 0:
            try:
                await self._lease_block(timeout=startup_wait)
            except CinError as exc:
                log.warning("%s starts with no handles (%s): stores answer 503 no_handles "
                            "until the coordinator leases some", self.pop, exc.detail)
                self._failures = 1
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.pop}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def rate(self) -> float:
        """Handles taken per second over the last RATE_WINDOW."""
        if len(self._samples) < 2:
            return 0.0
        (then, taken_then), (now, taken_now) = self._samples[0], self._samples[-1]
        return (taken_now - taken_then) / (now - then) if now > then else 0.0

    def target(self) -> int:
        """The handles to hold: enough for the low-water mark, and for `outage` seconds
        at the recent rate."""
        return max(self.low_water, math.ceil(self.rate() * self.outage))

    def sample(self) -> None:
        now = self.clock()
        self._samples.append((now, self._held - self.journal.handles_left()))
        while len(self._samples) > 2 and self._samples[1][0] <= now - RATE_WINDOW:
            self._samples.popleft()

    async def top_up(self) -> None:
        """Lease blocks until the handles left reach the target (at most
        MAX_BLOCKS_PER_ROUND of them); CinError if the coordinator cannot be reached."""
        for _ in range(MAX_BLOCKS_PER_ROUND):
            if self.journal.handles_left() >= self.target():
                return
            await self._lease_block(timeout=LEASE_TIMEOUT)

    async def _run(self) -> None:
        while True:
            self.sample()
            try:
                await self.top_up()
            except Exception as exc:
                self._failed(exc)
                await asyncio.sleep(self._backoff())
                continue
            if self._failures:
                log.info("%s leasing handles again (%d left)", self.pop,
                         self.journal.handles_left())
            self._failures = 0
            await asyncio.sleep(self.tick)

    # `timeout`: one attempt, bounded (a lease asked again is simply another block).
    async def _lease_block(self, *, timeout: float) -> None:  # noqa: ASYNC109
        try:
            reply = await self.client.call(
                wire.LeaseHandles(pop=self.pop, count=self.block_size), wire.HandleLease,
                retry=False, wait_seconds=timeout)
        except CinError:
            if self.metrics is not None:
                self.metrics.lease(granted=False)
            raise
        if reply.pop != self.pop or not is_block_id(reply.block) or not (
                0 < reply.size <= MAX_BLOCK_SIZE):
            if self.metrics is not None:
                self.metrics.lease(granted=False)
            # A coordinator that disagrees with this POP (its name, the protocol): not a
            # lease to give handles from.
            log.error("%s was granted an unusable lease: %s", self.pop, reply)
            raise CinError(Code.COORDINATOR_UNAVAILABLE, "the coordinator granted an "
                                                         "unusable lease")
        await self.journal.add_lease(reply.block, reply.size)
        self._held += reply.size
        if self.metrics is not None:
            self.metrics.lease(granted=True)
        log.info("%s leased %d handles (block %s); %d left", self.pop, reply.size,
                 reply.block, self.journal.handles_left())

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures == 1:  # once per outage
            detail = exc.detail if isinstance(exc, CinError) else repr(exc)
            log.warning("%s cannot lease handles (%s), %d left; retrying", self.pop,
                        detail, self.journal.handles_left())

    def _backoff(self) -> float:
        ceiling = min(self.max_backoff, FIRST_BACKOFF * 2.0 ** min(self._failures - 1, 16))
        return ceiling * (0.5 + random.random() / 2)

