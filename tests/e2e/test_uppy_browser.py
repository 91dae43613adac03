"""Uppy with its tus plugin (@uppy/tus, from the unmodified `uppy` bundle) in a real
headless chromium (tests/browser.py): a page served by the test from its own origin picks
a file and uploads it through a POP across CORS; the page shows success, and the file is
Complete in cin with the bytes picked. On the local-disk and the S3 driver, with the
coordinator and the POP as `cin` processes.

The page is tests/js/uppy_page/index.html; the bundle comes from tests/js/node_modules
(`make test` installs it from tests/js/package-lock.json)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from browser import open_page
from file_origin import file_origin
from playwright.sync_api import Browser, expect
from support import APIKEY, REPO, CinProcess, config_data, write_config
from tls_network import create_buckets

pytestmark = pytest.mark.e2e

JS = REPO / "tests" / "js"
BUNDLE = JS / "node_modules" / "uppy" / "dist" / "uppy.min.mjs"
MiB = 1024 * 1024


@dataclass
class Site:
    page: str  # the test page's URL, at an origin of its own
    pop: str
    coordinator: str


@pytest.fixture(scope="module", params=["local", "s3"])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The page's origin, and a coordinator and a POP whose CORS lets only that origin in."""
    if not BUNDLE.exists():
        pytest.fail("Uppy is not installed: `make test` installs it from "
                    "tests/js/package-lock.json (npm ci)")
    root = tmp_path_factory.mktemp(f"uppy-{request.param}")
    folder = root / "page"
    folder.mkdir()
    shutil.copy(JS / "uppy_page" / "index.html", folder / "index.html")
    shutil.copy(BUNDLE, folder / "uppy.js")  # served as JavaScript, which a module needs
    settings: dict[str, Any] = {}
    if request.param == "s3":
        moto_url = request.getfixturevalue("moto_url")
        bucket = f"cin-{uuid.uuid4().hex[:12]}"
        # In a thread: Playwright's own event loop runs in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(create_buckets, moto_url, bucket, f"{bucket}-other").result(60)
        settings = {"s3_endpoint": moto_url, "bucket": bucket}
    with file_origin(folder) as origin:
        data = config_data(root, cors={"origins": [origin]}, **settings)
        config = write_config(data, root / "cin.yaml")
        processes = [CinProcess(["coordinator", "-c", str(config)], root).wait_ready()]
        try:
            processes.append(CinProcess(["edge", "-c", str(config), "--pop", "us-east-1"],
                                        root).wait_ready())
            yield Site(page=f"{origin}/index.html",
                       pop=data["pops"][0]["public_url"],
                       coordinator=data["coordinator"]["public_url"])
        finally:
            for process in reversed(processes):
                process.stop()


def request(url: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    # Loopback http:// URLs of this test's own processes.
    sent = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(sent, timeout=30) as answer:  # noqa: S310
        return answer.status, dict(answer.headers), answer.read()


def wait_complete(site: Site, handle: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        _, _, body = request(f"{site.coordinator}/api/file/{handle}/metadata")
        metadata: dict[str, Any] = json.loads(body)
        if metadata.get("upload_status") == "Complete" or time.monotonic() > deadline:
            return metadata
        time.sleep(0.1)


def test_uppy_uploads_through_a_pop(browser: Browser, site: Site, tmp_path: Path) -> None:
    payload = os.urandom(12 * MiB + 321)  # three of the page's 5 MiB chunks, two parts
    picked = tmp_path / "holiday.mov"
    picked.write_bytes(payload)
    endpoint = f"{site.pop}/files/?key={APIKEY}"
    with open_page(browser) as page:
        page.goto(f"{site.page}?endpoint={quote(endpoint, safe='')}")
        page.set_input_files("#file", str(picked))
        expect(page.locator("#status")).to_have_text("success", timeout=60_000)
        url = page.locator("#url").text_content()
    assert url is not None and url.startswith(f"{site.pop}/files/")
    status, headers, _ = request(url, "HEAD", {"Tus-Resumable": "1.0.0"})
    assert status == 200
    metadata = wait_complete(site, headers["Cin-Handle"])
    assert metadata["upload_status"] == "Complete", metadata
    assert metadata["sha256"] == hashlib.sha256(payload).hexdigest()
    assert metadata["filename"] == "holiday.mov"
