"""An upper bound on the upload rate (`max_rate`, `cin upload --limit-rate`), shared by
every chunk in flight: a token bucket that lets a short burst through."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    def __init__(self, bytes_per_second: float, *, burst_seconds: float = 0.25) -> None:
        if bytes_per_second <= 0:
            raise ValueError("the rate limit must be positive")
        self.rate = bytes_per_second
        self.capacity = bytes_per_second * burst_seconds
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, size: int) -> None:
        """Wait until `size` bytes may go."""
        async with self._lock:  # first come, first served
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= size
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
