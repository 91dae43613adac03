"""tus 1.0 as its specification states it (tus.io/protocols/resumable-upload), request by
request: each extension's headers and status codes in a table, and the bad cases (409 for
a wrong offset, 412 for a wrong version, 413, 404 for an unknown upload, 410 once it is
terminated or expired, 460 for a wrong checksum)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from support import APIKEY, SECURE_APIKEY, SECURE_SECRET, Network, shipped, wait_complete

from common.protocol.security import encode_policy, sign_policy
from coordinator.keys import EXPIRY
from edge.keys import SWEEPER, UPLOADS
from edge.tus.tus_uploads import TUS_UPLOADS

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


META = f"apikey {b64(APIKEY)},filename {b64('a.txt')},filetype {b64('text/plain')}"


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


async def create(network: Network, length: int | None = 10, **headers: str) -> str:
    sent = {**V, "Upload-Metadata": META, **headers}
    if length is not None:
        sent["Upload-Length"] = str(length)
    response = await network.pop.post("/files/", headers=sent)
    assert response.status == 201, await response.text()
    location = response.headers["Location"]
    assert location.startswith(network.config.pops[0].public_url + "/files/")
    return location.removeprefix(network.config.pops[0].public_url)


@dataclass
class Case:
    """One request against an upload made fresh for it (`{url}` in the path), or
    against the creation URL; what the specification says the answer is."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    body: bytes = b""
    answer_headers: dict[str, str] = field(default_factory=dict)  # exact values
    present: tuple[str, ...] = ()  # headers that must be there
    absent: tuple[str, ...] = ()


CORE = {
    "options": Case("OPTIONS", "/files/", {}, 204,
                    answer_headers={"Tus-Version": "1.0.0",
                                    "Tus-Extension": "creation,creation-with-upload,"
                                    "creation-defer-length,expiration,checksum,termination,"
                                    "concatenation",
                                    "Tus-Checksum-Algorithm": "sha1,md5"},
                    present=("Tus-Max-Size",)),
    "head": Case("HEAD", "{url}", V, 200,
                 answer_headers={"Upload-Offset": "0", "Upload-Length": "10",
                                 "Cache-Control": "no-store", "Tus-Resumable": "1.0.0",
                                 "Upload-Metadata": f"filename {b64('a.txt')},"
                                                    f"filetype {b64('text/plain')}"},
                 present=("Upload-Expires", "Cin-Handle")),
    "patch": Case("PATCH", "{url}", {**V, **OFFSET, "Upload-Offset": "0"}, 204,
                  body=b"0123", answer_headers={"Upload-Offset": "4",
                                                "Tus-Resumable": "1.0.0"}),
    "patch wrong offset": Case("PATCH", "{url}", {**V, **OFFSET, "Upload-Offset": "3"}, 409,
                               body=b"0123", answer_headers={"Tus-Resumable": "1.0.0"}),
    "patch without offset": Case("PATCH", "{url}", {**V, **OFFSET}, 400, body=b"0"),
    "patch bad offset": Case("PATCH", "{url}", {**V, **OFFSET, "Upload-Offset": "-1"},
                             400, body=b"0"),
    "patch wrong type": Case("PATCH", "{url}", {**V, "Content-Type": "text/plain",
                                                "Upload-Offset": "0"}, 415, body=b"0"),
    "patch past the length": Case("PATCH", "{url}", {**V, **OFFSET, "Upload-Offset": "0"},
                                  413, body=b"x" * 11),
    "patch no version": Case("PATCH", "{url}", {**OFFSET, "Upload-Offset": "0"}, 412,
                             body=b"0", answer_headers={"Tus-Version": "1.0.0"}),
    "head wrong version": Case("HEAD", "{url}", {"Tus-Resumable": "0.2.2"}, 412,
                               answer_headers={"Tus-Version": "1.0.0"}),
    "head unknown": Case("HEAD", "/files/nosuchuploadatall0000", V, 404,
                         answer_headers={"Tus-Resumable": "1.0.0"}),
    "patch unknown": Case("PATCH", "/files/nosuchuploadatall0000",
                          {**V, **OFFSET, "Upload-Offset": "0"}, 404, body=b"0"),
    "method override": Case("POST", "{url}", {**V, **OFFSET, "Upload-Offset": "0",
                                              "X-HTTP-Method-Override": "PATCH"}, 204,
                            body=b"01", answer_headers={"Upload-Offset": "2"}),
}

CREATION = {
    "create": Case("POST", "/files/", {**V, "Upload-Length": "5", "Upload-Metadata": META},
                   201, present=("Location", "Upload-Expires", "Cin-Handle"),
                   absent=("Upload-Offset",)),
    "create no version": Case("POST", "/files/", {"Upload-Length": "5",
                                                  "Upload-Metadata": META}, 412,
                              answer_headers={"Tus-Version": "1.0.0"}),
    "create no length": Case("POST", "/files/", {**V, "Upload-Metadata": META}, 400),
    "create length and defer": Case("POST", "/files/", {
        **V, "Upload-Length": "5", "Upload-Defer-Length": "1", "Upload-Metadata": META}, 400),
    "create too large": Case("POST", "/files/", {**V, "Upload-Length": str(6 * 1024**3),
                                                 "Upload-Metadata": META}, 413),
    "create bad length": Case("POST", "/files/", {**V, "Upload-Length": "5x",
                                                  "Upload-Metadata": META}, 400),
    "create bad metadata": Case("POST", "/files/", {**V, "Upload-Length": "5",
                                                    "Upload-Metadata": "apikey !!!"}, 400),
    "create no apikey": Case("POST", "/files/", {**V, "Upload-Length": "5"}, 400),
    "create apikey in the query": Case("POST", f"/files/?key={APIKEY}",
                                       {**V, "Upload-Length": "5"}, 201),
    "create apikey in a header": Case("POST", "/files/", {**V, "Upload-Length": "5",
                                                          "Cin-Apikey": APIKEY}, 201),
    "create without the policy the app needs": Case(
        "POST", "/files/", {**V, "Upload-Length": "5",
                            "Upload-Metadata": f"apikey {b64(SECURE_APIKEY)}"}, 403),
    "create with upload": Case("POST", "/files/", {**V, **OFFSET, "Upload-Length": "5",
                                                   "Upload-Metadata": META}, 201,
                               body=b"hello", answer_headers={"Upload-Offset": "5"},
                               present=("Location",)),
    "create deferred": Case("POST", "/files/", {**V, "Upload-Defer-Length": "1",
                                                "Upload-Metadata": META}, 201,
                            present=("Location",), absent=("Cin-Handle",)),
    "create empty": Case("POST", "/files/", {**V, "Upload-Length": "0",
                                             "Upload-Metadata": META}, 400),
}

CHECKSUM = {
    "patch sha1": Case("PATCH", "{url}", {
        **V, **OFFSET, "Upload-Offset": "0",
        "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"0123").digest()).decode()},
        204, body=b"0123", answer_headers={"Upload-Offset": "4"}),
    "patch md5": Case("PATCH", "{url}", {
        **V, **OFFSET, "Upload-Offset": "0",
        "Upload-Checksum": "md5 " + base64.b64encode(hashlib.md5(b"0123").digest()).decode()},
        204, body=b"0123", answer_headers={"Upload-Offset": "4"}),
    "patch sha1 mismatch": Case("PATCH", "{url}", {
        **V, **OFFSET, "Upload-Offset": "0",
        "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"x").digest()).decode()},
        460, body=b"0123", answer_headers={"Tus-Resumable": "1.0.0"}),
    "patch unsupported algorithm": Case("PATCH", "{url}", {
        **V, **OFFSET, "Upload-Offset": "0", "Upload-Checksum": "crc32 AAAAAA=="},
        400, body=b"0123"),
}

TABLE = {**CORE, **CREATION, **CHECKSUM}


@pytest.mark.parametrize("name", list(TABLE))
async def test_answers_as_the_specification_states(network: Network, name: str) -> None:
    case = TABLE[name]
    path = case.path.replace("{url}", await create(network)) if "{url}" in case.path \
        else case.path
    response = await network.pop.request(case.method, path, headers=case.headers,
                                         data=case.body or None)
    assert response.status == case.status, (name, await response.text())
    for header, value in case.answer_headers.items():
        assert response.headers.get(header) == value, (name, header, response.headers)
    for header in case.present:
        assert header in response.headers, (name, header)
    for header in case.absent:
        assert header not in response.headers, (name, header)
    if case.method != "OPTIONS":
        assert response.headers.get("Tus-Resumable") == "1.0.0"
    if "Upload-Expires" in response.headers:
        parsedate_to_datetime(response.headers["Upload-Expires"])
    if case.status >= 400 and case.method != "HEAD":
        body = await response.json()
        assert set(body) == {"error", "code"}


async def offset_of(network: Network, url: str) -> int:
    response = await network.pop.head(url, headers=V)
    assert response.status == 200
    return int(response.headers["Upload-Offset"])


async def test_a_checksum_mismatch_keeps_nothing(network: Network) -> None:
    url = await create(network, 3 * MiB)
    body = os.urandom(2 * MiB)
    wrong = base64.b64encode(hashlib.md5(body[1:]).digest()).decode()
    response = await network.pop.patch(url, data=body, headers={
        **V, **OFFSET, "Upload-Offset": "0", "Upload-Checksum": f"md5 {wrong}"})
    assert response.status == 460
    assert await offset_of(network, url) == 0
    assert not any((network.config.pops[0].spool_dir / "tus" / "scratch").iterdir())


async def test_termination_then_410(network: Network) -> None:
    url = await create(network)
    response = await network.pop.patch(url, data=b"01", headers={**V, **OFFSET,
                                                                 "Upload-Offset": "0"})
    assert response.status == 204
    handle = (await network.pop.head(url, headers=V)).headers["Cin-Handle"]
    response = await network.pop.delete(url, headers=V)
    assert response.status == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert (await network.pop.head(url, headers=V)).status == 410
    response = await network.pop.patch(url, data=b"23", headers={**V, **OFFSET,
                                                                 "Upload-Offset": "2"})
    assert response.status == 410
    assert (await network.pop.delete(url, headers=V)).status == 410
    metadata = await (await network.coordinator.get(f"/api/file/{handle}/metadata")).json()
    assert metadata["upload_status"] == "Failed"


async def test_expired_is_410_at_the_pop_and_from_the_coordinator(network: Network) -> None:
    url = await create(network)
    await shipped(network)  # the coordinator knows the upload, and expires it too
    uploads = network.pop.app[TUS_UPLOADS]
    later = time.time() + network.config.upload_expiry.ttl + 1
    uploads.clock = lambda: later
    assert (await network.pop.head(url, headers=V)).status == 410
    # Once the coordinator failed it and the POP's sweep removed its spool, the POP
    # answers from the cin upload: expired at the POP that started it as at the
    # coordinator, each by its own clock.
    await network.coordinator.app[EXPIRY].sweep_once(now=later)
    upload_id = url.rsplit("/", 1)[1]
    assert upload_id in await network.pop.app[SWEEPER].sweep_once(now=later)
    uploads.clock = time.time
    network.pop.app[UPLOADS].clock = lambda: later
    response = await network.pop.patch(url, data=b"0", headers={**V, **OFFSET,
                                                                "Upload-Offset": "0"})
    assert response.status == 410
    assert (await network.pop.head(url, headers=V)).status == 410


async def test_a_deferred_upload_expires_with_its_bytes(network: Network) -> None:
    url = await create(network, None, **{"Upload-Defer-Length": "1"})
    response = await network.pop.patch(url, data=b"abc", headers={**V, **OFFSET,
                                                                   "Upload-Offset": "0"})
    assert response.status == 204
    uploads = network.pop.app[TUS_UPLOADS]
    later = time.time() + network.config.upload_expiry.ttl + 1
    tus_id = url.rsplit("/", 1)[1]
    await uploads.local.open_upload("orphan-without-state", {})  # a creation cut short
    assert await uploads.sweep_once(now=later) == [tus_id, "orphan-without-state"]
    assert not (network.config.pops[0].spool_dir / "tus" / "uploads" / tus_id).exists()
    assert (await network.pop.head(url, headers=V)).status == 404


async def test_deferred_length_becomes_a_cin_file(network: Network) -> None:
    url = await create(network, None, **{"Upload-Defer-Length": "1"})
    head = await network.pop.head(url, headers=V)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    payload = os.urandom(9 * MiB)
    response = await network.pop.patch(url, data=payload[:6 * MiB], headers={
        **V, **OFFSET, "Upload-Offset": "0"})
    assert response.status == 204
    response = await network.pop.patch(url, data=payload[6 * MiB:], headers={
        **V, **OFFSET, "Upload-Offset": str(6 * MiB), "Upload-Length": str(len(payload))})
    assert response.status == 204, await response.text()
    assert response.headers["Upload-Offset"] == str(len(payload))
    head = await network.pop.head(url, headers=V)
    assert head.headers["Upload-Length"] == str(len(payload))
    metadata = await wait_complete(network, head.headers["Cin-Handle"])
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_concatenation_of_partial_uploads(network: Network) -> None:
    pieces = [os.urandom(3 * MiB + 1), os.urandom(5), os.urandom(7 * MiB)]
    urls = []
    for piece in pieces:
        url = await create(network, len(piece), **{"Upload-Concat": "partial"})
        head = await network.pop.head(url, headers=V)
        assert head.headers["Upload-Concat"] == "partial"
        response = await network.pop.patch(url, data=piece, headers={
            **V, **OFFSET, "Upload-Offset": "0"})
        assert response.status == 204
        urls.append(url)
    public = network.config.pops[0].public_url
    final = " ".join([public + urls[0], urls[1], public + urls[2]])
    response = await network.pop.post("/files/", headers={
        **V, "Upload-Concat": f"final;{final}", "Upload-Metadata": META})
    assert response.status == 201, await response.text()
    url = response.headers["Location"].removeprefix(public)
    head = await network.pop.head(url, headers=V)
    total = sum(map(len, pieces))
    assert head.headers["Upload-Length"] == str(total)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(public + u for u in urls)
    response = await network.pop.patch(url, data=b"x", headers={
        **V, **OFFSET, "Upload-Offset": str(total)})
    assert response.status == 403
    metadata = await wait_complete(network, head.headers["Cin-Handle"])
    assert metadata["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


async def test_a_final_upload_needs_finished_partials(network: Network) -> None:
    url = await create(network, 10, **{"Upload-Concat": "partial"})
    response = await network.pop.post("/files/", headers={
        **V, "Upload-Concat": f"final;{url}", "Upload-Metadata": META})
    assert response.status == 400
    response = await network.pop.post("/files/", headers={
        **V, "Upload-Concat": "final;/files/nosuchuploadatall0000", "Upload-Metadata": META})
    assert response.status == 400


def signed(**fields: Any) -> dict[str, str]:
    text = encode_policy({"expiry": int(time.time()) + 3600, "call": ["store"], **fields})
    return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}


async def test_a_policy_in_the_metadata_is_checked_at_creation(network: Network) -> None:
    """The secure app's policy, in Upload-Metadata: its maxSize holds for a plain upload,
    and for a final upload the sum of its partials."""
    creds = signed(maxSize=8)
    meta = ",".join([f"apikey {b64(SECURE_APIKEY)}",
                     *(f"{key} {b64(value)}" for key, value in creds.items())])
    ok = await network.pop.post("/files/", headers={**V, "Upload-Length": "8",
                                                    "Upload-Metadata": meta})
    assert ok.status == 201
    head = await network.pop.head(ok.headers["Location"].removeprefix(
        network.config.pops[0].public_url), headers=V)
    assert "Upload-Metadata" not in head.headers  # it held credentials only: not echoed
    over = await network.pop.post("/files/", headers={**V, "Upload-Length": "9",
                                                      "Upload-Metadata": meta})
    assert over.status == 403
    urls = []
    for piece in (b"12345", b"6789"):
        url = await create(network, len(piece), **{"Upload-Concat": "partial",
                                                   "Upload-Metadata": meta})
        response = await network.pop.patch(url, data=piece, headers={
            **V, **OFFSET, "Upload-Offset": "0"})
        assert response.status == 204
        urls.append(url)
    final = await network.pop.post("/files/", headers={
        **V, "Upload-Concat": "final;" + " ".join(urls), "Upload-Metadata": meta})
    assert final.status == 403
    assert (await final.json())["code"] == "policy_denies"
