"""Reading ahead in a body's stream, and holding a body to its declared length."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from common.protocol.errors import CinError, Code
from common.streams import read_ahead
from edge.rest.intake import exactly, take_head


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def test_read_ahead_stops_once_it_holds_enough_and_leaves_the_rest() -> None:
    chunks = stream(b"abc", b"def", b"ghi")
    assert await read_ahead(chunks, 4) == ([b"abc", b"def"], False)
    assert await read_all(chunks) == b"ghi"


async def test_read_ahead_says_when_the_stream_ended_first() -> None:
    assert await read_ahead(stream(b"ab", b"c"), 4) == ([b"ab", b"c"], True)
    assert await read_ahead(stream(), 4) == ([], True)


async def test_take_head_gives_the_first_bytes_and_the_whole_stream() -> None:
    head, whole = await take_head(stream(b"abc", b"def", b"ghi"), 5)
    assert head == b"abcde"
    assert await read_all(whole) == b"abcdefghi"
    head, whole = await take_head(stream(b"ab"), 5)
    assert (head, await read_all(whole)) == (b"ab", b"ab")


async def test_exactly_passes_a_body_of_its_declared_length() -> None:
    assert await read_all(exactly(6, stream(b"abc", b"def"))) == b"abcdef"


@pytest.mark.parametrize(("declared", "chunks", "says"), [
    (7, (b"abc", b"def"), "ended after 6 of its declared 7 bytes"),
    (5, (b"abc", b"def"), "runs past its declared 5 bytes"),
])
async def test_exactly_refuses_a_body_that_is_short_or_long(
        declared: int, chunks: tuple[bytes, ...], says: str) -> None:
    with pytest.raises(CinError) as refused:
        await read_all(exactly(declared, stream(*chunks)))
    assert refused.value.code is Code.INCOMPLETE_BODY
    assert says in str(refused.value)
