"""A POP's spool: where request bodies land before they go to the bucket.

Writes are batched into ~1 MiB `writev` calls in a worker thread, so the event loop never
waits on the disk and a thread hop is paid per megabyte, not per network read.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from common.errors import CinError, Code
from common.sniff import SNIFF_BYTES

FLUSH_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024


class SpoolFile:
    """One spooled body: its path, size and first bytes (for type sniffing)."""

    def __init__(self, path: Path, size: int, head: bytes) -> None:
        self.path = path
        self.size = size
        self.head = head

    @property
    def spool_id(self) -> str:
        return self.path.stem

    async def chunks(self) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self.path, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_BYTES):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def remove(self) -> None:
        await asyncio.to_thread(self.path.unlink, missing_ok=True)


class Spool:
    def __init__(self, root: Path) -> None:
        self.incoming = root / "incoming"

    async def prepare(self) -> None:
        """Create the spool and drop bodies left by a crash: none was acknowledged."""
        def sweep() -> None:
            self.incoming.mkdir(parents=True, exist_ok=True)
            for leftover in self.incoming.glob("*.data"):
                leftover.unlink(missing_ok=True)

        await asyncio.to_thread(sweep)

    async def take(self, body: AsyncIterable[bytes], *, limit: int, durable: bool) -> SpoolFile:
        """Write `body` into a new spool file, refusing it once it passes `limit` bytes.

        With `durable`, the file is fsync'd before this returns: the caller may then
        acknowledge the bytes. A body that fails is removed.
        """
        path = self.incoming / f"{secrets.token_hex(12)}.data"
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        size = 0
        head = bytearray()
        pending: list[bytes] = []
        pending_bytes = 0
        try:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise CinError(Code.TOO_LARGE, f"more than {limit} bytes")
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= FLUSH_BYTES:
                    await asyncio.to_thread(_write_all, fd, pending)
                    pending, pending_bytes = [], 0
            if pending:
                await asyncio.to_thread(_write_all, fd, pending)
            if durable:
                await asyncio.to_thread(os.fsync, fd)
        except BaseException:
            await asyncio.to_thread(_close_and_remove, fd, path)
            raise
        await asyncio.to_thread(os.close, fd)
        return SpoolFile(path, size, bytes(head))


def _write_all(fd: int, buffers: list[bytes]) -> None:
    views = [memoryview(b) for b in buffers]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _close_and_remove(fd: int, path: Path) -> None:
    os.close(fd)
    path.unlink(missing_ok=True)
