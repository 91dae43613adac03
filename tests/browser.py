"""A real headless browser for the tests of cin's pages: Debian's chromium, driven by
Playwright's Python API (never a browser build Playwright would download).

Every test may ask for the `browser` fixture (tests/conftest.py offers it) and opens its
pages with `open_page`:

    def test_page(browser: Browser) -> None:
        with open_page(browser, credentials=("user", "password")) as page:
            page.goto(url)

The Makefile installs chromium when it is missing (`make test`). CIN_CHROMIUM names
another Chromium binary; CIN_SKIP_BROWSER=1 skips the browser tests when there is none,
by choice. Without either, a missing browser fails the tests that need it, saying why.

Playwright's synchronous API runs an event loop of its own: use it from plain (not
async) tests, and keep servers in other processes or threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path(os.environ.get("CIN_CHROMIUM", "/usr/bin/chromium"))
# What a browser needs on a machine with no display, no GPU and no way out but loopback:
# no sandbox (tests run as root in CI), and none of the background connections Chromium
# makes to Google's services, which a closed network refuses by the dozen.
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--metrics-recording-only", "--mute-audio",
)
VIEWPORT = {"width": 1280, "height": 900}
# Every wait of a page test is bounded by this (milliseconds) unless it says otherwise.
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One chromium for a test module; each test opens its own pages (`open_page`), with
    cookies, credentials and cache of their own."""
    if not CHROMIUM.exists():
        if os.environ.get("CIN_SKIP_BROWSER") == "1":
            pytest.skip("CIN_SKIP_BROWSER=1: the browser tests are skipped")
        pytest.fail(f"no browser at {CHROMIUM}: `make test` installs Debian's chromium "
                    "(apt-get install chromium), or set CIN_CHROMIUM, or "
                    "CIN_SKIP_BROWSER=1 to skip the browser tests")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=list(FLAGS), timeout=TIMEOUT_MS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def open_page(browser: Browser, *, credentials: tuple[str, str] | None = None) -> Iterator[Page]:
    """A page in a context of its own: `credentials` (user, password) answer an HTTP
    basic auth challenge, as a person typing them in the browser's prompt would."""
    context = browser.new_context(
        viewport=VIEWPORT,  # type: ignore[arg-type]
        http_credentials=({"username": credentials[0], "password": credentials[1]}
                          if credentials is not None else None),
        service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        yield page
    finally:
        context.close()
