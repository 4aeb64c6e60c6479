"""Console sign-in in a real browser: Debian's chromium driven by playwright, on a
nubes listening on 0.0.0.0 and opened through this machine's non-loopback address.

Skips like ``test_console_browser.py`` without chromium or playwright, and without a
non-loopback address.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from nubes.testing.server import NubesServer


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (the default route's source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("203.0.113.1", 9))  # TEST-NET-3: only picks a route, sends nothing
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


OUTSIDE = _outside_address()

CHROMIUM = os.environ.get("NUBES_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(OUTSIDE is None, reason="this machine has no non-loopback address")


@pytest.fixture(scope="module")
def page() -> Any:
    """A chromium page, or a skip when chromium or playwright is not installed."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"chromium is not installed ({CHROMIUM})")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.js_errors = errors
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[NubesServer]:
    """A nubes on every address, with one bucket to find once signed in."""
    with NubesServer(extra_args=["--host", "0.0.0.0"]) as server:
        server.client("s3").create_bucket(Bucket="browser-signin")
        yield server


def test_sign_in_browse_and_sign_out(page: Any, shared: NubesServer) -> None:
    page.goto(f"http://{OUTSIDE}:{shared.port}/_nubes/console/#/buckets")
    page.wait_for_selector("form#signin")
    assert page.locator("main .error:visible").count() == 0

    page.fill("input[name=accessKeyId]", "test")
    page.fill("input[name=secretAccessKey]", "not-the-secret")
    page.click("form#signin button[type=submit]")
    page.wait_for_selector("form#signin .error:visible")
    assert "wrong" in page.inner_text("form#signin .error")

    page.fill("input[name=secretAccessKey]", "test")
    page.click("form#signin button[type=submit]")
    page.wait_for_selector("main >> text=browser-signin")
    assert page.inner_text("#session .who") == "test"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["nubes_console_session"]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    # a cookie the page's own scripts cannot read
    assert "nubes_console_session" not in page.evaluate("document.cookie")

    page.click("#signout")
    page.wait_for_selector("form#signin")
    assert page.locator("#session button").count() == 0
    page.goto(f"http://{OUTSIDE}:{shared.port}/_nubes/console/#/tables")
    page.wait_for_selector("form#signin")
    assert page.js_errors == []


def test_loopback_browser_needs_no_signin(page: Any, shared: NubesServer) -> None:
    page.goto(shared.endpoint + "/_nubes/console/#/buckets")
    page.wait_for_selector("main >> text=browser-signin")
    assert page.locator("form#signin").count() == 0
    assert page.locator("#session button").count() == 0
    assert page.js_errors == []
