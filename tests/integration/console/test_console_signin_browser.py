"""Console sign-in in a real browser: Debian's chromium driven by playwright, on a
nubes listening on 0.0.0.0 and opened through this machine's non-loopback address.

Skips like ``test_console_browser.py`` without chromium or playwright, and without a
non-loopback address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nubes.testing.server import NubesServer

from .remote import OUTSIDE

pytestmark = pytest.mark.skipif(OUTSIDE is None, reason="this machine has no non-loopback address")


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
