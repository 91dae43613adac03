"""Figures: the median of several runs with their min and max, a ratio to the ceiling
measured in the same run, printed as a table and written as JSON.

Runs of a figure and of its ceiling are interleaved (ceiling, cin, ceiling, cin, ...)
and each run's ratio is taken against the ceiling run just before it, so a neighbour's
load that comes and goes moves both sides of a ratio rather than one.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MB = 1_000_000  # figures are in MB/s of 10^6 bytes, as disks and networks are rated


@dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float
    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: Iterable[float]) -> Summary:
        values = tuple(runs)
        if not values:
            raise ValueError("a summary needs at least one run")
        return cls(statistics.median(values), min(values), max(values), values)

    def text(self, digits: int = 0) -> str:
        def f(value: float) -> str:
            return f"{value:,.{digits}f}"

        if len(self.runs) == 1:
            return f(self.median)
        return f"{f(self.median)} ({f(self.min)}-{f(self.max)})"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Figure:
    case: str
    name: str
    loop: str
    unit: str
    value: Summary
    # cin over its ceiling, run by run: 1.0 means cin leaves nothing of the machine unused.
    ratio: Summary | None = None
    against: str | None = None  # the ceiling figure's name
    target: str | None = None
    extra: dict[str, Summary] = field(default_factory=dict)
    notes: str = ""


def ratios(values: Sequence[float], ceilings: Sequence[float]) -> Summary:
    return Summary.of(value / ceiling for value, ceiling in zip(values, ceilings, strict=True)
                      if ceiling > 0)


_EXTRA_DIGITS = {"cpu_s_per_gb": 2, "client_cpu_s_per_gb": 2}


def table(figures: Sequence[Figure]) -> str:
    rows = [("case", "figure", "loop", "median (min-max)", "ratio", "target", "also")]
    for figure in figures:
        digits = 1 if figure.value.median < 100 else 0
        extras = ", ".join(f"{name} {summary.text(_EXTRA_DIGITS.get(name, 1))}"
                           for name, summary in figure.extra.items())
        rows.append((figure.case, figure.name, figure.loop,
                     f"{figure.value.text(digits)} {figure.unit}",
                     figure.ratio.text(2) if figure.ratio else "",
                     figure.target or "", extras))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths) + "  ----")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpus": os.cpu_count(), "cpu_model": model,
            "memory_gib": round(int(meminfo[1]) / 1024**2, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def write(figures: Sequence[Figure], directory: Path, *, quick: bool,
          command: str, load_before: Sequence[str], latest: bool = True) -> Path:
    """`bench/results/<time>.json`, and with `latest` the same as `latest.json` (or
    `latest-quick.json`)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    data = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command, "quick": quick,
            "machine": machine(), "loadavg_before": list(load_before),
            "figures": [asdict(figure) for figure in figures]}
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    path = directory / f"{stamp}{'-quick' if quick else ''}.json"
    path.write_text(text)
    if latest:
        (directory / ("latest-quick.json" if quick else "latest.json")).write_text(text)
    return path
