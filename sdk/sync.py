"""`Client`: the same calls as `AsyncClient`, for programs without an event loop.

It runs its own loop (one per client, in the calling thread), so it must not be used
from inside a running loop: there, use `AsyncClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from sdk.client import AsyncClient
from sdk.files import FileStatus
from sdk.pops import PopInfo, PopProbe
from sdk.progress import ProgressCallback
from sdk.uploader import UploadResult


class Client:
    """`Client(url, apikey, **options)` takes the options of `AsyncClient`."""

    def __init__(self, url: str, apikey: str, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = AsyncClient(url, apikey, **options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()

    def upload(self, path: str | Path, *, tags: Mapping[str, str] | None = None,
               progress: ProgressCallback | None = None, **options: Any) -> UploadResult:
        return self._runner.run(self._client.upload(path, tags=tags, progress=progress,
                                                    **options))

    def status(self, handle: str) -> FileStatus:
        return self._runner.run(self._client.status(handle))

    def wait_until_complete(self, handle: str, *, max_wait: float = 600.0,
                            interval: float = 0.5) -> FileStatus:
        return self._runner.run(self._client.wait_until_complete(handle, max_wait=max_wait,
                                                                 interval=interval))

    def metadata(self, handle: str, *fields: str) -> dict[str, Any]:
        return self._runner.run(self._client.metadata(handle, *fields))

    def download(self, handle: str, destination: str | Path) -> int:
        return self._runner.run(self._client.download(handle, destination))

    def delete(self, handle: str, *, skip_storage: bool = False) -> dict[str, Any]:
        return self._runner.run(self._client.delete(handle, skip_storage=skip_storage))

    def pops(self) -> list[PopProbe]:
        return self._runner.run(self._client.pops())

    def nearest_pop(self, *, refresh: bool = False) -> PopInfo:
        return self._runner.run(self._client.nearest_pop(refresh=refresh))

    def part_status(self, upload_id: str) -> dict[str, Any]:
        return self._runner.run(self._client.part_status(upload_id))
