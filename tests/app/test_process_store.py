"""`POST /process` at a POP: the Processing API's store task, over real HTTP, storing a
file a loopback server serves (the test config's `url_fetch.allow_private` is on).

The bodies are the ones the Filestack SDKs send (PROTOCOL.md §2): filestack-python's,
with `params` always and a URL-safe policy; filestack-js's, with no `params` when there
are none, a standard-alphabet policy and `upload_tags` beside the tasks. The SDKs
themselves store from a URL in tests/e2e/test_filestack_python_upload.py and
tests/e2e/test_filestack_js.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from support import APIKEY, SECURE_APIKEY, SECURE_SECRET, Network, start_network

from common.protocol.security import encode_policy, sign_policy

HOUR = 3600


@dataclass
class Origin:
    """A loopback web server with files to store from, counting what is fetched."""

    server: BaseTestServer
    files: dict[str, tuple[bytes, str]]
    fetched: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return str(self.server.make_url(f"/files/{name}"))


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    files: dict[str, tuple[bytes, str]] = {}
    fetched: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        fetched.append(name)
        if name not in files:
            raise web.HTTPNotFound()
        body, content_type = files[name]
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/files/{name}", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        yield Origin(server, files, fetched)


@pytest.fixture
def network(network_on_each_driver: Network) -> Network:
    return network_on_each_driver


@pytest.fixture
async def local_network(tmp_path: Path) -> AsyncIterator[Network]:
    """One driver is enough where only the request is in question."""
    async with start_network(tmp_path, max_upload_size=1000) as started:
        yield started


def python_body(url: str, apikey: str = APIKEY, store: dict[str, Any] | None = None,
                security: dict[str, str] | None = None) -> dict[str, Any]:
    """What filestack-python's `upload_url` posts (filestack/uploads/external_url.py)."""
    tasks: list[dict[str, Any]] = [{"name": "store", "params": store or {}}]
    if security is not None:
        tasks.append({"name": "security", "params": security})
    return {"apikey": apikey, "sources": [url], "tasks": tasks}


def js_body(url: str, apikey: str = APIKEY, store: dict[str, Any] | None = None,
            security: dict[str, str] | None = None,
            tags: dict[str, str] | None = None) -> dict[str, Any]:
    """What filestack-js's `storeURL` posts (lib/api/store.ts): no `params` when empty."""
    tasks: list[dict[str, Any]] = [{"name": "store", **({"params": store} if store else {})}]
    if security is not None:
        tasks.append({"name": "security", "params": security})
    body: dict[str, Any] = {"apikey": apikey, "sources": [url], "tasks": tasks}
    if tags is not None:
        body["upload_tags"] = tags
    return body


def python_policy(**fields: Any) -> dict[str, str]:
    fields.setdefault("expiry", int(time.time()) + HOUR)
    text = encode_policy(fields)
    return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}


def js_policy(**fields: Any) -> dict[str, str]:
    """filestack-js's encoding: insertion order, compact JSON, the standard alphabet."""
    fields.setdefault("expiry", int(time.time()) + HOUR)
    text = base64.b64encode(json.dumps(fields, separators=(",", ":")).encode()).decode()
    return {"policy": text, "signature": sign_policy(SECURE_SECRET, text)}


async def process(network: Network, body: Any, status: int = 200) -> dict[str, Any]:
    response = await network.pop.post("/process", json=body)
    reply = await response.json()
    assert response.status == status, reply
    return dict(reply)


async def refused(network: Network, body: Any, status: int, code: str,
                  *naming: str) -> None:
    reply = await process(network, body, status)
    assert reply["code"] == code, reply
    for word in naming:
        assert word in reply["error"], reply


async def test_both_sdks_bodies_store_the_url_on_each_driver(network: Network,
                                                             origin: Origin) -> None:
    payload = os.urandom(300_000)
    origin.files["cat.demo"] = (payload, "image/x-demo")
    url = origin.url("cat.demo")
    for body in (python_body(url, store={"location": "S3"}), js_body(url)):
        reply = await process(network, body)
        handle = reply["handle"]
        assert reply["url"] == f"{network.config.coordinator.public_url}/api/file/{handle}"
        assert (reply["size"], reply["filename"]) == (len(payload), "cat.demo")
        assert reply["type"] == reply["mimetype"] == "image/x-demo"
        assert reply["container"] == network.config.storage["bucket"].container
        assert reply["key"].endswith("_cat.demo")
        stored = await (await network.pop.get(f"/{handle}")).read()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(payload).digest()
        metadata = await (await network.pop.get(f"/{handle}/metadata")).json()
        assert metadata["source_url"] == url
        assert metadata["upload_status"] == "Complete"
    assert origin.fetched == ["cat.demo", "cat.demo"]


async def test_store_options_and_tags_are_the_rest_stores(network: Network,
                                                          origin: Origin) -> None:
    origin.files["notes.txt"] = (b"some notes", "text/plain")
    other = network.config.storage["bucket"].containers[0]
    store = {"location": "s3", "filename": "renamed.md", "mimetype": "text/markdown",
             "path": "/in/", "container": other, "access": "public",
             "workflows": ["ignored"]}
    reply = await process(network, js_body(origin.url("notes.txt"), store=store,
                                           tags={"via": "storeURL"}))
    assert reply["filename"] == "renamed.md" and reply["type"] == "text/markdown"
    assert reply["key"].startswith("in/") and reply["key"].endswith("_renamed.md")
    assert reply["container"] == other
    assert reply["upload_tags"] == {"via": "storeURL"}
    metadata = await (await network.pop.get(f"/{reply['handle']}/metadata")).json()
    assert metadata["upload_tags"] == {"via": "storeURL"}
    assert metadata["container"] == other
    # base64decode applies to the fetched bytes, as with the REST store's url=.
    origin.files["b64"] = (base64.b64encode(b"decoded bytes"), "text/plain")
    reply = await process(network, python_body(origin.url("b64"),
                                               store={"base64decode": True}))
    assert await (await network.pop.get(f"/{reply['handle']}")).read() == b"decoded bytes"


async def test_the_security_task_carries_the_policy(local_network: Network,
                                                    origin: Origin) -> None:
    network = local_network
    origin.files["ok.txt"] = (b"fetched", "text/plain")
    url = origin.url("ok.txt")
    for sign in (python_policy, js_policy):
        reply = await process(network, python_body(
            url, SECURE_APIKEY, security=sign(call=["store"], path="in/.*"),
            store={"path": "in/"}))
        assert reply["key"].startswith("in/")
    await refused(network, python_body(url, SECURE_APIKEY), 403, "security_required")
    await refused(network, js_body(url, SECURE_APIKEY, security=python_policy(call=["read"])),
                  403, "policy_denies", "call")
    await refused(network, js_body(url, SECURE_APIKEY, store={"path": "out/"},
                                   security=python_policy(path="in/.*")),
                  403, "policy_denies", "path")
    bad = python_policy()
    bad["signature"] = "0" * 64
    await refused(network, js_body(url, SECURE_APIKEY, security=bad), 403, "bad_signature")
    await refused(network, js_body(url, SECURE_APIKEY, security={"policy": bad["policy"]}),
                  403, "security_required")
    # The URL is matched against the policy before anything is fetched from it.
    fetched = len(origin.fetched)
    await refused(network, js_body(url, SECURE_APIKEY,
                                   security=python_policy(url=r"https://cdn\.example/.*")),
                  403, "policy_denies", "url")
    # maxSize holds for the fetched bytes.
    await refused(network, js_body(url, SECURE_APIKEY, security=python_policy(maxSize=3)),
                  403, "policy_denies", "maxSize")
    assert len(origin.fetched) == fetched + 1  # only the maxSize one reached the source
    # The query's credentials count too, as on every route.
    response = await network.pop.post("/process", json=js_body(url, SECURE_APIKEY),
                                      params=python_policy(call=["pick"]))
    assert response.status == 200, await response.text()


async def test_bad_bodies_are_4xx_naming_what_is_wrong(local_network: Network,
                                                       origin: Origin) -> None:
    network = local_network
    origin.files["a.txt"] = (b"a", "text/plain")
    origin.files["big.bin"] = (os.urandom(1001), "application/octet-stream")
    origin.files["empty"] = (b"", "text/plain")
    url = origin.url("a.txt")
    good = js_body(url)
    cases: list[tuple[Any, int, str, tuple[str, ...]]] = [
        ([good], 400, "bad_parameter", ("object",)),
        ({**good, "tasks": []}, 400, "bad_parameter", ("tasks",)),
        ({**good, "tasks": [{"name": "security", "params": python_policy()}]},
         400, "bad_parameter", ("store task",)),
        ({**good, "tasks": [{"name": "resize", "params": {"width": 10}},
                            {"name": "store"}]}, 400, "bad_parameter", ("resize",)),
        ({**good, "tasks": [{"name": "store"}, {"name": "store"}]},
         400, "bad_parameter", ("twice",)),
        ({**good, "tasks": [{"name": "store", "params": [1]}]},
         400, "bad_parameter", ("params",)),
        ({**good, "sources": [url, url]}, 400, "bad_parameter", ("one URL",)),
        ({**good, "sources": []}, 400, "bad_parameter", ("one URL",)),
        ({**good, "sources": [{"source": url, "headers": {"Authorization": "x"}}]},
         400, "bad_parameter", ("headers",)),
        ({**good, "sources": [7]}, 400, "bad_parameter", ("source",)),
        ({**good, "upload_tags": {"n": 1}}, 400, "bad_tags", ()),
        (js_body(url, store={"path": 5}), 400, "bad_parameter", ("path",)),
        (js_body(url, store={"access": "world"}), 400, "bad_parameter", ("access",)),
        (js_body(url, store={"path": "../up"}), 400, "bad_path", ()),
        (js_body(url, store={"location": "dropbox"}), 400, "unknown_provider", ()),
        (js_body(url, store={"container": "elsewhere"}), 403, "container_not_allowed", ()),
        ({**good, "apikey": None}, 400, "missing_apikey", ()),
        (js_body(url, apikey="NOSUCHAPIKEY"), 403, "unknown_apikey", ()),
        (js_body("ftp://127.0.0.1/a.txt"), 400, "bad_url", ("scheme",)),
        (js_body("http://user:pw@127.0.0.1/"), 400, "bad_url", ("credentials",)),
        (js_body(origin.url("missing")), 400, "url_unreachable", ("404",)),
        (js_body(origin.url("empty")), 400, "empty_file", ()),
        (js_body(origin.url("big.bin")), 413, "too_large", ()),
    ]
    for body, status, code, naming in cases:
        await refused(network, body, status, code, *naming)
    response = await network.pop.post("/process", data=b"{not json",
                                      headers={"Content-Type": "application/json"})
    assert (response.status, (await response.json())["code"]) == (400, "bad_parameter")


async def test_a_forbidden_address_is_refused_before_it_is_fetched(tmp_path: Path,
                                                                   origin: Origin) -> None:
    origin.files["a.txt"] = (b"a", "text/plain")
    async with start_network(tmp_path, allow_private=False) as network:
        for url in (origin.url("a.txt"), "http://169.254.169.254/latest/meta-data",
                    "http://[::1]/", "http://10.1.2.3/"):
            await refused(network, js_body(url), 403, "url_forbidden")
    assert origin.fetched == []
