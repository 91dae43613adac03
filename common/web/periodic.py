"""Work a service repeats on a timer for as long as it runs (sweeps, expiry)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def every(seconds: float, work: Callable[[], Awaitable[object]], *,
                log: logging.Logger, what: str) -> None:
    """Run `work` every `seconds` until cancelled, the first time after one interval.

    One failed run (a store that is busy, a backend that is down, a bug) must not end the
    work for the life of the process: it is logged, and the next run starts afresh.
    """
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception:
            log.exception("%s failed; the next is in %.0fs", what, seconds)
