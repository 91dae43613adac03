"""Which app a request names, and which of its storage locations and containers."""

from __future__ import annotations

from common.config import AppConfig, Config, StorageConfig
from common.protocol.errors import CinError, Code


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
