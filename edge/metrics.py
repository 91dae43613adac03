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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.protocol.file_status import FileStatus
from common.storage import StorageErrorKind
from edge.journal.sqlite_journal import JOURNAL_FILE

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
        # The journal (edge/journal): what waits for the coordinator, and what is left of
        # the lease. Both read when a scrape asks.
        self.events_pending = Gauge(
            "cin_journal_events_pending", "Events recorded in this POP's journal and not yet "
                                          "acknowledged by the coordinator.", registry=registry)
        self.handles_left = Gauge(
            "cin_journal_handles_left", "Handles this POP may still give out from its "
                                        "leases.", registry=registry)
        self._batches = Counter(
            "cin_event_batches", "Batches of events sent to the coordinator, by outcome "
                                 "(shipped, failed).", ["outcome"], registry=registry)
        self._events_refused = Counter(
            "cin_events_refused", "Events the coordinator refused for good (dropped).",
            registry=registry)
        self._batch_seconds = Histogram(
            "cin_event_batch_duration_seconds", "Round trips of event batches the "
                                                "coordinator took.", registry=registry)
        self._ship_latency = Histogram(
            "cin_event_ship_latency_seconds", "From an event being recorded at this POP to "
                                              "the coordinator acknowledging it.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                     900, 3600), registry=registry)
        self._journal_commits = Histogram(
            "cin_journal_commit_duration_seconds", "Transactions of this POP's journal, "
                                                   "each a group of writes sharing an fsync.",
            registry=registry)
        self._leases = Counter(
            "cin_lease_requests", "Blocks of handles this POP asked the coordinator for, by "
                                  "outcome (granted, failed).", ["outcome"], registry=registry)

    def stored(self, api: Api, size: int) -> None:
        self._stored.labels(api).inc(size)

    def upload(self, api: Api, status: FileStatus) -> None:
        self._uploads.labels(api, status.name.lower()).inc()

    def transfer_failed(self, kind: StorageErrorKind) -> None:
        self._transfer_errors.labels(kind.value).inc()

    def batch_shipped(self, seconds: float, ages: list[float], *, refused: int) -> None:
        self._batches.labels("shipped").inc()
        self._batch_seconds.observe(seconds)
        for age in ages:
            self._ship_latency.observe(max(0.0, age))
        if refused:
            self._events_refused.inc(refused)

    def batch_failed(self) -> None:
        self._batches.labels("failed").inc()

    def journal_commit(self, seconds: float) -> None:
        """On the journal's own thread (prometheus_client's metrics take that)."""
        self._journal_commits.observe(seconds)

    def lease(self, granted: bool) -> None:
        self._leases.labels("granted" if granted else "failed").inc()

    async def read_spool(self, spool_dir: Path) -> None:
        used, free = await asyncio.to_thread(_spool_usage, spool_dir)
        self.spool_bytes.set(used)
        self.spool_free_bytes.set(free)


def _spool_usage(spool_dir: Path) -> tuple[int, int]:
    """Bytes of every file under `spool_dir` but the journal's (records, not bytes
    waiting for the bucket), and the free bytes of its file system."""
    used = 0
    for folder, _, files in os.walk(spool_dir):
        for name in files:
            if folder == str(spool_dir) and name.startswith(JOURNAL_FILE):
                continue  # with its -wal and -shm
            try:
                used += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # freed while walked
                continue
    try:
        st = os.statvfs(spool_dir)
    except FileNotFoundError:
        return used, 0
    return used, st.f_bavail * st.f_frsize
