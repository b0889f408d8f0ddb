"""Fixtures of the browser tests: the data service of the access tests on a real uvicorn
server, and Debian's Chromium driven by Playwright.

Chromium comes from ``INSITU_TEST_CHROMIUM`` if set, else from the PATH, else the project's
script installs it (``scripts/browser.sh``). It is missing only if that fails: then the tests
fail; they never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import REPO
from tests.e2e.hub_conftest import alice as alice
from tests.e2e.hub_conftest import bob as bob
from tests.e2e.hub_conftest import hub_platform as hub_platform
from tests.integration.access.conftest import access_env, app, live_url

__all__ = ["access_env", "app", "browser", "chromium", "live_url", "page"]

# We run as root (no sandbox) on a closed network: without the background-networking flags
# Chromium keeps dialling out and its refused connections slow every page.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _install() -> str | None:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "browser.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium executable (Debian's package)."""
    given = os.environ.get("INSITU_TEST_CHROMIUM")
    path = given or shutil.which("chromium") or _install()
    if path and os.access(path, os.X_OK):
        return path
    if given:
        message = f"INSITU_TEST_CHROMIUM={given!r} is not an executable; run scripts/browser.sh."
    else:
        message = (
            "Chromium is not on the PATH and scripts/browser.sh could not install it; "
            "run 'apt-get install chromium'."
        )
    # Like every service the tests need: fail, never pass by skipping.
    pytest.fail(message)


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    """Headless Chromium, launched once for the session."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies from other tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    p = context.new_page()
    yield p
    context.close()
