"""Blocking file work in a worker thread, from a coroutine that may be cancelled.

`asyncio.to_thread` lets a cancelled caller go on at once, while the thread, which
cannot be stopped, goes on writing. The caller would then close a descriptor the thread
still writes through, unlink a temp file it still fills, or free a byte range it still
writes into. `in_thread` holds the cancellation back until the thread has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def in_thread(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run `fn` in a worker thread; if cancelled, still wait for it before giving up."""
    return await _outlasting(fn, args, kwargs, release=None)


async def in_thread_releasing(release: Callable[[_T], object], fn: Callable[_P, _T], /,
                              *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`in_thread` for a call that opens something: if the caller is cancelled while
    the call runs, what it opened is released (in a thread too) instead of leaking."""
    return await _outlasting(fn, args, kwargs, release=release)


async def _outlasting(fn: Callable[..., _T], args: tuple[object, ...],
                      kwargs: dict[str, object],
                      release: Callable[[_T], object] | None) -> _T:
    # As `asyncio.to_thread` (in the context of the caller, so its log lines name the
    # request), without the task that wraps the thread's future there: one hop per call
    # is what every file write costs.
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    task = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            # Cancelled again while waiting: the thread still runs, so keep waiting.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        # The thread's outcome is retrieved (so it is not logged as lost): the caller sees
        # the cancellation, and nothing the call opened is left open.
        if not task.cancelled() and task.exception() is None and release is not None:
            await asyncio.to_thread(release, task.result())
        raise
