"""A published workflow started from its page in real headless Chromium: log in with a
token that has the ``workflows`` scope, give a parameter a new value, press Run; the page
follows the job and lands on the run, which the server made with that value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Page, expect

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.settings import Settings
from insitu.workflows import PublishedWorkflows, notebook_from_sources, workflow_from_notebook
from tests.integration.access.conftest import serving

pytestmark = pytest.mark.e2e

CELLS = ["param_n = 4", "# Count\ncount = list(range(param_n))", "print(len(count))"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    tmp = tmp_path_factory.mktemp("workflow-browser")
    settings = Settings(
        data_dir=tmp / "data",
        catalog={"uri": f"sqlite:///{tmp / 'catalog.db'}"},
        workflows_dir=tmp / "served",
        compute={"workers": 1},
    )
    nbformat.write(notebook_from_sources(CELLS, ids=["a", "b", "c"]), tmp / "count.ipynb")
    workflow_from_notebook(tmp / "count.ipynb", tmp / "count")
    with PublishedWorkflows.from_settings(settings) as published:
        published.publish(tmp / "count", "count")
    catalog = Catalog(settings)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    secret = tokens.create("runner", scopes=["read", "workflows"])[1]
    with serving(build_app(settings, catalog=catalog, tokens=tokens)) as url:
        yield url, secret, tmp / "served" / "count"
    tokens.close()
    catalog.close()


def test_run_a_published_workflow_from_its_page(page: Page, service: tuple[str, str, Path]) -> None:
    url, secret, _ = service
    page.goto(f"{url}/login?next=/workflows/count")
    page.get_by_label("Token").fill(secret)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/workflows/count")
    expect(page.get_by_role("heading", name="Run on the server")).to_be_visible()
    expect(page.locator("#runs")).to_have_count(0)  # never run yet

    page.get_by_label("param_n").fill("nine")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#run-status")).to_contain_text('"nine" is not JSON')

    page.get_by_label("param_n").fill("9")
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(f"{url}/workflows/count?run=*", timeout=120_000)
    expect(page.locator("#provenance")).to_contain_text("server-side job")
    expect(page.locator("#provenance")).to_contain_text("param_n=9")
    expect(page.locator("#runs")).to_contain_text("on the server")
