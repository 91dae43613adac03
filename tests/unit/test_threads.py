"""Blocking work in a thread: a cancelled caller waits for the thread, and what the thread
opened is released."""

from __future__ import annotations

import asyncio
import threading

import pytest

from common.threads import in_thread, in_thread_releasing


class Blocked:
    """A blocking call that runs until `go` is set, and says when it started and ended."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.go = threading.Event()
        self.ended = False

    def __call__(self, value: str) -> str:
        self.started.set()
        assert self.go.wait(5)
        self.ended = True
        return value


async def started(blocked: Blocked) -> None:
    assert await asyncio.to_thread(blocked.started.wait, 5)


def add(a: int, *, b: int) -> int:
    return a + b


async def test_the_result_and_the_exception_come_back() -> None:
    assert await in_thread(add, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        await in_thread(lambda: 1 // 0)


@pytest.mark.parametrize("cancellations", [1, 3])
async def test_a_cancelled_caller_waits_for_the_thread(cancellations: int) -> None:
    blocked = Blocked()
    call = asyncio.create_task(in_thread(blocked, "done"))
    await started(blocked)
    for _ in range(cancellations):
        call.cancel()
        await asyncio.sleep(0)  # the cancellation is delivered; the thread still runs
        assert not call.done()
    blocked.go.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert blocked.ended


async def test_what_a_cancelled_call_opened_is_released() -> None:
    blocked = Blocked()
    released: list[str] = []
    call = asyncio.create_task(in_thread_releasing(released.append, blocked, "descriptor"))
    await started(blocked)
    call.cancel()
    await asyncio.sleep(0)
    blocked.go.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert released == ["descriptor"]
    # Not cancelled: the caller owns what was opened, nothing is released.
    assert await in_thread_releasing(released.append, str.upper, "kept") == "KEPT"
    assert released == ["descriptor"]
