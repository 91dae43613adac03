"""A POP's staging area: where REST request bodies land before they go to the bucket.

Not durable (nothing is fsync'd): a body is acknowledged only once it is in the bucket.
The durable spool of the Upload API's parts is edge/multipart/part_spool.py.

Writes are batched into ~1 MiB `writev` calls in a worker thread, so the event loop never
waits on the disk and a thread hop is paid per megabyte, not per network read. A body
that ends before its first batch is full never touches the disk: it stays in memory,
which is no more than a larger body holds there while its batch fills, and it saves a
small file (most of what a POP takes) the eight thread hops of a file written, read back
and removed.

A take that is cancelled waits for a write still in its thread before it closes and
removes the file (`in_thread`): a descriptor closed under the write could be reused by
the next file opened, which would get the body's bytes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path

from common.protocol.errors import CinError, Code
from common.protocol.sniff import SNIFF_BYTES
from common.threads import in_thread, in_thread_releasing

FLUSH_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024


class StagedBody:
    """One staged body: its size and first bytes (for type sniffing), and where its
    bytes are: in a file at `path`, or, for a small body, held in memory."""

    def __init__(self, body_id: str, size: int, head: bytes, *, path: Path | None = None,
                 held: Sequence[bytes] = ()) -> None:
        self.body_id = body_id
        self.size = size
        self.head = head
        self.path = path
        self._held = held

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.path is None:
            for chunk in self._held:
                yield chunk
            return
        handle = await in_thread(open, self.path, "rb")
        try:
            while chunk := await in_thread(handle.read, READ_BYTES):
                yield chunk
        finally:
            await in_thread(handle.close)

    async def remove(self) -> None:
        if self.path is None:
            self._held = ()
            return
        await in_thread(self.path.unlink, missing_ok=True)


class Staging:
    def __init__(self, root: Path) -> None:
        self.incoming = root / "incoming"

    async def prepare(self) -> None:
        """Create the staging area and drop bodies left by a crash: none was acknowledged."""
        def sweep() -> None:
            self.incoming.mkdir(parents=True, exist_ok=True)
            for leftover in self.incoming.glob("*.data"):
                leftover.unlink(missing_ok=True)

        await in_thread(sweep)

    async def take(self, body: AsyncIterable[bytes], *, limit: int) -> StagedBody:
        """Write `body` into a new staged file, refusing it once it passes `limit` bytes;
        a body smaller than one write batch is held in memory and no file is made. A body
        that fails is removed.

        Not fsync'd: every caller answers only once the bytes are in the bucket, so the
        staging area is a buffer, not a promise.
        """
        body_id = secrets.token_hex(12)
        path = self.incoming / f"{body_id}.data"
        fd = -1  # opened with the first batch to write
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
                    if fd < 0:
                        fd = await in_thread_releasing(
                            lambda opened: _close_and_remove(opened, path), _create, path)
                    await in_thread(_write_all, fd, pending)
                    pending, pending_bytes = [], 0
            if fd < 0:
                return StagedBody(body_id, size, bytes(head), held=pending)
            if pending:
                await in_thread(_write_all, fd, pending)
        except BaseException:
            if fd >= 0:
                await in_thread(_close_and_remove, fd, path)
            raise
        await in_thread(os.close, fd)
        return StagedBody(body_id, size, bytes(head), path=path)


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


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
