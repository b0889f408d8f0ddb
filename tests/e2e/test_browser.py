"""The web catalog in real headless Chromium: search, filter by a facet, open a dataset and
see its quicklooks load; log in to see a restricted collection.

Set ``INSITU_TEST_SCREENSHOTS=DIR`` to keep a PNG of each page visited.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.integration.access.conftest import MIROC_AMON_TA, RESTRICTED_IDS, AccessEnv

pytestmark = pytest.mark.e2e


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("INSITU_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _count(page: Page) -> int:
    return int(page.locator("#result-count strong").inner_text())


def _api_total(live_url: str, page: Page) -> int:
    """What the API says for the query the page shows."""
    query = urlsplit(page.url).query
    r = httpx.get(f"{live_url}/api/v1/search?{query}", timeout=30)
    r.raise_for_status()
    total: int = r.json()["total"]
    return total


def _wait_loaded(page: Page, img: Locator) -> None:
    """Wait until the image finished loading (or failed to)."""
    expect(img).to_be_visible()
    page.wait_for_function("el => el.complete", arg=img.element_handle())


def _assert_loaded(page: Page, img: Locator) -> None:
    """The image finished loading and decoded to real pixels."""
    _wait_loaded(page, img)
    width = img.evaluate("el => el.naturalWidth")
    src = img.evaluate("el => el.src")
    status = httpx.get(src, timeout=60).status_code if width == 0 else 200
    assert width > 0, f"image {src} did not load (HTTP {status})"


def _facet_value(page: Page, facet: str, value: str) -> Locator:
    facets = page.get_by_role("complementary", name="Filter by facet")
    return facets.get_by_role("region", name=facet, exact=True).get_by_role(
        "link", name=re.compile(rf"^{re.escape(value)} \(\d+\)$")
    )


def test_search_filter_open_dataset_and_see_quicklooks(page: Page, live_url: str) -> None:
    page.goto(f"{live_url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Collections")
    _shot(page, "landing")

    page.get_by_label("Search datasets").fill("MIROC6")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(re.compile(r"/search\?.*q=MIROC6"))
    before = _count(page)
    assert before == _api_total(live_url, page) > 1
    _shot(page, "search")

    _facet_value(page, "table_id", "Amon").click()
    page.wait_for_url(re.compile(r"table_id=Amon"))
    after = _count(page)
    assert after == _api_total(live_url, page)
    assert 0 < after < before
    filters = page.get_by_role("region", name="Filters")
    expect(filters.get_by_role("link", name="Remove filter table_id = Amon")).to_be_visible()
    _shot(page, "search-filtered")

    page.get_by_role("link", name=MIROC_AMON_TA, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(MIROC_AMON_TA)
    quicklooks = [
        page.get_by_role("img", name=re.compile(r"^Map of ta")),
        page.get_by_role("img", name=re.compile(r"^Time series .* ta")),
    ]
    for img in quicklooks:
        _wait_loaded(page, img)
    _shot(page, "dataset")
    for img in quicklooks:
        _assert_loaded(page, img)
    snippet = page.get_by_role("region", name="Open it in a notebook")
    expect(snippet).to_contain_text(f'insitu.open_dataset("{MIROC_AMON_TA}")')
    expect(snippet).to_contain_text("xr.open_zarr(")


def test_pages_work_without_javascript(browser: Browser, live_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live_url}/search?q=MIROC6")
        before = _count(page)
        _facet_value(page, "table_id", "day").click()
        page.wait_for_url(re.compile(r"table_id=day"))
        assert 0 < _count(page) == _api_total(live_url, page) < before
        page.get_by_role("link", name="Remove filter table_id = day").click()
        page.wait_for_url(re.compile(r"/search\?q=MIROC6$"))
        assert _count(page) == before
    finally:
        context.close()


def test_login_shows_the_restricted_collection(
    page: Page, live_url: str, access_env: AccessEnv
) -> None:
    page.goto(f"{live_url}/")
    table = page.get_by_role("region", name="Collections you may read")
    expect(table.get_by_role("link", name="demo", exact=True)).to_be_visible()
    expect(table.get_by_role("link", name="restricted", exact=True)).to_have_count(0)

    page.goto(f"{live_url}/datasets/{RESTRICTED_IDS[0]}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    page.get_by_role("link", name="Log in with a token").click()
    page.get_by_label("Token").fill(access_env.secrets.restricted)
    page.get_by_role("button", name="Log in", exact=True).click()
    # Back on the page that asked for the login, now readable.
    expect(page.get_by_role("heading", level=1)).to_have_text(RESTRICTED_IDS[0])
    _assert_loaded(page, page.get_by_role("img", name=re.compile(r"^Map of ta")))
    _shot(page, "restricted-dataset")

    page.goto(f"{live_url}/")
    expect(table.get_by_role("link", name="restricted", exact=True)).to_be_visible()
    expect(page.get_by_text("restricted-reader")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(table.get_by_role("link", name="restricted", exact=True)).to_have_count(0)
