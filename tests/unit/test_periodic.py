"""Timed work goes on after a run that fails."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common.web import periodic


async def test_a_failed_run_is_logged_and_the_next_one_comes(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()
        if len(runs) == 1:
            raise RuntimeError("the store is busy")

    log = logging.getLogger("cin.test.periodic")
    task = asyncio.create_task(periodic.every(0.001, work, log=log, what="test sweep"))
    await asyncio.wait_for(third.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs[:3] == [0, 1, 2]
    failures = [r for r in caplog.records if r.name == "cin.test.periodic"]
    assert len(failures) == 1
    assert failures[0].getMessage().startswith("test sweep failed; the next is in")
    assert failures[0].exc_info is not None
