"""The page of a dataset larger than one request may read, in real headless Chromium: it
renders at once with the map, says that the field mean is being computed, and shows the
plot once the server has it; no image is ever broken."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import _shot
from tests.integration.access.bigdataset import BIG_ID, BROKEN_ID, big_service
from tests.integration.access.conftest import serving

pytestmark = pytest.mark.e2e

_ALL_IMAGES_LOADED = """() => Array.from(document.images).every(
    (img) => img.complete && img.naturalWidth > 0)"""
_BROKEN = """() => Array.from(document.images)
    .filter((img) => img.complete && img.naturalWidth === 0).map((img) => img.src)"""


@pytest.fixture(scope="module")
def big_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with big_service(tmp_path_factory.mktemp("big-browser")) as (_, _, app), serving(app) as url:
        yield url


def test_big_dataset_page_shows_computing_then_the_series(page: Page, big_url: str) -> None:
    broken: list[str] = []
    page.on(
        "response",
        lambda r: (
            broken.append(f"{r.status} {r.url}")
            if r.request.resource_type == "image" and r.status != 200
            else None
        ),
    )
    page.goto(f"{big_url}/datasets/{BIG_ID}")
    expect(page.get_by_role("heading", level=1)).to_have_text(BIG_ID)
    status = page.get_by_role("status")
    expect(status).to_contain_text("Computing the field mean on the server")
    map_img = page.get_by_role("img", name=re.compile(r"^Map of tas"))
    expect(map_img).to_be_visible()
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert page.evaluate(_BROKEN) == []
    _shot(page, "big-dataset-computing")

    series = page.get_by_role("img", name=re.compile(r"^Time series .* tas"))
    expect(series).to_be_visible(timeout=180_000)
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert series.evaluate("el => el.naturalWidth") == 800
    assert page.evaluate(_BROKEN) == [] and broken == []
    expect(page.locator("div.pending")).to_have_count(0)
    _shot(page, "big-dataset-series")

    # The second visit shows the image itself: the result is cached on the server.
    page.reload()
    expect(series).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert page.evaluate(_BROKEN) == []


def test_a_failed_series_is_shown_as_text(page: Page, big_url: str) -> None:
    page.goto(f"{big_url}/datasets/{BROKEN_ID}")
    status = page.get_by_role("status")
    expect(status).to_contain_text("failed on the server", timeout=180_000)
    expect(status).to_contain_text("Reload to try again.")
    page.wait_for_function(_ALL_IMAGES_LOADED)
    assert page.evaluate(_BROKEN) == []
    expect(page.get_by_role("img", name=re.compile(r"^Time series"))).to_have_count(0)
    _shot(page, "big-dataset-failed")
