"""Two people edit one notebook at the same time, in two real headless Chromium contexts.

On JupyterHub, real-time collaboration between two users is a shared server: alice shares
hers with bob (JupyterHub's sharing API), both open the same notebook on it, and
jupyter-collaboration keeps one document between them. A cell one of them types appears for
the other within seconds, without saving or reloading.

Set ``INSITU_TEST_SCREENSHOTS=DIR`` to keep a PNG of each step.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

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

FOLDER = "projects/demo-project"
NAME = "shared-analysis.ipynb"
NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)"},
        "language_info": {"name": "python"},
    },
    "cells": [
        {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": "# Shared analysis"}
    ],
}
# "Within a few seconds": the other's change must arrive without a save or a reload.
LIVE_MS = 10_000


def _log_tail(platform: Platform, pattern: str) -> str:
    log = platform.data_dir / "hub" / "jupyterhub.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(line for line in lines if pattern.lower() in line.lower())[-4000:]


def _prepare(platform: Platform, alice: str, bob: str) -> httpx.Client:
    """Alice's server runs with a project notebook in it and is shared with bob.

    Returns a client of alice's server API (alice's own token).
    """
    hub = platform.hub
    hub.start(alice)
    server = httpx.Client(
        base_url=f"{platform.base}/user/{alice}/api",
        headers={"Authorization": f"token {hub.token_for(alice)}"},
        timeout=60,
    )
    for folder in ("projects", FOLDER):
        server.put(f"/contents/{folder}", json={"type": "directory"}).raise_for_status()
    made = server.put(f"/contents/{FOLDER}/{NAME}", json={"type": "notebook", "content": NOTEBOOK})
    made.raise_for_status()
    # The server has jupyter-collaboration: the notebook is opened as a shared document.
    session = server.put(
        f"/collaboration/session/{FOLDER}/{NAME}", json={"format": "json", "type": "notebook"}
    )
    assert session.is_success, (
        f"jupyter-collaboration does not answer on {alice}'s server ({session.status_code}); "
        "its lines of the hub log:\n" + _log_tail(platform, "ydoc")
    )
    assert session.json()["sessionId"], session.text
    shared = hub.http.post(f"/shares/{alice}/", json={"user": bob})
    shared.raise_for_status()
    assert shared.json()["scopes"] == [f"access:servers!server={alice}/"], shared.text
    return server


def _open_as(page: Page, platform: Platform, name: str, alice: str) -> Locator:
    """Log in as ``name`` and open the project notebook on alice's server."""
    log_in(page, platform, name, next_path="/hub/home")  # /hub/home: no server of one's own
    page.wait_for_url(f"{platform.base}/hub/home")
    visited = record_navigations(page)
    page.goto(f"{platform.base}/user/{alice}/lab/tree/{FOLDER}/{NAME}")
    if name != alice:
        # Someone else's server: the hub asks once whether to let it know who bob is.
        expect(page.get_by_role("heading", name="Authorize access")).to_be_visible()
        expect(page.get_by_text(f"/user/{alice}/").first).to_be_visible()
        shot(page, f"hub-collab-authorize-{name.split('-')[0]}")
        page.get_by_role("button", name="Authorize").click()
    notebook = notebook_panel(page, NAME)
    assert "/hub/login" not in visited, visited
    expect(notebook.locator(".jp-Cell")).to_have_count(1, timeout=SLOW_MS)
    return notebook


def _add_cell(page: Page, notebook: Locator, text: str) -> None:
    """Select the last cell, insert a code cell below it (B) and type ``text`` into it."""
    before = notebook.locator(".jp-Cell").count()
    notebook.locator(".jp-Cell").last.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Escape")  # command mode
    page.keyboard.press("b")
    expect(notebook.locator(".jp-Cell")).to_have_count(before + 1)
    page.keyboard.press("Enter")  # edit mode in the new cell
    page.keyboard.type(text)
    expect(notebook.locator(".jp-Cell").last.locator(".cm-content")).to_have_text(text)


def _code(notebook: Locator) -> Locator:
    return notebook.locator(".jp-CodeCell .cm-content")


def _flag(page: Page, name: str) -> Locator:
    """The name flag of ``name``'s cursor in someone else's view (a tooltip of the page)."""
    return page.locator(".jp-remote-userFlag-name").filter(has_text=name).first


def test_two_users_edit_one_notebook_on_a_shared_server(
    browser: Browser, hub_platform: Platform, alice: str, bob: str
) -> None:
    server = _prepare(hub_platform, alice, bob)
    alice_context, bob_context = new_context(browser), new_context(browser)
    try:
        alice_page, bob_page = alice_context.new_page(), bob_context.new_page()
        at_alice = _open_as(alice_page, hub_platform, alice, alice)
        at_bob = _open_as(bob_page, hub_platform, bob, alice)

        # One collaborative document: alice's Collaboration panel shows bob, in this notebook.
        alice_page.get_by_role("tab", name="Collaboration", exact=True).click()
        others = alice_page.locator(".jp-CollaboratorsPanel .jp-Collaborator")
        expect(others).to_have_count(1)
        expect(others.locator(".jp-CollaboratorHeader")).to_contain_text(bob)
        others.locator(".jp-CollaboratorHeader").click()  # unfold bob's documents
        current = others.locator(".jp-CollaboratorFile.jp-mod-running .jp-DirListing-itemText")
        expect(current).to_have_attribute("title", f"{FOLDER}/{NAME}")
        shot(alice_page, "hub-collab-alice-sees-bob")

        _add_cell(alice_page, at_alice, 'print("from alice")')
        expect(_code(at_bob)).to_have_text(['print("from alice")'], timeout=LIVE_MS)
        # ... typed by alice: her cursor, flagged with her name, is on bob's screen.
        expect(_flag(bob_page, alice)).to_be_attached()
        shot(bob_page, "hub-collab-bob-sees-alice")

        _add_cell(bob_page, at_bob, 'print("from bob")')
        expected = ['print("from alice")', 'print("from bob")']
        expect(_code(at_alice)).to_have_text(expected, timeout=LIVE_MS)
        expect(_flag(alice_page, bob)).to_be_attached()
        expect(_code(at_bob)).to_have_text(expected)
        shot(alice_page, "hub-collab-alice-sees-bob-cell")

        # The server keeps the shared document in alice's file (it saves it on its own).
        # A read while the server is writing the file can fail (a half-written notebook):
        # that is "not yet", as an older content is.
        deadline = time.monotonic() + 60
        while True:
            answer = server.get(f"/contents/{FOLDER}/{NAME}")
            saved = answer.json().get("content") if answer.status_code == 200 else None
            cells = saved["cells"] if saved else []
            sources = [c["source"] for c in cells if c["cell_type"] == "code"]
            if sources == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sources == expected, (answer.status_code, answer.text[:2000])
    finally:
        alice_context.close()
        bob_context.close()
        server.close()
