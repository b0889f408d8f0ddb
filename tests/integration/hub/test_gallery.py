"""The gallery: a user publishes a notebook, everyone reads it (as a page, a file, and in
``~/gallery``), nobody but its author changes or withdraws it."""

from __future__ import annotations

import os

import httpx
import nbformat
import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

PUBLISH = """
import subprocess, sys, pathlib
nb = pathlib.Path.home() / "examples" / "02-server-side-slice.ipynb"
out = subprocess.run([sys.executable, "-m", "insitu.cli", "publish", str(nb), "--name", "slice"],
                     capture_output=True, text=True)
print(out.returncode, out.stdout.strip(), out.stderr.strip())
"""


def test_a_published_notebook_is_read_by_all_and_withdrawn_by_its_author_only(
    platform: Platform, alice: str, bob: str
) -> None:
    hub = platform.hub
    hub.start(alice)
    hub.start(bob)
    alice_token, bob_token = hub.token_for(alice), hub.token_for(bob)
    run = execute(platform.base, alice, alice_token, PUBLISH)
    assert run.error is None and run.stdout.startswith("0 Published"), run
    stored = platform.data_dir / "gallery" / alice / "slice.ipynb"
    info = stored.stat()
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o644)  # the service's, read-only

    read = f"""
import pathlib
p = pathlib.Path.home() / "gallery" / "{alice}" / "slice.ipynb"
print("read", len(p.read_bytes()) > 0)
try:
    p.write_text("vandalised")
except PermissionError:
    print("write refused")
"""
    run = execute(platform.base, bob, bob_token, read)
    assert run.error is None and run.stdout.split() == ["read", "True", "write", "refused"], run

    with platform.web(bob) as web:
        listing = web.get("/services/insitu/gallery")
        assert listing.status_code == 200 and f"/gallery/{alice}/slice" in listing.text
        page = web.get(f"/services/insitu/gallery/{alice}/slice")
        assert page.status_code == 200 and "Reading only the slice you need" in page.text
        article = page.text.split('<article class="notebook">')[1].split("</article>")[0]
        assert "<script" not in article  # the rendered notebook runs nothing
        file = web.get(f"/services/insitu/gallery/{alice}/slice.ipynb")
        assert file.status_code == 200 and file.content == stored.read_bytes()

    api = f"{platform.base}/services/insitu/api/v1/gallery"
    bob_api = httpx.Client(headers={"Authorization": f"token {bob_token}"}, timeout=60)
    assert bob_api.delete(f"{api}/{alice}/slice").status_code == 403
    assert bob_api.put(f"{api}/broken", content=b"{not a notebook").status_code == 400
    huge = bob_api.put(f"{api}/huge", content=b" " * (33 * 2**20))
    assert huge.status_code == 413
    assert httpx.put(f"{api}/anon", content=b"{}", timeout=60).status_code == 401
    assert httpx.get(api, timeout=60).status_code == 401  # for people with an account
    assert stored.exists()

    # Someone else's HTML in a published notebook runs nothing for its readers.
    hostile = nbformat.v4.new_notebook()
    hostile.cells = [
        nbformat.v4.new_markdown_cell(
            "# Hostile\n<script>alert(1)</script><meta http-equiv=refresh content='0;url=/x'>"
            "<form action='/hub/logout'><button>go</button></form>"
        ),
        nbformat.v4.new_code_cell(
            "1",
            outputs=[
                nbformat.v4.new_output(
                    "display_data", data={"text/html": "<img src=x onerror=alert(2)><b>bold</b>"}
                )
            ],
        ),
    ]
    put = bob_api.put(f"{api}/hostile", content=nbformat.writes(hostile).encode())
    assert put.status_code == 201, put.text
    with platform.web(alice) as web:
        page = web.get(f"/services/insitu/gallery/{bob}/hostile").text
    article = page.split('<article class="notebook">')[1].split("</article>")[0]
    for bad in ("<script", "<meta", "<form", "onerror"):
        assert bad not in article, bad
    assert "<b>bold</b>" in article and "Hostile" in article
    assert bob_api.delete(f"{api}/{bob}/hostile").status_code == 204

    withdraw = PUBLISH.replace('str(nb), "--name", "slice"', '"--withdraw", "slice"')
    run = execute(platform.base, alice, alice_token, withdraw)
    assert run.error is None and run.stdout.startswith("0 Withdrew"), run
    assert not stored.exists()
    assert os.path.isdir(platform.data_dir / "gallery")
