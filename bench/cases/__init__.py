"""The benchmark cases. Each is `async def run(ctx) -> list[Figure]` and starts (and
stops) every process it needs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import Timed, timed
from bench.processes import Process
from bench.report import MB, Figure, Summary, ratios

GB = 1_000_000_000


@dataclass
class Context:
    root: Path  # scratch space on the disk under test: spools, bucket, ceiling files
    quick: bool
    runs: int
    loops: Sequence[str]
    # A case that would pass this (time.monotonic()) stops after its current run.
    deadline: float = field(default_factory=lambda: time.monotonic() + 3600)
    # `wan`: the round trip (seconds) its latency proxy adds between a POP and the
    # coordinator.
    wan_rtt: float = 0.080

    def scratch(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    async def on_each_loop(self, run: Callable[[Context, str], Awaitable[list[Figure]]]
                           ) -> list[Figure]:
        """`run` on each event loop asked for, one after the other; their figures."""
        figures: list[Figure] = []
        for loop in self.loops:
            figures += await run(self, loop)
        return figures


@dataclass(frozen=True)
class Measured:
    seconds: float
    client_cpu: float
    server_cpu: float  # the processes named in `measure`, together
    result: object = None


async def measure(work: Callable[[], Awaitable[object]],
                  servers: Sequence[Process]) -> Measured:
    """Time `work`, with the CPU it cost the client (this process) and the servers."""
    before = sum(server.cpu_seconds() for server in servers)
    done: Timed = await timed(work)
    after = sum(server.cpu_seconds() for server in servers)
    return Measured(done.seconds, done.client_cpu, after - before, done.result)


def throughput(size: int, runs: Sequence[Measured]) -> Summary:
    return Summary.of(size / run.seconds / MB for run in runs)


def cpu_per_gb(size: int, runs: Sequence[Measured], *, client: bool = False) -> Summary:
    return Summary.of((run.client_cpu if client else run.server_cpu) / (size / GB)
                      for run in runs)


def ceiling_figure(case: str, name: str, loop: str, size: int,
                   runs: Sequence[Measured]) -> Figure:
    return Figure(case, name, loop, "MB/s", throughput(size, runs),
                  extra={"cpu_s_per_gb": cpu_per_gb(size, runs)})


def compared_figure(case: str, name: str, loop: str, size: int, runs: Sequence[Measured], *,
                    fsync_ceiling: tuple[str, Sequence[Measured]],
                    plain_ceiling: Sequence[Measured], target: str) -> Figure:
    """A cin figure as a ratio to the ceiling that fsyncs (named, as `against`), run by
    run, with the ratio to the ceiling that does not as `ratio_no_fsync`."""
    ceiling_name, fsync_runs = fsync_ceiling
    mine = throughput(size, runs)
    return Figure(case, name, loop, "MB/s", mine,
                  ratio=ratios(mine.runs, throughput(size, fsync_runs).runs),
                  against=ceiling_name, target=target,
                  extra={"cpu_s_per_gb": cpu_per_gb(size, runs),
                         "ratio_no_fsync": ratios(mine.runs,
                                                  throughput(size, plain_ceiling).runs)})
