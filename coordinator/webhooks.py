"""The webhook outbox worker: delivers signed events, retrying with backoff.

Events wait in the state store's outbox (written with the change they report), so a
receiver that is down, slow or failing never holds up an upload, and a coordinator that
is killed picks up where it stopped. Delivery is at least once: a receiver can see an
event twice (say, if the coordinator dies between the receiver's 200 and recording it)
and recognises it by its `id`. Coordinators sharing one database each claim the events
they send (`StateStore.claim_deliveries`), so no two send one event at the same time; an
event a coordinator was sending when it died is sent again once its claim runs out.
Events are not ordered across retries.

Signature, as Filestack signs its webhooks (and filestack-python verifies them):
`FS-Timestamp: <unix seconds>`, `FS-Signature: hex HMAC-SHA256(secret, "<ts>.<body>")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from common.config import Config
from coordinator.events import Delivery
from coordinator.metrics import CoordinatorMetrics
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator.webhooks")

DELIVERED = frozenset({200, 201, 204})
IDLE_POLL = 5.0  # seconds between outbox checks when nothing woke the worker
USER_AGENT = "cin-webhooks/1"
# Seconds a claim on a delivery outlasts its attempt's timeout: time to record how the
# attempt went, on a loaded coordinator.
CLAIM_MARGIN = 10.0


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return digest.hexdigest()


def retry_delay(attempt: int, first: float, cap: float,
                rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempt`-th failure (1-based): exponential from `first`,
    capped at `cap`, with jitter (between half and all of it) so that a receiver coming
    back is not hit by every event at the same instant."""
    base = min(cap, first * 2.0 ** min(attempt - 1, 62))
    return base * (0.5 + rng() / 2)


class WebhookSender:
    def __init__(self, state: StateStore, config: Config, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time,
                 metrics: CoordinatorMetrics | None = None) -> None:
        self.state = state
        self.metrics = metrics if metrics is not None else CoordinatorMetrics()
        self.config = config
        self.settings = config.webhook_delivery
        self.session = session
        self.clock = clock
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """Look at the outbox now: a change has just written events."""
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._step()
        finally:
            unsent = list(self._in_flight)
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            # Cancelled deliveries stay in the outbox, due now rather than when this
            # coordinator's claim on them would run out: another coordinator, or this
            # one restarted, sends them at once.
            if unsent:
                try:
                    await self.state.release_deliveries(unsent, self.clock())
                except Exception:
                    log.exception("could not release %d webhook deliveries; they are "
                                  "sent again once their claims run out", len(unsent))

    async def _step(self) -> None:
        self._wake.clear()
        # The next retry time is read before `now` is taken: a row that falls due while
        # the outbox is being read is then either among the due rows or waited for, not
        # left to the idle poll.
        # Rows being sent are left out: their old due time would otherwise look overdue.
        next_time = await self.state.next_delivery_time(excluding=set(self._in_flight))
        now = self.clock()
        free = self.settings.concurrency - len(self._in_flight)
        if free > 0:
            # Claimed, not only read: another coordinator on the same database does not
            # send these while this one does. The claim outlasts an attempt, so it ends
            # only for a coordinator that died sending.
            due = await self.state.claim_deliveries(
                now, free, until=now + self.settings.timeout + CLAIM_MARGIN)
            for delivery in due:
                if delivery.id not in self._in_flight and len(self._in_flight) < \
                        self.settings.concurrency:
                    self._start(delivery)
        wait = IDLE_POLL
        if next_time is not None and next_time > now:
            wait = min(wait, max(0.0, next_time - self.clock()))
        # Due rows not started are waiting for a free slot; a finishing delivery wakes us.
        # Not `wait_for`: on Python 3.11 it swallows a cancel that arrives as the event is
        # set, and the worker would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wake.wait()

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        self._in_flight[delivery.id] = task

        def finished(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(delivery.id, None)
            self._wake.set()

        task.add_done_callback(finished)

    async def _deliver(self, delivery: Delivery) -> None:
        app = self.config.apps.get(delivery.apikey)
        hook = app.webhook(delivery.endpoint) if app is not None else None
        if hook is None:
            log.warning("webhook %d: %s is no longer configured; abandoned", delivery.id,
                        delivery.endpoint)
            await self.state.delivery_failed(delivery.id, "endpoint no longer configured",
                                             retry_at=None)
            self.metrics.delivery("abandoned")
            return
        posted = time.perf_counter()
        error = await self._post(delivery, hook.secret)
        took = time.perf_counter() - posted
        if error is None:
            await self.state.delivery_done(delivery.id)
            self.metrics.delivery("delivered", took)
            log.info("webhook %d (%s) delivered to %s", delivery.id, delivery.action,
                     delivery.endpoint)
            return
        now = self.clock()
        attempts = delivery.attempts + 1
        if now - delivery.created >= self.settings.give_up_after:
            log.error("webhook %d to %s abandoned after %d attempts: %s", delivery.id,
                      delivery.endpoint, attempts, error)
            await self.state.delivery_failed(delivery.id, error, retry_at=None)
            self.metrics.delivery("abandoned", took)
            return
        delay = retry_delay(attempts, self.settings.first_retry, self.settings.max_interval)
        log.warning("webhook %d to %s failed (%s); attempt %d, next in %.1fs", delivery.id,
                    delivery.endpoint, error, attempts, delay)
        await self.state.delivery_failed(delivery.id, error, retry_at=now + delay)
        self.metrics.delivery("retry", took)

    async def _post(self, delivery: Delivery, secret: str) -> str | None:
        """Send one attempt; None when delivered, else what went wrong."""
        body = delivery.body()
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "FS-Timestamp": timestamp,
            "FS-Signature": sign_webhook(secret, timestamp, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self.session.post(delivery.endpoint, data=body, headers=headers,
                                         timeout=timeout, allow_redirects=False) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return None if status in DELIVERED else f"HTTP {status}"
