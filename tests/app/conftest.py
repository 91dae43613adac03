"""Fixtures of the app tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import pytest
from support import Network, start_network


@pytest.fixture(params=["local", "s3"])
async def network_on_each_driver(request: pytest.FixtureRequest, tmp_path: Path,
                                 moto_url: str) -> AsyncIterator[Network]:
    """The network storing to local disk, then to S3 (moto) over HTTP."""
    if request.param == "local":
        settings: dict[str, Any] = {}
    else:
        bucket = f"cin-{uuid.uuid4().hex[:12]}"
        async with aiobotocore.session.get_session().create_client(
                "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
            for name in (bucket, f"{bucket}-other"):
                await s3.create_bucket(Bucket=name)
        settings = {"s3_endpoint": moto_url, "bucket": bucket}
    async with start_network(tmp_path, **settings) as started:
        yield started
