"""The console in a real browser: Debian's chromium driven by playwright.

playwright is a test dependency; chromium comes from Debian (``apt-get install -y
chromium``, which ``.ci/run`` does), and without it these tests skip, saying so.
"""

from __future__ import annotations

import os
from typing import Any

from nubes.testing.server import NubesServer

SCREENSHOT_DIR = os.environ.get("NUBES_CONSOLE_SCREENSHOTS", "/tmp")


def test_console_overview_renders(page: Any, nubes: NubesServer) -> None:
    page.goto(nubes.endpoint + "/_nubes/console/")
    page.wait_for_selector("text=Services")
    assert page.locator(".card .v").first.inner_text()  # the version
    assert page.locator("#endpoint").inner_text() == nubes.endpoint
    assert page.js_errors == []


def test_click_through_to_execution_graph(
    page: Any, nubes: NubesServer, world: dict[str, str]
) -> None:
    page.goto(nubes.endpoint + "/_nubes/console/")
    page.click("nav >> text=Step Functions")
    page.click(f"text={world['machine']}")
    page.wait_for_selector("table >> text=SUCCEEDED")
    page.click(f"a[href*='{world['execution_arn'].rsplit(':', 1)[1]}']")
    page.wait_for_selector("svg.state-graph")
    states = {
        g.get_attribute("data-state"): g.get_attribute("data-status")
        for g in page.locator("svg.state-graph g.node").all()
    }
    assert states["Prepare"] == "succeeded" and states["Item"] == "succeeded"
    assert states["Broken"] == "not-reached" and states["Fan"] == "succeeded"
    page.click("svg.state-graph g[data-state='Decide']")
    page.wait_for_selector("#state-detail >> text=ChoiceStateEntered")
    path = os.path.join(SCREENSHOT_DIR, "nubes-console-execution.png")
    page.screenshot(path=path, full_page=True)
    assert os.path.getsize(path) > 10_000
    for view, marker in (("functions", world["function"]), ("tables", world["table"]), ("queues", world["queue"]),
                         ("buckets", world["bucket"]), (f"objects/{world['bucket']}/docs%2F", "readme.txt"), ("mail", f"Console {world['tag']}"), ("stacks", "Stacks")):  # fmt: skip
        page.goto(f"{nubes.endpoint}/_nubes/console/#/{view}")
        page.wait_for_selector(f"main >> text={marker}")
        assert page.locator("main .error").count() == 0, view
        assert "[object " not in page.inner_text("main"), view
    assert page.js_errors == []


def test_a_failing_panel_shows_the_error(page: Any, nubes: NubesServer) -> None:
    page.goto(nubes.endpoint + "/_nubes/console/#/table/no-such-table-anywhere")
    page.wait_for_selector("main .error")
    assert "ResourceNotFoundException" in page.inner_text("main .error")
