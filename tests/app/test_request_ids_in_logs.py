"""A request's id on every log line it causes, at the POP and at the coordinator the POP
calls for it; not only on the access log line.

A store or an Upload API step at a POP calls nobody: the facts it records reach the
coordinator later, shipped in batches of many requests' events (edge/journal/shipper.py),
so the coordinator's lines about them carry no request's id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest
import upload_client
from support import APIKEY, APP_SECRET, Network, shipped

from common.protocol.file_status import FileStatus
from common.protocol.security import encode_policy, sign_policy
from common.web.log_context import RequestIdFilter
from coordinator.keys import STATE


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """What cin's log handler would write at INFO, through the filter it writes with."""
    caplog.set_level(logging.INFO)
    collected = Collected()
    collected.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(collected)
    try:
        yield collected.records
    finally:
        logging.getLogger().removeHandler(collected)


def of_request(records: list[logging.LogRecord], request_id: str) -> dict[str, list[str]]:
    """The messages that carry `request_id`, by logger."""
    found: dict[str, list[str]] = {}
    for record in records:
        if getattr(record, "request_id", None) == request_id:
            found.setdefault(record.name, []).append(record.getMessage())
    return found


async def test_a_store_logs_under_the_clients_id_at_the_pop(
        network: Network, records: list[logging.LogRecord]) -> None:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"x" * 100,
                                      headers={"X-Request-Id": "abc123"})
    assert response.status == 200 and response.headers["X-Request-Id"] == "abc123"
    handle = (await response.json())["handle"]
    await shipped(network)

    lines = of_request(records, "abc123")
    # The POP's own line, written in the shielded job that stores the bytes.
    [stored] = lines["cin.edge.store"]
    assert stored.startswith(f"{handle} stored: 100 bytes in cin-test/")
    # The coordinator has the file, from the POP's shipped events: not from a call made
    # for this request, so none of its lines carries the id.
    record = await network.coordinator.app[STATE].get_file(handle)
    assert record is not None and record.status is FileStatus.COMPLETE
    assert not any(name.startswith("cin.coordinator") for name in lines), lines


async def test_lines_of_another_request_or_of_none_do_not_take_the_id(
        network: Network, records: list[logging.LogRecord]) -> None:
    await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"first",
                           headers={"X-Request-Id": "abc123"})
    second = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"second")
    made = second.headers["X-Request-Id"]
    handle = (await second.json())["handle"]
    assert made != "abc123"
    assert any(handle in line for line in of_request(records, made)["cin.edge.store"])
    assert not any(handle in line for lines in of_request(records, "abc123").values()
                   for line in lines)
    logging.getLogger("cin.test").info("no request here")
    assert records[-1].request_id is None  # type: ignore[attr-defined]


async def test_the_transfer_a_complete_starts_logs_under_the_completes_id(
        network: Network, records: list[logging.LogRecord]) -> None:
    payload = b"small enough for one put" * 40
    pop = network.config.pops[0].public_url
    async with aiohttp.ClientSession() as session:
        start = await upload_client.start_upload(session, pop, len(payload))
        parts = await upload_client.send_parts(session, pop, start["upload_id"], payload)
    async with aiohttp.ClientSession(headers={"X-Request-Id": "complete-1"}) as session:
        reply = await upload_client.complete(session, pop, start["upload_id"], len(payload),
                                             parts)
    handle = reply["handle"]
    # The bucket transfer runs on after the answer, as a task the complete started.
    async with asyncio.timeout(10):
        while f"{handle} Complete; spool freed" not in of_request(
                records, "complete-1").get("cin.edge.transfer", []):
            await asyncio.sleep(0.02)
    lines = of_request(records, "complete-1")
    assert any(f"of {handle} in transit (1 parts)" in line for line in lines["cin.edge.uploads"])
    # The coordinator finishes the file from the shipped events, under no request's id.
    await shipped(network)
    record = await network.coordinator.app[STATE].get_file(handle)
    assert record is not None and record.status is FileStatus.COMPLETE
    assert not any(name.startswith("cin.coordinator") for name in lines), lines


async def test_an_overwrite_at_the_coordinator_keeps_its_id_through_the_pop(
        network: Network, records: list[logging.LogRecord]) -> None:
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=b"old")
    handle = (await stored.json())["handle"]
    expiry = int(time.time()) + 600
    policy = encode_policy({"expiry": expiry, "call": ["write"], "handle": handle})
    response = await network.coordinator.post(
        f"/api/file/{handle}", data=b"new bytes", headers={"X-Request-Id": "ow-1"},
        params={"policy": policy, "signature": sign_policy(APP_SECRET, policy)})
    assert response.status == 200, await response.text()
    # The coordinator relays the body to a POP, which reports the new version back: the
    # coordinator's line for that report carries the client's id.
    assert f"file {handle} overwritten (version 2, 9 bytes)" in of_request(
        records, "ow-1")["cin.coordinator"]
