"""Work that must finish even if the client that asked for it hangs up.

`Jobs.shield(coro)` runs `coro` as a task the app tracks: the caller awaits it, but a
cancelled caller (a client disconnect) does not cancel it, and app shutdown waits for
every such task before closing the resources they use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
log = logging.getLogger("cin.jobs")


class Jobs:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    async def shield(self, coro: Coroutine[Any, Any, T]) -> T:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its caller may be gone; the failure must still be seen somewhere.
            log.debug("shielded job ended with %r", task.exception())

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


JOBS = web.AppKey("jobs", Jobs)


async def jobs_ctx(app: web.Application) -> Any:
    """cleanup_ctx entry: register it after the resources the jobs use, so it drains first."""
    app[JOBS] = Jobs()
    yield
    await app[JOBS].drain()
