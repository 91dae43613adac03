"""The table of storage drivers: a driver is its module plus one row, and the table loads
no driver's SDK until a location using it is opened or checked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cin.storage_check import check_storage
from common.config import StorageConfig
from common.config.loader import parse_config
from common.storage import Storage, open_storage
from common.storage._local import LocalDiskStorage
from common.storage.drivers import (
    DRIVERS,
    Capabilities,
    Driver,
    SettingsReader,
    driver_of,
    settings_of,
)
from common.storage.location_check import CheckResult

REPO = Path(__file__).resolve().parents[2]


def dev_config() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "configs" / "dev.yaml").read_text()))


# ------------------------------------------------------------------ a driver of the test's own


@dataclass(frozen=True)
class ShelfSettings:
    shelf: Path

    @classmethod
    def read(cls, reader: SettingsReader, base: Path) -> ShelfSettings:
        return cls(shelf=reader.path("shelf", base))


@asynccontextmanager
async def open_shelf(config: StorageConfig) -> AsyncIterator[Storage]:
    yield LocalDiskStorage(settings_of(config, ShelfSettings).shelf, config.container)


async def check_shelf(config: StorageConfig) -> list[CheckResult]:
    return [CheckResult("shelf", True, f"{settings_of(config, ShelfSettings).shelf} is there")]


SHELF = Driver("shelf", ShelfSettings.read, open_shelf, check_shelf,
               Capabilities(streams_body=True, sweeps_temporary=False))


async def test_a_new_driver_is_one_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(DRIVERS, "shelf", SHELF)
    data = dev_config()
    data["storage"]["dev-bucket"] = {"provider": "s3", "driver": "shelf", "shelf": "books",
                                     "container": "files"}

    location = parse_config(data, source="test.yaml", base=tmp_path).storage["dev-bucket"]

    assert location.settings == ShelfSettings(shelf=tmp_path / "books")
    assert driver_of(location) is SHELF
    async with open_storage(location) as storage:
        async def body() -> AsyncIterator[bytes]:
            yield b"on the shelf"

        stored = await storage.put("files", "a.txt", body(), content_type="text/plain")
        assert (await storage.head("files", "a.txt")).etag == stored.etag
    assert (tmp_path / "books" / "files").is_dir()
    assert await check_storage(location) == [
        CheckResult("shelf", True, f"{tmp_path / 'books'} is there")]


def test_a_driver_is_never_handed_another_drivers_settings() -> None:
    location = parse_config(dev_config(), source="test.yaml", base=REPO).storage["dev-bucket"]
    with pytest.raises(TypeError, match="needs ShelfSettings, not LocalSettings"):
        settings_of(location, ShelfSettings)


def test_capabilities_are_the_drivers() -> None:
    assert DRIVERS["local"].capabilities.streams_body
    assert not DRIVERS["s3"].capabilities.streams_body


# ------------------------------------------------------------------ loaded when used


def loaded_after(code: str) -> list[str]:
    probe = (f"import sys\n{code}\n"
             "print(','.join(m for m in ('botocore', 'aiobotocore') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    return [name for name in result.stdout.strip().split(",") if name]


def test_reading_an_s3_location_loads_no_s3_sdk() -> None:
    code = ("import yaml, pathlib\n"
            "from common.config.loader import parse_config\n"
            "data = yaml.safe_load(open('configs/dev.yaml').read())\n"
            "data['storage']['dev-bucket'] = {'driver': 's3', 'container': 'b'}\n"
            "parse_config(data, source='x', base=pathlib.Path('.'))")
    assert loaded_after(code) == []


def test_opening_a_local_location_loads_no_s3_sdk(tmp_path: Path) -> None:
    code = ("import asyncio, pathlib\n"
            "from common.config import StorageConfig\n"
            "from common.storage import open_storage\n"
            "from common.storage.drivers import LocalSettings\n"
            "config = StorageConfig(name='l', provider='s3', driver='local', container='files',\n"
            f"    settings=LocalSettings(root=pathlib.Path({str(tmp_path)!r})))\n"
            "async def main():\n"
            "    async with open_storage(config) as storage:\n"
            "        await storage.list_multipart_uploads('files')\n"
            "asyncio.run(main())")
    assert loaded_after(code) == []
