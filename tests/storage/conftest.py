"""Fixtures for the storage suite: one opened `Storage` per driver, so that every
conformance test runs against both (S3 through the moto server of tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from support import free_port

from common.config import StorageConfig
from common.storage import Storage, open_storage
from common.storage.drivers import LocalSettings, S3Settings

BUCKET = "cin-conformance"


def s3_config(endpoint_url: str, bucket: str = BUCKET, *, region: str | None = "us-east-1",
              containers: tuple[str, ...] = ()) -> StorageConfig:
    return StorageConfig(
        name="test-s3", provider="s3", driver="s3", container=bucket, containers=containers,
        settings=S3Settings(endpoint_url=endpoint_url, region=region, addressing_style="path"))


def local_config(root: Path, *, containers: tuple[str, ...] = ()) -> StorageConfig:
    return StorageConfig(name="test-local", provider="local", driver="local",
                         container="files", containers=containers,
                         settings=LocalSettings(root=root))


ConfigFactory = Callable[..., StorageConfig]


@pytest.fixture(scope="session")
def make_s3_config() -> ConfigFactory:
    """`make_s3_config(endpoint_url, bucket=..., region=..., containers=...)`"""
    return s3_config


@pytest.fixture(scope="session")
def make_local_config() -> ConfigFactory:
    """`make_local_config(root, containers=...)`"""
    return local_config


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: it was just bound and released."""
    return free_port()


@pytest.fixture(scope="session")
def s3_bucket_config(moto_url: str) -> StorageConfig:
    config = s3_config(moto_url)

    async def create_bucket() -> None:
        async with get_session().create_client(
                "s3", endpoint_url=moto_url, region_name="us-east-1") as client:
            await client.create_bucket(Bucket=config.container)

    # Session fixtures run before any test's event loop exists, so a loop of its own.
    asyncio.run(create_bucket())
    return config


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, s3_bucket_config: StorageConfig
) -> AsyncIterator[Storage]:
    config = local_config(tmp_path / "storage") if request.param == "local" else s3_bucket_config
    async with open_storage(config) as opened:
        yield opened
