"""Ships a POP's journal to the coordinator: the events it recorded, oldest first, in
batches, until each is acknowledged.

One task sends, one batch at a time, so the coordinator sees the events in the order the
POP recorded them. It wakes when an event becomes durable (and lingers a few
milliseconds, so the stores of one moment share a batch), and every `POLL_INTERVAL`
besides. A batch is one attempt: while the coordinator is away the shipper retries with a
capped, jittered backoff, and uploads go on meanwhile, since they need only the journal.
The coordinator applies a batch at most once per event id, so a batch sent again after a
lost reply, a crash or a restart changes nothing.

`flush` is for what must not run ahead of the events: it returns once every event
recorded before it was called is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack

from common.protocol import wire
from common.protocol.errors import CinError, Code
from edge.coordinator_client import CoordinatorClient
from edge.journal.protocol import PopJournal, Unshipped
from edge.metrics import EdgeMetrics

log = logging.getLogger("cin.edge.shipper")

POLL_INTERVAL = 2.0
# A reply slower than this counts as the coordinator being away; the batch is sent again.
BATCH_TIMEOUT = 10.0
FIRST_BACKOFF = 0.1
# Capped well under the 10 s in which a returning coordinator must have every event.
MAX_BACKOFF = 5.0
# A flush waiting cuts a backoff short, down to this between two attempts.
URGENT_RETRY = 0.2
# What a shutdown gives the events not yet shipped.
LAST_ATTEMPT = 3.0
# Room for the batch's own fields around its events.
_ENVELOPE_BYTES = 4096

# Told the statuses the coordinator answered for the files of each batch it took.
StatusListener = Callable[[dict[str, str]], Awaitable[None]]


class ShippedJournal(PopJournal, Protocol):
    async def newest_seq(self) -> int:
        """The seq of the newest event recorded, 0 if none."""
        ...


# Failed attempts in a row after which a flush stops waiting: one may be a lost reply.
FLUSH_GIVES_UP_AFTER = 2


class Shipper:
    def __init__(self, journal: ShippedJournal, client: CoordinatorClient, pop: str, *,
                 batch_size: int = 500, linger: float = 0.005,
                 poll_interval: float = POLL_INTERVAL, batch_timeout: float = BATCH_TIMEOUT,
                 max_backoff: float = MAX_BACKOFF, metrics: EdgeMetrics | None = None) -> None:
        self.journal = journal
        self.client = client
        self.pop = pop
        self.batch_size = batch_size
        self.linger = linger
        self.poll_interval = poll_interval
        self.batch_timeout = batch_timeout
        self.max_backoff = max_backoff
        self.metrics = metrics
        self._wanted = asyncio.Event()
        self._urgent = asyncio.Event()
        # Replaced after every attempt: a flush waits on the one it saw.
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._listeners: list[StatusListener] = []

    def on_statuses(self, listener: StatusListener) -> None:
        """Have `listener` told the statuses of each batch the coordinator takes, once the
        journal has them (a file now Complete or Failed: its spool can go). The next
        batch waits for it, so it should be quick; what it raises is logged."""
        self._listeners.append(listener)

    def wake(self) -> None:
        """An event is durable: ship soon (the journal's `on_event`)."""
        self._wanted.set()

    def start(self) -> None:
        self._wanted.set()  # what the POP left unshipped when it last stopped goes first
        self._task = asyncio.create_task(self._run(), name=f"shipper-{self.pop}")

    async def stop(self, last_attempt: float = LAST_ATTEMPT) -> None:
        """Stop shipping, after one attempt of at most `last_attempt` seconds to send what
        is left (what does not go now goes when the POP starts again)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with asyncio.timeout(last_attempt):
                while await self._ship_batch() == self.batch_size:
                    pass
        except Exception as exc:  # the coordinator away, or slow: nothing is lost
            left = await self.journal.pending_count()
            log.warning("%d events not shipped at shutdown (%s); they go when %s starts "
                        "again", left, exc or "timed out", self.pop)

    # `timeout` rather than the caller's asyncio.timeout: running out is an answer of its
    # own (503 coordinator_unavailable), not a cancellation.
    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return once every event recorded before this call is acknowledged; raise
        COORDINATOR_UNAVAILABLE if that takes more than `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                mark = await self.journal.newest_seq()
                while True:
                    progress = self._progress
                    oldest = await self.journal.unshipped(1)
                    if not oldest or oldest[0].seq > mark:
                        return
                    self._urgent.set()
                    self._wanted.set()
                    await progress.wait()
                    if self._failures >= FLUSH_GIVES_UP_AFTER:
                        # Attempts in a row failed: the coordinator is away. Waiting on
                        # would only send attempt after attempt until the timeout.
                        raise CinError(Code.COORDINATOR_UNAVAILABLE,
                                       "the coordinator is not taking this POP's events")
        except TimeoutError:
            raise CinError(Code.COORDINATOR_UNAVAILABLE,
                           "the coordinator has not acknowledged this POP's events") from None

    # ------------------------------------------------------------------ the task

    async def _run(self) -> None:
        while True:
            await self._wait_for_work()
            while True:
                self._urgent.clear()
                try:
                    sent = await self._ship_batch()
                except Exception as exc:
                    self._failed(exc)
                    self._signal_progress()
                    await self._backoff()
                    continue
                self._recovered()
                self._signal_progress()
                if sent < self.batch_size:
                    break

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self._wanted.wait()
        if self._wanted.is_set() and self.linger > 0:
            # The stores of this moment record their events too: one batch for them all.
            await asyncio.sleep(self.linger)
        self._wanted.clear()

    async def _ship_batch(self) -> int:
        """Send the oldest events not yet acknowledged, as one batch; how many were read
        (0: nothing to send). Raises CinError when the coordinator did not take them."""
        pending = await self.journal.unshipped(self.batch_size)
        if not pending:
            return 0
        batch, oversized = _fit(pending)
        if oversized:
            # Never deliverable (the coordinator refuses a message this large), and kept
            # it would hold back every event after it.
            for item in oversized:
                log.error("event %s of %s is larger than a message: dropped",
                          item.event.id, item.event.handle)
            await self.journal.acknowledged([item.seq for item in oversized], {})
        if not batch:
            return len(pending)
        began = time.monotonic()
        reply = await self.client.call(
            wire.EventBatch(pop=self.pop, events=[wired for _, wired in batch]),
            wire.BatchReply, retry=False, wait_seconds=self.batch_timeout)
        for refusal in reply.refused:
            # Refused for good (a handle not leased to this POP, say): a bug or a forgery,
            # never fixed by sending it again. Dropped with the rest of the batch.
            log.error("coordinator refused %s", _refused_event(refusal, batch))
        await self.journal.acknowledged([item.seq for item, _ in batch], reply.statuses)
        if reply.statuses:
            await self._tell(reply.statuses)
        if self.metrics is not None:
            now = time.time()
            self.metrics.batch_shipped(time.monotonic() - began,
                                       [now - item.event.at for item, _ in batch],
                                       refused=len(reply.refused))
        return len(pending)

    async def _tell(self, statuses: dict[str, str]) -> None:
        for listener in self._listeners:
            try:
                await listener(statuses)
            except Exception:
                # The batch is acknowledged all the same: a listener's failure is its own.
                log.exception("a listener of the coordinator's statuses failed")

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if self.metrics is not None:
            self.metrics.batch_failed()
        if isinstance(exc, CinError) and exc.code is Code.COORDINATOR_UNAVAILABLE:
            if self._failures == 1:  # once per outage, not once per attempt
                log.warning("coordinator not taking events (%s); retrying", exc.detail)
        elif isinstance(exc, CinError):
            log.error("coordinator refused a batch of events: %s; retrying", exc)
        else:
            log.exception("shipping events failed; retrying")

    def _recovered(self) -> None:
        if self._failures:
            log.info("coordinator taking events again after %d failed attempts",
                     self._failures)
        self._failures = 0

    async def _backoff(self) -> None:
        ceiling = min(self.max_backoff, FIRST_BACKOFF * 2.0 ** min(self._failures - 1, 16))
        delay = ceiling * (0.5 + random.random() / 2)
        began = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._urgent.wait()
        # A flush cut it short: it still leaves a moment between two attempts.
        left = min(delay, URGENT_RETRY) - (time.monotonic() - began)
        if left > 0:
            await asyncio.sleep(left)

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()


def _refused_event(refusal: Any, batch: list[tuple[Unshipped, dict[str, Any]]]) -> str:
    """What a refusal (`[event id, reason, position]`) was about, for the log: the event
    sent at that position, which this POP can name even when the coordinator could not
    read its id. A coordinator that gives no position names the event by id alone."""
    fields = [str(field)[:200] for field in refusal] if isinstance(refusal, list) else []
    event_id, reason, position = [*fields, "", "?", ""][:3]
    if position.isdecimal() and int(position) < len(batch):
        item = batch[int(position)][0]
        return (f"event {item.event.id or '(no id)'} ({item.event.KIND} of "
                f"{item.event.handle}, journal seq {item.seq}): {reason}")
    return f"event {event_id or '(no id)'}: {reason}"


def _fit(pending: list[Unshipped]) -> tuple[list[tuple[Unshipped, dict[str, Any]]],
                                            list[Unshipped]]:
    """The leading events that fit in one message (in order: one that does not fit waits
    for the next batch), and any event too large to be sent at all."""
    budget = wire.MAX_MESSAGE_BYTES - _ENVELOPE_BYTES
    batch: list[tuple[Unshipped, dict[str, Any]]] = []
    oversized: list[Unshipped] = []
    used = 0
    for item in pending:
        wired = item.event.to_wire()
        size = len(msgpack.packb(wired, use_bin_type=True))
        if size > budget:
            if batch:
                break  # sent first; this one is dropped when it leads a batch
            oversized.append(item)
            continue
        if used + size > budget:
            break
        batch.append((item, wired))
        used += size
    return batch, oversized
