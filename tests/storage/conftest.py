"""Fixtures for the storage suite: a moto S3 server on loopback, and one opened `Storage`
per driver, so that every conformance test runs against both.

moto's decorators patch botocore's synchronous HTTP layer, which aiobotocore does not
use: the S3 side is therefore a real `ThreadedMotoServer` on a free loopback port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend
from moto.server import ThreadedMotoServer

from common.config import StorageConfig
from common.storage import Storage, open_storage
from common.storage._s3 import s3_client

BUCKET = "cin-conformance"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
def aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fake credentials, and no way for boto to reach for real ones or for the network."""
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", str(nowhere))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


def _fill_moto_gaps(patch: pytest.MonkeyPatch) -> None:
    """Make moto 5 answer as S3 does where it does not, so the suite checks the driver's
    translation rather than moto's gaps: an unknown upload id gets NoSuchUpload (moto:
    500, a KeyError), and a multipart upload created without an ACL keeps the default
    private one (moto: no ACL at all, and GetObjectAcl then fails with 500)."""

    def guarded(original: Any) -> Any:
        def call(self: Any, bucket_name: str, multipart_id: str, *args: Any, **kw: Any) -> Any:
            if multipart_id not in self.get_bucket(bucket_name).multiparts:
                raise NoSuchUpload(upload_id=multipart_id)
            return original(self, bucket_name, multipart_id, *args, **kw)

        return call

    for method in ("upload_part", "complete_multipart_upload"):
        patch.setattr(S3Backend, method, guarded(getattr(S3Backend, method)))

    set_acl = S3Backend.put_object_acl

    def put_object_acl(self: Any, bucket_name: str, key_name: str, acl: Any, **kw: Any) -> Any:
        if acl is None:
            return None
        return set_acl(self, bucket_name, key_name, acl, **kw)

    patch.setattr(S3Backend, "put_object_acl", put_object_acl)


@pytest.fixture(scope="session")
def moto_url(aws_environment: None) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        _fill_moto_gaps(patch)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


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
