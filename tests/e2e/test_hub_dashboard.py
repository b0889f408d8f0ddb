"""A user's Dask dashboard, live in real headless Chromium through the hub: the page and its
websocket (Bokeh draws nothing without it) pass through the owner's server to the
scheduler's socket, and the plots fill as a computation runs.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.hub_conftest import SLOW_MS, log_in, new_context, shot
from tests.integration.hub.client import execute
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.e2e

MAKE = """
import json
from dask_gateway import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
cluster.scale(1)
client = cluster.get_client()
client.wait_for_workers(1, timeout=240)
print(json.dumps({"name": cluster.name, "link": cluster.dashboard_link}))
"""

WORK = """
from dask_gateway import Gateway
import dask.array as da
client = Gateway().connect({name!r}).get_client()
print(float(da.ones((4000, 4000), chunks=500).sum().compute()))
"""


def test_the_owner_sees_their_dashboard_live_through_the_hub(
    browser: Browser, hub_platform: Platform, alice: str
) -> None:
    hub = hub_platform.hub
    hub.start(alice)
    token = hub.token_for(alice)
    made = execute(hub_platform.base, alice, token, MAKE, timeout=400)
    assert made.error is None, made.error
    cluster = json.loads(made.stdout.strip().splitlines()[-1])
    context = new_context(browser)
    try:
        page = context.new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        log_in(page, hub_platform, alice)
        page.goto(cluster["link"])
        assert page.url == cluster["link"]
        # Bokeh's document arrives over the websocket: a drawn plot proves it passed.
        expect(page.locator("canvas").first).to_be_attached(timeout=SLOW_MS)
        assert any(f"/user/{alice}/dask-dashboard/clusters/" in url for url in sockets), sockets

        done = execute(hub_platform.base, alice, token, WORK.format(name=cluster["name"]))
        assert done.error is None, done.error
        assert done.stdout.strip().splitlines()[-1] == "16000000.0"
        # The run shows: the task stream counts the 'sum' tasks it drew.
        page.goto(cluster["link"].replace("/status", "/info/main/workers.html"))
        expect(page.get_by_text("Worker")).not_to_have_count(0, timeout=SLOW_MS)
        shot(page, "hub-dask-dashboard")
    finally:
        context.close()
        r = execute(
            hub_platform.base,
            alice,
            token,
            f"from dask_gateway import Gateway\nGateway().stop_cluster({cluster['name']!r})\n",
        )
        assert r.error is None, r.error
