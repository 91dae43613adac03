"""Fixtures for the storage suite: one opened `Storage` per driver, so that every
conformance test runs against both (S3 through the moto server of tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support import free_port

from common.config import StorageConfig
from common.storage import Storage, open_storage
from common.storage._s3 import s3_client

BUCKET = "cin-conformance"


def s3_config(endpoint_url: str, bucket: str = BUCKET, **changes: Any) -> StorageConfig:
    settings: dict[str, Any] = {
        "name": "test-s3", "provider": "s3", "driver": "s3", "container": bucket,
        "endpoint_url": endpoint_url, "region": "us-east-1", "addressing_style": "path"}
    settings.update(changes)
    return StorageConfig(**settings)


def local_config(root: Path, **changes: Any) -> StorageConfig:
    settings: dict[str, Any] = {
        "name": "test-local", "provider": "local", "driver": "local", "container": "files",
        "root": root}
    settings.update(changes)
    return StorageConfig(**settings)


ConfigFactory = Callable[..., StorageConfig]


@pytest.fixture(scope="session")
def make_s3_config() -> ConfigFactory:
    """`make_s3_config(endpoint_url, bucket=..., **other StorageConfig fields)`"""
    return s3_config


@pytest.fixture(scope="session")
def make_local_config() -> ConfigFactory:
    """`make_local_config(root, **other StorageConfig fields)`"""
    return local_config


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: it was just bound and released."""
    return free_port()


@pytest.fixture(scope="session")
def s3_bucket_config(moto_url: str) -> StorageConfig:
    config = s3_config(moto_url)

    async def create_bucket() -> None:
        async with s3_client(config, "us-east-1") as client:
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
