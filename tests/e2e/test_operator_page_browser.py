"""The operator's page in a real browser (headless chromium, tests/browser.py), served by
a real coordinator with a real POP, both `cin` processes: refused without the operator's
credential; with it, the POPs, an upload in flight, a failed one and the webhook backlog,
each appearing as it happens, without a reload.

CIN_UPDATE_SCREENSHOTS=1 also writes the page as it ends up to docs/operator-page.png
(the README shows it).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import open_page
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from support import APIKEY, INTERNAL_SECRET, REPO, CinProcess, config_data, free_port, write_config

pytestmark = pytest.mark.e2e

OPERATOR = ("operator", INTERNAL_SECRET)
SCREENSHOT = REPO / "docs" / "operator-page.png"
GIVE_UP_AFTER = 4.0  # seconds a webhook is retried before it is abandoned


@dataclass
class Network:
    coordinator: str
    pop: str
    bucket: Path  # the local-disk bucket's root
    processes: list[CinProcess]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The coordinator and us-east-1 as processes; eu-west-1 is configured but never
    started, so the page has a POP that is down. Webhooks go to a port nothing listens
    on: each is retried, then given up on."""
    root = tmp_path_factory.mktemp("operator")
    data = config_data(root, webhooks=[f"http://127.0.0.1:{free_port()}/hooks"],
                       webhook_delivery={"first_retry": 0.5, "max_interval": 1,
                                         "timeout": 1, "give_up_after": GIVE_UP_AFTER},
                       heartbeat={"interval": 0.5, "timeout": 2})
    config = write_config(data, root / "cin.yaml")
    coordinator = CinProcess(["coordinator", "-c", str(config)], root).wait_ready()
    processes = [coordinator]
    try:
        processes.append(CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"],
                                    root).wait_ready())
        yield Network(coordinator=data["coordinator"]["public_url"],
                      pop=data["pops"][0]["public_url"], bucket=root / "bucket",
                      processes=processes)
    finally:
        for process in reversed(processes):
            process.stop()


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    # Loopback http:// URLs of this test's own processes.
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def store(network: Network, name: str, payload: bytes) -> dict[str, Any]:
    status, reply = post(f"{network.pop}/api/store/S3?key={APIKEY}&filename={name}",
                         payload, "application/octet-stream")
    assert status == 200, reply
    return reply


def row(page: Page, table: str, text: str) -> Any:
    """The row of table `table` that shows `text`."""
    return page.locator(f"#{table} tbody tr", has_text=text)


def test_without_the_credential_the_page_and_its_data_are_refused(
        browser: Browser, network: Network) -> None:
    for credentials in (None, ("operator", "a-wrong-password"), ("admin", INTERNAL_SECRET)):
        with open_page(browser, credentials=credentials) as page:
            # A browser with no one to ask for a password gives up on the challenge
            # (Chromium: ERR_INVALID_AUTH_CREDENTIALS), or shows the 401 it came with.
            try:
                answer = page.goto(f"{network.coordinator}/operator")
            except PlaywrightError as error:
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error), error
            else:
                assert answer is not None and answer.status == 401
                assert json.loads(page.inner_text("body"))["code"] == "not_authenticated"
        with open_page(browser) as page:
            headers = {} if credentials is None else {
                "Authorization": "Basic " + base64.b64encode(
                    ":".join(credentials).encode()).decode()}
            for path in ("/operator", "/operator/status", "/operator/page.js"):
                refused = page.request.get(f"{network.coordinator}{path}", headers=headers)
                assert refused.status == 401, path
                assert refused.headers["www-authenticate"].startswith('Basic realm="cin')
                assert refused.json()["code"] == "not_authenticated"


def test_the_page_follows_the_network_live(browser: Browser, network: Network,
                                           tmp_path: Path) -> None:
    with open_page(browser, credentials=OPERATOR) as page:
        answer = page.goto(f"{network.coordinator}/operator")
        assert answer is not None and answer.status == 200
        expect(page.locator("h1")).to_have_text("cin network")
        # The POPs, with their health as heartbeats tell it: eu-west-1 never sends one.
        expect(row(page, "pops", "us-east-1").locator("td").nth(2)).to_have_text("up")
        expect(row(page, "pops", "eu-west-1").locator("td").nth(2)).to_have_text("down")
        expect(row(page, "pops", "us-east-1")).to_contain_text(network.pop)
        expect(page.locator("#live")).to_be_visible()  # the script refreshes it

        # Everything below happens after the page loaded: only a refresh shows it.
        first = store(network, "first.txt", b"first file")
        first_event = row(page, "webhook-pending", "fp.upload")
        expect(first_event).to_contain_text("Connect")  # the receiver is not there
        expect(row(page, "webhook-abandoned", "fp.upload")).to_contain_text(
            "abandoned", timeout=(GIVE_UP_AFTER + 10) * 1000)

        status, started = post(f"{network.pop}/multipart/start", json.dumps({
            "apikey": APIKEY, "filename": "holiday-video.mp4", "mimetype": "video/mp4",
            "size": 48 * 1024**2, "store": {"location": "s3"}}).encode(), "application/json")
        assert status == 200, started
        in_flight = row(page, "in-flight", "holiday-video.mp4")
        expect(in_flight).to_contain_text("Started")
        expect(in_flight).to_contain_text("us-east-1")
        expect(in_flight).to_contain_text("48.0 MiB")

        # A store the bucket refuses (where its objects go is a file, not a folder): the
        # POP forgets it: the coordinator never hears of it, so there is no failed upload
        # to show (only a store its POP died during is recorded Failed, once the POP's
        # restart reports it abandoned).
        broken = network.bucket / "cin-test-other"
        broken.mkdir(parents=True, exist_ok=True)
        (broken / "objects").write_text("not a folder")
        status, refused = post(
            f"{network.pop}/api/store/S3?key={APIKEY}&container=cin-test-other"
            "&filename=report.csv", b"a,b\n1,2\n", "text/csv")
        assert status >= 500, refused

        store(network, "second.txt", b"second file")
        expect(row(page, "webhook-pending", "fp.upload")).to_have_count(1)
        expect(page.locator("#summary")).to_contain_text("1 of 2")
        expect(page.locator("#failures")).to_contain_text("no upload has failed")
        assert first["handle"] not in page.inner_text("#in-flight")  # it is Complete

        shot = page.screenshot(path=tmp_path / "operator-page.png", full_page=True)
        assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
        if os.environ.get("CIN_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.write_bytes(shot)
