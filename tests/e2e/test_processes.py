"""cin as real processes on loopback, driven with curl."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, CinProcess, config_data, write_config

pytestmark = pytest.mark.e2e


def curl(*args: str, timeout: float = 120) -> tuple[int, str]:
    """Run curl; returns (HTTP status, body)."""
    done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    body, _, status = done.stdout.rpartition("\n")
    return int(status or 0), body


def run_cin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cin", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


class Deployment:
    """A coordinator and two POPs, each its own `cin` process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = config_data(root)
        self.config = write_config(self.data, root / "cin.yaml")
        self.coordinator: CinProcess | None = None
        self.pops: dict[str, CinProcess] = {}

    @property
    def coordinator_url(self) -> str:
        return str(self.data["coordinator"]["public_url"])

    def pop_url(self, name: str = "us-east-1") -> str:
        return next(str(p["public_url"]) for p in self.data["pops"] if p["name"] == name)

    def start_coordinator(self) -> CinProcess:
        self.coordinator = CinProcess(["coordinator", "-c", str(self.config)], self.root)
        return self.coordinator.wait_ready()

    def start_pop(self, name: str) -> CinProcess:
        self.pops[name] = CinProcess(["edge", "-c", str(self.config), "--pop", name], self.root)
        return self.pops[name].wait_ready()

    def stop(self) -> None:
        for process in [*self.pops.values(), self.coordinator]:
            if process is not None:
                process.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployed = Deployment(tmp_path)
    deployed.start_coordinator()
    deployed.start_pop("us-east-1")
    deployed.start_pop("eu-west-1")
    yield deployed
    deployed.stop()


def store_file(pop_url: str, path: Path, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    status, body = curl("-X", "POST", "-F", f"fileUpload=@{path}",
                        f"{pop_url}/api/store/S3?key={APIKEY}", timeout=timeout)
    return status, json.loads(body) if body.startswith("{") else {"raw": body}


def wait_for_a_body_in(spool: Path) -> None:
    """Until a store's body is landing in the POP's staging area: the store is under way
    (a fixed pause would be too short on a busy machine, and wasted on an idle one)."""
    incoming = spool / "incoming"
    deadline = time.monotonic() + 30
    while not (incoming.is_dir() and any(incoming.iterdir())):
        assert time.monotonic() < deadline, "the store never got under way"
        time.sleep(0.02)


def test_store_at_one_pop_download_anywhere(deployment: Deployment, tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF-1.4\n" + os.urandom(200_000))
    status, reply = store_file(deployment.pop_url("eu-west-1"), source)
    assert status == 200, reply
    assert reply["type"] == "application/pdf"
    handle = reply["handle"]
    # The link works at once everywhere: until the POP's journal reaches the coordinator,
    # the coordinator and the other POP send the client on to the POP that holds the file
    # (a 302, which every client follows), so the downloads follow redirects.
    for base in (deployment.coordinator_url, deployment.pop_url("us-east-1"),
                 deployment.pop_url("eu-west-1")):
        target = tmp_path / f"download-{len(base)}-{base[-4:]}"
        status, _ = curl("-L", "-o", str(target), f"{base}/api/file/{handle}")
        assert status == 200
        assert sha256_file(target) == sha256_file(source)
        status, body = curl("-L", f"{base}/{handle}/metadata?sha256=true&upload_status=true")
        assert json.loads(body) == {"sha256": sha256_file(source), "upload_status": "Complete"}

    # A gzip body is inflated by cin, which checks the stream's end: a whole one is stored
    # as its inflated bytes, a cut one is refused (real processes build their connection
    # handlers apart from the app, so this is where aiohttp's own inflating would show).
    packed = tmp_path / "report.pdf.gz"
    packed.write_bytes(gzip.compress(source.read_bytes()))
    store_url = f"{deployment.pop_url()}/api/store/S3?key={APIKEY}&filename=report.pdf"
    status, body = curl("-X", "POST", "--data-binary", f"@{packed}", "-H",
                        "Content-Encoding: gzip", store_url)
    assert status == 200, body
    assert json.loads(body)["size"] == source.stat().st_size
    target = tmp_path / "inflated"
    status, _ = curl("-L", "-o", str(target), f"{deployment.coordinator_url}/api/file/"
                     f"{json.loads(body)['handle']}")
    assert (status, sha256_file(target)) == (200, sha256_file(source))
    packed.write_bytes(packed.read_bytes()[:50_000])
    status, body = curl("-X", "POST", "--data-binary", f"@{packed}", "-H",
                        "Content-Encoding: gzip", store_url)
    assert status == 400 and json.loads(body)["code"] == "bad_content_encoding", body


def test_coordinator_kill9_loses_nothing_it_acknowledged(deployment: Deployment,
                                                         tmp_path: Path) -> None:
    pop = deployment.pop_url("us-east-1")
    files = []
    for index in range(40):
        path = tmp_path / f"file-{index}.bin"
        path.write_bytes(os.urandom(2000 + index))
        files.append(path)

    acknowledged: dict[str, Path] = {}
    refused = 0

    def upload(path: Path) -> None:
        nonlocal refused
        status, reply = store_file(pop, path, timeout=60)
        if status == 200:
            acknowledged[reply["handle"]] = path
        else:
            assert status == 503, reply  # the coordinator was down: a clear, retryable no
            refused += 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(upload, path) for path in files]
        time.sleep(0.3)  # some stores are done, others in flight
        assert deployment.coordinator is not None
        deployment.coordinator.kill9()
        time.sleep(1.0)
        deployment.start_coordinator()
        for future in futures:
            future.result()

    assert len(acknowledged) >= 5
    # The POP acknowledged the stores itself; their facts reach the restarted coordinator
    # in its next batches (until then it sends a client to the POP: 302).
    deadline = time.monotonic() + 10
    for handle, path in acknowledged.items():
        while True:
            status, body = curl(f"{deployment.coordinator_url}/{handle}/metadata?size=true"
                                "&sha256=true&upload_status=true")
            if status != 302 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200, body
        assert json.loads(body) == {"size": path.stat().st_size,
                                    "sha256": sha256_file(path),
                                    "upload_status": "Complete"}


def test_graceful_shutdown_finishes_the_upload_in_flight(deployment: Deployment,
                                                          tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    # curl's rate limit keeps the upload in flight while the POP is asked to stop.
    upload = subprocess.Popen(
        ["curl", "-sS", "--limit-rate", "50M", "-w", "\n%{http_code}", "-X", "POST",
         "-F", f"fileUpload=@{big}", f"{deployment.pop_url()}/api/store/S3?key={APIKEY}"],
        stdout=subprocess.PIPE, text=True)
    wait_for_a_body_in(Path(deployment.data["pops"][0]["spool_dir"]))
    pop = deployment.pops["us-east-1"]
    stop_started = time.monotonic()
    assert pop.stop(timeout=30) == 0
    output, _ = upload.communicate(timeout=30)
    body, _, status = output.rpartition("\n")
    assert status == "200", output + pop.output
    assert json.loads(body)["size"] == 200 * 1024 * 1024
    assert time.monotonic() - stop_started < 30


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["pops"][0]["listen"] = "nowhere"
    path = write_config(data, tmp_path / "bad.yaml")
    done = run_cin("coordinator", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cin: config error: {path}: pops[0].listen: must be HOST:PORT (got 'nowhere')"]
    done = run_cin("edge", "-c", str(tmp_path / "missing.yaml"), "--pop", "x")
    assert done.returncode == 2
    assert "missing.yaml" in done.stderr


def test_storage_check_command(tmp_path: Path) -> None:
    path = write_config(config_data(tmp_path), tmp_path / "cin.yaml")
    done = run_cin("storage-check", "-c", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout


@pytest.mark.slow
def test_one_gibibyte_store_keeps_the_pop_memory_flat(tmp_path: Path) -> None:
    deployed = Deployment(tmp_path)
    try:
        deployed.start_coordinator()
        pop = deployed.start_pop("us-east-1")
        source = tmp_path / "one-gib.bin"
        with source.open("wb") as handle:  # random head, sparse rest: cheap to make
            handle.write(os.urandom(1024 * 1024))
            handle.truncate(1024**3)
        status, reply = store_file(deployed.pop_url(), source, timeout=300)
        assert status == 200, reply
        assert reply["size"] == 1024**3
        peak = pop.peak_rss_bytes()
        assert peak < 150 * 1024 * 1024, f"POP peak RSS {peak / 2**20:.0f} MiB"
        target = tmp_path / "back.bin"
        status, _ = curl("-o", str(target), f"{deployed.pop_url()}/{reply['handle']}",
                         timeout=300)
        assert status == 200
        assert sha256_file(target) == sha256_file(source)
    finally:
        deployed.stop()


def test_cin_dev_shutdown_lets_a_pop_upload_finish(tmp_path: Path) -> None:
    """In one process, POPs stop before the coordinator they still need."""
    data = config_data(tmp_path)
    network = CinProcess(["dev", "-c", str(write_config(data, tmp_path / "dev.yaml"))],
                         tmp_path).wait_ready()
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(150 * 1024 * 1024)
    pop_url = data["pops"][0]["public_url"]
    upload = subprocess.Popen(
        ["curl", "-sS", "--limit-rate", "50M", "-w", "\n%{http_code}", "-X", "POST",
         "-F", f"fileUpload=@{big}", f"{pop_url}/api/store/S3?key={APIKEY}"],
        stdout=subprocess.PIPE, text=True)
    wait_for_a_body_in(Path(data["pops"][0]["spool_dir"]))
    assert network.stop(timeout=30) == 0, network.output
    output, _ = upload.communicate(timeout=30)
    body, _, status = output.rpartition("\n")
    assert status == "200", output + network.output
    assert json.loads(body)["size"] == 150 * 1024 * 1024
