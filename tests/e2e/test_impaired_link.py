"""The bad networks of issue 5's proofs, calibrated with today's plain clients.

* On BAD_LINK (2 MiB/s, 150 ms round trip, 1 in 4 connections reset mid-body, 3 s per
  request, 3 attempts), a plain Intelligent Ingestion client with fixed 8 MiB chunks
  gives up, while the same client with 256 KiB chunks completes: the baseline the
  adaptive SDK is measured against (it must complete, and report its goodput as a
  share of the link rate, as `Link.goodput_share` does here).
* Two POPs behind links 5 ms and 120 ms away: what a client probing `/health` through
  the addresses `GET /pops` gives measures them in the right order.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable

import aiohttp
import pytest
from impaired_network import (
    ImpairedPop,
    PopsApart,
    median_health_round_trip,
    stored_sha256,
)
from impairment import KiB, MiB
from upload_client import GaveUp, fii_upload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PAYLOAD = 8 * MiB  # one FII part


async def test_fixed_8_mib_chunks_cannot_cross_the_bad_link(on_bad_link: ImpairedPop) -> None:
    link = on_bad_link.link
    with pytest.raises(GaveUp) as gave_up:
        await fii_upload(on_bad_link.url, os.urandom(PAYLOAD), chunk=8 * MiB,
                         retries=link.retries)
    # The chunk itself, each time: 8 MiB need 4 s at 2 MiB/s, more than a request may
    # take, so no machine gets it across, however fast.
    assert gave_up.value.what == "part 1's chunk at 0"
    assert len(gave_up.value.errors) == link.retries.attempts


async def test_256_kib_chunks_cross_the_same_link(
        on_bad_link: ImpairedPop, record_property: Callable[[str, object], None]) -> None:
    link = on_bad_link.link
    payload = os.urandom(PAYLOAD)
    started = time.monotonic()
    reply = await fii_upload(on_bad_link.url, payload, chunk=256 * KiB, retries=link.retries)
    elapsed = time.monotonic() - started
    assert await stored_sha256(on_bad_link.coordinator, reply["handle"]) == hashlib.sha256(
        payload).hexdigest()
    # The link did its worst: connections were reset under the upload, and it lived.
    assert on_bad_link.proxy.counters.resets >= 1
    share = link.goodput_share(len(payload), elapsed)
    record_property("goodput_share", round(share, 3))
    record_property("seconds", round(elapsed, 2))
    record_property("resets", on_bad_link.proxy.counters.resets)
    assert 0 < share <= 1.0


async def test_a_health_probe_through_get_pops_finds_the_nearer_pop(
        near_and_far_pops: PopsApart, record_property: Callable[[str, object], None]) -> None:
    network = near_and_far_pops
    async with aiohttp.ClientSession() as session, \
            session.get(f"{network.coordinator}/pops") as response:
        listed = (await response.json())["pops"]
    urls = {pop["name"]: pop["url"] for pop in listed}
    assert urls == {name: pop.url for name, pop in network.pops.items()}
    assert listed[0]["name"] != network.nearest().name  # not first by luck
    medians = dict(zip(urls, await asyncio.gather(
        *(median_health_round_trip(url) for url in urls.values())), strict=True))
    for name, median in medians.items():
        record_property(f"median_health_seconds_{name}", round(median, 4))
    assert min(medians, key=medians.__getitem__) == network.nearest().name, medians
    for name, median in medians.items():
        assert median >= 2 * network.pops[name].latency, medians
