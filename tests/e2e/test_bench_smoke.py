"""The benchmarks still run: one case, at its quick size, on one event loop, writing
JSON a reader can use. No figure is judged here; `make bench` is for that."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

pytestmark = pytest.mark.e2e


def test_a_quick_case_runs_and_writes_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "large", "--quick", "--loop", "asyncio",
         "--results", str(tmp_path / "results"), "--scratch", str(tmp_path / "scratch")],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REST store 64 MiB" in done.stdout  # the table

    [path] = (tmp_path / "results").iterdir()  # one case: no latest-quick.json
    assert path.name.endswith("-quick.json")
    written = json.loads(path.read_text())
    assert written["quick"] is True
    assert written["machine"]["cpus"] >= 1
    figures = {figure["name"]: figure for figure in written["figures"]}
    for name in ("REST store 64 MiB", "multipart 64 MiB (to complete)"):
        figure = figures[name]
        assert figure["loop"] == "asyncio"
        assert figure["value"]["median"] > 0
        assert figure["ratio"]["median"] > 0
        assert figure["against"] in figures  # its ceiling was measured in the same run
