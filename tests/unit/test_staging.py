"""A POP's staging area for REST bodies: small bodies stay in memory, larger ones go to a file,
and a refused body leaves nothing behind either way."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
