"""How many wrong sign-ins to the operator's page one client address may make. Pure.

The operator's password is all that guards the page, and basic auth lets a client try one
per request: an address that gave a wrong credential `MAX_FAILURES` times within `WINDOW`
seconds is refused, whatever it sends, until the oldest of those failures is `WINDOW`
old. A right credential clears the address's count. A request with no credential at all
(a browser's first, before it asks) is not a failure.

Memory is bounded: at most `MAX_ADDRESSES` addresses are tracked, and when a new one comes
the one whose last failure is the oldest is dropped. An attacker with that many addresses
gets no more guesses than it would spread over them anyway.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 20
WINDOW = 600.0  # seconds: at most 2 guesses a minute, about 2,900 a day
MAX_ADDRESSES = 4096


class SignInLimit:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window: float = WINDOW,
                 max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        # Address -> the times of its failures within the window, oldest first; the
        # address whose last failure is the oldest first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def refused_for(self, address: str) -> float | None:
        """Seconds until `address` may try again; None when it may now."""
        failures = self._recent(address)
        if failures is None or len(failures) < self.max_failures:
            return None
        return failures[0] + self.window - self.clock()

    def failed(self, address: str) -> None:
        failures = self._recent(address)
        if failures is None:
            failures = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
        failures.append(self.clock())
        self._failures.move_to_end(address)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _recent(self, address: str) -> deque[float] | None:
        """The address's failures within the window (older ones dropped); None when it
        has none."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        since = self.clock() - self.window
        while failures and failures[0] <= since:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures


def retry_after(seconds: float) -> str:
    """The Retry-After header's value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
