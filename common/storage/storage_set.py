"""The storage locations a process has open, one per configured location."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

from common.config import Config
from common.storage import Storage, open_storage


class StorageSet:
    """Every configured storage location, opened once for the life of an aiohttp app."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._stack = AsyncExitStack()
        self._open: dict[str, Storage] = {}

    async def __aenter__(self) -> StorageSet:
        for name, storage_config in self._config.storage.items():
            self._open[name] = await self._stack.enter_async_context(open_storage(storage_config))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def __getitem__(self, name: str) -> Storage:
        return self._open[name]
