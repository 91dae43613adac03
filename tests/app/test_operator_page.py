"""The operator's page at the coordinator: who may open it, what it shows, and that what
clients and receivers chose (a file name, an endpoint's error) shows as text, never
markup. tests/e2e/test_operator_page_browser.py opens it in a real browser."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import APIKEY, INTERNAL_SECRET, Network, config_data, shipped, start_network, to_config

from common.config import ConfigError
from common.protocol.file_status import FileStatus
from common.protocol.records import FileRecord
from common.web.drain import DRAIN
from coordinator.app import make_app
from coordinator.events import WebhookEvent
from coordinator.keys import STATE
from coordinator.operator.routes import SIGN_INS
from coordinator.operator.sign_in_limit import MAX_FAILURES, WINDOW

# A file name a client may choose (no slash: a POP keeps what follows the last one).
HOSTILE = '<img src=x onerror=alert(1)>&amp;"quoted".txt'


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


OPERATOR = basic("operator", INTERNAL_SECRET)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[Network]:
    async with start_network(tmp_path) as started:
        yield started


async def start_upload(network: Network, filename: str) -> dict[str, Any]:
    response = await network.pop.post("/multipart/start", json={
        "apikey": APIKEY, "filename": filename, "mimetype": "text/plain",
        "size": 12 * 1024**2, "store": {"location": "s3"}})
    reply: dict[str, Any] = await response.json()
    assert response.status == 200, reply
    await shipped(network)  # the coordinator hears of a POP's start from its journal
    return reply


@pytest.mark.parametrize("path", ["/operator", "/operator/status", "/operator/page.js",
                                  "/operator/nothing-here"])
@pytest.mark.parametrize("headers", [
    {},
    basic("operator", "not-the-secret-at-all"),
    basic("admin", INTERNAL_SECRET),
    basic("operator", INTERNAL_SECRET + "x"),
    {"Authorization": "Basic %%%not-base64"},
    {"Authorization": f"Bearer {INTERNAL_SECRET}"},
])
async def test_without_the_operators_credential_every_route_is_refused(
        network: Network, path: str, headers: dict[str, str]) -> None:
    response = await network.coordinator.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="cin operator"')
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["code"] == "not_authenticated"
    assert "operator" in body["error"]


async def test_the_page_shows_the_pops_and_an_upload_in_flight(network: Network) -> None:
    reply = await start_upload(network, "holiday.mov")
    response = await network.coordinator.get("/operator", headers=OPERATOR)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    pops = _tbody(page, "pops")
    for pop in network.config.pops:
        assert f"<td>{pop.name}</td>" in pops and f"<td>{pop.public_url}</td>" in pops
    in_flight = _tbody(page, "in-flight")
    assert "holiday.mov" in in_flight and "tone-started" in in_flight
    assert "<td>us-east-1</td>" in in_flight
    handle = (await network.coordinator.app[STATE].get_upload(reply["upload_id"])).handle
    assert f"<td>{handle}</td>" in in_flight
    assert "no upload has failed" in _tbody(page, "failures")
    assert "no webhook is waiting" in _tbody(page, "webhook-pending")


async def test_status_is_the_same_rows_as_json(network: Network) -> None:
    await start_upload(network, "a.txt")
    response = await network.coordinator.get("/operator/status", headers=OPERATOR)
    assert response.status == 200
    shown = await response.json()
    assert set(shown["tables"]) == {"pops", "in-flight", "failures", "webhook-pending",
                                    "webhook-abandoned"}
    pops = shown["tables"]["pops"]["rows"]
    assert [row[0] for row in pops] == ["us-east-1", "eu-west-1"]
    # Only us-east-1 runs in this network: the other is not heard from yet.
    assert pops[1][2] == {"text": "pending", "tone": "pending"}
    assert pops[1][7] == "not since the coordinator started"
    (upload,) = shown["tables"]["in-flight"]["rows"]
    assert upload[1] == {"text": "Started", "tone": "started"}
    assert (upload[2], upload[3], upload[4]) == ("us-east-1", "a.txt", "12.0 MiB")
    summary = {item["label"]: item["value"] for item in shown["summary"]}
    assert summary["uploads in flight"] == "1"
    assert summary["webhooks pending"] == "0"


async def test_failures_and_the_backlog_show_as_text_never_markup(network: Network) -> None:
    state = network.coordinator.app[STATE]
    failed = FileRecord(handle="f" * 20, apikey=APIKEY, storage="bucket", provider="s3",
                        container="cin-test", key="k", filename=HOSTILE, mimetype="text/plain",
                        size=5, status=FileStatus.STARTED, pop="eu-west-1", uploaded=1e9)
    await state.create_file(failed, origin="test:failed")

    def event(record: FileRecord) -> list[WebhookEvent]:
        return [WebhookEvent(apikey=APIKEY, endpoint="http://hooks.example/<b>x</b>",
                             action="fp.upload", text={}, created=1e9)]

    await state.set_status(failed.handle, FileStatus.FAILED, events=event)
    (delivery,) = await state.due_deliveries(now=2e9, limit=5)
    await state.delivery_failed(delivery.id, "HTTP 500: <blink>down</blink>", retry_at=None)
    await start_upload(network, HOSTILE)

    page = await (await network.coordinator.get("/operator", headers=OPERATOR)).text()
    assert "<img src=x" not in page and "<blink>" not in page and "&amp;&quot;" not in page
    escaped = "&lt;img src=x onerror=alert(1)&gt;&amp;amp;&quot;quoted&quot;.txt"
    assert escaped in _tbody(page, "in-flight")
    failures = _tbody(page, "failures")
    assert "f" * 20 in failures and "tone-failed" in failures and escaped in failures
    abandoned = _tbody(page, "webhook-abandoned")
    assert "HTTP 500: &lt;blink&gt;down&lt;/blink&gt;" in abandoned
    assert "http://hooks.example/&lt;b&gt;x&lt;/b&gt;" in abandoned
    shown = await (await network.coordinator.get("/operator/status", headers=OPERATOR)).json()
    (row,) = shown["tables"]["webhook-abandoned"]["rows"]
    assert row[5] == {"text": "abandoned", "tone": "failed"}
    assert row[6] == "HTTP 500: <blink>down</blink>"  # as text; page.js sets it as textContent


async def test_the_script_and_style_sheet_are_served(network: Network) -> None:
    for name, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
        response = await network.coordinator.get(f"/operator/{name}", headers=OPERATOR)
        assert response.status == 200 and response.content_type == kind
        assert len(await response.text()) > 500
    missing = await network.coordinator.get("/operator/other.js", headers=OPERATOR)
    assert missing.status == 404 and (await missing.json())["code"] == "not_found"


async def test_the_page_stays_open_while_the_coordinator_drains(network: Network) -> None:
    network.coordinator.app[DRAIN].draining = True
    try:
        assert (await network.coordinator.get("/pops")).status == 503
        watched = await network.coordinator.get("/operator/status", headers=OPERATOR)
        assert watched.status == 200
        refused = await network.coordinator.get("/operator/status")
        assert refused.status == 401
    finally:
        network.coordinator.app[DRAIN].draining = False


async def test_a_password_of_its_own_replaces_the_internal_secret(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["coordinator"]["operator"] = {"user": "ops", "password": "watch-the-network-7"}
    config = to_config(data, tmp_path)
    async with TestClient(TestServer(make_app(config))) as coordinator:
        ok = await coordinator.get("/operator", headers=basic("ops", "watch-the-network-7"))
        assert ok.status == 200
        for refused in (basic("ops", INTERNAL_SECRET), basic("operator", INTERNAL_SECRET)):
            assert (await coordinator.get("/operator/status", headers=refused)).status == 401


def test_the_password_may_come_from_the_environment(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIN_TEST_OPERATOR_PASSWORD", "from-the-environment")
    data = config_data(tmp_path)
    data["coordinator"]["operator"] = {"password_env": "CIN_TEST_OPERATOR_PASSWORD"}
    operator = to_config(data, tmp_path).coordinator.operator
    assert (operator.user, operator.password) == ("operator", "from-the-environment")
    assert "from-the-environment" not in repr(operator)


@pytest.mark.parametrize(("operator", "problem"), [
    ({"password": "short"}, "coordinator.operator.password: must be at least 12 characters"),
    ({"user": "a:b"}, "coordinator.operator.user: must not contain ':'"),
    ({"pasword": "typo-typo-typo"}, "pasword"),
    ("yes", "coordinator.operator: must be a mapping"),
])
def test_a_bad_operator_section_is_a_config_error(tmp_path: Path, operator: object,
                                                  problem: str) -> None:
    data = config_data(tmp_path)
    data["coordinator"]["operator"] = operator
    with pytest.raises(ConfigError, match=re.escape(problem)):
        to_config(data, tmp_path)


def _tbody(page: str, table: str) -> str:
    """The rows of the table with id `table`."""
    found = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    assert found is not None, table
    return found.group(1)


async def test_an_address_that_keeps_guessing_is_refused_for_a_while(
        network: Network) -> None:
    coordinator = network.coordinator
    # A browser's first request carries no credential: not a wrong guess.
    for _ in range(MAX_FAILURES + 2):
        assert (await coordinator.get("/operator/status")).status == 401
    for _ in range(MAX_FAILURES):
        response = await coordinator.get("/operator/status",
                                         headers=basic("operator", "a-wrong-guess"))
        assert response.status == 401
    # Past the limit even the right password is refused: a guess must tell nothing.
    for headers in (basic("operator", "another-guess"), OPERATOR):
        refused = await coordinator.get("/operator/status", headers=headers)
        assert refused.status == 429
        assert (await refused.json())["code"] == "too_many_sign_ins"
        assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW
        assert refused.headers["Cache-Control"] == "no-store"

    # Once the oldest failure is a window old, the address may sign in again.
    limit = coordinator.app[SIGN_INS]
    now = time.monotonic()
    limit.clock = lambda: now + WINDOW + 1
    assert (await coordinator.get("/operator/status", headers=OPERATOR)).status == 200
