"""The ingest pages in real headless Chromium: the lab demo (a restricted collection) is not
there until one logs in; then the pipeline lists its shots and a shot page shows a
quicklook per signal, every image loaded (signed links, no broken image).

Set ``INSITU_TEST_SCREENSHOTS=DIR`` to keep a PNG of each page visited.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from tests.integration.access.conftest import serving
from tests.integration.access.ingest_lab import ingest_lab

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The lab demo's pipelines served on loopback; its URL and a token that reads all."""
    settings = ingest_lab(tmp_path_factory.mktemp("ingest-browser")).settings
    catalog = Catalog(settings)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    secret = tokens.create("lab-admin", scopes=["read"])[1]
    with serving(build_app(settings, catalog=catalog, tokens=tokens)) as url:
        yield url, secret
    tokens.close()
    catalog.close()


def _shot(page: Page, name: str) -> None:
    folder = os.environ.get("INSITU_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_log_in_open_a_pipeline_and_a_shot_with_its_quicklooks(
    page: Page, lab_service: tuple[str, str]
) -> None:
    url, secret = lab_service
    page.goto(f"{url}/ingest")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ingest pipelines")
    expect(page.get_by_role("link", name="lab-demo", exact=True)).to_have_count(0)

    page.get_by_role("link", name="Log in", exact=True).click()
    page.get_by_label("Token").fill(secret)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/ingest")
    page.get_by_role("link", name="lab-demo", exact=True).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pipeline lab-demo")
    _shot(page, "ingest-pipeline")

    page.get_by_role("link", name="3002", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Shot 3002")
    images = page.locator("img.quicklook")
    expect(images).to_have_count(3)
    for i in range(3):
        img = images.nth(i)
        img.scroll_into_view_if_needed()  # they load lazily
        page.wait_for_function("el => el.complete", arg=img.element_handle(), timeout=60_000)
        src = img.evaluate("el => el.src")
        assert img.evaluate("el => el.naturalWidth") == 800, f"broken image {src}"
        assert "signature=" in src
    _shot(page, "ingest-shot")
