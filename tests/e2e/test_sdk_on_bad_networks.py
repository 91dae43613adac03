"""Issue 5's proofs: cin's Python SDK on bad networks, against real cin processes.

(a) On the bad link (2 MiB/s, 150 ms round trip, 3 s per request) that fixed 8 MiB chunks
    cannot cross, and which here also drops every open connection now and then, the
    adaptive SDK completes and reports its goodput as a share of the link rate.
(b) Of two POPs behind links 5 ms and 120 ms away, the SDK picks the nearer one.
(c) The POP the SDK chose is killed -9 mid-upload: the upload finishes at the other POP,
    and the stored object's sha256 is the file's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from impaired_network import ImpairedPop, PopsApart, stored_sha256
from impairment import MiB
from support import APIKEY

from sdk import AsyncClient, Progress, UploadInterrupted

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DROP_EVERY = 3.0  # seconds between drops of every open connection on the bad link


def write_payload(root: Path, size: int) -> tuple[Path, str]:
    payload = os.urandom(size)
    path = root / "upload.bin"
    path.write_bytes(payload)
    return path, hashlib.sha256(payload).hexdigest()


async def test_fixed_8_mib_chunks_fail_where_adaptive_ones_get_through(
        on_bad_link: ImpairedPop, tmp_path: Path,
        record_property: Callable[[str, object], None]) -> None:
    link = on_bad_link.link
    path, sha256 = write_payload(tmp_path, 12 * MiB)

    async with AsyncClient(on_bad_link.coordinator, APIKEY, chunk_size=8 * MiB,
                           request_timeout=link.retries.timeout,
                           state_dir=tmp_path / "fixed") as fixed:
        with pytest.raises(UploadInterrupted):
            await fixed.upload(path)

    drops = 0

    async def drop_connections() -> None:  # a lossy link: everything open is cut
        nonlocal drops
        while True:
            await asyncio.sleep(DROP_EVERY)
            await asyncio.to_thread(on_bad_link.proxy.reset_connections)
            drops += 1

    async with AsyncClient(on_bad_link.coordinator, APIKEY,
                           request_timeout=link.retries.timeout,
                           state_dir=tmp_path / "adaptive") as adaptive:
        dropping = asyncio.create_task(drop_connections())
        try:
            result = await adaptive.upload(path)
        finally:
            dropping.cancel()
    assert await stored_sha256(on_bad_link.coordinator, result.handle) == sha256
    assert drops >= 1, "the link never dropped a connection under the upload"
    share = link.goodput_share(result.size, result.elapsed)
    record_property("goodput_share", round(share, 3))
    record_property("seconds", round(result.elapsed, 2))
    record_property("bytes_sent", result.bytes_sent)
    record_property("drops", drops)
    print(f"adaptive SDK on the bad link: {result.size / MiB:.0f} MiB in "
          f"{result.elapsed:.1f} s, goodput {share:.2f} of the link rate, "
          f"{result.bytes_sent / result.size:.2f} bytes sent per byte, {drops} drops")
    assert 0 < share <= 1.0


async def test_the_sdk_picks_the_nearer_pop(near_and_far_pops: PopsApart,
                                            tmp_path: Path) -> None:
    network = near_and_far_pops
    nearest = network.nearest().name
    path, sha256 = write_payload(tmp_path, 64 * 1024)
    async with AsyncClient(network.coordinator, APIKEY, state_dir=tmp_path / "state") as cin:
        probes = {probe.pop.name: probe.rtt for probe in await cin.pops()}
        assert min(probes, key=lambda name: probes[name] or float("inf")) == nearest, probes
        result = await cin.upload(path)
    assert list(result.pops) == [nearest]
    assert await stored_sha256(network.coordinator, result.handle) == sha256


async def test_the_chosen_pop_killed_mid_upload_the_other_finishes(
        near_and_far_pops: PopsApart, tmp_path: Path) -> None:
    network = near_and_far_pops
    near = network.nearest()
    far = next(pop for pop in network.pops.values() if pop is not near)
    size = 32 * MiB
    path, sha256 = write_payload(tmp_path, size)
    killed = False

    def kill_the_near_pop_midway(progress: Progress) -> None:
        nonlocal killed
        if not killed and progress.pop == near.name and progress.acknowledged >= size // 4:
            killed = True
            near.process.kill9()

    # A rate limit keeps the upload going long enough to be cut in the middle.
    async with AsyncClient(network.coordinator, APIKEY, max_rate=8 * MiB,
                           state_dir=tmp_path / "state") as cin:
        result = await cin.upload(path, progress=kill_the_near_pop_midway)
    assert killed
    assert list(result.pops) == [near.name, far.name]
    assert await stored_sha256(network.coordinator, result.handle) == sha256
