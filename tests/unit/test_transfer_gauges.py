"""The transfer gauges of /metrics: parts waiting for one of the POP's bucket slots, and
parts holding one, while the bucket is slow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from journal_support import open_journal, pop_uploads
from prometheus_client import CollectorRegistry

from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, UploadRecord
from common.storage.storage_set import StorageSet
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import PartSpool
from edge.multipart.part_transfer import CONCURRENCY, PartTransfer
from edge.multipart.uploads import KnownUpload

UPLOAD_ID = "upload-0123456789"
PARTS = CONCURRENCY + 2
RECORD = FileRecord(handle="h" * 20, apikey="KEY", storage="bucket", provider="s3",
                    container="c", key="k", filename="f", mimetype="t/p", size=4 * PARTS,
                    status=FileStatus.IN_TRANSIT, pop="us-east-1", uploaded=1.0)
UPLOAD = UploadRecord(upload_id=UPLOAD_ID, handle="h" * 20, storage_upload_id="s3-id",
                      pop="us-east-1", fii=False, created=1.0)


class SlowBucket:
    """Takes every part it is sent, once it is let go."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sending = 0

    async def upload_part(self, *args: Any, **kwargs: Any) -> str:
        self.sending += 1
        await self.go.wait()
        return "etag"


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_parts_beyond_the_slots_show_as_queued(tmp_path: Path) -> None:
    spool = PartSpool(tmp_path)
    await spool.prepare()
    await spool.open_upload(UPLOAD_ID, {})
    finished = []
    for number in range(1, PARTS + 1):
        await spool.write_chunk(UPLOAD_ID, number, 0, chunks(b"data"), 4)
        finished.append(await spool.finish_part(UPLOAD_ID, number))
    registry, bucket = CollectorRegistry(), SlowBucket()
    metrics = EdgeMetrics(registry)
    journal = await open_journal(tmp_path)
    storage = cast(StorageSet, {"bucket": bucket})
    transfer = PartTransfer(spool, storage, pop_uploads(tmp_path, journal, object(), storage),
                            journal, "us-east-1", metrics)
    try:
        transfer.dispatch(KnownUpload(RECORD, UPLOAD, local=False), finished)
        async with asyncio.timeout(5):
            while bucket.sending < CONCURRENCY:
                await asyncio.sleep(0.001)
        transfer.show_in(metrics)
        assert registry.get_sample_value("cin_transfer_parts_in_flight") == CONCURRENCY
        assert registry.get_sample_value("cin_transfer_parts_queued") == PARTS - CONCURRENCY
    finally:
        await transfer.close()
        await journal.close()
    transfer.show_in(metrics)
    assert registry.get_sample_value("cin_transfer_parts_in_flight") == 0
    assert registry.get_sample_value("cin_transfer_parts_queued") == 0
