"""A download of an upload the coordinator knows only as Started, from a POP's journal:
the POP that took it may have completed it a moment ago (its In Transit fact not arrived
yet), so the coordinator sends the client there rather than answering 409."""

from __future__ import annotations

from support import APIKEY, Network, shipped

from common.protocol.handle_lease import handle_of_upload_id


async def test_a_started_upload_is_downloaded_from_its_pop(network: Network) -> None:
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": "x.bin", "size": 10, "store": {"location": "s3"}})
    start = await response.json()
    assert response.status == 200, start
    await shipped(network)  # the coordinator has the POP's UploadStarted fact
    handle = handle_of_upload_id(network.config.internal_secret, start["upload_id"])
    assert handle is not None
    metadata = await network.coordinator.get(f"/api/file/{handle}/metadata",
                                             allow_redirects=False)
    assert (await metadata.json())["upload_status"] == "Started"
    download = await network.coordinator.get(f"/api/file/{handle}", allow_redirects=False)
    assert download.status == 302, await download.text()
    pop_url = network.config.pops[0].public_url.rstrip("/")
    assert download.headers["Location"] == f"{pop_url}/api/file/{handle}"
