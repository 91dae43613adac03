"""A part on its way to a bucket upload that is gone (expired and aborted) stops at once,
and the upload's spool goes as soon as the coordinator says the upload has ended.

Driven through PartTransfer's public calls only, with every backoff sleep cut to nothing,
so a transfer that kept retrying shows as more attempts instead of minutes of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from journal_support import open_journal, pop_uploads
from prometheus_client import CollectorRegistry

from common.protocol import wire
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from common.storage import StorageError, StorageErrorKind
from common.storage.storage_set import StorageSet
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import PartSpool
from edge.multipart.part_transfer import PartTransfer
from edge.multipart.uploads import KnownUpload

UPLOAD_ID = "upload-0123456789"
TURNS = 200  # moments to give the transfer: ample for a few zero-second retries


class Bucket:
    def __init__(self, kind: StorageErrorKind) -> None:
        self.kind = kind
        self.attempts = 0

    async def upload_part(self, *args: Any, **kwargs: Any) -> str:
        self.attempts += 1
        raise StorageError(self.kind, "refused")


RECORD = FileRecord(handle="h" * 20, apikey="KEY", storage="bucket", provider="s3",
                    container="c", key="k", filename="f", mimetype="t/p", size=4,
                    status=FileStatus.STARTED, pop="us-east-1", uploaded=1.0)
UPLOAD = UploadRecord(upload_id=UPLOAD_ID, handle="h" * 20, storage_upload_id="s3-id",
                      pop="us-east-1", fii=False, created=1.0)


class Coordinator:
    """The upload expired while its part was on its way."""

    def __init__(self) -> None:
        self.told: list[Any] = []
        self.asked: list[Any] = []

    async def file(self, msg: Any) -> FileRecord:
        self.told.append(msg)
        raise AssertionError("a part that was not stored is never reported")

    async def call(self, msg: Any, expect: type[Any]) -> wire.UploadReply:
        assert isinstance(msg, wire.LookupUpload) and expect is wire.UploadReply
        self.asked.append(msg.upload_id)
        return wire.UploadReply(record=replace(RECORD, status=FileStatus.FAILED),
                                upload=UPLOAD)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {cast(asyncio.Task[Any], asyncio.current_task())}


@pytest.mark.parametrize(("kind", "gives_up"), [
    (StorageErrorKind.NO_SUCH_UPLOAD, True),
    (StorageErrorKind.UNAVAILABLE, False),  # for contrast: a bucket that is down is retried
])
async def test_a_part_for_a_bucket_upload_that_is_gone_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: StorageErrorKind,
        gives_up: bool) -> None:
    spool = PartSpool(tmp_path)
    await spool.prepare()
    await spool.open_upload(UPLOAD_ID, {})
    await spool.write_chunk(UPLOAD_ID, 1, 0, chunks(b"data"), 4)
    finished = await spool.finish_part(UPLOAD_ID, 1)
    record, upload = RECORD, UPLOAD
    bucket, coordinator = Bucket(kind), Coordinator()
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    journal = await open_journal(tmp_path)
    storage = cast(StorageSet, {"bucket": bucket})
    transfer = PartTransfer(spool, storage, pop_uploads(tmp_path, journal, coordinator, storage),
                            journal, "us-east-1", metrics)

    real_sleep = asyncio.sleep
    slept: list[float] = []

    async def no_wait(delay: float, *args: Any, **kwargs: Any) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    transfer.send(KnownUpload(record, upload, local=False), finished)
    for _ in range(TURNS):
        if not others():
            break
        await real_sleep(0.001)  # a moment, for the spool's work in threads
    still_running = bool(others())
    await transfer.close()
    monkeypatch.undo()
    await journal.close()

    if gives_up:
        assert (bucket.attempts, slept, still_running) == (1, [], False)
        assert coordinator.asked == [UPLOAD_ID]
        assert await spool.upload_meta(UPLOAD_ID) is None  # its spool is freed
    else:
        assert bucket.attempts > 2 and slept
        assert await spool.upload_meta(UPLOAD_ID) is not None
    assert coordinator.told == []
    # Every failed send is counted, by kind; none is left waiting or sending.
    assert registry.get_sample_value("cin_transfer_errors_total",
                                     {"kind": kind.value}) == bucket.attempts
    transfer.show_in(metrics)
    assert registry.get_sample_value("cin_transfer_parts_in_flight") == 0
    assert registry.get_sample_value("cin_transfer_parts_queued") == 0
