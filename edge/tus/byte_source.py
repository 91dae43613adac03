"""A stream of bytes cut into pieces of exact sizes: a PATCH body, a checksummed body
read back from its scratch file, or partial uploads one after another, each written into
the bucket parts it spans (a piece never crosses a part's end)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from common.protocol.errors import CinError, Code
from common.protocol.tus import Checksum
from common.threads import in_thread

READ_BYTES = 256 * 1024
_SCRATCH_BATCH = 1024 * 1024


class ByteSource:
    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = aiter(chunks)
        self._left = b""
        self.consumed = 0

    async def take(self, size: int) -> AsyncIterator[bytes]:
        """The next `size` bytes, or fewer if the stream ends first (the spool then
        refuses the piece: nothing of it is acknowledged)."""
        wanted = size
        while wanted:
            if not self._left:
                try:
                    self._left = await anext(self._chunks)
                except StopAsyncIteration:
                    return
                continue
            piece, self._left = self._left[:wanted], self._left[wanted:]
            wanted -= len(piece)
            self.consumed += len(piece)
            yield piece


async def file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    fd = await in_thread(os.open, path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        position = 0
        while position < size:
            block = await in_thread(os.pread, fd, min(_SCRATCH_BATCH, size - position),
                                    position)
            if not block:
                raise CinError(Code.INTERNAL, f"{path} is shorter than {size} bytes")
            position += len(block)
            yield block
    finally:
        await in_thread(os.close, fd)


async def stage_body(body: AsyncIterable[bytes], path: Path, most: int,
                     checksum: Checksum | None) -> int:
    """Write a body whole to `path` (a scratch file) before any of it is acknowledged:
    its checksum must match first (460, and nothing kept), or it had no length. At most
    `most` bytes (413 past them). Returns its size."""
    digest: Any = hashlib.new(checksum.algorithm, usedforsecurity=False) if checksum else None
    fd = await in_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o600)
    size = 0
    try:
        pending: list[bytes] = []
        pending_bytes = 0

        def flush(buffers: list[bytes], at: int) -> None:
            for buffer in buffers:
                if digest is not None:
                    digest.update(buffer)
                view = memoryview(buffer)
                while view:
                    written = os.pwrite(fd, view, at)
                    view, at = view[written:], at + written

        async for piece in body:
            size += len(piece)
            if size > most:
                raise CinError(Code.TOO_LARGE, f"the body goes past the upload's length "
                                               f"or the app's limit ({most} bytes here)")
            pending.append(piece)
            pending_bytes += len(piece)
            if pending_bytes >= _SCRATCH_BATCH:
                await in_thread(flush, pending, size - pending_bytes)
                pending, pending_bytes = [], 0
        if pending:
            await in_thread(flush, pending, size - pending_bytes)
    finally:
        await in_thread(os.close, fd)
    if checksum is not None and digest.digest() != checksum.digest:
        raise CinError(Code.CHECKSUM_MISMATCH, f"the body's {checksum.algorithm} is not "
                                               "Upload-Checksum's")
    return size
