"""The unmodified filestack-python SDK uploads through a TLS POP, on both drivers, with
a policy; then reads the metadata, downloads, overwrites and deletes the file. It also
stores a file from a URL (`upload_url`) through the POP.

It is pointed at cin as PROTOCOL.md §3 says: the class properties for the start URL and
the CDN patched, `API_URL` set, and the POP's test CA trusted through REQUESTS_CA_BUNDLE.
Its multipart and Intelligent Ingestion uploads go to `https://{location_url}`, the POP.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import filestack
import pytest
import requests
from file_origin import file_origin
from filestack.exceptions import FilestackHTTPError
from support import SECURE_APIKEY, SECURE_SECRET
from tls_network import TlsNetwork

pytestmark = pytest.mark.e2e


@pytest.fixture
def network(tls_network_on_each_driver: TlsNetwork,
            monkeypatch: pytest.MonkeyPatch) -> TlsNetwork:
    """filestack-python pointed at a TLS POP and its coordinator, on each driver."""
    network = tls_network_on_each_driver
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(network.ca))
    monkeypatch.setattr(filestack.CFG, "MULTIPART_START_URL",
                        property(lambda _: f"{network.pop}/multipart/start"))
    monkeypatch.setattr(filestack.CFG, "CDN_URL", property(lambda _: network.coordinator))
    monkeypatch.setattr(filestack.config, "API_URL", f"{network.coordinator}/api")
    return network


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
def test_filestack_python_uploads_through_a_tls_pop(network: TlsNetwork, size: int,
                                                    intelligent: bool) -> None:
    payload = os.urandom(size)
    source = network.root / "upload.bin"
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
    metadata = wait_complete(network.coordinator, filelink)
    assert metadata["upload_status"] == "Complete"
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["upload_tags"] == {"via": "filestack-python"}
    downloaded = network.root / "downloaded.bin"
    filelink.download(str(downloaded))
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == metadata["sha256"]

    replacement = os.urandom(4096)
    source.write_bytes(replacement)
    filelink.overwrite(filepath=str(source))
    assert hashlib.sha256(filelink.get_content()).hexdigest() == hashlib.sha256(
        replacement).hexdigest()
    assert filelink.metadata(["size"])["size"] == len(replacement)

    filelink.delete()
    gone = requests.get(f"{network.coordinator}/api/file/{filelink.handle}/metadata",
                        params={"policy": security.policy_b64,
                                "signature": security.signature}, timeout=10)
    assert gone.status_code == 404


URL_SIZES = {"1KiB": 1024, "20MiB": 20 * 1024**2}


@pytest.mark.parametrize("size", URL_SIZES.values(), ids=URL_SIZES.keys())
def test_filestack_python_stores_from_a_url(network: TlsNetwork, size: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.upload_url` posts the Processing API's store task to `{CDN_URL}/process`.
    A POP answers it (it fetches and stores the file), so the CDN is the POP here; the
    POP serves the Filelink's metadata and bytes as the coordinator does."""
    monkeypatch.setattr(filestack.CFG, "CDN_URL", property(lambda _: network.pop))
    payload = os.urandom(size)
    folder = network.root / f"origin-{size}"
    folder.mkdir(exist_ok=True)
    (folder / "photo.bin").write_bytes(payload)
    security = filestack.Security({"expiry": int(time.time()) + 3600,
                                   "call": ["store", "read", "stat"], "path": "url/.*",
                                   "url": r"http://127\.0\.0\.1:\d+/photo\.bin"},
                                  SECURE_SECRET)
    client = filestack.Client(SECURE_APIKEY, security=security)
    with file_origin(folder) as origin:
        url = f"{origin}/photo.bin"
        filelink = client.upload_url(url, store_params={"path": "url/",
                                                        "filename": "renamed.bin"})
        # The policy's url pattern is checked before anything is fetched.
        with pytest.raises(FilestackHTTPError, match="policy_denies"):
            client.upload_url(f"{origin}/other.bin", store_params={"path": "url/"})
    reply = filelink.upload_response
    assert reply["handle"] == filelink.handle
    assert (reply["size"], reply["filename"]) == (size, "renamed.bin")
    assert reply["key"].startswith("url/")
    # An acknowledged store is in the bucket already.
    metadata = filelink.metadata(["upload_status", "sha256", "size", "source_url"])
    assert metadata == {"upload_status": "Complete", "size": size, "source_url": url,
                        "sha256": hashlib.sha256(payload).hexdigest()}
    assert hashlib.sha256(filelink.get_content()).hexdigest() == metadata["sha256"]
