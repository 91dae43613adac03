"""The coordinator's state behind one protocol, so that the embedded SQLite engine and a
server database (for several coordinators) are interchangeable."""

from __future__ import annotations

from typing import Protocol

from common.config import AppConfig
from common.files import FileRecord
from common.status import FileStatus


class StateStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def sync_apps(self, apps: list[AppConfig]) -> None:
        """Record the apps of the config (never their secrets)."""
        ...

    async def create_file(self, record: FileRecord, origin: str) -> FileRecord:
        """Insert a new file. If `origin` was seen before, return that file instead:
        a POP retrying a request it did not hear the answer to gets the same handle."""
        ...

    async def get_file(self, handle: str) -> FileRecord | None: ...

    async def set_status(
        self,
        handle: str,
        status: FileStatus,
        *,
        size: int | None = None,
        etag: str | None = None,
    ) -> FileRecord:
        """Move a file to `status` (checked against the status table) and return it."""
        ...

    async def save_hashes(self, handle: str, version: int, hashes: dict[str, str]) -> None:
        """Keep the hashes of one version; ignored if the file has moved on since."""
        ...
