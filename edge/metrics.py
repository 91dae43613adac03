"""A POP's own Prometheus figures, beside the HTTP ones every service has
(common/web/metrics.py): what it took and stored, its spool, its transfers to the bucket.

Counts are kept as things happen; the spool's size and free space and the transfers
queued and sending are read when a scrape asks (the spool's size in a thread: it walks
the spool's files).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.protocol.file_status import FileStatus
from common.storage import StorageErrorKind

Api = Literal["store", "upload_api", "tus"]


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry (a PartTransfer made alone, in a test): counted, never shown.
        registry = registry if registry is not None else CollectorRegistry()
        self._stored = Counter(
            "cin_stored_bytes", "Bytes this POP put in the bucket, by API.", ["api"],
            registry=registry)
        self._uploads = Counter(
            "cin_uploads", "Uploads this POP finished taking, by API and the file status it "
                           "left them in.", ["api", "status"], registry=registry)
        self.spool_bytes = Gauge("cin_spool_bytes", "Bytes held in this POP's spool.",
                                 registry=registry)
        self.spool_free_bytes = Gauge(
            "cin_spool_free_bytes", "Free bytes on the file system of this POP's spool.",
            registry=registry)
        self.parts_queued = Gauge(
            "cin_transfer_parts_queued", "Parts (or one-put files) waiting for a slot to be "
                                         "sent to the bucket.", registry=registry)
        self.parts_sending = Gauge(
            "cin_transfer_parts_in_flight", "Parts (or one-put files) being sent to the "
                                            "bucket now.", registry=registry)
        self._transfer_errors = Counter(
            "cin_transfer_errors", "Sends to the bucket that failed, by storage error kind.",
            ["kind"], registry=registry)

    def stored(self, api: Api, size: int) -> None:
        self._stored.labels(api).inc(size)

    def upload(self, api: Api, status: FileStatus) -> None:
        self._uploads.labels(api, status.name.lower()).inc()

    def transfer_failed(self, kind: StorageErrorKind) -> None:
        self._transfer_errors.labels(kind.value).inc()

    async def read_spool(self, spool_dir: Path) -> None:
        used, free = await asyncio.to_thread(_spool_usage, spool_dir)
        self.spool_bytes.set(used)
        self.spool_free_bytes.set(free)


def _spool_usage(spool_dir: Path) -> tuple[int, int]:
    """Bytes of every file under `spool_dir`, and the free bytes of its file system."""
    used = 0
    for folder, _, files in os.walk(spool_dir):
        for name in files:
            try:
                used += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # freed while walked
                continue
    try:
        st = os.statvfs(spool_dir)
    except FileNotFoundError:
        return used, 0
    return used, st.f_bavail * st.f_frsize
