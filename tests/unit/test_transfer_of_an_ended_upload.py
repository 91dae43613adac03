"""A part on its way to a bucket upload that is gone (expired and aborted) stops at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from common.files import FileRecord, UploadRecord
from common.locations import StorageSet
from common.status import FileStatus
from common.storage import StorageError, StorageErrorKind
from edge import part_transfer
from edge.coordinator_client import CoordinatorClient
from edge.part_spool import PartSpool
from edge.part_transfer import PartTransfer

UPLOAD_ID = "upload-0123456789"


class Bucket:
    def __init__(self, kind: StorageErrorKind) -> None:
        self.kind = kind
        self.attempts = 0

    async def upload_part(self, *args: Any, **kwargs: Any) -> str:
        self.attempts += 1
        raise StorageError(self.kind, "refused")


class Coordinator:
    def __init__(self) -> None:
        self.told: list[Any] = []

    async def file(self, msg: Any) -> FileRecord:
        self.told.append(msg)
        raise AssertionError("a part that was not stored is never reported")


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize(("kind", "attempts"), [
    (StorageErrorKind.NO_SUCH_UPLOAD, 1),
    (StorageErrorKind.UNAVAILABLE, 3),  # for contrast: a bucket that is down is retried
])
async def test_a_part_for_a_bucket_upload_that_is_gone_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: StorageErrorKind,
        attempts: int) -> None:
    monkeypatch.setattr(part_transfer, "RETRY_DELAYS", (0.0, 0.0))
    spool = PartSpool(tmp_path)
    await spool.prepare()
    await spool.open_upload(UPLOAD_ID, {})
    await spool.write_chunk(UPLOAD_ID, 1, 0, chunks(b"data"), 4)
    finished = await spool.finish_part(UPLOAD_ID, 1)
    record = FileRecord(handle="h" * 20, apikey="KEY", storage="bucket", provider="s3",
                        container="c", key="k", filename="f", mimetype="t/p", size=4,
                        status=FileStatus.STARTED, pop="us-east-1", uploaded=1.0)
    upload = UploadRecord(upload_id=UPLOAD_ID, handle="h" * 20, storage_upload_id="s3-id",
                          pop="us-east-1", fii=False, created=1.0)
    bucket, coordinator = Bucket(kind), Coordinator()
    transfer = PartTransfer(spool, cast(StorageSet, {"bucket": bucket}),
                            cast(CoordinatorClient, coordinator), "us-east-1")
    await transfer._send(record, upload, finished)
    assert bucket.attempts == attempts
    assert coordinator.told == []
