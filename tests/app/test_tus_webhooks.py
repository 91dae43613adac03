"""A tus upload fires the app's `fp.upload` webhook once it is Complete, with the file's
handle, name, size and upload tags from Upload-Metadata, as any cin upload does."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import APIKEY, start_network

from common.protocol.tus import PART_SIZE

V = {"Tus-Resumable": "1.0.0"}
OFFSET = {"Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await events.put(json.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/hooks")), events


async def test_a_tus_upload_fires_fp_upload(
        tmp_path: Path, receiver: tuple[str, asyncio.Queue[dict[str, Any]]]) -> None:
    url, events = receiver
    payload = os.urandom(PART_SIZE + 999)
    metadata = ",".join([f"apikey {b64(APIKEY)}", f"filename {b64('report.pdf')}",
                         f"filetype {b64('application/pdf')}",
                         f"upload_tags {b64(json.dumps({'case': '17'}))}"])
    async with start_network(tmp_path, webhooks=[url]) as network:
        response = await network.pop.post("/files/", data=payload, headers={
            **V, **OFFSET, "Upload-Length": str(len(payload)), "Upload-Metadata": metadata})
        assert response.status == 201
        handle = response.headers["Cin-Handle"]
        event = await asyncio.wait_for(events.get(), 30)
    assert event["action"] == "fp.upload"
    text = event["text"]
    assert (text["handle"], text["filename"], text["size"], text["type"]) == (
        handle, "report.pdf", len(payload), "application/pdf")
    assert text["upload_tags"] == {"case": "17"}
