"""What an impaired link does, decided without IO: its shape each way, the faults that
strike some of its connections, and the token bucket that paces it.

The proxy (`_proxy.py`) asks these for decisions; they take numbers and return numbers,
so they are tested without a socket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

KiB = 1024
MiB = 1024 * KiB


class Direction(Enum):
    UP = "up"  # client to server: what an upload sends
    DOWN = "down"  # server to client: the answers


@dataclass(frozen=True)
class Shape:
    """One direction of a link."""

    latency: float = 0.0  # seconds every byte is held, one way
    rate: float | None = None  # bytes per second; None: as fast as loopback goes
    burst: int = 64 * KiB  # bytes that pass at once after the link was idle

    def __post_init__(self) -> None:
        if self.latency < 0:
            raise ValueError("latency must be >= 0 seconds")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0 bytes per second, or None")
        if self.burst < 1:
            raise ValueError("burst must be >= 1 byte")


@dataclass(frozen=True)
class Fault:
    """A stall or a reset that strikes some connections once `after` bytes have passed
    in `direction`: every `every`-th connection (the k-th, 2k-th, ...), or each with
    probability `chance` from the proxy's seeded RNG. `after` as (low, high) draws the
    point for each struck connection from [low, high]. `seconds`: how long a stall
    lasts (a reset ignores it)."""

    after: int | tuple[int, int]
    every: int | None = None
    chance: float | None = None
    seconds: float = 0.0
    direction: Direction = Direction.UP

    def __post_init__(self) -> None:
        if (self.every is None) == (self.chance is None):
            raise ValueError("a fault needs exactly one of every= and chance=")
        if self.every is not None and self.every < 1:
            raise ValueError("every must be >= 1")
        if self.chance is not None and not 0.0 <= self.chance <= 1.0:
            raise ValueError("chance must be within [0, 1]")
        low, high = self.after if isinstance(self.after, tuple) else (self.after, self.after)
        if not 0 <= low <= high:
            raise ValueError("after must be >= 0 bytes, low <= high")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    def strikes_at(self, ordinal: int, rng: random.Random) -> int | None:
        """Where this fault strikes connection `ordinal` (counting from 1), in bytes
        passed in its direction; None: it spares this connection."""
        if self.every is not None:
            struck = ordinal % self.every == 0
        else:
            assert self.chance is not None
            struck = rng.random() < self.chance
        if not struck:
            return None
        if isinstance(self.after, tuple):
            return rng.randint(*self.after)
        return self.after


@dataclass(frozen=True)
class Impairment:
    """What a proxy does to the bytes it carries. Shapes apply at once to every open
    connection; faults are decided when a connection opens."""

    up: Shape = field(default_factory=Shape)
    down: Shape = field(default_factory=Shape)
    stall: Fault | None = None
    reset: Fault | None = None

    @classmethod
    def link(cls, *, latency: float = 0.0, rate: float | None = None,
             stall: Fault | None = None, reset: Fault | None = None) -> Impairment:
        """The same latency (one way) and rate in both directions."""
        shape = Shape(latency=latency, rate=rate)
        return cls(up=shape, down=shape, stall=stall, reset=reset)

    def shape(self, direction: Direction) -> Shape:
        return self.up if direction is Direction.UP else self.down


class Kind(Enum):
    STALL = "stall"
    RESET = "reset"


@dataclass(frozen=True)
class Strike:
    """A fault as it will strike one connection."""

    kind: Kind
    at: int  # bytes passed in `direction` before it strikes
    direction: Direction
    seconds: float = 0.0  # a stall's length


@dataclass(frozen=True)
class ConnectionFaults:
    """The faults one connection meets."""

    strikes: tuple[Strike, ...] = ()

    def in_direction(self, direction: Direction) -> list[Strike]:
        """The strikes counted in `direction`, in the order they come (a stall before a
        reset at the same byte)."""
        return sorted((s for s in self.strikes if s.direction is direction),
                      key=lambda s: (s.at, s.kind is Kind.RESET))


def plan_connection(impairment: Impairment, ordinal: int, seed: int) -> ConnectionFaults:
    """The faults connection `ordinal` meets. Each connection draws from an RNG of its
    own, seeded by the proxy's seed and its ordinal, so the plan of one connection does
    not depend on how many draws others made or in which order they opened."""
    strikes = []
    for kind, fault in ((Kind.STALL, impairment.stall), (Kind.RESET, impairment.reset)):
        if fault is None:
            continue
        at = fault.strikes_at(ordinal, random.Random(f"{seed}/{ordinal}/{kind.value}"))
        if at is not None:
            strikes.append(Strike(kind, at, fault.direction, fault.seconds))
    return ConnectionFaults(tuple(strikes))


class TokenBucket:
    """Paces bytes to `rate` per second, letting `burst` bytes through at once after
    idling. Bytes are reserved before they wait, so whoever asks first goes first, and
    a reservation larger than the bucket waits for the whole of its deficit."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def reserve(self, size: int, now: float) -> float:
        """Take `size` bytes' worth of tokens; the seconds to wait before sending them."""
        self._tokens = min(float(self.burst),
                           self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)
        self._tokens -= size
        return max(0.0, -self._tokens / self.rate)
