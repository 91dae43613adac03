"""The S3 driver: the storage protocol over an aiobotocore client the caller owns.

Every botocore and aiohttp failure is translated here, once, into a `StorageError`:
nothing above this module sees a `ClientError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Final

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.loaders import Loader, create_loader

from common.protocol.limits import MAX_PART_SIZE, MAX_PARTS
from common.storage._protocol import (
    Access,
    ByteRange,
    CompletedPart,
    ObjectInfo,
    StorageError,
    StorageErrorKind,
)
from common.storage._rules import check_key, check_part_list
from common.storage.drivers import S3Settings, settings_of

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CreateMultipartUploadRequestTypeDef,
        PutObjectRequestTypeDef,
    )

    from common.config import StorageConfig

PART_SIZE = 8 * 1024 * 1024
# Two parts on the wire while the third fills: throughput without holding the file.
PARTS_IN_FLIGHT = 2
READ_CHUNK = 1024 * 1024

# Private objects are sent with no ACL at all, which S3 stores as private: buckets with
# ACLs disabled (the AWS default since 2023) refuse any other ACL header.
PUBLIC_ACL: Final = "public-read"
# Access is also written as metadata, and read back from it: serving a file then takes no
# GetObjectAcl, which services without ACLs (R2) or credentials without s3:GetObjectAcl
# refuse, and some emulators fail for an object from a multipart upload.
_ACCESS_META = "cin-access"
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")

_KIND_BY_CODE: dict[str, StorageErrorKind] = {
    "NoSuchKey": StorageErrorKind.NOT_FOUND,
    "NotFound": StorageErrorKind.NOT_FOUND,
    "NoSuchUpload": StorageErrorKind.NO_SUCH_UPLOAD,
    "InvalidPart": StorageErrorKind.INVALID_PART,
    "InvalidPartOrder": StorageErrorKind.INVALID_PART,
    "EntityTooSmall": StorageErrorKind.INVALID_PART,
    "EntityTooLarge": StorageErrorKind.INVALID_PART,
    "IncompleteBody": StorageErrorKind.INVALID_PART,
    "BadDigest": StorageErrorKind.INVALID_PART,
    "InvalidRange": StorageErrorKind.INVALID_RANGE,
    "416": StorageErrorKind.INVALID_RANGE,
    "AccessDenied": StorageErrorKind.ACCESS_DENIED,
    "403": StorageErrorKind.ACCESS_DENIED,
    "InvalidAccessKeyId": StorageErrorKind.ACCESS_DENIED,
    "SignatureDoesNotMatch": StorageErrorKind.ACCESS_DENIED,
    "ExpiredToken": StorageErrorKind.ACCESS_DENIED,
    "InvalidToken": StorageErrorKind.ACCESS_DENIED,
    "AllAccessDisabled": StorageErrorKind.ACCESS_DENIED,
    "AccountProblem": StorageErrorKind.ACCESS_DENIED,
    "AccessControlListNotSupported": StorageErrorKind.ACCESS_DENIED,
    "NoSuchBucket": StorageErrorKind.NO_SUCH_CONTAINER,
    "InvalidBucketName": StorageErrorKind.NO_SUCH_CONTAINER,
    "KeyTooLongError": StorageErrorKind.BAD_KEY,
}


# ------------------------------------------------------------------ error translation


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def client_failure(
    exc: ClientError, what: str, *, missing: StorageErrorKind = StorageErrorKind.NOT_FOUND
) -> StorageError:
    """Translate an S3 error answer; `missing` is what a bare 404 means for this call."""
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    kind = missing if code == "404" else _KIND_BY_CODE.get(code, StorageErrorKind.UNAVAILABLE)
    return StorageError(kind, f"{what}: {code}" + (f" ({message})" if message else ""))


def unreachable_reason(exc: BaseException) -> str:
    """Why a connection failed, in words: 'connection refused', 'timed out', ..."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError | ConnectTimeoutError | ReadTimeoutError):
            return "timed out"
        if isinstance(current, OSError) and (current.errno or current.strerror):
            if current.errno and current.errno > 0:
                return os.strerror(current.errno).lower()
            return str(current.strerror).lower()
        nested = [getattr(current, "os_error", None), current.__cause__, current.__context__]
        if isinstance(current, BotoCoreError):
            nested.append(current.kwargs.get("error"))
        pending.extend(e for e in nested if isinstance(e, BaseException))
    return str(exc) or type(exc).__name__


def transport_failure(exc: Exception, endpoint: str) -> StorageError:
    if isinstance(exc, NoCredentialsError):
        return StorageError(StorageErrorKind.ACCESS_DENIED, "no AWS credentials were found")
    if isinstance(exc, ParamValidationError):
        text = str(exc).replace("\n", " ")
        if "bucket" in text.lower():
            return StorageError(StorageErrorKind.NO_SUCH_CONTAINER, text)
        return StorageError(StorageErrorKind.BAD_KEY, text)
    return StorageError(
        StorageErrorKind.UNAVAILABLE, f"cannot reach {endpoint}: {unreachable_reason(exc)}"
    )


@contextlib.contextmanager
def s3_boundary(
    endpoint: str, what: str, *, missing: StorageErrorKind = StorageErrorKind.NOT_FOUND
) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise client_failure(exc, what, missing=missing) from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise transport_failure(exc, endpoint) from exc


# ------------------------------------------------------------------ pure helpers


async def split_parts(
    body: AsyncIterable[bytes], part_size: int
) -> AsyncGenerator[tuple[bytes, bool], None]:
    """Cut a stream into parts of `part_size`, each flagged whether it is the last.

    A part is let go only once a byte beyond it has arrived, so a stream of exactly one
    part is known as such (one PutObject) and the last part is never empty unless the
    whole stream is.
    """
    buffer = bytearray()
    async for chunk in body:
        buffer += chunk
        while len(buffer) > part_size:
            with memoryview(buffer) as view:  # one copy of the part, not two
                part = bytes(view[:part_size])
            del buffer[:part_size]
            yield part, False
    yield bytes(buffer), True


def access_of(metadata: dict[str, str] | None) -> Access:
    """The access `put` recorded; an object without it (not written by cin) is private."""
    value = (metadata or {}).get(_ACCESS_META)
    return Access.PUBLIC if value == Access.PUBLIC.value else Access.PRIVATE


def _unquote(etag: str) -> str:
    return etag.strip('"')


# ------------------------------------------------------------------ the driver


class S3ObjectReader:
    """A GetObject response being streamed; `close` releases its connection."""

    def __init__(
        self,
        info: ObjectInfo,
        byte_range: ByteRange | None,
        body: StreamingBody,
        endpoint: str,
    ) -> None:
        self._info = info
        self._range = byte_range
        self._body = body
        self._endpoint = endpoint

    @property
    def info(self) -> ObjectInfo:
        return self._info

    @property
    def byte_range(self) -> ByteRange | None:
        return self._range

    async def chunks(self) -> AsyncIterator[bytes]:
        what = f"reading {self._info.container}/{self._info.key}"
        with s3_boundary(self._endpoint, what):
            async for chunk in self._body.iter_chunks(READ_CHUNK):
                yield chunk

    async def close(self) -> None:
        self._body.close()


class S3Storage:
    """The `Storage` protocol over S3. The client is injected and closed by its owner."""

    def __init__(self, client: S3Client, default_container: str) -> None:
        self._client = client
        self._default_container = default_container
        self._endpoint = client.meta.endpoint_url

    @property
    def default_container(self) -> str:
        return self._default_container

    def _boundary(
        self,
        operation: str,
        container: str,
        key: str | None = None,
        *,
        missing: StorageErrorKind = StorageErrorKind.NOT_FOUND,
    ) -> contextlib.AbstractContextManager[None]:
        target = container if key is None else f"{container}/{key}"
        return s3_boundary(self._endpoint, f"{operation} {target}", missing=missing)

    async def put(
        self,
        container: str,
        key: str,
        body: AsyncIterable[bytes],
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> ObjectInfo:
        check_key(key)
        parts = split_parts(body, PART_SIZE)
        try:
            data, is_last = await anext(parts)
            if is_last:
                return await self._put_whole(container, key, data, content_type, access)
            # Handed over in a list the sender empties: no frame here keeps the part alive
            # while later ones stream, so memory stays at the parts in flight plus one.
            pending = [data]
            del data
            return await self._put_in_parts(container, key, pending, parts, content_type, access)
        finally:
            await parts.aclose()

    async def _put_whole(
        self, container: str, key: str, data: bytes, content_type: str, access: Access
    ) -> ObjectInfo:
        request: PutObjectRequestTypeDef = {
            "Bucket": container, "Key": key, "Body": data, "ContentType": content_type,
            "Metadata": {_ACCESS_META: access.value}}
        if access is Access.PUBLIC:
            request["ACL"] = PUBLIC_ACL
        with self._boundary("PutObject", container, key):
            response = await self._client.put_object(**request)
        return ObjectInfo(container, key, len(data), content_type,
                          _unquote(response["ETag"]), access)

    async def _put_in_parts(
        self,
        container: str,
        key: str,
        pending: list[bytes],
        rest: AsyncIterator[tuple[bytes, bool]],
        content_type: str,
        access: Access,
    ) -> ObjectInfo:
        creating = asyncio.ensure_future(self.create_multipart(
            container, key, content_type=content_type, access=access))
        try:
            upload_id = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # The upload may exist by now: learn its id so that it can be aborted.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._abort_quietly(container, key, await creating))
            raise
        try:
            completed, size = await self._send_parts(container, key, upload_id, pending, rest)
            with self._boundary("CompleteMultipartUpload", container, key,
                                missing=StorageErrorKind.NO_SUCH_UPLOAD):
                response = await self._client.complete_multipart_upload(
                    Bucket=container, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": [
                        {"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in completed]})
        except BaseException:
            # Shielded: a cancelled upload must still not leave parts billed in the bucket.
            await asyncio.shield(self._abort_quietly(container, key, upload_id))
            raise
        return ObjectInfo(container, key, size, content_type,
                          _unquote(response.get("ETag", "")), access)

    async def _send_parts(
        self,
        container: str,
        key: str,
        upload_id: str,
        pending: list[bytes],
        rest: AsyncIterator[tuple[bytes, bool]],
    ) -> tuple[list[CompletedPart], int]:
        """Upload parts as they come, at most PARTS_IN_FLIGHT at a time."""
        completed: list[CompletedPart] = []
        in_flight: set[asyncio.Task[CompletedPart]] = set()
        size = 0
        number = 0
        try:
            while pending:
                data = pending.pop()
                number += 1
                if number > MAX_PARTS:
                    raise StorageError(
                        StorageErrorKind.INVALID_PART,
                        f"the object needs more than {MAX_PARTS} parts of {PART_SIZE} bytes")
                size += len(data)
                if len(in_flight) >= PARTS_IN_FLIGHT:
                    done, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED)
                    completed.extend(task.result() for task in done)
                in_flight.add(asyncio.create_task(
                    self._send_part(container, key, upload_id, number, data)))
                del data  # the task holds the part now, and only as long as it needs it
                following = await anext(rest, None)
                if following is not None:
                    pending.append(following[0])
            if in_flight:
                done, in_flight = await asyncio.wait(in_flight)
                completed.extend(task.result() for task in done)
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        completed.sort(key=lambda part: part.part_number)
        return completed, size

    async def _send_part(
        self, container: str, key: str, upload_id: str, number: int, data: bytes
    ) -> CompletedPart:
        with self._boundary("UploadPart", container, key, missing=StorageErrorKind.NO_SUCH_UPLOAD):
            response = await self._client.upload_part(
                Bucket=container, Key=key, UploadId=upload_id, PartNumber=number,
                Body=data, ContentLength=len(data))
        return CompletedPart(number, _unquote(response["ETag"]))

    async def _abort_quietly(self, container: str, key: str, upload_id: str) -> None:
        with contextlib.suppress(StorageError):
            await self.abort_multipart(container, key, upload_id)

    async def head(self, container: str, key: str) -> ObjectInfo:
        check_key(key)
        with self._boundary("HeadObject", container, key):
            response = await self._client.head_object(Bucket=container, Key=key)
        return ObjectInfo(
            container=container,
            key=key,
            size=response["ContentLength"],
            content_type=response.get("ContentType", "application/octet-stream"),
            etag=_unquote(response["ETag"]),
            access=access_of(response.get("Metadata")),
        )

    async def get(
        self, container: str, key: str, byte_range: ByteRange | None = None
    ) -> S3ObjectReader:
        check_key(key)
        if byte_range is None:
            with self._boundary("GetObject", container, key):
                response = await self._client.get_object(Bucket=container, Key=key)
        else:
            if byte_range.first < 0 or byte_range.last < byte_range.first:
                raise StorageError(StorageErrorKind.INVALID_RANGE,
                                   f"bytes {byte_range.first}-{byte_range.last}")
            with self._boundary("GetObject", container, key):
                response = await self._client.get_object(
                    Bucket=container, Key=key,
                    Range=f"bytes={byte_range.first}-{byte_range.last}")
        size = response["ContentLength"]
        served: ByteRange | None = None
        match = _CONTENT_RANGE_RE.match(response.get("ContentRange", ""))
        if match:
            served = ByteRange(int(match.group(1)), int(match.group(2)))
            size = int(match.group(3))
        info = ObjectInfo(
            container=container,
            key=key,
            size=size,
            content_type=response.get("ContentType", "application/octet-stream"),
            etag=_unquote(response.get("ETag", "")),
            access=access_of(response.get("Metadata")),
        )
        return S3ObjectReader(info, served, response["Body"], self._endpoint)

    async def delete(self, container: str, key: str) -> None:
        check_key(key)
        with self._boundary("DeleteObject", container, key):
            await self._client.delete_object(Bucket=container, Key=key)

    async def create_multipart(
        self,
        container: str,
        key: str,
        *,
        content_type: str,
        access: Access = Access.PRIVATE,
    ) -> str:
        check_key(key)
        request: CreateMultipartUploadRequestTypeDef = {
            "Bucket": container, "Key": key, "ContentType": content_type,
            "Metadata": {_ACCESS_META: access.value}}
        if access is Access.PUBLIC:
            request["ACL"] = PUBLIC_ACL
        with self._boundary("CreateMultipartUpload", container, key):
            response = await self._client.create_multipart_upload(**request)
        return response["UploadId"]

    async def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        size: int,
    ) -> str:
        check_key(key)
        if not 1 <= part_number <= MAX_PARTS:
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"part number {part_number} is out of range")
        if not 0 <= size <= MAX_PART_SIZE:
            raise StorageError(StorageErrorKind.INVALID_PART, f"a part of {size} bytes")
        chunks: list[bytes] = []
        received = 0
        async for chunk in body:
            received += len(chunk)
            if received > size:  # stop reading at once: the part is bounded, the stream not
                raise StorageError(
                    StorageErrorKind.INVALID_PART, f"the part is longer than {size} bytes")
            chunks.append(chunk)
        if received != size:
            raise StorageError(
                StorageErrorKind.INVALID_PART, f"the part has {received} bytes, not {size}")
        data = b"".join(chunks)
        del chunks
        return (await self._send_part(container, key, upload_id, part_number, data)).etag

    async def complete_multipart(
        self, container: str, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> ObjectInfo:
        check_key(key)
        check_part_list(parts)
        with self._boundary("CompleteMultipartUpload", container, key,
                            missing=StorageErrorKind.NO_SUCH_UPLOAD):
            await self._client.complete_multipart_upload(
                Bucket=container, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [
                    {"PartNumber": p.part_number, "ETag": f'"{_unquote(p.etag)}"'}
                    for p in parts]})
        with self._boundary("HeadObject", container, key):
            response = await self._client.head_object(Bucket=container, Key=key)
        return ObjectInfo(
            container=container,
            key=key,
            size=response["ContentLength"],
            content_type=response.get("ContentType", "application/octet-stream"),
            etag=_unquote(response["ETag"]),
            access=access_of(response.get("Metadata")),
        )

    async def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        check_key(key)
        with self._boundary("AbortMultipartUpload", container, key,
                            missing=StorageErrorKind.NO_SUCH_UPLOAD):
            await self._client.abort_multipart_upload(
                Bucket=container, Key=key, UploadId=upload_id)

    async def list_multipart_uploads(self, container: str) -> list[tuple[str, str]]:
        pending: list[tuple[str, str]] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        with self._boundary("ListMultipartUploads", container,
                            missing=StorageErrorKind.NO_SUCH_CONTAINER):
            async for page in paginator.paginate(Bucket=container):
                pending.extend((upload["Key"], upload["UploadId"])
                               for upload in page.get("Uploads", [])
                               if "Key" in upload and "UploadId" in upload)
        return pending


# ------------------------------------------------------------------ client and region

# Signing needs some region before the bucket's own is known; this is S3's default one.
FALLBACK_REGION = "us-east-1"


@contextlib.asynccontextmanager
async def open_s3(config: StorageConfig) -> AsyncIterator[S3Storage]:
    """The S3 location `config` names, over one client for the life of the block."""
    settings = settings_of(config, S3Settings)
    region = settings.region or await _bucket_region(settings, config.container)
    async with s3_client(settings, region) as client:
        yield S3Storage(client, config.container)


async def _bucket_region(settings: S3Settings, bucket: str) -> str:
    """The region to sign for when the config names none.

    Only AWS is asked: an S3-compatible service at `endpoint_url` is reached at that URL
    whatever region is signed, and most accept the default one.
    """
    if settings.endpoint_url is not None:
        return FALLBACK_REGION
    async with s3_client(settings, FALLBACK_REGION) as client:
        return await detect_bucket_region(client, bucket)


# S3's service model, read from botocore's data files once per process: a session of its
# own reads and parses them again for each client (a tenth of a second of CPU each).
# Only the models are shared; each client still has a session, and finds its credentials,
# of its own.
@functools.cache
def _models() -> Loader:
    return create_loader()


def s3_client(
    settings: S3Settings, region: str, *, max_attempts: int = 3
) -> AbstractAsyncContextManager[S3Client]:
    """A client for one storage location; credentials come from the environment, as boto
    finds them (variables, profile, instance role)."""
    session = get_session()
    session.register_component("data_loader", _models())
    return session.create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=region,
        config=AioConfig(
            s3={"addressing_style": settings.addressing_style},
            retries={"max_attempts": max_attempts, "mode": "standard"},
        ),
    )


async def detect_bucket_region(client: S3Client, bucket: str) -> str:
    """The region a bucket lives in. AWS names it in HeadBucket's `x-amz-bucket-region`
    header even when it answers 301 or 403; GetBucketLocation is the fallback."""
    endpoint = client.meta.endpoint_url
    try:
        response = await client.head_bucket(Bucket=bucket)
        headers = response["ResponseMetadata"]["HTTPHeaders"]
    except ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if not headers.get("x-amz-bucket-region"):
            raise client_failure(exc, f"HeadBucket {bucket}",
                                 missing=StorageErrorKind.NO_SUCH_CONTAINER) from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise transport_failure(exc, endpoint) from exc
    region = headers.get("x-amz-bucket-region")
    if region:
        return str(region)
    with s3_boundary(endpoint, f"GetBucketLocation {bucket}",
                     missing=StorageErrorKind.NO_SUCH_CONTAINER):
        location = await client.get_bucket_location(Bucket=bucket)
    constraint = location.get("LocationConstraint") or "us-east-1"
    return "eu-west-1" if constraint == "EU" else str(constraint)
