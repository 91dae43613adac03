"""tus at a POP with tus-js-client, the tus project's JavaScript client, unmodified, on
Node: an upload, `parallelUploads: 4` (partial uploads and a final one), a resume from
the URL it stored, and termination, on both drivers.

tus-js-client is installed from tests/js/package-lock.json by `make test`;
tests/js/tus_driver.js runs one command per Node process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, REPO, Network, wait_complete

JS = REPO / "tests" / "js"
MiB = 1024 * 1024
V = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def tus_js(**command: Any) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("tus-js-client is not installed: `make test` installs it from "
                    "tests/js/package-lock.json (npm ci)")
    process = await asyncio.create_subprocess_exec(
        node, "tus_driver.js", json.dumps(command), cwd=JS,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    reply = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    assert reply.get("ok"), (reply, err.decode()[-2000:])
    return dict(reply["result"])


def endpoint(network: Network) -> str:
    return f"{network.config.pops[0].public_url}/files/"


def local_path(network: Network, url: str) -> str:
    return url.removeprefix(network.config.pops[0].public_url)


async def head(network: Network, url: str) -> Any:
    return await network.pop.head(local_path(network, url), headers=V)


async def url_complete(network: Network, url: str) -> dict[str, Any]:
    """The metadata of the file behind a tus upload URL, once it is Complete."""
    return await wait_complete(network, (await head(network, url)).headers["Cin-Handle"])


def payload_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    payload = os.urandom(size)
    path = tmp_path / "upload.bin"
    path.write_bytes(payload)
    return path, payload


META = {"apikey": APIKEY, "filename": "upload.bin", "filetype": "application/x-demo"}


async def test_tus_js_client_uploads(network: Network, tmp_path: Path) -> None:
    path, payload = payload_file(tmp_path, 13 * MiB + 5)
    result = await tus_js(call="upload", endpoint=endpoint(network), file=str(path),
                          metadata=META, chunkSize=4 * MiB)
    metadata = await url_complete(network, result["url"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert (metadata["filename"], metadata["mimetype"]) == ("upload.bin",
                                                           "application/x-demo")


async def test_parallel_uploads_are_concatenated(network: Network, tmp_path: Path) -> None:
    path, payload = payload_file(tmp_path, 22 * MiB + 3)
    # tus-js-client sends no metadata with the partial uploads: the apikey goes in the
    # endpoint's query, which it sends with every creation.
    result = await tus_js(call="upload", endpoint=f"{endpoint(network)}?key={APIKEY}",
                          file=str(path), metadata=META, parallelUploads=4)
    final = await head(network, result["url"])
    assert final.headers["Upload-Concat"].startswith("final;")
    assert len(final.headers["Upload-Concat"].split()) == 4
    metadata = await url_complete(network, result["url"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_resume_from_the_stored_url(network: Network, tmp_path: Path) -> None:
    path, payload = payload_file(tmp_path, 12 * MiB + 1)
    storage = str(tmp_path / "tus-urls.json")
    first = await tus_js(call="interrupt", endpoint=endpoint(network), file=str(path),
                         metadata=META, chunkSize=MiB, storage=storage, after=3 * MiB)
    assert int((await head(network, first["url"])).headers["Upload-Offset"]) >= 3 * MiB
    second = await tus_js(call="resume", endpoint=endpoint(network), file=str(path),
                          metadata=META, chunkSize=MiB, storage=storage)
    assert second["url"] == first["url"]
    assert second["resumedFrom"] >= first["offset"]
    metadata = await url_complete(network, second["url"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_termination(network: Network, tmp_path: Path) -> None:
    path, _ = payload_file(tmp_path, 12 * MiB)
    first = await tus_js(call="interrupt", endpoint=endpoint(network), file=str(path),
                         metadata=META, chunkSize=MiB, storage=str(tmp_path / "urls.json"),
                         after=MiB)
    handle = (await head(network, first["url"])).headers["Cin-Handle"]
    await tus_js(call="terminate", url=first["url"])
    assert (await head(network, first["url"])).status == 410
    response = await network.coordinator.get(f"/api/file/{handle}/metadata")
    assert (await response.json())["upload_status"] == "Failed"
    assert not (network.config.pops[0].spool_dir / "uploads" / local_path(
        network, first["url"]).rsplit("/", 1)[1]).exists()
