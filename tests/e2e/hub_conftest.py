"""Fixtures and helpers of the browser tests against the multi-user platform (``insitu up``).

The platform is started as the hub integration tests start theirs (``insitu up --detach`` as
a user runs it, see ``tests/integration/hub/conftest.py``), but it is a platform of its own,
on ports 200 above theirs: a session fixture re-exported by two conftests is two fixtures to
pytest, and the hub tests and these may run in the same worker (``-n 2 --dist loadfile``).
``INSITU_TEST_HUB_PORT_BASE`` moves both.

Each test gets new users (``alice``, ``bob``): a first login is a first login whatever ran
before. ``tests/e2e/conftest.py`` re-exports the fixtures.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Request, expect

from tests.integration.hub.conftest import (
    Platform,
    _worker_index,
    platform_env,
    running_platform,
)

__all__ = [
    "SLOW_MS",
    "alice",
    "bob",
    "hub_platform",
    "log_in",
    "new_context",
    "notebook_panel",
    "record_navigations",
    "shot",
]

# Port slots of 20 ports each: the hub tests use slot = worker index, these tests 10 + it.
E2E_PORT_SLOT = 10
# Starting a server, running a notebook: slow on 2 shared cores. Deterministic waits only.
SLOW_MS = 180_000


@pytest.fixture(scope="session")
def hub_platform() -> Iterator[Platform]:
    """A platform started with ``insitu up --detach`` (users come from ``alice``/``bob``)."""
    data_dir = Path(tempfile.mkdtemp(prefix="insitu-hub-e2e-", dir="/tmp"))
    data_dir.chmod(0o755)  # users' kernels read the catalog from it, as from /var/lib/insitu
    env = platform_env(data_dir, E2E_PORT_SLOT + _worker_index())
    env["INSITU_HUB__ADMIN"] = f"adm-{secrets.token_hex(2)}"
    try:
        with running_platform(env, data_dir) as p:
            yield p
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _new_user(platform: Platform, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(2)}"
    # Removed with its home when the platform stops, after 'insitu down' stopped its server.
    platform.add_user(name)
    return name


@pytest.fixture
def alice(hub_platform: Platform) -> str:
    """A new user ``alice-XXXX`` of ``hub_platform`` (password in ``passwords``)."""
    return _new_user(hub_platform, "alice")


@pytest.fixture
def bob(hub_platform: Platform) -> str:
    """A new user ``bob-XXXX`` of ``hub_platform``."""
    return _new_user(hub_platform, "bob")


def shot(page: Page, name: str) -> None:
    """Keep a PNG of the page in ``$INSITU_TEST_SCREENSHOTS``, when set."""
    folder = os.environ.get("INSITU_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def new_context(browser: Browser) -> BrowserContext:
    """A browser context of its own (one person's cookies), patient with a busy machine."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    context.on("page", _keep_waiting)
    return context


def _keep_waiting(page: Page) -> None:
    """When a shared notebook is slow to sync (a busy machine), JupyterLab asks whether to
    keep waiting, cancel or retry; a person would wait, and so do the tests."""
    loading = page.get_by_role("dialog", name=re.compile(r"^Loading"))
    page.add_locator_handler(
        loading, lambda dialog: dialog.get_by_role("button", name="Continue waiting").click()
    )


def record_navigations(page: Page) -> list[str]:
    """Paths of every top-level page load of ``page`` from now on, redirects included."""
    paths: list[str] = []

    def seen(request: Request) -> None:
        if request.is_navigation_request() and request.frame == page.main_frame:
            paths.append(urlsplit(request.url).path)

    page.on("request", seen)
    return paths


def log_in(page: Page, platform: Platform, name: str, next_path: str = "") -> None:
    """Log in with the hub's form, as a person does (``next_path``: where to go after)."""
    url = f"{platform.base}/hub/login"
    page.goto(f"{url}?next={next_path}" if next_path else url)
    form = page.locator("form").filter(has=page.get_by_label("Password"))
    expect(form.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(platform.passwords[name])
    form.get_by_role("button", name="Sign in").click()


def notebook_panel(page: Page, name: str) -> Locator:
    """The notebook ``name`` as the current tab of JupyterLab's main area."""
    expect(page.get_by_role("tab", name=name, selected=True)).to_be_visible(timeout=SLOW_MS)
    return page.locator(".jp-NotebookPanel").filter(visible=True)
