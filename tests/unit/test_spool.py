"""A POP's spool for REST bodies: small bodies stay in memory, larger ones go to a file,
and a refused body leaves nothing behind either way."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.protocol.errors import CinError, Code
from edge.rest.staging import FLUSH_BYTES, Spool


async def body(data: bytes, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start:start + piece]


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest.fixture
async def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path)
    await spool.prepare()
    return spool


def files_in(spool: Spool) -> list[Path]:
    return sorted(spool.incoming.iterdir())


async def test_a_body_under_one_write_batch_is_held_in_memory(spool: Spool) -> None:
    data = os.urandom(FLUSH_BYTES - 1)
    spooled = await spool.take(body(data), limit=FLUSH_BYTES)
    assert (spooled.path, spooled.size, spooled.head) == (None, len(data), data[:len(spooled.head)])
    assert files_in(spool) == []
    assert await read_all(spooled.chunks()) == data
    assert await read_all(spooled.chunks()) == data  # readable again, like a file
    await spooled.remove()
    assert await read_all(spooled.chunks()) == b""


async def test_a_larger_body_goes_to_a_file_that_remove_deletes(spool: Spool) -> None:
    data = os.urandom(3 * FLUSH_BYTES + 5)
    spooled = await spool.take(body(data), limit=len(data))
    assert spooled.path is not None and files_in(spool) == [spooled.path]
    assert spooled.path.stem == spooled.spool_id
    assert await read_all(spooled.chunks()) == data
    await spooled.remove()
    assert files_in(spool) == []


async def test_every_body_gets_its_own_spool_id(spool: Spool) -> None:
    ids = {(await spool.take(body(b"x"), limit=10)).spool_id for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("size", [1000, 2 * FLUSH_BYTES + 1], ids=["in memory", "in a file"])
async def test_a_body_over_the_limit_is_refused_and_leaves_nothing(spool: Spool,
                                                                 size: int) -> None:
    with pytest.raises(CinError) as refused:
        await spool.take(body(os.urandom(size)), limit=size - 1)
    assert refused.value.code is Code.TOO_LARGE
    assert files_in(spool) == []


async def test_a_body_that_fails_midway_leaves_no_file(spool: Spool) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(FLUSH_BYTES + 1)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await spool.take(broken(), limit=10 * FLUSH_BYTES)
    assert files_in(spool) == []
