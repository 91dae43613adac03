"""`cin storage-check` for an S3 location: the credentials and where they come from,
each bucket and its region, then the probe in every bucket that answered."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from common.config import StorageConfig
from common.storage._protocol import Storage, StorageError, StorageErrorKind
from common.storage._s3 import (
    FALLBACK_REGION,
    detect_bucket_region,
    error_code,
    open_s3,
    s3_client,
    unreachable_reason,
)
from common.storage.drivers import S3Settings, settings_of
from common.storage.location_check import CheckResult, containers, probe

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

# Answers meaning the service does not accept the credentials at all.
_REFUSED = {
    "InvalidAccessKeyId": "the access key id is not known to the service",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
}
_CREDENTIAL_SOURCES = {
    "env": "in environment variables",
    "shared-credentials-file": "in the shared credentials file",
    "config-file": "in the AWS config file",
    "custom-process": "from a credential process",
    "iam-role": "from the instance role",
    "container-role": "from the container role",
    "assume-role": "by assuming a role",
    "assume-role-with-web-identity": "by web identity",
    "sso": "from AWS SSO",
}


class _CredentialsRefused(Exception):
    pass


@dataclass(frozen=True)
class _Bucket:
    container: str
    found: CheckResult
    reached: bool  # the service answered
    usable: bool  # worth probing
    region: str | None = None
    region_problem: str = ""


def _explain(exc: StorageError, operation: str, container: str) -> str:
    if exc.kind is StorageErrorKind.ACCESS_DENIED:
        return (f"access denied to {operation}: the credentials lack s3:{operation}"
                f" on {container!r}")
    if exc.kind is StorageErrorKind.NO_SUCH_CONTAINER:
        return f"bucket {container!r} does not exist"
    if exc.detail.startswith("cannot reach"):
        return exc.detail
    return f"{operation} failed: {exc.detail}"


def _mask(access_key: str | None) -> str:
    if not access_key:
        return "(empty)"
    if len(access_key) <= 8:
        return access_key[:2] + "…"
    return f"{access_key[:4]}…{access_key[-4:]}"


async def _inspect_bucket(client: S3Client, container: str, where: str) -> _Bucket:
    name = f"bucket {container!r}"
    try:
        await client.list_objects_v2(Bucket=container, MaxKeys=1)
        found = CheckResult(name, True, f"bucket {container!r} exists and is reachable at {where}")
    except ClientError as exc:
        code = error_code(exc)
        if code in _REFUSED:
            raise _CredentialsRefused(_REFUSED[code]) from exc
        if code == "NoSuchBucket":
            return _Bucket(container, CheckResult(
                name, False, f"bucket {container!r} does not exist at {where}"),
                reached=True, usable=False)
        if code in ("AccessDenied", "403"):
            found = CheckResult(name, False, "access denied to ListObjectsV2: the credentials"
                                f" lack s3:ListBucket on {container!r}")
        else:
            found = CheckResult(name, False, f"listing bucket {container!r} failed: {code}")
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        return _Bucket(container, CheckResult(
            name, False, f"cannot reach {where}: {unreachable_reason(exc)}"),
            reached=False, usable=False)
    try:
        region = await detect_bucket_region(client, container)
    except StorageError as exc:
        return _Bucket(container, found, reached=True, usable=True, region_problem=exc.detail)
    return _Bucket(container, found, reached=True, usable=True, region=region)


def _region_result(bucket: _Bucket, configured: str | None, signing: str) -> CheckResult:
    name = f"region of {bucket.container!r}"
    if bucket.region is None:
        fallback = f"; the configured {configured} is used" if configured else ""
        return CheckResult(name, configured is not None,
                           f"cannot tell the region of {bucket.container!r}:"
                           f" {bucket.region_problem}{fallback}")
    if bucket.region == signing:
        how = "as configured" if configured else "detected; no region is configured"
        return CheckResult(name, True, f"bucket {bucket.container!r} is in {bucket.region} ({how})")
    if configured:
        return CheckResult(name, True, f"warning: the configured region is {configured} but"
                                       f" bucket {bucket.container!r} is in {bucket.region}")
    return CheckResult(name, True, f"warning: bucket {bucket.container!r} is in {bucket.region}"
                                   f" but requests are signed for {signing};"
                                   f" set region: {bucket.region}")


async def check_s3(config: StorageConfig) -> list[CheckResult]:
    """Every bucket of one S3 location; never raises for backend failures."""
    try:
        return await _check(config)
    except (BotoCoreError, ClientError, aiohttp.ClientError) as exc:
        return [CheckResult("storage", False, f"the check failed: {exc}")]


async def _check(config: StorageConfig) -> list[CheckResult]:
    settings = settings_of(config, S3Settings)
    try:
        credentials = await get_session().get_credentials()
    except BotoCoreError as exc:  # a broken profile, an unreachable credential source
        return [CheckResult("credentials", False, f"cannot load the credentials: {exc}")]
    if credentials is None:
        return [CheckResult("credentials", False,
                            "no AWS credentials found: set AWS_ACCESS_KEY_ID and"
                            " AWS_SECRET_ACCESS_KEY, or configure a profile or an instance role")]
    frozen = await credentials.get_frozen_credentials()
    source = _CREDENTIAL_SOURCES.get(str(credentials.method), f"via {credentials.method}")
    found = f"found {source} (access key {_mask(frozen.access_key)})"

    # One attempt, no retries: a test button should answer promptly, not back off.
    signing = settings.region or FALLBACK_REGION
    async with s3_client(settings, signing, max_attempts=1) as client:
        where = settings.endpoint_url or client.meta.endpoint_url
        try:
            buckets = [await _inspect_bucket(client, c, where) for c in containers(config)]
        except _CredentialsRefused as refused:
            return [CheckResult("credentials", False,
                                f"{found}, but {where} refuses them: {refused}")]

    verdict = (f"accepted by {where}" if any(bucket.reached for bucket in buckets)
               else f"not verified: {where} did not answer")
    results = [CheckResult("credentials", True, f"{found}, {verdict}")]
    if settings.region is None and settings.endpoint_url is None and buckets[0].region:
        signing = buckets[0].region  # open_s3 signs for the default bucket's region

    stack = contextlib.AsyncExitStack()
    storage: Storage | None = None
    if any(bucket.usable for bucket in buckets):
        try:
            storage = await stack.enter_async_context(open_s3(config))
        except StorageError as exc:
            results.append(CheckResult("open storage", False, f"cannot open it: {exc.detail}"))
    async with stack:
        for bucket in buckets:
            results.append(bucket.found)
            if not bucket.usable:
                continue
            results.append(_region_result(bucket, settings.region, signing))
            if storage is not None:
                results.extend(await probe(storage, bucket.container, _explain))
    return results
