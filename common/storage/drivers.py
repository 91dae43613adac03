"""The storage drivers cin knows, one row each: what the rest of cin asks of a driver.

A row names the driver (`driver:` in a config's `storage` entry), reads its own keys of
that entry into a settings object, says what the driver can do, and opens and checks a
location. The config loader, `open_storage`, `cin storage-check` and the REST store
consult this table and nothing else: a new driver is its module (the `Storage` protocol,
an opener and a check) plus one row here.

Importing the table loads no driver: a driver's module, and the SDK it needs, is
imported when a location that uses it is opened or checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from common.config.schema import doc

if TYPE_CHECKING:
    from common.config import StorageConfig
    from common.storage._protocol import Storage
    from common.storage.location_check import CheckResult


class SettingsReader(Protocol):
    """A driver's view of its config entry. Each reader method marks the key as known and
    raises a `ConfigError` naming the file and key when the value is wrong or missing
    (with no `default`)."""

    def text(self, name: str, default: Any = ...) -> Any: ...

    def url(self, name: str, default: Any = ...) -> Any: ...

    def path(self, name: str, base: Path, default: Any = ...) -> Any: ...

    def choice(self, name: str, options: tuple[str, ...], default: Any = ...) -> Any: ...


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do beyond the `Storage` protocol, for callers that choose a way
    of working by it."""

    # `put` takes a body as it streams, holding no part of it in memory: a slow client
    # costs no memory, so its body need not be spooled first.
    streams_body: bool
    # It writes temp files of its own, which a writer that dies leaves behind: it keeps
    # `SweepsTemporary` (common/storage/_protocol.py), and store expiry calls it.
    sweeps_temporary: bool


@dataclass(frozen=True)
class Driver:
    name: str
    # The driver's own keys of a `storage.<name>` entry (relative paths against `base`).
    read_settings: Callable[[SettingsReader, Path], object]
    # Opens a location for the life of the block; its settings are what `read_settings`
    # returned.
    open: Callable[[StorageConfig], AbstractAsyncContextManager[Storage]]
    # `cin storage-check`: tries the location as the app will use it; a backend failure
    # is a failed result, never an exception.
    check: Callable[[StorageConfig], Awaitable[list[CheckResult]]]
    capabilities: Capabilities


S = TypeVar("S")


def settings_of(config: StorageConfig, kind: type[S]) -> S:
    """`config`'s driver settings, as the driver that reads them knows them."""
    if not isinstance(config.settings, kind):
        raise TypeError(f"storage {config.name!r}: driver {config.driver!r} needs "
                        f"{kind.__name__}, not {type(config.settings).__name__}")
    return config.settings


# ------------------------------------------------------------------ local disk


@dataclass(frozen=True)
class LocalSettings:
    root: Path = field(metadata=doc("the folder whose subfolders are the containers"))

    @classmethod
    def read(cls, reader: SettingsReader, base: Path) -> LocalSettings:
        return cls(root=reader.path("root", base))


def _open_local(config: StorageConfig) -> AbstractAsyncContextManager[Storage]:
    from common.storage._local import open_local

    return open_local(config)


async def _check_local(config: StorageConfig) -> list[CheckResult]:
    from common.storage._local_check import check_local

    return await check_local(config)


# ------------------------------------------------------------------ S3

AddressingStyle = Literal["auto", "path", "virtual"]


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = field(default=None, metadata=doc(  # None means AWS
        "the S3 service's URL (MinIO, Ceph, R2, a regional AWS endpoint)", kind="URL",
        default="AWS"))
    region: str | None = field(default=None, metadata=doc(  # None: detect it
        "the bucket's region", default="detected from the bucket"))
    addressing_style: AddressingStyle = field(default="auto", metadata=doc(
        "bucket in the host name (`virtual`) or in the path (`path`)",
        kind="`auto` or `path` or `virtual`"))

    @classmethod
    def read(cls, reader: SettingsReader, base: Path) -> S3Settings:
        return cls(endpoint_url=reader.url("endpoint_url", None),
                   region=reader.text("region", None),
                   addressing_style=reader.choice("addressing_style",
                                                  ("auto", "path", "virtual"), "auto"))


def _open_s3(config: StorageConfig) -> AbstractAsyncContextManager[Storage]:
    from common.storage._s3 import open_s3

    return open_s3(config)


async def _check_s3(config: StorageConfig) -> list[CheckResult]:
    from common.storage._s3_check import check_s3

    return await check_s3(config)


# ------------------------------------------------------------------ the table

DRIVERS: Mapping[str, Driver] = {driver.name: driver for driver in (
    Driver("local", LocalSettings.read, _open_local, _check_local,
           Capabilities(streams_body=True, sweeps_temporary=True)),
    # `put` gathers a body into parts of several MiB and sends more than one at a time;
    # an interrupted one leaves a pending multipart upload, no temp file.
    Driver("s3", S3Settings.read, _open_s3, _check_s3,
           Capabilities(streams_body=False, sweeps_temporary=False)),
)}


def driver_of(config: StorageConfig) -> Driver:
    """The driver of a configured location (the loader let only known drivers through)."""
    return DRIVERS[config.driver]
