"""`cin storage-check`: try a storage location as the app will use it, and say in plain
words what works and what does not (the "test" button of a storage settings page).

Backend failures never escape as exceptions: each becomes a failed `CheckResult` whose
detail is a sentence an operator can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from common.config import StorageConfig
from common.storage import Storage, StorageError, StorageErrorKind, open_storage
from common.storage._s3 import detect_bucket_region, error_code, s3_client, unreachable_reason

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PROBE_PREFIX = "cin-storage-check/"
_DEFAULT_REGION = "us-east-1"  # what open_storage signs for when nothing else is known

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
_VERBS = {"PutObject": "write", "GetObject": "read", "DeleteObject": "delete"}

Explain = Callable[[StorageError, str, str], str]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def check_storage(config: StorageConfig) -> list[CheckResult]:
    """Check every container of one storage location; never raises for backend failures."""
    try:
        if config.driver == "local":
            return await _check_local(config)
        return await _check_s3(config)
    except StorageError as exc:
        return [CheckResult("storage", False, exc.detail)]
    except (BotoCoreError, ClientError, aiohttp.ClientError, OSError) as exc:
        return [CheckResult("storage", False, f"the check failed: {exc}")]


def _containers(config: StorageConfig) -> list[str]:
    return list(dict.fromkeys((config.container, *config.containers)))


# ------------------------------------------------------------------ the probe object


async def _probe(storage: Storage, container: str, explain: Explain) -> list[CheckResult]:
    """Write, read back and delete a small object, as an upload and a download would."""
    key = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
    payload = f"cin storage check {key}\n".encode()
    names = {op: f"{verb} {container!r}" for op, verb in _VERBS.items()}

    async def body() -> AsyncIterator[bytes]:
        yield payload

    try:
        await storage.put(container, key, body(), content_type="text/plain")
    except StorageError as exc:
        return [CheckResult(names["PutObject"], False, explain(exc, "PutObject", container))]
    results = [CheckResult(names["PutObject"], True, f"stored {key} ({len(payload)} bytes)")]
    try:
        reader = await storage.get(container, key)
        try:
            data = b"".join([chunk async for chunk in reader.chunks()])
        finally:
            await reader.close()
        if data == payload:
            results.append(CheckResult(names["GetObject"], True,
                                       f"read {key} back: the content matches"))
        else:
            results.append(CheckResult(
                names["GetObject"], False,
                f"read {key} back but got {len(data)} bytes that differ from the"
                f" {len(payload)} written"))
    except StorageError as exc:
        results.append(CheckResult(names["GetObject"], False, explain(exc, "GetObject", container)))
    try:
        await storage.delete(container, key)
    except StorageError as exc:
        results.append(
            CheckResult(names["DeleteObject"], False, explain(exc, "DeleteObject", container)))
        return results
    results.append(await _confirm_gone(storage, container, key, names["DeleteObject"]))
    return results


async def _confirm_gone(storage: Storage, container: str, key: str, name: str) -> CheckResult:
    try:
        await storage.head(container, key)
    except StorageError as exc:
        if exc.kind is StorageErrorKind.NOT_FOUND:
            return CheckResult(name, True, f"deleted {key}")
        # Without list rights S3 answers 403 for a missing key: the delete itself worked.
        return CheckResult(name, True, f"deleted {key} (could not confirm: {exc.detail})")
    return CheckResult(name, False, f"deleted {key} but it is still there")


# ------------------------------------------------------------------ local disk


def _explain_local(exc: StorageError, operation: str, container: str) -> str:
    verb = _VERBS.get(operation, operation)
    if exc.kind is StorageErrorKind.NO_SUCH_CONTAINER:
        return (f"{container!r} cannot be a folder name:"
                " use lowercase letters, digits, '.', '_' and '-'")
    return f"cannot {verb} in {container!r}: {exc.detail}"


def _check_root(root: Path) -> CheckResult:
    if root.is_dir():
        return CheckResult("root folder", True, f"{root} exists")
    if root.exists():
        return CheckResult("root folder", False, f"{root} exists but is not a folder")
    try:
        root.mkdir(parents=True)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return CheckResult("root folder", False,
                           f"{root} does not exist and cannot be created: {reason}")
    return CheckResult("root folder", True, f"{root} did not exist and was created")


def _check_writable(root: Path) -> CheckResult:
    # Really write: os.access says yes to root even on a read-only mount.
    try:
        fd, name = tempfile.mkstemp(dir=root, prefix=".cin-storage-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        return CheckResult("root writable", False, f"{root} is not writable: {reason}")
    return CheckResult("root writable", True, f"{root} is writable")


async def _check_local(config: StorageConfig) -> list[CheckResult]:
    if config.root is None:
        return [CheckResult("root folder", False, "no root folder is configured")]
    results = [await asyncio.to_thread(_check_root, config.root)]
    if results[-1].ok:
        results.append(await asyncio.to_thread(_check_writable, config.root))
    if not results[-1].ok:
        return results
    async with open_storage(config) as storage:
        for container in _containers(config):
            results.extend(await _probe(storage, container, _explain_local))
    return results


# ------------------------------------------------------------------ S3


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


def _explain_s3(exc: StorageError, operation: str, container: str) -> str:
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


async def _check_s3(config: StorageConfig) -> list[CheckResult]:
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
    async with s3_client(config, config.region or _DEFAULT_REGION, max_attempts=1) as client:
        where = config.endpoint_url or client.meta.endpoint_url
        try:
            buckets = [await _inspect_bucket(client, c, where) for c in _containers(config)]
        except _CredentialsRefused as refused:
            return [CheckResult("credentials", False,
                                f"{found}, but {where} refuses them: {refused}")]

    verdict = (f"accepted by {where}" if any(bucket.reached for bucket in buckets)
               else f"not verified: {where} did not answer")
    results = [CheckResult("credentials", True, f"{found}, {verdict}")]
    signing = config.region or _DEFAULT_REGION
    if config.region is None and config.endpoint_url is None and buckets[0].region:
        signing = buckets[0].region  # open_storage signs for the default bucket's region

    stack = contextlib.AsyncExitStack()
    storage: Storage | None = None
    if any(bucket.usable for bucket in buckets):
        try:
            storage = await stack.enter_async_context(open_storage(config))
        except StorageError as exc:
            results.append(CheckResult("open storage", False, f"cannot open it: {exc.detail}"))
    async with stack:
        for bucket in buckets:
            results.append(bucket.found)
            if not bucket.usable:
                continue
            results.append(_region_result(bucket, config.region, signing))
            if storage is not None:
                results.extend(await _probe(storage, bucket.container, _explain_s3))
    return results
