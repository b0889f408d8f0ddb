"""A new user's first day on the platform, in real headless Chromium: log in to the hub, wait
for the server to start, find the first example notebook open, run it through JupyterLab's
menus and see its plot, then browse the catalog through the hub without logging in again.

Set ``INSITU_TEST_SCREENSHOTS=DIR`` to keep a PNG of each step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

import insitu
from tests.e2e.hub_conftest import (
    SLOW_MS,
    log_in,
    new_context,
    notebook_panel,
    record_navigations,
    shot,
)
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.e2e

FIRST = "01-cmip6-global-mean.ipynb"
SHIPPED = Path(insitu.__file__).parent / "hub" / "notebooks" / FIRST
# The notebook on 2 busy cores: about 25 s alone, minutes when the machine is shared.
RUN_MS = 600_000


def _cells(kind: str | None = None) -> int:
    cells = json.loads(SHIPPED.read_text())["cells"]
    return sum(1 for c in cells if kind is None or c["cell_type"] == kind)


def _run_all_cells(page: Page) -> None:
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menu").get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def test_first_login_runs_the_example_notebook_then_reaches_the_catalog(
    browser: Browser, hub_platform: Platform, alice: str
) -> None:
    base = hub_platform.base
    context = new_context(browser)
    try:
        page = context.new_page()
        visited = record_navigations(page)

        # Log in with the hub's form; the server starts (spawn pending), then JupyterLab.
        page.goto(f"{base}/hub/")
        expect(page).to_have_url(re.compile(r"/hub/login\b"))
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        shot(page, "hub-login")
        log_in(page, hub_platform, alice)
        notebook = notebook_panel(page, FIRST)
        assert f"/hub/spawn-pending/{alice}" in visited, visited
        # The first login opens the first example: it is the URL and the current tab.
        assert page.url.split("?")[0] == f"{base}/user/{alice}/lab/tree/examples/{FIRST}"
        expect(notebook.get_by_role("heading", level=1)).to_contain_text(
            "Multi-model CMIP6 temperature"
        )
        # Every cell there (the shared document arrives in pieces), and a kernel ready for them.
        expect(notebook.locator(".jp-Cell")).to_have_count(_cells(), timeout=SLOW_MS)
        indicator = notebook.locator(".jp-Notebook-ExecutionIndicator")
        expect(indicator).to_have_attribute("data-status", "idle", timeout=SLOW_MS)
        prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
        expect(prompts).to_have_count(_cells("code"))
        counted = prompts.filter(has_text=re.compile(r"^\[\d+\]:$"))
        expect(counted).to_have_count(0)  # a fresh copy: nothing run yet
        shot(page, "hub-notebook-opened")

        # Run → Run All Cells; done when every code cell has its count and the kernel is idle.
        _run_all_cells(page)
        expect(counted).to_have_count(_cells("code"), timeout=RUN_MS)
        expect(indicator).to_have_attribute("data-status", "idle", timeout=SLOW_MS)
        numbers = [int(re.sub(r"\D", "", text)) for text in counted.all_text_contents()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
        outputs = notebook.locator(".jp-OutputArea-output")
        errors = outputs.filter(has_text="Traceback")
        assert errors.count() == 0, "\n".join(errors.all_text_contents())[-3000:]
        trend = re.compile(r"multi-model mean trend 1950-2014: [+-]\d+\.\d\d K per decade")
        expect(outputs.filter(has_text=trend)).to_have_count(1)

        # The figure: an image in an output area that decoded to real pixels.
        plot = outputs.locator("img").first
        plot.scroll_into_view_if_needed()
        expect(plot).to_be_visible()
        page.wait_for_function("el => el.complete", arg=plot.element_handle())
        width = plot.evaluate("el => el.naturalWidth")
        assert width > 0, "the plot did not decode"
        shot(page, "hub-notebook-plot")

        # The catalog through the hub, in the same browser: the hub's OAuth, no second login.
        visited.clear()
        page.goto(f"{base}/services/insitu/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Collections")
        table = page.get_by_role("region", name="Collections you may read")
        expect(table.get_by_role("link", name="demo", exact=True)).to_be_visible()
        expect(page.get_by_text(f"hub user {alice}")).to_be_visible()
        assert "/hub/api/oauth2/authorize" in visited, visited
        assert "/hub/login" not in visited, visited
        expect(page.get_by_label("Password")).to_have_count(0)
        assert page.url == f"{base}/services/insitu/"
        shot(page, "hub-catalog")
    finally:
        context.close()
