"""The unmodified filestack-python SDK uploads through a TLS POP, on both drivers, with
a policy; then reads the metadata, downloads, overwrites and deletes the file.

It is pointed at cin as PROTOCOL.md §3 says: the class properties for the start URL and
the CDN patched, `API_URL` set, and the POP's test CA trusted through REQUESTS_CA_BUNDLE.
Its multipart and Intelligent Ingestion uploads go to `https://{location_url}`, the POP.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import filestack
import pytest
import requests
import trustme
from support import SECURE_APIKEY, SECURE_SECRET, CinProcess, config_data, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["local", "s3"])
def network(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A coordinator and a TLS POP as real processes; filestack-python pointed at them."""
    settings: dict[str, Any] = {}
    if request.param == "s3":
        moto_url = request.getfixturevalue("moto_url")
        bucket = f"cin-{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            async with aiobotocore.session.get_session().create_client(
                    "s3", endpoint_url=moto_url, region_name="us-east-1") as s3:
                for name in (bucket, f"{bucket}-other"):
                    await s3.create_bucket(Bucket=name)

        asyncio.run(create())
        settings = {"s3_endpoint": moto_url, "bucket": bucket}
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "pop.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    data = config_data(tmp_path, **settings)
    pop = data["pops"][0]
    pop["public_url"] = pop["public_url"].replace("http://", "https://")
    pop["tls"] = {"cert": str(tmp_path / "pop.pem"), "key": str(tmp_path / "pop.pem")}
    config = write_config(data, tmp_path / "cin.yaml")
    # The coordinator hands overwrites to the POP over its public (TLS) URL.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    coordinator = CinProcess(["coordinator", "-c", str(config)], tmp_path).wait_ready()
    edge = CinProcess(["edge", "-c", str(config), "--pop", pop["name"]], tmp_path).wait_ready()
    coordinator_url = data["coordinator"]["public_url"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    monkeypatch.setattr(filestack.CFG, "MULTIPART_START_URL",
                        property(lambda _: f"{pop['public_url']}/multipart/start"))
    monkeypatch.setattr(filestack.CFG, "CDN_URL", property(lambda _: coordinator_url))
    monkeypatch.setattr(filestack.config, "API_URL", f"{coordinator_url}/api")
    try:
        yield {"coordinator": coordinator_url, "root": tmp_path}
    finally:
        edge.stop()
        coordinator.stop()


def wait_complete(coordinator: str, filelink: Any) -> dict[str, Any]:
    """The file's metadata once it is Complete, read through the SDK (with its policy)."""
    deadline = time.monotonic() + 60
    while True:
        metadata: dict[str, Any] = filelink.metadata(
            ["upload_status", "sha256", "upload_tags", "size"])
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return metadata
        time.sleep(0.1)


SIZES = {"1KiB": 1024, "20MiB": 20 * 1024**2, "100MiB": 100 * 1024**2}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("intelligent", [False, True], ids=["regular", "intelligent"])
def test_filestack_python_uploads_through_a_tls_pop(network: dict[str, Any], size: int,
                                                    intelligent: bool) -> None:
    payload = os.urandom(size)
    source = network["root"] / "upload.bin"
    source.write_bytes(payload)
    # The app requires security: every call below carries this policy.
    security = filestack.Security({"expiry": int(time.time()) + 3600}, SECURE_SECRET)
    client = filestack.Client(SECURE_APIKEY, security=security)
    filelink = client.upload(filepath=str(source), intelligent=intelligent,
                             store_params={"location": "s3", "path": "sdk/",
                                           "upload_tags": {"via": "filestack-python"}})
    reply = filelink.upload_response
    assert reply["size"] == size and reply["filename"] == "upload.bin"
    assert reply["status"] in ("InTransit", "Stored")
    assert reply["key"].startswith("sdk/")
    assert reply["upload_tags"] == {"via": "filestack-python"}
    metadata = wait_complete(network["coordinator"], filelink)
    assert metadata["upload_status"] == "Complete"
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["upload_tags"] == {"via": "filestack-python"}
    downloaded = network["root"] / "downloaded.bin"
    filelink.download(str(downloaded))
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == metadata["sha256"]

    replacement = os.urandom(4096)
    source.write_bytes(replacement)
    filelink.overwrite(filepath=str(source))
    assert hashlib.sha256(filelink.get_content()).hexdigest() == hashlib.sha256(
        replacement).hexdigest()
    assert filelink.metadata(["size"])["size"] == len(replacement)

    filelink.delete()
    gone = requests.get(f"{network['coordinator']}/api/file/{filelink.handle}/metadata",
                        params={"policy": security.policy_b64,
                                "signature": security.signature}, timeout=10)
    assert gone.status_code == 404
