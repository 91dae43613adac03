"""The coordinator on PostgreSQL: a REST store and an Upload API upload through a POP,
each to Complete, with the coordinator's state in a database of the test server, and its
transactions timed in the metrics."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import upload_client
from prometheus_client.parser import text_string_to_metric_families
from support import APIKEY, INTERNAL_SECRET, Network, start_network, wait_complete
from upload_client import PART


@pytest.fixture
async def network(tmp_path: Path, postgres_database: str) -> AsyncIterator[Network]:
    async with start_network(tmp_path, state=postgres_database) as started:
        yield started


async def test_stores_and_uploads_complete_with_the_state_on_postgresql(
        network: Network, postgres_database: str) -> None:
    stored = os.urandom(100_000)
    response = await network.pop.post("/api/store/S3", data=stored, params={"key": APIKEY})
    reply = await response.json()
    assert response.status == 200, reply
    store_handle = reply["handle"]

    uploaded = os.urandom(PART + 12345)  # two parts: a multipart upload in the bucket
    completed = await upload_client.upload(network.config.pops[0].public_url, uploaded,
                                           chunk=2 * 1024**2)
    upload_handle = completed["handle"]

    for handle, payload in ((store_handle, stored), (upload_handle, uploaded)):
        metadata = await wait_complete(network, handle)
        assert metadata["upload_status"] == "Complete", metadata
        assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
        download = await network.pop.get(f"/api/file/{handle}")
        assert hashlib.sha256(await download.read()).hexdigest() == metadata["sha256"]

    # The records are PostgreSQL's: the coordinator kept nothing in SQLite.
    db = await asyncpg.connect(postgres_database)
    try:
        rows = await db.fetch("SELECT handle, status FROM files ORDER BY handle")
        parts = await db.fetchval("SELECT count(*) FROM parts WHERE handle = $1",
                                  upload_handle)
    finally:
        await db.close()
    assert sorted((row["handle"], row["status"]) for row in rows) == sorted(
        [(store_handle, "Complete"), (upload_handle, "Complete")])
    assert parts == 2
    assert not (network.root / "coordinator" / "state.sqlite3").exists()

    # Each of those changes was a PostgreSQL transaction, timed in the metrics.
    response = await network.coordinator.get("/metrics",
                                             headers={"Authorization": f"Bearer {INTERNAL_SECRET}"})
    counted = {(sample.name, sample.labels.get("engine")): sample.value
               for family in text_string_to_metric_families(await response.text())
               for sample in family.samples}
    assert counted[("cin_state_transaction_duration_seconds_count", "postgresql")] >= 6
    assert ("cin_state_transaction_duration_seconds_count", "sqlite") not in counted
