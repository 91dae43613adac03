"""The Upload API's start at the coordinator and at a POP, on both storage drivers."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import APIKEY, SECURE_APIKEY, SECURE_SECRET, Network, shipped

from common.protocol.records import FileRecord
from common.protocol.security import Credentials, encode_policy, sign_policy
from common.protocol.upload_start import start_message
from coordinator.keys import FILES, MULTIPART


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


def start_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apikey": APIKEY, "filename": "movie.mp4", "mimetype": "video/mp4",
                            "size": 20 * 1024**2, "store": {"location": "s3", "path": "in/"}}
    body.update(changes)
    return body


async def start(network: Network, at: str = "coordinator", **changes: Any) -> dict[str, Any]:
    client = network.coordinator if at == "coordinator" else network.pop
    response = await client.post("/multipart/start", json=start_body(**changes))
    reply = await response.json()
    assert response.status == 200, reply
    return dict(reply)


async def file_of(network: Network, upload_id: str) -> FileRecord:
    upload = await network.coordinator.app[MULTIPART].get(upload_id)
    record: FileRecord = await network.coordinator.app[FILES].get(upload.handle)
    return record


async def test_start_names_the_pop_and_opens_the_bucket_upload(network: Network) -> None:
    east = network.config.pops[0]
    for at in ("coordinator", "pop"):
        reply = await start(network, at)
        assert set(reply) == {"uri", "region", "upload_id", "location_url", "location_region"}
        assert all(reply.values())
        # host:port without a scheme: filestack-python adds https:// itself.
        assert reply["location_url"] == urlsplit(east.public_url).netloc
        assert reply["location_region"] == east.region
        await shipped(network)  # a start at the POP reaches the coordinator a moment later
        record = await file_of(network, reply["upload_id"])
        assert (record.status.value, record.size, record.mimetype) == (
            "Started", 20 * 1024**2, "video/mp4")
        assert record.key.startswith("in/") and record.key.endswith("_movie.mp4")
        assert reply["uri"] == f"/{record.container}/{record.key}"
        pending = await network.coordinator.app[MULTIPART].storage[record.storage] \
            .list_multipart_uploads(record.container)
        assert any(key == record.key for key, _ in pending)


async def test_intelligent_ingestion_is_announced(network: Network) -> None:
    reply = await start(network, "pop", fii=True)
    assert reply["upload_type"] == "intelligent_ingestion"


@pytest.mark.parametrize(("changes", "status", "code"), [
    ({"apikey": "NOSUCHKEY0"}, 403, "unknown_apikey"),
    ({"size": 0}, 400, "bad_parameter"),
    ({"size": 6 * 1024**3}, 413, "too_large"),
    ({"store": {"location": "azure"}}, 400, "unknown_provider"),
    ({"store": {"container": "elsewhere"}}, 403, "container_not_allowed"),
    ({"store": {"path": "../up"}}, 400, "bad_path"),
    ({"store": {"access": "world"}}, 400, "bad_parameter"),
    ({"store": {"region": "not a region"}}, 400, "bad_parameter"),
    ({"mimetype": "nonsense"}, 400, "bad_parameter"),
    ({"apikey": SECURE_APIKEY}, 403, "security_required"),
])
async def test_a_bad_start_is_refused_at_the_pop(network: Network, changes: dict[str, Any],
                                                 status: int, code: str) -> None:
    response = await network.pop.post("/multipart/start", json=start_body(**changes))
    body = await response.json()
    assert (response.status, body["code"]) == (status, code), body


async def test_a_secure_start_takes_the_policy_from_the_body(network: Network) -> None:
    policy = encode_policy({"expiry": int(time.time()) + 600, "call": ["store"],
                            "maxSize": 1024})
    creds = {"policy": policy, "signature": sign_policy(SECURE_SECRET, policy)}
    reply = await start(network, "pop", apikey=SECURE_APIKEY, size=1024, **creds)
    assert reply["upload_id"]
    response = await network.pop.post("/multipart/start", json=start_body(
        apikey=SECURE_APIKEY, size=1025, **creds))
    body = await response.json()
    assert (response.status, body["code"]) == (403, "policy_denies")
    assert body["error"].endswith("maxSize: the file is 1025 bytes, the policy allows at "
                                  "most 1024")


async def test_the_body_must_be_a_json_object(network: Network) -> None:
    for data in (b"not json", b"[1, 2]"):
        response = await network.pop.post("/multipart/start", data=data)
        body = await response.json()
        assert (response.status, body["code"]) == (400, "bad_parameter")


async def test_a_repeated_start_message_returns_the_same_upload(network: Network) -> None:
    message = start_message(network.config, start_body(), Credentials.NONE,
                            pop="us-east-1", origin="us-east-1:request-1")
    uploads = network.coordinator.app[MULTIPART]
    first_record, first = await uploads.start(message)
    again_record, again = await uploads.start(message)
    assert again == first and again_record == first_record
