"""`check_storage`: passes on good locations, and explains bad ones in plain words."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from aiobotocore.session import get_session

from cin.storage_check import PROBE_PREFIX, CheckResult, check_storage
from common.config import StorageConfig

ConfigFactory = Callable[..., StorageConfig]


def failures(results: list[CheckResult]) -> list[CheckResult]:
    return [result for result in results if not result.ok]


def names(results: list[CheckResult]) -> list[str]:
    return [result.name for result in results]


async def test_good_bucket_passes(s3_bucket_config: StorageConfig) -> None:
    results = await check_storage(s3_bucket_config)

    assert failures(results) == []
    bucket = s3_bucket_config.container
    assert names(results) == ["credentials", f"bucket {bucket!r}", f"region of {bucket!r}",
                              f"write {bucket!r}", f"read {bucket!r}", f"delete {bucket!r}"]
    assert "content matches" in results[4].detail
    assert "us-east-1" in results[2].detail


async def test_probe_object_is_removed(moto_url: str, s3_bucket_config: StorageConfig) -> None:
    await check_storage(s3_bucket_config)

    async with get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as client:
        listing = await client.list_objects_v2(
            Bucket=s3_bucket_config.container, Prefix=PROBE_PREFIX)
    assert listing.get("KeyCount", 0) == 0


async def test_configured_region_that_differs_is_a_warning(
    moto_url: str, s3_bucket_config: StorageConfig, make_s3_config: ConfigFactory
) -> None:
    config = make_s3_config(moto_url, region="eu-west-1")

    results = await check_storage(config)

    region = next(r for r in results if r.name.startswith("region of"))
    assert region.ok
    assert region.detail.startswith("warning: the configured region is eu-west-1")
    assert "us-east-1" in region.detail


async def test_missing_bucket_is_named(
    moto_url: str, s3_bucket_config: StorageConfig, make_s3_config: ConfigFactory
) -> None:
    config = make_s3_config(moto_url, bucket="no-such-bucket-here")

    results = await check_storage(config)

    assert [r.detail for r in failures(results)] == [
        f"bucket 'no-such-bucket-here' does not exist at {moto_url}"]


async def test_extra_missing_container_fails_alone(
    moto_url: str, s3_bucket_config: StorageConfig, make_s3_config: ConfigFactory
) -> None:
    config = make_s3_config(moto_url, containers=("not-there",))

    results = await check_storage(config)

    assert [r.name for r in failures(results)] == ["bucket 'not-there'"]
    assert "read 'cin-conformance'" in names(results)


async def test_unreachable_endpoint_says_it_cannot_connect(
    aws_environment: None, closed_port: int, make_s3_config: ConfigFactory
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"

    results = await check_storage(make_s3_config(endpoint))

    assert [r.detail for r in failures(results)] == [
        f"cannot reach {endpoint}: connection refused"]
    assert "not verified" in results[0].detail


async def test_local_root_is_created_and_probed(
    tmp_path: Path, make_local_config: ConfigFactory
) -> None:
    root = tmp_path / "new" / "root"

    results = await check_storage(make_local_config(root, containers=("more",)))

    assert failures(results) == []
    assert results[0].detail == f"{root} did not exist and was created"
    assert names(results)[2:] == ["write 'files'", "read 'files'", "delete 'files'",
                                  "write 'more'", "read 'more'", "delete 'more'"]
    assert list((root / "files" / "objects").iterdir()) == []


async def test_local_root_that_is_a_file(
    tmp_path: Path, make_local_config: ConfigFactory
) -> None:
    root = tmp_path / "file"
    root.write_text("not a folder")

    results = await check_storage(make_local_config(root))

    assert [r.detail for r in failures(results)] == [f"{root} exists but is not a folder"]


async def test_unwritable_local_root(tmp_path: Path, make_local_config: ConfigFactory) -> None:
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0o500)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as root: permissions do not block writes")
        results = await check_storage(make_local_config(root))
    finally:
        root.chmod(0o700)

    assert [r.name for r in failures(results)] == ["root writable"]
    assert failures(results)[0].detail == f"{root} is not writable: permission denied"
