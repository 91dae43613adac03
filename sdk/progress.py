"""How far an upload is, told to a callback as it goes (the command line draws its bar
from it; a test can act at a given point, e.g. interrupt the upload halfway)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """`done` is what the upload has (bytes acknowledged, stored or held from before,
    plus bytes of chunks on their way: a chunk that fails takes its bytes back);
    `sent` is every file byte put on the wire by this call, retries included."""

    total: int
    done: int
    acknowledged: int
    sent: int
    elapsed: float
    pop: str | None


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    def __init__(self, total: int, callback: ProgressCallback | None = None) -> None:
        self.total = total
        self.callback = callback
        self.acknowledged = 0
        self.in_flight = 0
        self.sent = 0
        self.pop: str | None = None
        self.began = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def _tell(self) -> None:
        if self.callback is not None:
            self.callback(Progress(self.total, self.acknowledged + self.in_flight,
                                   self.acknowledged, self.sent, self.elapsed, self.pop))

    def have(self, size: int) -> None:
        """What the upload has now, stored or held, from the part status (a resume, or
        a move to another POP, where bytes held by the last one no longer count)."""
        self.acknowledged = size
        self._tell()

    def found(self, size: int) -> None:
        """`size` more bytes are held: a chunk whose answer was lost had arrived."""
        self.acknowledged += size
        self._tell()

    def sending(self, size: int) -> None:
        self.sent += size
        self.in_flight += size
        self._tell()

    def settled(self, size: int, *, ok: bool) -> None:
        """A chunk whose `size` bytes were sending has its answer."""
        self.in_flight -= size
        if ok:
            self.acknowledged += size
        self._tell()

    def at(self, pop: str) -> None:
        self.pop = pop
        self._tell()
