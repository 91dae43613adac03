"""The Python SDK against an in-process network over loopback HTTP: uploads of small
and large files on both storage drivers, security, resume after an interrupted upload,
and failover to another POP when the one in use stops mid-upload."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, SECURE_APIKEY, SECURE_SECRET, Network, shipped

from common.protocol.security import encode_policy, sign_policy
from common.web.drain import DRAIN
from coordinator.keys import EXPIRY
from edge.app import make_app as make_edge_app
from edge.keys import UPLOADS
from sdk import ApiError, AsyncClient, Progress, UploadInterrupted, UploadResult

MiB = 1024**2


def random_file(directory: Path, size: int, name: str = "data.bin") -> Path:
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def client(network: Network, state: Path, **options: object) -> AsyncClient:
    return AsyncClient(network.config.coordinator.public_url, APIKEY, state_dir=state,
                       **options)  # type: ignore[arg-type]


async def check_stored(cin: AsyncClient, result: UploadResult, original: Path,
                       directory: Path) -> None:
    """The file is Complete, and its bytes are the original's."""
    status = await cin.wait_until_complete(result.handle, max_wait=60)
    assert status.size == original.stat().st_size
    copy = directory / f"{result.handle}.copy"
    assert await cin.download(result.handle, copy) == original.stat().st_size
    assert sha256(copy) == sha256(original)


def state_files(state: Path) -> list[Path]:
    uploads = state / "uploads"
    return sorted(uploads.glob("*.json")) if uploads.exists() else []


@pytest.mark.parametrize("size", [1024, 20 * MiB + 777])
async def test_the_sdk_uploads_a_file_on_each_driver(network_on_each_driver: Network,
                                                     tmp_path: Path, size: int) -> None:
    original = random_file(tmp_path, size)
    seen: list[Progress] = []
    async with client(network_on_each_driver, tmp_path / "state") as cin:
        result = await cin.upload(original, store_path="/sdk/", tags={"run": "1"},
                                  progress=seen.append)
        assert result.size == size and result.resumed_bytes == 0
        assert result.bytes_sent >= size
        assert result.status in ("In Transit", "Complete")
        assert result.pops == ("us-east-1",)  # the only POP running
        assert seen[-1].acknowledged == size
        await check_stored(cin, result, original, tmp_path)
        metadata = await cin.metadata(result.handle, "path", "upload_tags")
        assert metadata["path"].startswith("sdk/")
        assert metadata["upload_tags"] == {"run": "1"}
    assert state_files(tmp_path / "state") == []  # removed once complete


async def test_the_nearest_pop_is_measured_once_per_ttl(network: Network,
                                                        tmp_path: Path) -> None:
    original = random_file(tmp_path, 1000)
    state = tmp_path / "state"
    async with client(network, state) as cin:
        assert (await cin.upload(original)).pops == ("us-east-1",)
    url = network.config.coordinator.public_url
    measured = json.loads((state / "pops.json").read_text())[url]
    assert [p["name"] for p in measured["pops"]] == ["us-east-1"]  # eu-west-1 is down
    async with client(network, state) as cin:  # another process: the file is reused
        await cin.upload(original)
        assert json.loads((state / "pops.json").read_text())[url] == measured
    async with client(network, state, pop_cache_ttl=0) as cin:  # expired: measured again
        await cin.upload(original)
        assert json.loads((state / "pops.json").read_text())[url] != measured


async def test_fixed_chunks(network: Network, tmp_path: Path) -> None:
    original = random_file(tmp_path, 9 * MiB)
    async with client(network, tmp_path / "state", chunk_size=512 * 1024) as cin:
        result = await cin.upload(original)
        await check_stored(cin, result, original, tmp_path)


async def test_chunks_too_big_for_the_timeout_shrink_until_they_fit(
        network: Network, tmp_path: Path) -> None:
    """Paced at 256 KiB/s with a 2 s timeout, the first 1 MiB chunk cannot finish: the
    adaptive upload halves until its chunks do, while fixed 1 MiB chunks never can and
    the upload stops, resumable."""
    original = random_file(tmp_path, 768 * 1024)
    slow = {"request_timeout": 2.0, "max_rate": 256 * 1024}
    async with client(network, tmp_path / "adaptive", **slow) as cin:
        result = await cin.upload(original)
        assert result.chunk_failures >= 1
        assert result.bytes_sent > original.stat().st_size  # the timed-out bytes count
        await check_stored(cin, result, original, tmp_path)
    async with client(network, tmp_path / "fixed", chunk_size=MiB, **slow) as cin:
        with pytest.raises(UploadInterrupted) as stopped:
            await cin.upload(original)
        assert stopped.value.state_path is not None
        assert Path(stopped.value.state_path).exists()


async def test_a_chunk_size_out_of_range_is_refused(network: Network, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        client(network, tmp_path, chunk_size=1000)


async def test_an_app_secret_signs_what_each_call_needs(network: Network,
                                                        tmp_path: Path) -> None:
    original = random_file(tmp_path, 100_000)
    url = network.config.coordinator.public_url
    async with AsyncClient(url, SECURE_APIKEY, state_dir=tmp_path / "state") as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.upload(original)
        assert refused.value.code == "security_required" and refused.value.status == 403
    async with AsyncClient(url, SECURE_APIKEY, secret=SECURE_SECRET,
                           state_dir=tmp_path / "state") as cin:
        result = await cin.upload(original)
        await check_stored(cin, result, original, tmp_path)
        assert (await cin.delete(result.handle))["deleted"] is True
        with pytest.raises(ApiError) as gone:
            await cin.status(result.handle)
        assert gone.value.code == "file_not_found"


async def test_a_given_policy_goes_with_every_call_that_needs_it(network: Network,
                                                                 tmp_path: Path) -> None:
    original = random_file(tmp_path, 100_000)
    text = encode_policy({"expiry": int(time.time()) + 600, "call": ["store"],
                          "path": "sdk/.*"})
    async with AsyncClient(network.config.coordinator.public_url, SECURE_APIKEY,
                           policy=text, signature=sign_policy(SECURE_SECRET, text),
                           state_dir=tmp_path / "state") as cin:
        result = await cin.upload(original, store_path="sdk/")
        assert result.status in ("In Transit", "Complete")
        status = await cin.part_status(result.upload_id)
        assert status["handle"] == result.handle, status
        with pytest.raises(ApiError) as denied:
            await cin.upload(original, store_path="elsewhere/")
        assert denied.value.code == "policy_denies"


def cancel_after(task_box: list[asyncio.Task[UploadResult]],
                 size: int) -> Callable[[Progress], None]:
    """A progress callback that cancels the upload once `size` bytes are acknowledged."""
    def progress(update: Progress) -> None:
        if update.acknowledged >= size and not task_box[0].cancelling():
            task_box[0].cancel()
    return progress


async def interrupted_upload(cin: AsyncClient, original: Path, after: int) -> None:
    box: list[asyncio.Task[UploadResult]] = []
    box.append(asyncio.create_task(cin.upload(original, progress=cancel_after(box, after))))
    with pytest.raises(asyncio.CancelledError):
        await box[0]


async def test_an_interrupted_upload_resumes_without_sending_again(
        network_on_each_driver: Network, tmp_path: Path) -> None:
    size = 20 * MiB + 777
    original = random_file(tmp_path, size)
    state = tmp_path / "state"
    async with client(network_on_each_driver, state) as cin:
        await interrupted_upload(cin, original, after=10 * MiB)
    [kept] = state_files(state)
    assert json.loads(kept.read_text())["pop"] == "us-east-1"

    async with client(network_on_each_driver, state) as cin:  # as a new process would
        result = await cin.upload(original)
        assert result.resumed_bytes >= 10 * MiB
        assert result.bytes_sent < size - 10 * MiB + MiB
        assert result.bytes_sent + result.resumed_bytes >= size
        await check_stored(cin, result, original, tmp_path)
    assert state_files(state) == []


async def test_a_changed_file_is_uploaded_afresh(network: Network, tmp_path: Path) -> None:
    original = random_file(tmp_path, 12 * MiB)
    state = tmp_path / "state"
    async with client(network, state) as cin:
        await interrupted_upload(cin, original, after=MiB)
        original.write_bytes(os.urandom(12 * MiB))  # same name and size, new bytes
        result = await cin.upload(original)
        assert result.resumed_bytes == 0 and result.bytes_sent >= 12 * MiB
        await check_stored(cin, result, original, tmp_path)


async def test_an_upload_cin_no_longer_knows_starts_afresh(network: Network,
                                                          tmp_path: Path) -> None:
    original = random_file(tmp_path, 3 * MiB)
    state = tmp_path / "state"
    async with client(network, state) as cin:
        await interrupted_upload(cin, original, after=MiB)
        [kept] = state_files(state)
        value = json.loads(kept.read_text())
        kept.write_text(json.dumps({**value, "upload_id": "NoSuchUpload0123456789"}))
        result = await cin.upload(original)
        assert result.resumed_bytes == 0
        assert result.upload_id != value["upload_id"]
        await check_stored(cin, result, original, tmp_path)


async def test_an_upload_that_completed_before_its_state_was_removed_is_not_sent_again(
        network: Network, tmp_path: Path) -> None:
    original = random_file(tmp_path, 2 * MiB)
    state = tmp_path / "state"
    snapshot: list[str] = []

    def keep_state(update: Progress) -> None:  # as a crash right after complete would
        if update.acknowledged == update.total and not snapshot:
            snapshot.append(state_files(state)[0].read_text())

    async with client(network, state) as cin:
        first = await cin.upload(original, progress=keep_state)
        assert state_files(state) == []
        key = json.loads(snapshot[0])["key"]
        (state / "uploads" / f"{key}.json").write_text(snapshot[0])
        again = await cin.upload(original)
        assert (again.handle, again.bytes_sent) == (first.handle, 0)
        assert again.status in ("In Transit", "Complete")
    assert state_files(state) == []


async def test_an_expired_upload_starts_afresh(network: Network, tmp_path: Path) -> None:
    original = random_file(tmp_path, 3 * MiB)
    state = tmp_path / "state"
    async with client(network, state) as cin:
        await interrupted_upload(cin, original, after=MiB)
        [kept] = state_files(state)
        abandoned = json.loads(kept.read_text())["upload_id"]
        later = time.time() + network.config.upload_expiry.ttl + 60
        await shipped(network)  # the coordinator has heard of the upload the POP started
        swept = await network.coordinator.app[EXPIRY].sweep_once(now=later)
        assert swept.expired == (abandoned,)
        # The POP that started the upload judges its age itself, by its own clock: past
        # the same ttl there too.
        network.pop.app[UPLOADS].clock = lambda: later
        result = await cin.upload(original)
        assert result.resumed_bytes == 0 and result.upload_id != abandoned
        await check_stored(cin, result, original, tmp_path)


async def stop_as_cin_does(pop: TestClient) -> None:  # type: ignore[type-arg]
    """Stop a POP as `cin edge` stops (cin/serve.py): no new connection, the requests in
    flight finished while new ones on kept-alive connections are answered 503, then the
    app closed. aiohttp's own shutdown alone (TestClient.close) stops reading every body
    at once: a chunk half sent would wait out the POP's 60 s body timeout."""
    assert pop.server.runner is not None
    for site in list(pop.server.runner.sites):
        await site.stop()
    assert await pop.app[DRAIN].drain(30.0), "requests in flight outlived the drain"
    await pop.close()


@pytest.fixture
async def west(network_on_each_driver: Network) -> AsyncIterator[str]:
    """The second POP, eu-west-1, running beside us-east-1 and known healthy."""
    network = network_on_each_driver
    pop = network.config.pops[1]
    async with TestClient(TestServer(make_edge_app(network.config, pop), host="127.0.0.1",
                                     port=pop.listen.port)):
        for _ in range(200):
            listed = await (await network.coordinator.get("/pops")).json()
            if all(p["healthy"] for p in listed["pops"]):
                break
            await asyncio.sleep(0.05)
        yield pop.public_url


async def test_the_upload_moves_to_another_pop_when_its_pop_stops(
        network_on_each_driver: Network, west: str, tmp_path: Path) -> None:
    network = network_on_each_driver
    size = 20 * MiB + 777
    original = random_file(tmp_path, size)
    stopping: list[asyncio.Task[None]] = []

    def stop_east(update: Progress) -> None:
        if update.acknowledged >= 9 * MiB and not stopping:
            stopping.append(asyncio.create_task(stop_as_cin_does(network.pop)))

    async with client(network, tmp_path / "state", pop="us-east-1") as cin:
        result = await cin.upload(original, progress=stop_east)
        assert stopping, "the POP was never stopped"
        await stopping[0]
        assert result.pops == ("us-east-1", "eu-west-1")
        assert result.bytes_sent >= size
        await check_stored(cin, result, original, tmp_path)
    assert state_files(tmp_path / "state") == []
