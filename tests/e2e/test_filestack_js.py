"""The unmodified filestack-js 4.3 (Node) against cin: upload through a TLS POP, then
read the metadata, download and delete with the same SDK, on both drivers.

filestack-js runs in a Node process (tests/js/driver.js, its packages installed from
tests/js/package-lock.json by `make test`) and is pointed at cin as PROTOCOL.md §3 says:
the driver sets `config.urls` (upload API and processing: the POP; File API and CDN:
the coordinator),
the preload tests/js/loopback_ports.js lets its Node adapter reach a port other than 443,
and NODE_EXTRA_CA_CERTS makes Node trust the POP's test CA.

The POP serves TLS, as it does for filestack-python: both SDKs send the bytes to
`https://{location_url}` when `location_url` has no scheme, and host:port without one is
what cin answers (filestack-python needs it so). Only filestack-js would accept a full
`http://` URL there, so plain HTTP would test an answer cin gives neither SDK.

Every upload is made by the secure app with a policy the SDK signs itself, and every
later call with a policy bound to the file, so the policies are checked, not bypassed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from file_origin import file_origin
from lossy_proxy import LossyProxy
from support import REPO, SECURE_APIKEY, SECURE_SECRET, free_port
from tls_network import TlsNetwork, tls_network

pytestmark = pytest.mark.e2e

JS = REPO / "tests" / "js"
HOUR = 3600
MiB = 1024**2
REGULAR_PART = 6 * MiB  # filestack-js's part size
FII_PART = 8 * MiB  # its part size in intelligent and fallback modes
FILE_CALLS = ["read", "stat", "remove"]


@dataclass
class Reply:
    ok: bool
    result: Any
    error: dict[str, Any]
    requests: list[dict[str, Any]]  # every HTTP request the SDK made for the call

    def bodies(self, path: str) -> list[dict[str, Any]]:
        """The JSON bodies the SDK sent to `path`, in order."""
        return [request["body"] for request in self.requests if request["path"] == path]


@dataclass
class FilestackJs:
    """One Node process running tests/js/driver.js: a command per line in, a reply out."""

    network: TlsNetwork
    process: subprocess.Popen[str] = field(init=False)
    log: Path = field(init=False)  # what Node prints on stderr

    def __post_init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (JS / "node_modules" / "filestack-js").is_dir():
            pytest.fail("filestack-js is not installed: `make test` installs it from "
                        "tests/js/package-lock.json (npm ci)")
        self.log = self.network.root / "filestack-js.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [node, "--require", "./loopback_ports.js", "driver.js"], cwd=JS,
                env=dict(os.environ, NODE_EXTRA_CA_CERTS=str(self.network.ca)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            self.call("configure", urls={"uploadApiUrl": self.network.pop,
                                         "fileApiUrl": f"{self.network.coordinator}/api/file",
                                         "cdnUrl": self.network.coordinator,
                                         # A POP fetches and stores a URL.
                                         "processUrl": self.network.pop})
        except BaseException:
            self.close()
            raise

    def call(self, call: str, **command: Any) -> Reply:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"call": call, **command}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"filestack-js exited:\n{self.log.read_text()}")
        reply = json.loads(line)
        return Reply(reply["ok"], reply.get("result"), reply.get("error") or {},
                     reply["requests"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture(scope="module")
def filestack_js(tls_network_on_each_driver: TlsNetwork) -> Iterator[FilestackJs]:
    client = FilestackJs(tls_network_on_each_driver)
    try:
        yield client
    finally:
        client.close()


def policy(**fields: Any) -> dict[str, Any]:
    """`security` for a driver command: the policy, and the secret the SDK signs it with."""
    return {"policy": {"expiry": int(time.time()) + HOUR, **fields}, "secret": SECURE_SECRET}


def upload(js: FilestackJs, payload: bytes, intelligent: bool | str,
           tags: dict[str, str]) -> Reply:
    source = js.network.root / "upload.bin"
    source.write_bytes(payload)
    return js.call("upload", apikey=SECURE_APIKEY, file=str(source),
                   options={"intelligent": intelligent, "tags": tags},
                   store={"location": "s3", "path": "js/"},
                   security=policy(call=["store"], path="js/.*", maxSize=len(payload)))


def wait_complete(js: FilestackJs, handle: str) -> dict[str, Any]:
    """The file's metadata, through filestack-js, once cin says it is Complete."""
    deadline = time.monotonic() + 60
    while True:
        reply = js.call("metadata", apikey=SECURE_APIKEY, handle=handle,
                        security=policy(call=FILE_CALLS, handle=handle))
        assert reply.ok, reply.error
        if reply.result["upload_status"] == "Complete" or time.monotonic() > deadline:
            return dict(reply.result)
        time.sleep(0.1)


def check_download(js: FilestackJs, handle: str, payload: bytes) -> None:
    reply = js.call("download", apikey=SECURE_APIKEY, handle=handle,
                    security=policy(call=["read"], handle=handle))
    assert reply.ok, reply.error
    assert reply.result == {"status": 200, "size": len(payload),
                            "sha256": hashlib.sha256(payload).hexdigest()}


def check_stored(js: FilestackJs, handle: str, payload: bytes,
                 tags: dict[str, str]) -> None:
    """Metadata and bytes, read back with filestack-js, once the file is in the bucket."""
    metadata = wait_complete(js, handle)
    assert metadata["upload_status"] == "Complete"
    assert (metadata["size"], metadata["filename"]) == (len(payload), "upload.bin")
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["upload_tags"] == tags
    assert metadata["key"].startswith("js/")
    chosen = js.call("metadata", apikey=SECURE_APIKEY, handle=handle,
                     options={"size": True, "sha256": True},
                     security=policy(call=["stat"], handle=handle))
    assert chosen.ok, chosen.error
    # The SDK adds the handle to what cin answers.
    assert chosen.result == {"size": len(payload), "sha256": metadata["sha256"],
                             "handle": handle}
    check_download(js, handle, payload)


SIZES = {"1KiB": 1024, "20MiB": 20 * MiB, "100MiB": 100 * MiB}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("intelligent", [False, True], ids=["regular", "intelligent"])
def test_filestack_js_uploads_reads_downloads_and_deletes(
        filestack_js: FilestackJs, size: int, intelligent: bool) -> None:
    js = filestack_js
    payload = os.urandom(size)
    tags = {"via": "filestack-js", "mode": "intelligent" if intelligent else "regular"}
    uploaded = upload(js, payload, intelligent, tags)
    assert uploaded.ok, uploaded.error
    file = uploaded.result
    assert (file["size"], file["name"]) == (size, "upload.bin")
    assert file["status"] in ("InTransit", "Stored")
    assert file["key"].startswith("js/")
    assert file["uploadTags"] == tags
    handle = file["handle"]

    # What the SDK sent, in each mode: regular parts listed with their ETags, or FII
    # parts committed one by one and none listed.
    [complete] = uploaded.bodies("/multipart/complete")
    if intelligent:
        parts = math.ceil(size / FII_PART)
        assert sorted(body["part"] for body in uploaded.bodies("/multipart/commit")) == list(
            range(1, parts + 1))
        assert complete["fii"] is True and "parts" not in complete
    else:
        parts = math.ceil(size / REGULAR_PART)
        assert uploaded.bodies("/multipart/commit") == []
        assert [part["part_number"] for part in complete["parts"]] == list(range(1, parts + 1))
        assert "fii" not in complete

    # At once, whether cin still holds the file at the POP (In Transit: the coordinator,
    # the SDK's CDN, redirects there) or has it in the bucket already.
    check_download(js, handle, payload)
    check_stored(js, handle, payload, tags)

    file_policy = policy(call=FILE_CALLS, handle=handle)
    removed = js.call("remove", apikey=SECURE_APIKEY, handle=handle, security=file_policy)
    assert removed.ok, removed.error
    for call in ("metadata", "download"):
        gone = js.call(call, apikey=SECURE_APIKEY, handle=handle, security=file_policy)
        assert not gone.ok
        assert (gone.error["status"], gone.error["data"]["code"]) == (404, "file_not_found")


@pytest.mark.parametrize("driver", ["local", "s3"])
def test_filestack_js_fallback_mode_mixes_regular_and_fii_parts(
        request: pytest.FixtureRequest, tmp_path: Path, driver: str) -> None:
    """`intelligent: "fallback"`: parts go up regularly until one fails; from then on the
    SDK sends FII chunks and commits each part, the failed one first, and completes with
    `fii: true` and the list of the parts that went up regularly. The failure is real: a
    proxy in front of the POP loses the answer to the first part's PUT, so the SDK sees
    its connection reset (and cin gets that part's bytes twice)."""
    moto_url = request.getfixturevalue("moto_url") if driver == "s3" else None
    proxy_port = free_port()
    with tls_network(tmp_path, moto_url=moto_url, public_port=proxy_port) as network, \
            LossyProxy(proxy_port, network.pop_port, lose=b"PUT /multipart/part",
                       certificate=network.certificate, ca=network.ca) as proxy:
        js = FilestackJs(network)
        try:
            # Parts of 8, 8 and 4 MiB: the SDK sends three at a time, so all three start
            # regularly before the first failure.
            payload = os.urandom(20 * MiB)
            tags = {"via": "filestack-js", "mode": "fallback"}
            uploaded = upload(js, payload, "fallback", tags)
            assert uploaded.ok, uploaded.error
            assert proxy.lost == 1

            [start] = uploaded.bodies("/multipart/start")
            assert start["fii"] is True
            [complete] = uploaded.bodies("/multipart/complete")
            regular = {part["part_number"] for part in complete["parts"]}
            committed = {body["part"] for body in uploaded.bodies("/multipart/commit")}
            assert complete["fii"] is True
            assert len(committed) == 1 and len(regular) == 2
            assert regular | committed == {1, 2, 3}
            assert all(part["etag"] for part in complete["parts"])
            # The failed part, and only it, was asked for again as an FII chunk.
            asked = uploaded.bodies("/multipart/upload")
            assert [body["part"] for body in asked if body.get("fii")] == list(committed)

            check_stored(js, uploaded.result["handle"], payload, tags)
        finally:
            js.close()


def test_filestack_js_is_refused_what_its_policy_does_not_allow(
        filestack_js: FilestackJs) -> None:
    js = filestack_js
    source = js.network.root / "refused.bin"
    source.write_bytes(b"x" * 1024)
    for refused in (policy(call=["read"]), policy(call=["store"], path="other/.*"),
                    policy(call=["store"], maxSize=1000)):
        reply = js.call("upload", apikey=SECURE_APIKEY, file=str(source),
                        store={"location": "s3", "path": "js/"}, security=refused)
        assert not reply.ok
        assert reply.error["status"] == 403, reply.error
        assert [r["path"] for r in reply.requests] == ["/multipart/start"]
    unsigned = js.call("upload", apikey=SECURE_APIKEY, file=str(source),
                       store={"location": "s3", "path": "js/"})
    assert (unsigned.ok, unsigned.error.get("status")) == (False, 403)

    payload = os.urandom(1024)
    uploaded = upload(js, payload, False, {})
    assert uploaded.ok, uploaded.error
    handle = uploaded.result["handle"]
    for call, allowed in (("metadata", ["read"]), ("download", ["stat"]),
                          ("remove", ["read", "stat"])):
        reply = js.call(call, apikey=SECURE_APIKEY, handle=handle,
                        security=policy(call=allowed, handle=handle))
        assert (reply.ok, reply.error.get("status")) == (False, 403), (call, reply)
    other_file = js.call("remove", apikey=SECURE_APIKEY, handle=handle,
                         security=policy(call=FILE_CALLS, handle="b" * 20))
    assert (other_file.ok, other_file.error.get("status")) == (False, 403)
    check_stored(js, handle, payload, {})


URL_SIZES = {"1KiB": 1024, "20MiB": 20 * MiB}


@pytest.mark.parametrize("size", URL_SIZES.values(), ids=URL_SIZES.keys())
def test_filestack_js_stores_from_a_url(filestack_js: FilestackJs, size: int) -> None:
    """`storeURL` posts the Processing API's store task to `{processUrl}/process`, the
    POP, which fetches the URL and stores it; the policy travels as the security task."""
    js = filestack_js
    payload = os.urandom(size)
    folder = js.network.root / f"origin-{size}"
    folder.mkdir(exist_ok=True)
    (folder / "photo.bin").write_bytes(payload)
    tags = {"via": "storeURL"}
    with file_origin(folder) as origin:
        url = f"{origin}/photo.bin"
        stored = js.call("storeURL", apikey=SECURE_APIKEY, url=url,
                         store={"location": "s3", "path": "js-url/", "filename": "copy.bin"},
                         security=policy(call=["store"], path="js-url/.*"), tags=tags)
        assert stored.ok, stored.error
        refused = js.call("storeURL", apikey=SECURE_APIKEY, url=url,
                          store={"path": "elsewhere/"},
                          security=policy(call=["store"], path="js-url/.*"))
    [sent] = stored.bodies("/process")
    assert [task["name"] for task in sent["tasks"]] == ["store", "security"]
    file = stored.result
    assert (file["size"], file["filename"], file["mimetype"]) == (
        size, "copy.bin", file["type"])
    assert file["key"].startswith("js-url/")
    assert file["uploadTags"] == tags
    assert (refused.ok, refused.error["status"], refused.error["data"]["code"]) == (
        False, 403, "policy_denies")

    handle = file["handle"]
    metadata = wait_complete(js, handle)
    assert (metadata["upload_status"], metadata["source_url"]) == ("Complete", url)
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["upload_tags"] == tags
    check_download(js, handle, payload)
