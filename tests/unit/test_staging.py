"""A POP's staging area for REST bodies: small bodies stay in memory, larger ones go to a file,
and a refused body leaves nothing behind either way."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import edge.rest.staging as staging_module
from common.protocol.errors import CinError, Code
from edge.rest.staging import FLUSH_BYTES, Staging


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest.fixture
async def staging(tmp_path: Path) -> Staging:
    staging = Staging(tmp_path)
    await staging.prepare()
    return staging


def files_in(staging: Staging) -> list[Path]:
    return sorted(staging.incoming.iterdir())


async def test_a_body_under_one_write_batch_is_held_in_memory(staging: Staging) -> None:
    data = os.urandom(FLUSH_BYTES - 1)
    staged = await staging.take(body(data), limit=FLUSH_BYTES)
    assert (staged.path, staged.size, staged.head) == (None, len(data), data[:len(staged.head)])
    assert files_in(staging) == []
    assert await read_all(staged.chunks()) == data
    assert await read_all(staged.chunks()) == data  # readable again, like a file
    await staged.remove()
    assert await read_all(staged.chunks()) == b""


async def test_a_larger_body_goes_to_a_file_that_remove_deletes(staging: Staging) -> None:
    data = os.urandom(3 * FLUSH_BYTES + 5)
    staged = await staging.take(body(data), limit=len(data))
    assert staged.path is not None and files_in(staging) == [staged.path]
    assert staged.path.stem == staged.body_id
    assert await read_all(staged.chunks()) == data
    await staged.remove()
    assert files_in(staging) == []


async def test_every_body_gets_its_own_body_id(staging: Staging) -> None:
    ids = {(await staging.take(body(b"x"), limit=10)).body_id for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("size", [1000, 2 * FLUSH_BYTES + 1], ids=["in memory", "in a file"])
async def test_a_body_over_the_limit_is_refused_and_leaves_nothing(staging: Staging,
                                                                 size: int) -> None:
    with pytest.raises(CinError) as refused:
        await staging.take(body(os.urandom(size)), limit=size - 1)
    assert refused.value.code is Code.TOO_LARGE
    assert files_in(staging) == []


async def test_a_body_that_fails_midway_leaves_no_file(staging: Staging) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(FLUSH_BYTES + 1)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await staging.take(broken(), limit=10 * FLUSH_BYTES)
    assert files_in(staging) == []


async def test_a_cancelled_take_closes_its_file_only_after_the_write_under_way(
        staging: Staging, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the descriptor while a write of it still runs in its thread could send the
    bytes into the next file opened with the same number."""
    in_write, go = threading.Event(), threading.Event()
    writing_now = False
    closed_during_write: list[bool] = []
    real_write_all, real_close_and_remove = staging_module._write_all, \
        staging_module._close_and_remove

    def blocked_write_all(fd: int, buffers: list[bytes]) -> None:
        nonlocal writing_now
        writing_now = True
        in_write.set()
        assert go.wait(5)
        real_write_all(fd, buffers)
        writing_now = False

    def watched_close_and_remove(fd: int, path: Path) -> None:
        closed_during_write.append(writing_now)
        real_close_and_remove(fd, path)

    monkeypatch.setattr(staging_module, "_write_all", blocked_write_all)
    monkeypatch.setattr(staging_module, "_close_and_remove", watched_close_and_remove)
    taking = asyncio.create_task(staging.take(body(os.urandom(2 * FLUSH_BYTES)),
                                              limit=4 * FLUSH_BYTES))
    assert await asyncio.to_thread(in_write.wait, 5)
    taking.cancel()
    asyncio.get_running_loop().call_later(0.1, go.set)  # the disk comes back a little later
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(taking, timeout=5)
    assert closed_during_write == [False]
    assert files_in(staging) == []
