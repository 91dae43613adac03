"""Fixtures shared by every test layer: the in-process network, and S3 as a moto server.

moto's decorators patch botocore's synchronous HTTP layer, which aiobotocore does not
use: S3 is therefore a real `ThreadedMotoServer` on a free loopback port.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from browser import browser  # noqa: F401 (a fixture: a headless chromium, tests/browser.py)
from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend
from moto.server import ThreadedMotoServer
from postgres_server import PostgresServer, PostgresUnavailable, running_server
from support import Network, free_port, start_network


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """`cin`'s command sets up the root logger (`cin.logs.configure`) with a handler on the
    stderr of the moment, which pytest closes after the test that called it; a later test
    logging through it would hit a closed stream. Each test gets the root logger back as
    it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path) as started:
        yield started


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the session (tests/postgres_server.py). One that
    cannot be had fails the tests that need it, with why; CIN_SKIP_POSTGRES=1 skips them
    instead, by choice."""
    if os.environ.get("CIN_SKIP_POSTGRES") == "1":
        pytest.skip("CIN_SKIP_POSTGRES=1: the PostgreSQL tests are skipped")
    try:
        with running_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(f"no PostgreSQL server for the tests: {exc}", pytrace=False)


_databases = itertools.count(1)


@pytest.fixture
async def postgres_database(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's server, dropped after the test."""
    name = f"cin_test_{os.getpid()}_{next(_databases)}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_server.url(name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    """Patch only a moto bug that no real service shares, so the suite checks the
    driver's translation rather than moto's crash: UploadPart or CompleteMultipartUpload
    for an unknown upload id is NoSuchUpload (404) on S3, a KeyError in moto 5 (a 500,
    which the driver would rightly take for an outage and retry). Where moto differs
    from S3 as other S3-compatible stores do too (a private object from a multipart
    upload has no ACL, and GetObjectAcl fails for it), nothing is patched: cin must work
    against moto as it is."""

    def guarded(original: Any) -> Any:
        def call(self: Any, bucket_name: str, multipart_id: str, *args: Any, **kw: Any) -> Any:
            if multipart_id not in self.get_bucket(bucket_name).multiparts:
                raise NoSuchUpload(upload_id=multipart_id)
            return original(self, bucket_name, multipart_id, *args, **kw)

        return call

    for method in ("upload_part", "complete_multipart_upload"):
        patch.setattr(S3Backend, method, guarded(getattr(S3Backend, method)))


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
