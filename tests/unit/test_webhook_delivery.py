"""The webhook outbox worker against a real receiver on loopback.

Each test runs a `WebhookSender` over a real `SqliteStateStore` and posts to an aiohttp
server that records what it got and answers as the test scripts it; the signatures are
checked with filestack-python's own verifier, as a Filestack customer's receiver would.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from filestack.helpers import verify_webhook_signature
from support import APIKEY, WEBHOOK_SECRET, config_data, free_port, start_network, to_config

from common.config import Config
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord, file_url
from coordinator.events import UPLOAD, Delivery, file_events
from coordinator.state.sqlite import SqliteStateStore
from coordinator.webhooks import WebhookSender, retry_delay

# Fast enough that a few retries fit in well under a second.
FAST = {"first_retry": 0.05, "max_interval": 0.2, "timeout": 2}


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """A webhook endpoint on loopback. `answer(path, n)` is the status for the n-th
    (0-based) request to `path`; a path in `hang` never answers until the test ends."""

    def __init__(self, answer: Callable[[str, int], int] = lambda path, n: 200, *,
                 port: int | None = None, hang: frozenset[str] = frozenset()) -> None:
        self.answer = answer
        self.hang = hang
        self.hits: list[Hit] = []
        self.arrived: list[bytes] = []  # bodies of requests to hanging paths
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{name}", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=port)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def to(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path in self.hang:
            self.arrived.append(body)
            await self.release.wait()
        status = self.answer(request.path, len(self.to(request.path)))
        self.hits.append(Hit(request.path, dict(request.headers), body, status))
        if status == 302:
            return web.Response(status=302, headers={"Location": "/target"})
        return web.Response(status=status)

    async def __aenter__(self) -> Receiver:
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.close()


async def eventually(condition: Callable[[], bool | Awaitable[bool]], what: str,
                     timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def make_config(tmp_path: Path, urls: list[str], **delivery: float) -> Config:
    return to_config(config_data(tmp_path, webhooks=urls,
                                 webhook_delivery={**FAST, **delivery}), tmp_path)


@contextlib.asynccontextmanager
async def opened_state(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    state = SqliteStateStore(tmp_path / "state.sqlite3")
    await state.open()
    try:
        yield state
    finally:
        await state.close()


@contextlib.asynccontextmanager
async def sending(state: SqliteStateStore, config: Config,
                  clock: Callable[[], float] = time.time) -> AsyncIterator[WebhookSender]:
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(state, config, session, clock=clock)
        worker = asyncio.create_task(sender.run())
        try:
            yield sender
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def stored(state: SqliteStateStore, config: Config, handle: str, *, size: int = 5,
                 created: float | None = None) -> FileRecord:
    """Store a file of APIKEY's, writing its fp.upload events as FileAuthority does."""
    record = FileRecord(handle=handle, apikey=APIKEY, storage="bucket", provider="s3",
                        container="cin-test", key=f"k/{handle}", filename="naïve.txt",
                        mimetype="text/plain", size=0, status=FileStatus.STARTED,
                        pop="us-east-1", uploaded=time.time(), tags={"user": "42"})
    await state.create_file(record, origin=handle)
    url = file_url(config.coordinator.public_url, handle)
    when = time.time() if created is None else created
    return await state.set_status(
        handle, FileStatus.COMPLETE, size=size, etag="etag",
        events=lambda changed: file_events(config.apps[APIKEY], UPLOAD, changed, url, when))


async def pending(state: SqliteStateStore) -> list[Delivery]:
    return await state.due_deliveries(now=1e12, limit=100)


def counts_are(state: SqliteStateStore, expected: dict[str, int]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await state.outbox_counts() == expected

    return check


# ---------------------------------------------------------------------------- pure parts


def test_retry_delay_doubles_from_the_first_retry_up_to_the_cap() -> None:
    def full(attempt: int) -> float:
        return retry_delay(attempt, first=0.5, cap=10.0, rng=lambda: 1.0)

    def half(attempt: int) -> float:
        return retry_delay(attempt, first=0.5, cap=10.0, rng=lambda: 0.0)

    assert [full(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [half(n) for n in (1, 2, 3, 6)] == [0.25, 0.5, 1.0, 5.0]
    # Thousands of failures later the delay is still the cap, not an overflow.
    assert full(10_000) == 10.0
    assert half(10_000) == 5.0


def test_retry_delay_jitter_stays_between_half_and_all_of_the_delay() -> None:
    rng = random.Random(7)
    delays = [retry_delay(3, first=1.0, cap=60.0, rng=rng.random) for _ in range(2000)]
    assert all(2.0 <= delay <= 4.0 for delay in delays)
    # Spread over the whole range, not stuck at one end.
    assert min(delays) < 2.1 and max(delays) > 3.9
    assert len(set(delays)) > 1900


async def test_a_delivery_body_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    delivery = Delivery(id=42, apikey=APIKEY, endpoint="http://hooks.test/a", action=UPLOAD,
                        text={"filename": "naïve.txt", "size": 3}, created=1700000000.75,
                        attempts=0)
    assert delivery.body() == delivery.body()
    assert json.loads(delivery.body()) == {
        "id": 42, "action": "fp.upload", "timestamp": 1700000000,
        "text": {"filename": "naïve.txt", "size": 3}}
    assert "naïve".encode() in delivery.body()  # UTF-8, as the signature is computed over

    # Read back from the outbox twice (as two retries would be): the same bytes.
    config = make_config(tmp_path, ["http://hooks.test/a"])
    async with opened_state(tmp_path) as state:
        record = await stored(state, config, "h" * 20, size=5, created=1700000001.5)
        (first,) = await pending(state)
        (second,) = await pending(state)
    assert first is not second
    assert first.body() == second.body()
    document = json.loads(first.body())
    assert set(document) == {"id", "action", "timestamp", "text"}
    assert (document["id"], document["action"], document["timestamp"]) == (
        first.id, "fp.upload", 1700000001)
    assert document["text"] == {
        "handle": "h" * 20, "container": "cin-test",
        "url": f"{config.coordinator.public_url}/api/file/{'h' * 20}",
        "filename": "naïve.txt", "client": "Computer", "key": record.key,
        "type": "text/plain", "status": "Stored", "size": 5, "upload_tags": {"user": "42"}}


# ------------------------------------------------------------------------- delivering


async def test_the_signature_verifies_with_filestack_python(tmp_path: Path) -> None:
    async with Receiver() as receiver, opened_state(tmp_path) as state:
        config = make_config(tmp_path, [receiver.url("/hook")])
        await stored(state, config, "s" * 20)
        (delivery,) = await pending(state)
        async with sending(state, config):
            await eventually(counts_are(state, {"pending": 0, "abandoned": 0}), "delivery")
    (hit,) = receiver.hits
    assert hit.body == delivery.body()
    assert hit.headers["Content-Type"] == "application/json"
    assert abs(int(hit.headers["FS-Timestamp"]) - time.time()) < 60
    assert verify_webhook_signature(WEBHOOK_SECRET, hit.body, hit.headers) == (True, {})
    verified, details = verify_webhook_signature("not-the-webhook-secret", hit.body,
                                                 hit.headers)
    assert verified is False and "Signature mismatch" in details["error"]
    # The signature covers the body: one changed byte fails too.
    tampered = hit.body.replace(b'"size":5', b'"size":6')
    assert tampered != hit.body
    assert verify_webhook_signature(WEBHOOK_SECRET, tampered, hit.headers)[0] is False


async def test_a_failing_receiver_gets_the_same_event_until_it_answers_200(
        tmp_path: Path) -> None:
    async with (Receiver(lambda path, n: 500 if n < 2 else 200) as receiver,
                opened_state(tmp_path) as state):
        config = make_config(tmp_path, [receiver.url("/hook")])
        await stored(state, config, "f" * 20)
        (delivery,) = await pending(state)
        async with sending(state, config):
            await eventually(counts_are(state, {"pending": 0, "abandoned": 0}),
                             "the third attempt to be recorded as delivered")
            assert await pending(state) == []
    assert [hit.status for hit in receiver.hits] == [500, 500, 200]
    assert {hit.body for hit in receiver.hits} == {delivery.body()}
    assert [hit.document["id"] for hit in receiver.hits] == [delivery.id] * 3
    for hit in receiver.hits:
        assert verify_webhook_signature(WEBHOOK_SECRET, hit.body, hit.headers) == (True, {})


async def test_a_receiver_that_was_down_gets_every_pending_event(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    config = make_config(tmp_path, [f"http://127.0.0.1:{port}/hook"])
    async with opened_state(tmp_path) as state:
        handles = [f"{index:020d}" for index in range(4)]
        for handle in handles:
            await stored(state, config, handle)
        async with sending(state, config):
            async def all_retried() -> bool:
                rows = await pending(state)
                return len(rows) == 4 and all(row.attempts >= 2 for row in rows)

            await eventually(all_retried, "every event to fail twice")
            ids = {row.id for row in await pending(state)}
            async with Receiver(port=port) as receiver:
                await eventually(counts_are(state, {"pending": 0, "abandoned": 0}),
                                 "every event to be delivered")
    assert {hit.document["id"] for hit in receiver.hits} == ids
    assert sorted(hit.document["text"]["handle"] for hit in receiver.hits) == handles
    assert all(hit.status == 200 for hit in receiver.hits)


async def test_an_event_past_give_up_after_is_abandoned_after_a_failure(
        tmp_path: Path) -> None:
    async with Receiver(lambda path, n: 500) as receiver, opened_state(tmp_path) as state:
        config = make_config(tmp_path, [receiver.url("/hook")], give_up_after=60)
        await stored(state, config, "o" * 20, created=time.time() - 120)  # too old
        await stored(state, config, "n" * 20)  # fresh: retried
        async with sending(state, config):
            await eventually(counts_are(state, {"pending": 1, "abandoned": 1}),
                             "the old event to be abandoned")

            def fresh_hits() -> int:
                return sum(hit.document["text"]["handle"] == "n" * 20
                           for hit in receiver.hits)

            await eventually(lambda: fresh_hits() >= 3, "the fresh event to be retried")
        (left,) = await pending(state)
    old = [hit for hit in receiver.hits if hit.document["text"]["handle"] == "o" * 20]
    assert len(old) == 1  # one failed attempt, then never again
    assert left.action == "fp.upload" and left.text["handle"] == "n" * 20
    assert left.attempts >= 2  # the third may have been cut short by the test ending


async def test_an_event_for_an_endpoint_no_longer_configured_is_abandoned(
        tmp_path: Path) -> None:
    async with Receiver() as receiver, opened_state(tmp_path) as state:
        before = make_config(tmp_path, [receiver.url("/gone")])
        now = make_config(tmp_path, [receiver.url("/current")])
        await stored(state, before, "g" * 20)
        await stored(state, now, "c" * 20)
        async with sending(state, now):
            await eventually(counts_are(state, {"pending": 0, "abandoned": 1}),
                             "the stale endpoint's event to be abandoned")
            await eventually(lambda: len(receiver.to("/current")) == 1, "the current one")
    assert receiver.to("/gone") == []  # never posted: its secret is no longer known
    assert receiver.to("/current")[0].document["text"]["handle"] == "c" * 20


async def test_201_and_204_are_delivered_and_302_is_retried_not_followed(
        tmp_path: Path) -> None:
    def answer(path: str, n: int) -> int:
        # Where the redirect points answers 200: following it would look delivered.
        return 200 if path == "/target" else int(path.strip("/"))

    async with (Receiver(answer) as receiver,
                opened_state(tmp_path) as state):
        redirecting = receiver.url("/302")
        config = make_config(tmp_path, [receiver.url("/201"), receiver.url("/204"), redirecting])
        await stored(state, config, "r" * 20)
        async with sending(state, config):
            await eventually(lambda: len(receiver.to("/302")) >= 3, "302 to be retried")
            await eventually(counts_are(state, {"pending": 1, "abandoned": 0}),
                             "201 and 204 to be recorded as delivered")
            (left,) = await pending(state)
    assert left.endpoint == redirecting
    assert left.attempts >= 2
    assert len(receiver.to("/201")) == len(receiver.to("/204")) == 1
    assert receiver.to("/target") == []  # the redirect was not followed


async def test_the_worker_stops_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    """A change that wakes the worker in the same instant the coordinator shuts down must
    not swallow the cancel (Python 3.11's `wait_for` does), or shutdown waits forever."""
    config = make_config(tmp_path, ["http://127.0.0.1:9/hook"])
    async with opened_state(tmp_path) as state, aiohttp.ClientSession() as session:
        sender = WebhookSender(state, config, session)
        worker = asyncio.create_task(sender.run())
        await asyncio.sleep(0.2)  # the outbox is empty: the worker is idle, waiting
        assert not worker.done()
        sender.wake()
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=2)
        if not done:  # undo the hang before failing, so the test run can go on
            worker.cancel()
            await asyncio.wait({worker}, timeout=2)
        assert done == {worker} and worker.cancelled()


async def test_a_hanging_receiver_does_not_hold_up_a_store(tmp_path: Path) -> None:
    async with Receiver(hang=frozenset({"/hook"})) as receiver:
        async with start_network(tmp_path, webhooks=[receiver.url("/hook")],
                                 webhook_delivery={"timeout": 30}) as network:
            async def timed_store(body: bytes) -> float:
                started = time.monotonic()
                reply = await network.pop.post("/api/store/S3", data=body,
                                               params={"key": APIKEY})
                assert reply.status == 200, await reply.text()
                return time.monotonic() - started

            assert await timed_store(b"first file") < 5
            await eventually(lambda: len(receiver.arrived) == 1,
                             "the first event to reach the hanging receiver")
            # The first delivery is stuck in the receiver: a new store is not held up.
            assert await timed_store(b"second file") < 5
            await eventually(lambda: len(receiver.arrived) == 2, "the second event")
            health = await (await network.coordinator.get("/health")).json()
            assert health["webhooks"] == {"pending": 2, "abandoned": 0}
        assert receiver.hits == []  # nothing was answered while the network ran
    assert sorted(json.loads(body)["text"]["size"] for body in receiver.arrived) == [10, 11]



async def test_two_workers_on_one_outbox_send_each_event_once(tmp_path: Path) -> None:
    # As two coordinators on one database do: each sends what it claimed, and every
    # request hangs until all have arrived, so a second send of an event would be made
    # while the first is still under way.
    async with Receiver(hang=frozenset({"/hook"})) as receiver, \
            opened_state(tmp_path) as state:
        config = make_config(tmp_path, [receiver.url("/hook")])
        handles = [f"{index:020d}" for index in range(6)]
        for handle in handles:
            await stored(state, config, handle)
        ids = {row.id for row in await pending(state)}
        async with sending(state, config), sending(state, config):
            await eventually(lambda: len(receiver.arrived) >= len(handles),
                             "every event to be sent")
            receiver.release.set()
            await eventually(counts_are(state, {"pending": 0, "abandoned": 0}),
                             "every delivery to be recorded")
    assert sorted(hit.document["id"] for hit in receiver.hits) == sorted(ids)
    assert len(receiver.arrived) == len(handles)


async def test_a_stopping_worker_leaves_what_it_was_sending_due_at_once(
        tmp_path: Path) -> None:
    async with Receiver(hang=frozenset({"/hook"})) as receiver, \
            opened_state(tmp_path) as state:
        config = make_config(tmp_path, [receiver.url("/hook")], timeout=30)
        await stored(state, config, "s" * 20)
        async with sending(state, config):
            await eventually(lambda: len(receiver.arrived) == 1, "the event to be sent")
            assert await state.due_deliveries(time.time(), 10) == []  # claimed
        # Stopped mid-send: the next worker need not wait out the claim (30 s and more).
        (due,) = await state.due_deliveries(time.time(), 10)
        assert due.text["handle"] == "s" * 20
