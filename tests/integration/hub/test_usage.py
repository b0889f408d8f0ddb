"""Usage accounting on a running platform: servers and clusters recorded, an admin page
with a plot and CSV, for hub administrators only."""

from __future__ import annotations

import csv
import io

import pytest

from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow


def test_core_hours_per_user_on_the_admin_page_and_as_csv(platform: Platform, alice: str) -> None:
    hub = platform.hub
    hub.stop(alice)
    hub.start(alice)
    run = execute(
        platform.base,
        alice,
        hub.token_for(alice),
        "import insitu\nwith insitu.cluster() as c:\n    print(c.submit(sum, [1, 2]).result())",
    )
    assert run.error is None and run.stdout.strip() == "3", run
    with platform.web(platform.admin) as web:
        page = web.get("/services/insitu/admin/usage")
        assert page.status_code == 200, page.text[:500]
        assert alice in page.text
        png = web.get("/services/insitu/admin/usage.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        text = web.get("/services/insitu/admin/usage.csv", params={"days": 7}).text
        rows = list(csv.DictReader(io.StringIO(text)))
        kinds = {r["kind"] for r in rows if r["user"] == alice}
        assert {"server", "scheduler", "worker"} <= kinds, rows
        assert all(float(r["core_hours"]) > 0 for r in rows)
        assert web.get("/services/insitu/admin/usage", params={"days": 0}).status_code == 400
    with platform.web(alice) as web:
        refused = web.get("/services/insitu/admin/usage.csv")
        assert refused.status_code == 403
        assert "not a hub administrator" in refused.text
