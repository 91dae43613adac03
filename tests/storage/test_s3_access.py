"""Access on S3: written as the object's ACL (a public object is readable by anyone) and
as metadata, and read back from the metadata alone: serving a file takes no
GetObjectAcl, which buckets without ACLs, credentials without s3:GetObjectAcl and some
S3-compatible services refuse."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiobotocore.session import get_session

from common.config import StorageConfig
from common.storage import Access, CompletedPart, Storage, open_storage
from common.storage._s3 import PART_SIZE

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


async def stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def s3(s3_bucket_config: StorageConfig) -> AsyncIterator[Storage]:
    async with open_storage(s3_bucket_config) as storage:
        yield storage


async def grants_to_everyone(moto_url: str, bucket: str, key: str) -> list[str]:
    async with get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as client:
        acl = await client.get_object_acl(Bucket=bucket, Key=key)
    return [grant.get("Permission", "") for grant in acl.get("Grants", [])
            if grant.get("Grantee", {}).get("URI") == ALL_USERS]


@pytest.mark.parametrize("size", [10, PART_SIZE + 1], ids=["one-put", "in-parts"])
async def test_a_public_put_is_public_in_the_bucket(s3: Storage, moto_url: str,
                                                    size: int) -> None:
    key = f"access/{uuid.uuid4().hex}"
    await s3.put(s3.default_container, key, stream(b"p" * size), content_type="text/plain",
                 access=Access.PUBLIC)

    assert await grants_to_everyone(moto_url, s3.default_container, key) == ["READ"]
    assert (await s3.head(s3.default_container, key)).access is Access.PUBLIC


async def test_a_public_multipart_upload_is_public_in_the_bucket(s3: Storage,
                                                                 moto_url: str) -> None:
    container, key = s3.default_container, f"access/{uuid.uuid4().hex}"
    upload_id = await s3.create_multipart(container, key, content_type="text/plain",
                                          access=Access.PUBLIC)
    etag = await s3.upload_part(container, key, upload_id, 1, stream(b"only part"), 9)
    done = await s3.complete_multipart(container, key, upload_id, [CompletedPart(1, etag)])

    assert done.access is Access.PUBLIC
    assert await grants_to_everyone(moto_url, container, key) == ["READ"]


async def test_an_object_cin_did_not_write_is_private(s3: Storage, moto_url: str) -> None:
    key = f"access/{uuid.uuid4().hex}"
    async with get_session().create_client(
            "s3", endpoint_url=moto_url, region_name="us-east-1") as client:
        await client.put_object(Bucket=s3.default_container, Key=key, Body=b"x",
                                ACL="public-read")

    assert (await s3.head(s3.default_container, key)).access is Access.PRIVATE
