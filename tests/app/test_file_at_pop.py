"""Reads of a file a POP took and has not reported yet: the coordinator leased its handle,
so it sends the client to the POP holding it (or answers 503 FILE_AT_POP while that POP
cannot serve), never 404; a POP asked for another POP's such file does the same."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import APIKEY, APP_SECRET, Network, shipped, start_network

from common.protocol import wire
from common.protocol.errors import CinError, Code, FileAtPop
from common.protocol.handle_lease import mint_handle, mint_upload_id
from common.protocol.naming import new_handle
from coordinator.keys import STATE, STORE_EXPIRY
from coordinator.store_expiry import deleted_handle_retention
from edge.coordinator_client import RemoteFiles
from edge.heartbeat import HEARTBEAT
from edge.keys import COORDINATOR

EAST, WEST = "us-east-1", "eu-west-1"


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    # Heartbeats every 50 ms, a POP down after a second without one.
    async with start_network(tmp_path, heartbeat={"interval": 0.05,
                                                  "timeout": 1.0}) as started:
        yield started


async def leased(network: Network, pop: str) -> str:
    """A handle of a block just leased to `pop`, which has reported nothing of it."""
    block = await network.pop.app[COORDINATOR].call(wire.LeaseHandles(pop=pop, count=10),
                                                    wire.HandleLease)
    return mint_handle(network.config.internal_secret, block.block, 0)


def public_url(network: Network, pop: str) -> str:
    return next(p.public_url for p in network.config.pops if p.name == pop)


@pytest.mark.parametrize("path", ["/{h}", "/api/file/{h}", "/{h}/metadata",
                                  "/api/file/{h}/metadata", f"/{APIKEY}/{{h}}"])
async def test_the_coordinator_sends_reads_to_the_pop_holding_the_file(
        network: Network, path: str) -> None:
    handle = await leased(network, EAST)
    target = path.format(h=handle) + "?policy=p&signature=s"
    response = await network.coordinator.get(target, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == public_url(network, EAST) + target
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_handle_never_leased_is_still_not_found(network: Network) -> None:
    response = await network.coordinator.get(f"/{new_handle()}", allow_redirects=False)
    assert response.status == 404
    assert (await response.json())["code"] == "file_not_found"


async def test_delete_and_overwrite_of_an_unreported_handle(network: Network) -> None:
    handle = await leased(network, EAST)
    path = f"/api/file/{handle}?key={APIKEY}"
    response = await network.coordinator.delete(path)
    assert response.status == 503
    body = await response.json()
    assert body["code"] == "file_at_pop" and EAST in body["error"]
    # The holder itself knows better: it never gave this handle out (nothing of it is in
    # its journal), so there is no such file. An overwrite at the coordinator is passed
    # to a POP, here the holder, and answered as it answers.
    for response in (await network.coordinator.post(path, data=b"new bytes"),
                     await network.pop.delete(path),
                     await network.pop.post(path, data=b"new bytes")):
        assert response.status == 404
        assert (await response.json())["code"] == "file_not_found"


async def test_reads_are_503_while_the_holder_is_down(network: Network) -> None:
    handle = await leased(network, EAST)
    await network.pop.app[HEARTBEAT].stop()  # with its leave: shutting down, then down
    response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
    assert response.status == 503 and "Location" not in response.headers
    body = await response.json()
    assert body["code"] == "file_at_pop"
    assert "us-east-1" in body["error"]
    metadata = await network.coordinator.get(f"/{handle}/metadata", allow_redirects=False)
    assert metadata.status == 503


@pytest.mark.parametrize("message", [
    lambda h, u: wire.LookupFile(handle=h),
    lambda h, u: wire.GetMetadata(handle=h, query={}),
    lambda h, u: wire.LookupUploadOfFile(handle=h),
    lambda h, u: wire.LookupUpload(upload_id=u),
    lambda h, u: wire.LookupUploadParts(upload_id=u),
    lambda h, u: wire.CompleteUpload(upload_id=u, parts=[[1, 5]], tags={}, pop=WEST),
    lambda h, u: wire.PartStored(upload_id=u, part=1, size=5, etag="e", pop=WEST),
], ids=["lookup_file", "get_metadata", "lookup_upload_of_file", "lookup_upload",
        "lookup_upload_parts", "complete_upload", "part_stored"])
async def test_rpcs_about_a_file_at_a_pop_name_its_holder(network: Network,
                                                          message: Any) -> None:
    handle = await leased(network, EAST)
    upload_id = mint_upload_id(network.config.internal_secret, handle)
    with pytest.raises(CinError) as answered:
        await network.pop.app[COORDINATOR].call(message(handle, upload_id), wire.Message,
                                                retry=False)
    at_pop = FileAtPop.from_error(answered.value)
    assert at_pop is not None and (at_pop.handle, at_pop.pop) == (handle, EAST)


async def test_a_pop_sends_reads_of_another_pops_file_there(network: Network) -> None:
    handle = await leased(network, WEST)
    for path in (f"/{handle}", f"/{handle}/metadata?key={APIKEY}"):
        response = await network.pop.get(path, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == public_url(network, WEST) + path


async def test_a_pop_never_sends_a_client_to_itself(network: Network) -> None:
    handle = await leased(network, EAST)
    files = RemoteFiles(network.pop.app[COORDINATOR], pop=EAST)
    with pytest.raises(CinError) as answered:
        await files.lookup(handle)
    assert answered.value.code is Code.FILE_AT_POP
    assert not isinstance(answered.value, FileAtPop)  # a 503, not a redirect
    elsewhere = RemoteFiles(network.pop.app[COORDINATOR], pop=WEST)
    with pytest.raises(FileAtPop):
        await elsewhere.lookup(handle)


async def test_the_coordinator_no_longer_names_a_pops_files(network: Network) -> None:
    # A POP names its stores and uploads from its lease and ships the facts: a start
    # asked of the coordinator is a message it does not take, and names nothing.
    start = wire.StartUpload(origin=f"{EAST}:asked", apikey=APIKEY, storage="bucket",
                             provider="s3", container="cin-test", path=None, filename="f.bin",
                             mimetype="application/octet-stream", size=5, access="private",
                             region=None, fii=False, pop=EAST)
    body = wire.encode(start)
    response = await network.coordinator.post("/internal/v1/rpc", data=body, headers={
        wire.SIGNATURE_HEADER: wire.sign(network.config.internal_secret, body)})
    assert response.status == 400
    reply = wire.decode(await response.read())
    assert isinstance(reply, wire.ErrorReply) and reply.to_error().code is Code.BAD_MESSAGE
    assert await network.coordinator.app[STATE].get_upload(origin=f"{EAST}:asked") is None


async def test_a_deleted_handle_stays_404_after_the_coordinator_forgets_it(
        network: Network) -> None:
    stored = await network.pop.post("/api/store/S3", params={"key": APIKEY},
                                    data=b"soon gone")
    handle = (await stored.json())["handle"]
    await shipped(network)
    auth = {"Authorization": "Basic " + base64.b64encode(f"app:{APP_SECRET}".encode()).decode()}
    deleted = await network.coordinator.delete(f"/api/file/{handle}", headers=auth)
    assert deleted.status == 200, await deleted.text()
    response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
    assert response.status == 404  # remembered as deleted

    swept = await network.coordinator.app[STORE_EXPIRY].sweep_once(
        now=time.time() + deleted_handle_retention(network.config) + 1)
    assert swept.forgotten == 1
    # Forgotten, the handle is taken for one its POP has not reported: the read goes
    # there, and the POP, which holds nothing of it, answers 404 itself.
    response = await network.coordinator.get(f"/{handle}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == public_url(network, EAST) + f"/{handle}"
    at_pop = await network.pop.get(f"/{handle}", allow_redirects=False)
    assert at_pop.status == 404
    assert (await at_pop.json())["code"] == "file_not_found"
