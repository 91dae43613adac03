"""Helpers for the byte streams (async iterators of chunks) that bodies travel in: shared by
the POP's intake and the local-disk driver, so they live in common/."""

from __future__ import annotations

from collections.abc import AsyncIterator


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
