"""`cin upload`'s progress bar: bytes, rate and time left, drawn by tqdm."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from sdk import Progress


class ProgressBar:
    """A bar for one file, fed the SDK's progress callbacks. Bytes of a chunk that
    fails are taken back, so the bar can step back on a bad network: it shows what the
    upload has, not what it tried."""

    def __init__(self, name: str, total: int, out: TextIO = sys.stdout) -> None:
        self._bar = tqdm(total=total, desc=name, unit="B", unit_scale=True,
                         unit_divisor=1024, file=out, dynamic_ncols=True, leave=True,
                         miniters=1, mininterval=0.2)
        self._pop: str | None = None

    def __call__(self, progress: Progress) -> None:
        if progress.pop != self._pop and progress.pop is not None:
            self._pop = progress.pop
            self._bar.set_postfix_str(f"via {progress.pop}", refresh=False)
        step = progress.done - self._bar.n
        if step:
            self._bar.update(step)

    def close(self) -> None:
        self._bar.close()
