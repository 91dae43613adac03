"""A stored file through the File API: its status and metadata, its bytes, its delete."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

DOWNLOAD_READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FileStatus:
    """A file as its metadata describes it; `status` is its upload_status: `Started`,
    `In Transit` (every byte at a POP, the link works), `Complete` or `Failed`."""

    handle: str
    status: str
    size: int | None
    filename: str | None
    mimetype: str | None
    metadata: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.status in ("Complete", "Failed")

    @classmethod
    def from_metadata(cls, handle: str, metadata: dict[str, Any]) -> FileStatus:
        size = metadata.get("size")
        return cls(handle=handle, status=str(metadata.get("upload_status") or ""),
                   size=size if isinstance(size, int) else None,
                   filename=metadata.get("filename"), mimetype=metadata.get("mimetype"),
                   metadata=metadata)

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "upload_status": self.status, "size": self.size,
                "filename": self.filename, "mimetype": self.mimetype}


async def write_response(response: aiohttp.ClientResponse, destination: Path) -> int:
    """Stream a download into `destination`: into a temporary file beside it, renamed
    over it once whole, so an interrupted download never leaves a short file under the
    name asked for. Writes run in a thread; memory holds one read at a time."""
    # Opened as any new file (not mkstemp's 0600), so the download gets the umask's mode.
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.part")
    out = await asyncio.to_thread(open, temporary, "xb")
    written = 0
    try:
        with out:
            async for piece in response.content.iter_chunked(DOWNLOAD_READ_BYTES):
                await asyncio.to_thread(out.write, piece)
                written += len(piece)
        await asyncio.to_thread(os.replace, temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return written
