"""The services' loop has enough threads for the stores a POP takes at once."""

from __future__ import annotations

import asyncio
import threading

from cin.serve import WORKER_THREADS, run


def test_blocking_work_runs_on_worker_threads_at_once() -> None:
    # Every call waits for all the others: with fewer threads (Python's default is
    # cores + 4), the barrier times out and breaks.
    barrier = threading.Barrier(WORKER_THREADS, timeout=10)
    results: list[int] = []

    async def main() -> None:
        results.extend(await asyncio.gather(
            *(asyncio.to_thread(barrier.wait) for _ in range(WORKER_THREADS))))

    run(main(), "asyncio")
    assert sorted(results) == list(range(WORKER_THREADS))
