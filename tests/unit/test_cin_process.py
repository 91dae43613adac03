"""CinProcess, the tests' handle on a `cin` process: its output is whole once it ended."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from support import CinProcess

# Writes its lines and ends at once.
WRITER = [sys.executable, "-c", "print('\\n'.join(map(str, range(1000))))"]


class LateReader(CinProcess):
    """A CinProcess whose reading thread is slow to get going, as a thread is on a busy
    machine: the process has ended before any of its output is read."""

    def _read(self) -> None:
        time.sleep(0.5)
        super()._read()


def test_wait_returns_once_every_line_is_read(tmp_path: Path) -> None:
    process = LateReader([], tmp_path, program=WRITER)
    assert process.wait(30) == 0
    assert process.lines == [str(n) for n in range(1000)]


def test_stop_returns_once_every_line_is_read(tmp_path: Path) -> None:
    process = LateReader([], tmp_path, program=WRITER)
    process.proc.wait(30)  # ended on its own: stop has nothing to signal
    assert process.stop() == 0
    assert len(process.lines) == 1000


def test_kill9_returns_once_every_line_is_read(tmp_path: Path) -> None:
    written = tmp_path / "written"
    process = LateReader([], tmp_path, program=[
        sys.executable, "-c", "import pathlib, sys, time; print('up', flush=True); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)", str(written)])
    deadline = time.monotonic() + 30
    while not written.exists():
        assert time.monotonic() < deadline, "the process never wrote its line"
        time.sleep(0.01)
    process.kill9()
    assert process.lines == ["up"]
