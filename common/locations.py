"""The storage locations a process has open, and which one a request means."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

from common.config import AppConfig, Config, StorageConfig
from common.errors import CinError, Code
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


def find_app(config: Config, apikey: str | None) -> AppConfig:
    if not apikey:
        raise CinError(Code.MISSING_APIKEY)
    app = config.apps.get(apikey)
    if app is None:
        raise CinError(Code.UNKNOWN_APIKEY, apikey[:64])
    return app


def find_location(config: Config, app: AppConfig, provider: str | None) -> StorageConfig:
    """The app's storage location for `provider` (its first location when None)."""
    locations = config.app_storage(app)
    if provider is None:
        return locations[0]
    wanted = provider.strip().lower()
    for location in locations:
        if location.provider == wanted:
            return location
    have = ", ".join(sorted(loc.provider for loc in locations))
    raise CinError(Code.UNKNOWN_PROVIDER, f"{provider!r} (this app stores to: {have})")


def choose_container(location: StorageConfig, container: str | None) -> str:
    if not container:
        return location.container
    if not location.allows_container(container):
        raise CinError(Code.CONTAINER_NOT_ALLOWED, container[:256])
    return container
