"""Prometheus metrics at /metrics: each service's own figures, moved by real requests,
readable with the internal secret (or on an address of their own), and never labelled
with a handle."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import upload_client
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from support import (
    APIKEY,
    INTERNAL_SECRET,
    Network,
    config_data,
    free_port,
    start_network,
    to_config,
)
from upload_client import PART

from cin.serve import metrics_app
from common.config import ConfigError, MetricsConfig
from edge.app import make_app as make_edge_app

BEARER = {"Authorization": f"Bearer {INTERNAL_SECRET}"}
STORE_ROUTE = "/api/store/{provider}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient) -> Samples:  # type: ignore[type-arg]
    response = await client.get("/metrics", headers=BEARER)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(await response.text())
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def until(check: Callable[[], Any], what: str, seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)


async def store(network: Network, payload: bytes) -> dict[str, Any]:
    response = await network.pop.post("/api/store/S3", params={"key": APIKEY}, data=payload)
    assert response.status == 200, await response.text()
    reply: dict[str, Any] = await response.json()
    return reply


async def test_a_store_moves_the_request_and_byte_counts(network: Network) -> None:
    before = await scrape(network.pop)
    payload = os.urandom(123_457)
    await store(network, payload)
    after = await scrape(network.pop)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("cin_http_requests_total", method="POST", route=STORE_ROUTE,
                 status="200") == 1
    assert moved("cin_http_request_duration_seconds_count", route=STORE_ROUTE) == 1
    assert moved("cin_http_received_bytes_total", route=STORE_ROUTE) == len(payload)
    assert moved("cin_stored_bytes_total", api="store") == len(payload)
    assert moved("cin_uploads_total", api="store", status="complete") == 1
    assert value(after, "cin_spool_free_bytes") > 0


async def test_an_upload_api_upload_moves_the_transfer_figures(network: Network) -> None:
    payload = os.urandom(2 * PART + 999)
    reply = await upload_client.upload(network.config.pops[0].public_url, payload,
                                       chunk=2 * 1024**2)
    assert reply["status"] in ("InTransit", "Stored")
    samples = await scrape(network.pop)
    assert value(samples, "cin_uploads_total", api="upload_api",
                 status="in_transit") + value(samples, "cin_uploads_total", api="upload_api",
                                              status="complete") == 1
    assert value(samples, "cin_http_requests_total", method="PUT", route="/multipart/part",
                 status="200") >= 1
    assert value(samples, "cin_http_requests_total", method="POST",
                 route="/multipart/complete", status="200") == 1

    async def all_parts_stored() -> bool:
        now = await scrape(network.pop)
        return value(now, "cin_stored_bytes_total", api="upload_api") == len(payload)

    await until(all_parts_stored, "every part to reach the bucket")
    done = await scrape(network.pop)
    assert value(done, "cin_transfer_parts_in_flight") == 0
    assert value(done, "cin_transfer_parts_queued") == 0
    assert not any(name == "cin_transfer_errors_total" for name, _ in done)  # none failed
    # The POP freed its spool once the file was Complete; the gauge says so.
    deadline = time.monotonic() + 10
    while value(done, "cin_spool_bytes") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        done = await scrape(network.pop)
    assert value(done, "cin_spool_bytes") == 0


async def test_the_coordinator_shows_outbox_messages_heartbeats_and_transactions(
        tmp_path: Path) -> None:
    dead_receiver = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: retries
    async with start_network(tmp_path, webhooks=[dead_receiver],
                             webhook_delivery={"first_retry": 60}) as network:
        await store(network, b"hello metrics")

        async def delivery_tried() -> bool:
            samples = await scrape(network.coordinator)
            return value(samples, "cin_webhook_deliveries_total", outcome="retry") >= 1

        await until(delivery_tried, "a webhook delivery to fail")
        samples = await scrape(network.coordinator)
    assert value(samples, "cin_webhook_outbox", state="pending") >= 1
    assert value(samples, "cin_webhook_outbox", state="abandoned") == 0
    assert value(samples, "cin_webhook_delivery_duration_seconds_count") >= 1
    # A store asks nothing of the coordinator: the POP leased its handles when it started
    # and reports the store in a batch of its journal's events.
    assert value(samples, "cin_rpc_messages_total", type="start_file", outcome="ok") == 0
    assert value(samples, "cin_rpc_messages_total", type="file_stored", outcome="ok") == 0
    assert value(samples, "cin_rpc_messages_total", type="lease_handles", outcome="ok") == 1
    assert value(samples, "cin_rpc_messages_total", type="event_batch", outcome="ok") >= 1
    assert value(samples, "cin_pop_heartbeats_total", pop="us-east-1") >= 1
    assert value(samples, "cin_pop_health", pop="us-east-1", state="up") == 1
    assert value(samples, "cin_pop_health", pop="us-east-1", state="down") == 0
    assert value(samples, "cin_state_transaction_duration_seconds_count",
                 engine="sqlite") >= 2
    # The coordinator's registry is its own: the POP's figures are not in it.
    assert not any(name.startswith(("cin_spool", "cin_stored")) for name, _ in samples)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-secret-at-all"},
                                     {"Authorization": f"Basic {INTERNAL_SECRET}"}],
                         ids=["none", "wrong", "not-bearer"])
async def test_an_unauthenticated_scrape_is_refused(network: Network,
                                                    headers: dict[str, str]) -> None:
    for client in (network.pop, network.coordinator):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401
        assert (await response.json())["code"] == "not_authenticated"


async def test_no_label_carries_a_handle(network: Network) -> None:
    handle = (await store(network, b"whose handle?"))["url"].rsplit("/", 1)[1]
    for path in (f"/api/file/{handle}/metadata", f"/api/file/{handle}",
                 f"/api/file/{handle}/no/such/route"):
        await network.pop.get(path)
        await network.coordinator.get(path)
    for client in (network.pop, network.coordinator):
        response = await client.get("/metrics", headers=BEARER)
        text = await response.text()
        assert handle not in text
        samples = await scrape(client)
        assert value(samples, "cin_http_requests_total", method="GET",
                     route="/api/file/{handle}/metadata", status="200") == 1


async def test_metrics_without_auth_on_their_own_address(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["pops"][0]["metrics"] = {"auth": "none", "listen": f"127.0.0.1:{free_port()}"}
    config = to_config(data, tmp_path)
    assert config.pops[0].metrics == MetricsConfig(auth="none",
                                                   listen=config.pops[0].metrics.listen)
    pop_app = make_edge_app(config, config.pops[0])
    async with TestClient(TestServer(pop_app)) as public, \
            TestClient(TestServer(metrics_app(pop_app))) as private:
        assert (await public.get("/metrics", headers=BEARER)).status == 404
        response = await private.get("/metrics")  # no credentials asked
        assert response.status == 200
        assert "cin_http_requests_total" in await response.text()


@pytest.mark.parametrize("block, key", [({"auth": "maybe"}, "pops[0].metrics.auth"),
                                        ({"listen": "nowhere"}, "pops[0].metrics.listen"),
                                        ({"port": 9100}, "pops[0].metrics.port")])
def test_a_bad_metrics_block_names_its_key(tmp_path: Path, block: dict[str, Any],
                                           key: str) -> None:
    data = config_data(tmp_path)
    data["pops"][0]["metrics"] = block
    with pytest.raises(ConfigError) as raised:
        to_config(data, tmp_path)
    assert raised.value.key == key


def test_metrics_are_protected_by_default(tmp_path: Path) -> None:
    config = to_config(config_data(tmp_path), tmp_path)
    assert config.coordinator.metrics == MetricsConfig(auth="internal", listen=None)
    assert all(pop.metrics.auth == "internal" for pop in config.pops)
