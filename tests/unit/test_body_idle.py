"""The body idle timer on aiohttp's own StreamReader, fed as aiohttp's parser feeds it:
it counts only the time a reader waits for bytes that have not come."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader

from common.protocol.errors import CinError, Code
from common.web.body_idle import BodyStalled, watch

IDLE = 0.2


@pytest.fixture
async def stream() -> AsyncIterator[StreamReader]:
    """A request body's stream on a real (idle) connection."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, protocol = await loop.connect_accepted_socket(lambda: BaseProtocol(loop), ours)
    try:
        yield StreamReader(protocol, 2**16, loop=loop)
    finally:
        transport.close()
        theirs.close()


async def test_a_reader_waiting_on_a_silent_body_fails_with_408(stream: StreamReader) -> None:
    watch(stream, IDLE)
    stream.feed_data(b"first")
    assert await stream.read(100) == b"first"
    began = asyncio.get_running_loop().time()
    with pytest.raises(BodyStalled) as stalled:
        await stream.read(100)
    assert asyncio.get_running_loop().time() - began >= IDLE * 0.9
    assert isinstance(stalled.value, CinError) and stalled.value.code is Code.BODY_TIMEOUT
    with pytest.raises(BodyStalled):  # and every later read
        await stream.read(100)


async def test_a_body_that_keeps_coming_is_never_timed_out(stream: StreamReader) -> None:
    watch(stream, IDLE)

    async def trickle() -> None:
        for _ in range(8):  # in all, four times the idle time
            await asyncio.sleep(IDLE / 2)
            stream.feed_data(b"x")
        stream.feed_eof()

    sending = asyncio.create_task(trickle())
    received = b""
    while chunk := await stream.read(100):
        received += chunk
    await sending
    assert received == b"x" * 8


async def test_bytes_left_unread_by_a_slow_node_do_not_count(stream: StreamReader) -> None:
    watch(stream, IDLE)
    stream.feed_data(b"ab")
    await asyncio.sleep(IDLE * 2)  # the node busy elsewhere, not reading on
    assert await stream.read(100) == b"ab"
    stream.feed_data(b"cd")  # the client sends on once it is read again
    assert await stream.read(100) == b"cd"


async def test_a_disarmed_timer_leaves_the_stream_alone(stream: StreamReader) -> None:
    watch(stream, IDLE).disarm()
    reading = asyncio.create_task(stream.read(100))
    await asyncio.sleep(IDLE * 2)
    assert not reading.done()
    stream.feed_data(b"late")
    assert await reading == b"late"
