"""A gateway cluster's Dask dashboard is its owner's alone, and reached through the hub.

alice's cluster links its dashboard to alice's own server, which shows it to alice (pages,
the individual plots JupyterLab's Dask panel embeds, and the panel's check); bob is refused
at every door: alice's server (the hub), his own server (no such cluster for him), the
gateway's proxy (no dashboard route), the dashboard's socket (unix permissions), and the
scheduler's TCP port (it no longer listens).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import pytest

from tests.integration.hub.client import execute, stop_cluster
from tests.integration.hub.conftest import Platform

pytestmark = pytest.mark.slow

ALICE_MAKES = """
import json
from dask_gateway import Gateway
cluster = Gateway().new_cluster(shutdown_on_close=False)
client = cluster.get_client()
port = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.http_server.port)
sock = client.run_on_scheduler(lambda: __import__("os").environ["INSITU_DASHBOARD_SOCKET"])
print(json.dumps({"name": cluster.name, "link": cluster.dashboard_link,
                  "client_link": client.dashboard_link, "port": port, "socket": sock}))
"""

BOB_TRIES_SOCKET = """
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({path!r})
    print("connect allowed")
except OSError as exc:
    print("connect", type(exc).__name__)
"""


def test_a_dashboard_is_seen_by_its_owner_through_the_hub_and_by_no_one_else(
    platform: Platform, alice: str, bob: str
) -> None:
    hub = platform.hub
    for name in (alice, bob):
        hub.start(name)
    token = hub.token_for(alice)
    made = execute(platform.base, alice, token, ALICE_MAKES)
    assert made.error is None, made.error
    cluster = json.loads(made.stdout.strip().splitlines()[-1])
    name = cluster["name"]
    try:
        own = f"/user/{alice}/dask-dashboard/clusters/{name}"
        # The link the gateway client, the dask client and the Dask panel show.
        assert cluster["link"] == f"{platform.base}{own}/status"
        assert cluster["client_link"] == cluster["link"]

        with platform.web(alice) as web:
            page = web.get(f"{own}/status")
            assert page.status_code == 200, page.text[:300]
            assert "Dask" in page.text and "bokeh" in page.text.lower()
            plots = web.get(f"{own}/individual-plots.json")
            assert plots.status_code == 200
            assert "Individual Task Stream" in plots.json()
            # JupyterLab's Dask panel asks its server whether the link is a dashboard.
            check = web.get(f"/user/{alice}/dask/dashboard-check/{quote(cluster['link'], '')}")
            assert check.status_code == 200
            assert check.json()["isActive"] is True, check.json()
            assert "Individual Task Stream" in check.json()["plots"]

        with platform.web(bob) as web:
            # alice's server is alice's: the hub refuses bob.
            theirs = web.get(f"{own}/status")
            assert theirs.status_code == 403, (theirs.status_code, theirs.url)
            assert "bokeh" not in theirs.text.lower()
            # His own server cannot open alice's cluster's socket: no such cluster for him.
            mine = web.get(f"/user/{bob}/dask-dashboard/clusters/{name}/status")
            assert mine.status_code == 404, mine.status_code
            # The gateway's proxy has no dashboard route (the capability link is gone).
            proxied = web.get(f"/services/dask-gateway/clusters/{name}/status")
            assert proxied.status_code == 404, proxied.status_code
            assert "bokeh" not in proxied.text.lower()

        # bob's own processes cannot connect to the socket.
        tried = execute(
            platform.base,
            bob,
            hub.token_for(bob),
            BOB_TRIES_SOCKET.format(path=cluster["socket"]),
        )
        assert tried.error is None, tried.error
        assert tried.stdout.strip().splitlines()[-1] == "connect PermissionError"

        # And no account can reach the dashboard on TCP: the scheduler's port is closed.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", cluster["port"]), timeout=5).close()
    finally:
        stop_cluster(platform.base, token, name)
