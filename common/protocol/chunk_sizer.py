"""How big the next Intelligent Ingestion chunk should be: the adaptive chunk-size controller.

Seed 004's rule is that a chunk which times out is re-chunked and tried again, down to a
smallest chunk, so a bad network slows an upload instead of failing it. `ChunkSizer`
carries that rule and the way back up:

* a timeout or a failure halves the size, never below `minimum` (32 KiB, the Upload
  API's smallest chunk);
* a success that took longer than `target_seconds` shrinks the size to what the measured
  throughput carries in that time, so the next chunk finishes within it;
* `grow_after` fast successes in a row (each within the target) grow the size, at most
  doubling it, to what the throughput carries in the target time, never above `maximum`
  nor above the size the POP last suggested.

The POP that takes a chunk says what it measured (`Cin-Throughput`) and what it would
send next (`Cin-Next-Chunk-Size`): `hint` takes both. Its throughput seeds the estimate
before this client has measured anything; its suggestion caps growth, since the POP sees
the bytes arrive and a client only sees its own writes.

Sans-IO: it is told sizes and durations and answers sizes, so every edge is a unit test.
`suggest_chunk_size` is the POP's side of the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_CHUNK = 32 * 1024  # Intelligent Ingestion's smallest chunk (common/protocol/upload_api.py)
PART_SIZE = 8 * 1024 * 1024  # Intelligent Ingestion's part, and so its largest chunk
DEFAULT_TARGET_SECONDS = 2.0
DEFAULT_GROW_AFTER = 2
# The weight of the newest measurement in the throughput estimate: one slow chunk (a
# hiccup) moves it halfway, a run of them all the way.
SMOOTHING = 0.5

THROUGHPUT_HEADER = "Cin-Throughput"
NEXT_CHUNK_HEADER = "Cin-Next-Chunk-Size"


def _aligned(size: float, minimum: int, maximum: int) -> int:
    """`size` rounded down to a whole number of `minimum`s, within [minimum, maximum]."""
    whole = int(size) // minimum * minimum
    return max(minimum, min(maximum, whole))


def suggest_chunk_size(throughput: float, *, target_seconds: float = DEFAULT_TARGET_SECONDS,
                       minimum: int = MIN_CHUNK, maximum: int = PART_SIZE) -> int:
    """The chunk a client sending at `throughput` bytes per second moves in
    `target_seconds`: what a POP suggests after measuring a chunk's body."""
    if throughput <= 0:
        return minimum
    return _aligned(throughput * target_seconds, minimum, maximum)


@dataclass(frozen=True)
class SizerStats:
    """What the controller has seen, for reports and tests."""

    successes: int
    failures: int
    timeouts: int
    throughput: float | None  # bytes per second, smoothed; None before any measurement


class ChunkSizer:
    """The adaptive chunk size. Call `size` for the next chunk, then `succeeded` or
    `failed` with how it went, and `hint` with what the POP said."""

    def __init__(self, *, initial: int = 1024 * 1024, minimum: int = MIN_CHUNK,
                 maximum: int = PART_SIZE, target_seconds: float = DEFAULT_TARGET_SECONDS,
                 grow_after: int = DEFAULT_GROW_AFTER) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError("chunk sizes need 1 <= minimum <= maximum")
        if target_seconds <= 0:
            raise ValueError("target_seconds must be positive")
        if grow_after < 1:
            raise ValueError("grow_after must be at least 1")
        self.minimum = minimum
        self.maximum = maximum
        self.target_seconds = target_seconds
        self.grow_after = grow_after
        self._size = _aligned(initial, minimum, maximum)
        self._throughput: float | None = None
        self._measured = False  # by this client, not only hinted by a POP
        self._suggested: int | None = None
        self._streak = 0
        self._successes = self._failures = self._timeouts = 0

    @property
    def size(self) -> int:
        """The size of the next chunk."""
        return self._size

    @property
    def stats(self) -> SizerStats:
        return SizerStats(self._successes, self._failures, self._timeouts, self._throughput)

    def _aimed(self) -> int | None:
        if self._throughput is None:
            return None
        return _aligned(self._throughput * self.target_seconds, self.minimum, self.maximum)

    def succeeded(self, size: int, seconds: float) -> None:
        """A chunk of `size` bytes was acknowledged `seconds` after it was sent."""
        self._successes += 1
        rate = size / max(seconds, 1e-6)
        if self._throughput is None or not self._measured:
            self._throughput = rate
        else:
            self._throughput = SMOOTHING * rate + (1 - SMOOTHING) * self._throughput
        self._measured = True
        aimed = self._aimed()
        assert aimed is not None  # a throughput was just measured
        if seconds > self.target_seconds:
            # It made it, but slowly: the next one should fit the target at this rate.
            self._streak = 0
            self._size = min(self._size, aimed)
            return
        self._streak += 1
        if self._streak < self.grow_after:
            return
        self._streak = 0
        grown = min(2 * self._size, max(aimed, self._size), self.maximum)
        if self._suggested is not None:
            grown = min(grown, max(self._suggested, self._size))
        self._size = _aligned(grown, self.minimum, self.maximum)

    def failed(self, *, timeout: bool = False) -> None:
        """A chunk failed (an error, a reset) or timed out: halve, down to the minimum."""
        self._failures += 1
        self._timeouts += timeout
        self._streak = 0
        self._size = max(self.minimum, _aligned(self._size // 2, self.minimum, self.maximum))

    def hint(self, *, throughput: float | None = None, next_size: int | None = None) -> None:
        """What the POP measured receiving the last chunk, and the chunk it suggests.

        Before this client has measured a chunk of its own, the POP's throughput sets the
        size outright (aimed at the target); after, the suggestion only caps growth."""
        if next_size is not None and next_size > 0:
            self._suggested = _aligned(next_size, self.minimum, self.maximum)
        if throughput is not None and throughput > 0 and not self._measured:
            self._throughput = throughput
            aimed = self._aimed()
            assert aimed is not None
            self._size = aimed if self._suggested is None else min(aimed, self._suggested)
