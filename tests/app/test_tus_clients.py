"""tus at a POP with tuspy, the tus project's Python client, unmodified: an upload, an
upload resumed after its process was killed, and checksums, on both drivers.

The file is a cin file from its creation: the POP names its handle (`Cin-Handle`), and
it ends Complete with the client's bytes, its metadata from Upload-Metadata."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, REPO, Network, wait_complete
from tusclient import client

MiB = 1024 * 1024
DRIVER = REPO / "tests" / "tus_client.py"


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def creation_url(network: Network) -> str:
    return f"{network.config.pops[0].public_url}/files/"


async def handle_of(network: Network, url: str) -> str:
    response = await network.pop.head(url.removeprefix(network.config.pops[0].public_url),
                                      headers={"Tus-Resumable": "1.0.0"})
    assert response.status == 200
    return response.headers["Cin-Handle"]


def tuspy_upload(url: str, path: Path, **options: Any) -> str:
    uploader = client.TusClient(url).uploader(str(path), **options)
    uploader.upload()
    assert uploader.url is not None
    return str(uploader.url)


@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "sha1"])
async def test_tuspy_uploads_a_cin_file(network: Network, tmp_path: Path,
                                        checksum: bool) -> None:
    payload = os.urandom(19 * MiB + 12345)  # three parts, the last a short one
    path = tmp_path / "clip.mp4"
    path.write_bytes(payload)
    url = await asyncio.to_thread(
        tuspy_upload, creation_url(network), path, chunk_size=3 * MiB + 7,
        upload_checksum=checksum,
        metadata={"apikey": APIKEY, "filename": "clip.mp4", "filetype": "video/mp4",
                  "path": "tus/", "upload_tags": json.dumps({"user": "7"})})
    metadata = await wait_complete(network, await handle_of(network, url))
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert (metadata["filename"], metadata["mimetype"], metadata["size"]) == (
        "clip.mp4", "video/mp4", len(payload))
    assert metadata["key"].startswith("tus/")
    assert metadata["upload_tags"] == {"user": "7"}


async def test_tuspy_small_file_in_one_request(network: Network, tmp_path: Path) -> None:
    payload = os.urandom(1000)
    path = tmp_path / "note.txt"
    path.write_bytes(payload)
    url = await asyncio.to_thread(tuspy_upload, creation_url(network), path,
                                  metadata={"apikey": APIKEY, "filename": "note.txt"})
    metadata = await wait_complete(network, await handle_of(network, url))
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["md5"] == hashlib.md5(payload).hexdigest()


def run_driver(url: str, path: Path, storage: Path, chunk: int,
               kill_after: int | None = None) -> list[dict[str, Any]]:
    """tests/tus_client.py in its own process; killed (SIGKILL) once it reports
    `kill_after` bytes or more, else run to its end."""
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), url, str(path), str(storage), str(chunk),
         json.dumps({"apikey": APIKEY, "filename": path.name})],
        stdout=subprocess.PIPE, text=True)
    lines: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        for text in process.stdout:
            lines.append(json.loads(text))
            if kill_after is not None and lines[-1].get("offset", 0) >= kill_after:
                process.kill()
                break
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if kill_after is None:
        assert process.returncode == 0, lines
    return lines


async def test_tuspy_resumes_after_its_process_is_killed(network: Network,
                                                         tmp_path: Path) -> None:
    payload = os.urandom(40 * MiB + 3)
    path = tmp_path / "big.bin"
    path.write_bytes(payload)
    storage = tmp_path / "tuspy-urls.json"
    first = await asyncio.to_thread(run_driver, creation_url(network), path, storage,
                                    MiB, kill_after=9 * MiB)
    assert first[0]["start"] == 0
    second = await asyncio.to_thread(run_driver, creation_url(network), path, storage, MiB)
    # The second run found the URL the first stored, and went on from what the POP
    # acknowledged: at least what the first run was told.
    assert second[0]["url"] == first[-1]["url"]
    assert second[0]["start"] >= 9 * MiB
    url = second[-1]["done"]
    metadata = await wait_complete(network, await handle_of(network, url))
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
