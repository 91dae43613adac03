"""Helpers for the byte streams (async iterators of chunks) that bodies travel in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from common.protocol.errors import CinError, Code


async def read_ahead(chunks: AsyncIterator[bytes], size: int) -> tuple[list[bytes], bool]:
    """A stream's first chunks, until they hold at least `size` bytes, and whether the
    stream ended before that. The rest stays in `chunks`, to be read on."""
    taken: list[bytes] = []
    held = 0
    async for chunk in chunks:
        taken.append(chunk)
        held += len(chunk)
        if held >= size:
            return taken, False
    return taken, True


async def stalls_after(seconds: float, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, failing with BODY_TIMEOUT if the next chunk takes over `seconds` to come."""
    while True:
        try:
            async with asyncio.timeout(seconds):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise CinError(Code.BODY_TIMEOUT,
                           f"no bytes of the body arrived for {seconds:g} s") from exc
        yield chunk
