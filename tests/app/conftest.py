"""Fixtures of the app tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import Network, start_network

from common.storage._s3 import s3_client
from common.storage.drivers import S3Settings
from edge.app import make_app as make_edge_app


@pytest.fixture
def network_settings() -> dict[str, Any]:
    """More `start_network` settings for `network_on_each_driver` (see
    support.config_data): a test parametrizes this name, or a module overrides this
    fixture, to change them (short timeouts, say)."""
    return {}


@pytest.fixture(params=["local", "s3"])
async def network_on_each_driver(request: pytest.FixtureRequest, tmp_path: Path,
                                 moto_url: str,
                                 network_settings: dict[str, Any]) -> AsyncIterator[Network]:
    """The network storing to local disk, then to S3 (moto) over HTTP."""
    settings: dict[str, Any] = dict(network_settings)
    if request.param == "s3":
        bucket = f"cin-{uuid.uuid4().hex[:12]}"
        # The driver's own client: it shares S3's model, read once per process.
        driver = S3Settings(endpoint_url=moto_url, addressing_style="path")
        async with s3_client(driver, "us-east-1") as s3:
            for name in (bucket, f"{bucket}-other"):
                await s3.create_bucket(Bucket=name)
        settings.update(s3_endpoint=moto_url, bucket=bucket)
    async with start_network(tmp_path, **settings) as started:
        yield started


@pytest.fixture
async def west(network: Network) -> AsyncIterator[str]:
    """The network's second POP, eu-west-1, running beside the first: its public URL.
    A module that uses it names its `network` (e.g. `network_on_each_driver`)."""
    pop = network.config.pops[1]
    async with TestClient(TestServer(make_edge_app(network.config, pop), host="127.0.0.1",
                                     port=pop.listen.port)):
        yield pop.public_url
